"""The attention implementations of ``backend.py`` agree, and ``attention_impl`` reaches every attention layer.

On XLA:CPU the "xla" (one piece) and "chunked" (query blocks) paths measured bit-identical on every shape below
(max |difference| 0.0); the kernel-level tests allow float32 rounding, ``rtol = atol = 1e-6``. "fused" (the online
softmax, the CPU default) sums its key tiles in another order: within ``FUSED_ATOL`` of "chunked", the issue's bar
(at most 2.5e-7 measured on these shapes, outputs up to 3). Whole modules compile
to other fusions around the two paths: on a CI machine the image encoder differed by 1.15e-6 of its largest output
(AVX-512 Xeon here: 0.0), so module-level outputs are bounded at 1e-5 of their largest magnitude. "cudnn" needs a GPU;
on CPU it falls back to "xla", which is checked here.
"""

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.configs import get_config
from sam2_jax.modeling import backend
from sam2_jax.modeling.backbones import hieradet
from sam2_jax.modeling.backbones.image_encoder import image_encoder_from_config
from sam2_jax.modeling.memory_attention import MemoryAttention
from sam2_jax.modeling.sam.transformer import TwoWayTransformer
from tests import measured

TINY = "sam2.1_hiera_t"
TOL = dict(rtol=1e-6, atol=1e-6)
MODULE_REL = 1e-5  # module outputs, relative to their largest magnitude (1.15e-6 measured on one CI machine)
FUSED_ATOL = 1e-5  # "fused" against "chunked", float32 (issue 27's bar)


@functools.partial(jax.jit, static_argnames=("impl", "dtype", "query_chunks"))
def _attend(q, k, v, key_mask=None, *, impl, dtype=jnp.float32, query_chunks=None):
    return backend.dot_product_attention(q, k, v, impl=impl, dtype=dtype, key_mask=key_mask, query_chunks=query_chunks)


def _qkv(seed: int, q_shape, kv_shape, scale: float = 1.0):
    kq, kk, kv = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (
        scale * jax.random.normal(kq, q_shape),
        scale * jax.random.normal(kk, kv_shape),
        jax.random.normal(kv, kv_shape),
    )


def _assert_impls_agree(q, k, v, key_mask=None, dtype=jnp.float32, query_chunks=None):
    chunked = np.asarray(_attend(q, k, v, key_mask, impl="chunked", dtype=dtype, query_chunks=query_chunks))
    xla = np.asarray(_attend(q, k, v, key_mask, impl="xla", dtype=dtype, query_chunks=query_chunks))
    fused = np.asarray(_attend(q, k, v, key_mask, impl="fused", dtype=dtype, query_chunks=query_chunks))
    assert chunked.dtype == xla.dtype == fused.dtype == np.float32
    assert np.isfinite(chunked).all()
    np.testing.assert_allclose(xla, chunked, **TOL)
    # bfloat16: the probabilities are rounded to bfloat16 for the second dot, after another max: a rounding step
    atol = FUSED_ATOL if dtype == jnp.float32 else 2e-2
    measured.max_abs(f"fused vs chunked ({jnp.dtype(dtype).name})", fused, chunked, atol)
    return chunked


def test_hiera_global_block_at_1024():
    """Tiny's third-stage global block at 1024 px: 64x64 = 4096 tokens, 4 heads of 96; chunked by 256 queries."""
    q, k, v = _qkv(0, (1, 4, 4096, 96), (1, 4, 4096, 96), scale=2.0)
    assert 4 * 4096 * 4096 > backend.GLOBAL_BLOCK_CHUNKS.above
    _assert_impls_agree(q, k, v, query_chunks=backend.GLOBAL_BLOCK_CHUNKS)


def test_memory_cross_attention_full_bank():
    """4096 queries to 7 memory frames of 4096 tokens and 64 pointer tokens (28,736 keys; query blocks of 1024),
    one head of 256; one whole frame slot and half of the pointer tokens masked."""
    nk = 7 * 4096 + 64
    q, k, v = _qkv(1, (1, 1, 4096, 256), (1, 1, nk, 256), scale=2.0)
    assert backend._query_block(1, 4096, nk) < 4096
    mask = np.ones((1, nk), bool)
    mask[0, 4096:8192] = False  # a fully masked memory slot
    mask[0, 7 * 4096 + 32 :] = False  # masked object pointers
    out = _assert_impls_agree(q, k, v, jnp.asarray(mask))
    # Masked keys get zero weight: the same as attending to the valid keys only (a shorter sum, other rounding:
    # 1.4e-5 measured on outputs up to 3).
    keep = np.flatnonzero(mask[0])
    removed = np.asarray(_attend(q, k[:, :, keep], v[:, :, keep], impl="xla"))
    np.testing.assert_allclose(removed, out, rtol=0, atol=5e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_two_way_transformer_shapes(dtype):
    """The mask decoder's attentions (8 heads): tokens <-> a 64x64 image, downsampled to 16 per head, and the
    tokens' self-attention (32 per head); two objects."""
    tokens, image = (2, 8, 7, 16), (2, 8, 4096, 16)
    _assert_impls_agree(*_qkv(2, tokens, image), dtype=dtype)
    _assert_impls_agree(*_qkv(3, image, tokens), dtype=dtype)
    _assert_impls_agree(*_qkv(4, (2, 8, 7, 32), (2, 8, 7, 32)), dtype=dtype)


def test_fused_tiles_by_shape():
    """Which tiles "fused" runs the model's attentions with (tiny at 1024 px): the memory attention's masked cross
    attention in 2048 x 512 tiles, unmasked self-attention over a 64x64 map as one key tile of 1024-query blocks,
    the SAM heads' small token-to-image attention and Hiera's windows in one piece ("chunked")."""
    assert backend.fused_tiles(1, 4096, 7 * 4096 + 64, masked=True) == backend.FUSED
    assert backend.fused_tiles(3, 4096, 7 * 4096 + 64, masked=False) == backend.FUSED  # above whole_keys
    assert backend.fused_tiles(4, 4096, 4096, masked=False) == backend.FusedTiles(1024, 4096)  # Hiera's global
    assert backend.fused_tiles(3, 4096, 4096, masked=False) == backend.FusedTiles(1024, 4096)  # memory self-attn
    assert backend.fused_tiles(4, 4096, 4096, masked=True) == backend.FUSED
    assert backend.fused_tiles(8 * 8, 7, 4096, masked=False) is None  # token-to-image, 8 objects x 8 heads
    assert backend.fused_tiles(1024, 64, 64, masked=False) is None  # Hiera's 8x8 windows
    assert backend.fused_tiles(8, 4096, 7, masked=False) is None  # image-to-token


def test_fused_whole_key_tile_matches_chunked():
    """One unmasked key tile of 1100 keys (no padding), queries in blocks of 1024 (the last one padded)."""
    q, k, v = _qkv(11, (1, 2, 1030, 32), (1, 2, 1100, 32), scale=2.0)
    chunked = np.asarray(_attend(q, k, v, impl="chunked"))
    whole = np.asarray(backend._fused(q, k, v, jnp.float32, None, backend.FusedTiles(1024, 1100)))
    measured.max_abs("fused one key tile vs chunked", whole, chunked, FUSED_ATOL)


def test_all_keys_masked_row_is_nan_as_before():
    """A row whose keys are all masked stays NaN in every path (callers keep one valid slot per row)."""
    q, k, v = _qkv(5, (2, 1, 16, 32), (2, 1, 40, 32))
    mask = jnp.array([[True] * 40, [False] * 40])
    for impl in ("chunked", "xla"):
        out = np.asarray(_attend(q, k, v, mask, impl=impl))
        assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


def test_fused_tiles_masked_and_padded():
    """The "fused" path with 1100 keys (three tiles of 512, the last one padded with masked keys): a batch whose
    first two tiles are wholly masked (the running max starts at -inf), one wholly masked (NaN, as "chunked"),
    bfloat16."""
    nk = 1100
    q, k, v = _qkv(8, (3, 2, 1030, 32), (3, 2, nk, 32), scale=2.0)  # 1030 queries: two blocks, the last padded
    mask = np.ones((3, nk), bool)
    mask[1, :1024] = False
    mask[2] = False
    chunked = np.asarray(_attend(q, k, v, jnp.asarray(mask), impl="chunked"))
    fused = np.asarray(_attend(q, k, v, jnp.asarray(mask), impl="fused"))
    assert np.isfinite(fused[:2]).all() and np.isnan(fused[2]).all() and np.isnan(chunked[2]).all()
    measured.max_abs("fused vs chunked, masked tiles", fused[:2], chunked[:2], FUSED_ATOL)
    _assert_impls_agree(q[:2], k[:2], v[:2], jnp.asarray(mask[:2]), dtype=jnp.bfloat16)


def test_fused_skips_wholly_masked_tiles(monkeypatch):
    """A key tile whose keys are all masked is skipped, not computed with zero weights: NaN keys and values in an
    empty memory slot (two whole tiles here) leave "fused" bit-equal to the same call with zeros there, where
    computing the tile would give NaN (0 * NaN in the second dot, as "chunked" does)."""
    monkeypatch.setattr(backend, "FUSED", dataclasses.replace(backend.FUSED, min_scores=0))  # tiles at this size
    q, k, v = _qkv(9, (2, 1, 64, 32), (2, 1, 4 * 512, 32))
    mask = np.ones((2, 4 * 512), bool)
    mask[:, 512:1536] = False  # tiles 1 and 2 of every row
    mask[1, 1536:1600] = False  # and part of tile 3 in row 1: that tile still runs
    mask = jnp.asarray(mask)

    def fill(x, value):  # the empty slot's keys or values set to ``value``
        return x.at[:, :, 512:1536].set(value)

    zeros = np.asarray(_attend(q, fill(k, 0.0), fill(v, 0.0), mask, impl="fused"))
    nans = np.asarray(_attend(q, fill(k, jnp.nan), fill(v, jnp.nan), mask, impl="fused"))
    assert np.isfinite(zeros).all()
    np.testing.assert_array_equal(nans, zeros)
    assert np.isnan(np.asarray(_attend(q, fill(k, jnp.nan), fill(v, jnp.nan), mask, impl="chunked"))).all()
    chunked = np.asarray(_attend(q, k, v, mask, impl="chunked"))
    # 1.0e-7 measured (AMD EPYC Zen 4, 2026-12-07); the bound within 10x of it
    measured.max_abs("fused with skipped tiles vs chunked", zeros, chunked, 1e-6)


def test_fused_skip_over_a_batch_of_videos(monkeypatch):
    """Under ``vmap`` over ``backend.VIDEO_AXIS`` (``propagate_videos_chunk``) a tile's skip is decided for the whole
    batch: the compiled program keeps the branch (without the reduction over videos the predicate is batched and
    ``vmap`` turns the branch into a select that runs every tile), a tile empty in one video but used in the other
    runs for both, and each video's output is the one it gets alone."""
    monkeypatch.setattr(backend, "FUSED", dataclasses.replace(backend.FUSED, min_scores=0))  # tiles at this size
    q, k, v = _qkv(10, (2, 1, 1, 64, 32), (2, 1, 1, 4 * 512, 32))
    mask = np.ones((2, 1, 4 * 512), bool)
    mask[:, :, 512:1024] = False  # tile 1: empty in both videos
    mask[0, :, 1024:1536] = False  # tile 2: empty in video 0 only
    mask = jnp.asarray(mask)

    def one(q, k, v, m):
        return _attend(q, k, v, m, impl="fused")

    batched = jax.jit(jax.vmap(one, axis_name=backend.VIDEO_AXIS))
    hlo = batched.lower(q, k, v, mask).as_text()
    # Both of the kernel's branches stay branches: the tile skip and the full tile's row max (0 without the axis)
    assert hlo.count("stablehlo.case") + hlo.count("stablehlo.if") == 2
    out = np.asarray(batched(q, k, v, mask))
    for i in range(2):
        alone = np.asarray(jax.jit(one)(q[i], k[i], v[i], mask[i]))
        # 0.0 measured (AMD EPYC Zen 4, 2026-12-07): a wholly masked tile adds exp(-inf) = 0 and scales by 1
        measured.max_abs(f"fused over a batch of videos, video {i}", out[i], alone, 1e-6)


def test_dropout_is_one_mask_in_every_impl():
    """With dropout the CPU path does not chunk: "chunked" and "xla" draw the same mask from the same key."""
    q, k, v = _qkv(6, (1, 2, 64, 32), (1, 2, 80, 32))
    rng = jax.random.PRNGKey(7)
    outs = [
        np.asarray(backend.dot_product_attention(q, k, v, impl=impl, dropout_rate=0.1, dropout_rng=rng))
        for impl in ("chunked", "xla", "fused", "auto")
    ]
    for out in outs[1:]:
        np.testing.assert_array_equal(outs[0], out)
    plain = np.asarray(backend.dot_product_attention(q, k, v, impl="xla"))
    assert np.abs(outs[0] - plain).max() > 1e-3


def test_resolution_on_cpu(caplog):
    assert jax.default_backend() == "cpu"
    assert backend.resolve_attention_impl("auto") == "fused"
    assert backend.resolve_attention_impl("xla") == "xla"
    backend._log_choice.cache_clear()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert backend.resolve_attention_impl("cudnn", jnp.bfloat16, 64) == "xla"
    logged = [r.getMessage() for r in caplog.records if "attention_impl" in r.getMessage()]
    assert logged == ["attention_impl='cudnn' runs 'xla' (cudnn refused: backend 'cpu' is not gpu)"]
    with pytest.raises(ValueError, match="attention_impl must be one of .* got 'flash'"):
        backend.resolve_attention_impl("flash")
    assert backend.resolve_depthwise_conv_impl("auto") == "shifted"
    with pytest.raises(ValueError, match="depthwise_impl must be one of"):
        backend.resolve_depthwise_conv_impl("winograd")


def test_config_default():
    assert get_config(TINY).model.attention_impl == "auto"
    assert get_config(TINY).model.compact_memory == "auto"


def test_compact_memory_resolution():
    """Memory compaction (the tracking step's slot buckets) is on for CPU, off as soon as a GPU or TPU is a target
    (e.g. a jax.export traced on this CPU), and forced by "on" / "off"."""
    assert backend.resolve_compact_memory("auto") is True  # this machine's CPU
    assert backend.resolve_compact_memory("auto", ("cpu",)) is True
    assert backend.resolve_compact_memory("auto", ("cuda",)) is False
    assert backend.resolve_compact_memory("auto", ("cpu", "tpu")) is False
    assert backend.resolve_compact_memory("on", ("cuda",)) is True
    assert backend.resolve_compact_memory("off") is False
    with pytest.raises(ValueError, match="compact_memory must be one of"):
        backend.resolve_compact_memory("yes")


def _image_encoder(impl: str):
    return image_encoder_from_config(get_config(TINY).model.image_encoder, attention_impl=impl)


def _memory_attention(impl: str):
    return MemoryAttention.from_config(get_config(TINY).model.memory_attention, attention_impl=impl)


def _two_way(impl: str):
    return TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8, attention_impl=impl)


def test_attention_impl_reaches_every_layer():
    """An unknown name fails in each module's attention: the field is passed down to every attention call."""
    x = jnp.zeros((1, 64, 64, 3))
    with pytest.raises(ValueError, match="got 'flash'"):
        jax.eval_shape(_image_encoder("flash").init, jax.random.PRNGKey(0), x)
    curr, mem = jnp.zeros((1, 16, 256)), jnp.zeros((1, 2 * 16 + 4, 64))
    with pytest.raises(ValueError, match="got 'flash'"):
        init = functools.partial(_memory_attention("flash").init, num_obj_ptr_tokens=4)
        jax.eval_shape(init, jax.random.PRNGKey(0), curr, mem, curr, mem)
    img, pts = jnp.zeros((1, 4, 4, 256)), jnp.zeros((1, 5, 256))
    with pytest.raises(ValueError, match="got 'flash'"):
        jax.eval_shape(_two_way("flash").init, jax.random.PRNGKey(0), img, img, pts)


def test_image_encoder_same_output(monkeypatch):
    """Tiny's image encoder at 128 px with "xla" and "chunked"; the global blocks' chunks shrunk so that the
    chunked path really splits (at 128 px it would not)."""
    monkeypatch.setattr(hieradet, "GLOBAL_BLOCK_CHUNKS", backend.QueryChunks(size=16, above=0))
    monkeypatch.setattr(backend, "FUSED", backend.FusedTiles(query_block=16, key_tile=16))  # so that "fused" tiles
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 128, 128, 3))
    params = jax.jit(_image_encoder("chunked").init)(jax.random.PRNGKey(1), x)
    outs = {impl: jax.jit(_image_encoder(impl).apply)(params, x) for impl in ("chunked", "xla", "fused")}
    for impl in ("xla", "fused"):
        for a, b in zip(jax.tree.leaves(outs["chunked"]), jax.tree.leaves(outs[impl]), strict=True):
            measured.max_rel(f"image encoder {impl} vs chunked", b, a, MODULE_REL)


def test_memory_attention_same_output(monkeypatch):
    """Tiny's memory attention, 16x16 queries, 3 memory frames and 8 pointers with a masked frame slot and masked
    pointers, "xla" against "chunked" with a score budget small enough to block the queries."""
    monkeypatch.setattr(backend, "SCORE_BUDGET", 32 * (3 * 256 + 8))
    monkeypatch.setattr(backend, "FUSED", backend.FusedTiles(query_block=64, key_tile=128))
    assert backend._query_block(1, 256, 3 * 256 + 8) == 32
    r = jax.random.split(jax.random.PRNGKey(2), 4)
    nm = 3 * 256 + 8
    curr, curr_pos = jax.random.normal(r[0], (1, 256, 256)), jax.random.normal(r[1], (1, 256, 256))
    mem, mem_pos = jax.random.normal(r[2], (1, nm, 64)), jax.random.normal(r[3], (1, nm, 64))
    mask = np.ones((1, nm), bool)
    mask[0, 256:512] = False
    mask[0, -3:] = False
    init = functools.partial(_memory_attention("chunked").init, num_obj_ptr_tokens=8)
    params = jax.jit(init)(jax.random.PRNGKey(3), curr, mem, curr_pos, mem_pos)

    def run(impl):
        fn = jax.jit(_memory_attention(impl).apply, static_argnums=5)
        return np.asarray(fn(params, curr, mem, curr_pos, mem_pos, 8, jnp.asarray(mask)))

    chunked, xla, fused = run("chunked"), run("xla"), run("fused")
    assert np.isfinite(chunked).all()
    measured.max_rel("memory attention xla vs chunked", xla, chunked, MODULE_REL)
    measured.max_rel("memory attention fused vs chunked", fused, chunked, MODULE_REL)


def test_two_way_transformer_same_output():
    img = jax.random.normal(jax.random.PRNGKey(4), (2, 16, 16, 256))
    pe = jax.random.normal(jax.random.PRNGKey(5), (2, 16, 16, 256))
    pts = jax.random.normal(jax.random.PRNGKey(6), (2, 7, 256))
    params = jax.jit(_two_way("chunked").init)(jax.random.PRNGKey(7), img, pe, pts)
    outs = {impl: jax.jit(_two_way(impl).apply)(params, img, pe, pts) for impl in ("chunked", "xla")}
    for a, b in zip(outs["chunked"], outs["xla"], strict=True):
        measured.max_rel("two-way transformer xla vs chunked", b, a, MODULE_REL)


def test_depthwise_conv_impls_agree():
    """The memory encoder's 7x7 depthwise conv: shifted multiply-adds (CPU) and XLA's grouped conv (elsewhere)."""
    from sam2_jax.modeling.layers import Conv2d

    x = jax.random.normal(jax.random.PRNGKey(8), (2, 16, 16, 32))
    conv = functools.partial(Conv2d, 32, kernel_size=(7, 7), padding=(3, 3), groups=32)
    params = conv().init(jax.random.PRNGKey(9), x)
    shifted = np.asarray(jax.jit(conv(depthwise_impl="shifted").apply)(params, x))
    grouped = np.asarray(jax.jit(conv(depthwise_impl="xla").apply)(params, x))
    np.testing.assert_array_equal(np.asarray(jax.jit(conv().apply)(params, x)), shifted)  # "auto" on CPU
    np.testing.assert_allclose(grouped, shifted, rtol=0, atol=1e-5)
