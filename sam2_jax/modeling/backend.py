"""Backend policy: which attention kernel and which conv formulation the model layers run.

No official counterpart: the official layers call ``F.scaled_dot_product_attention`` and ``nn.Conv2d``, and PyTorch
picks a kernel per device. Here every attention of the model (Hiera blocks, memory attention, the two-way
transformer) calls ``dot_product_attention`` with the static ``attention_impl`` name that the modules carry from
``config.model.attention_impl``; no layer chooses a kernel itself and no global state is read at trace time.

Attention implementations (``ATTENTION_IMPLS``):
- ``"fused"``: the XLA:CPU path. An online (flash-style) softmax: for each head and block of ``FUSED.query_block``
  queries, a ``lax.scan`` over tiles of ``FUSED.key_tile`` keys keeps the running row max, the running sum and the
  output in float32, so no query's full score row is ever written to memory; a 2048 x 512 tile's scores (4 MB) stay
  in the cache between the two dots and the exponentials. Each dot is a plain 2-D matmul (the heads and batch are mapped
  over), the shape XLA:CPU runs fastest. Unmasked attention over at most ``FUSED.whole_keys`` keys (self-attention
  over a 64x64 map) takes its keys as one tile. Keys are padded to whole tiles as masked keys. A tile whose keys are all
  masked (an empty memory slot) is skipped (``lax.cond``; exact, as it would add zero weights), so a memory costs
  what its filled slots cost (under ``VIDEO_AXIS``, a tile empty in every video of the batch); a row whose keys are
  all masked is NaN, as in ``"chunked"``. Attentions with fewer than two key tiles or a small score matrix
  (``FUSED.min_scores``, the SAM heads' token-to-image attention) run ``"chunked"`` (``fused_tiles``). Agrees with
  ``"chunked"`` to float32 rounding (``tests/modeling/test_attention_impl.py``).
- ``"chunked"``: the XLA:CPU path before ``"fused"``. Score matrices above ``SCORE_BUDGET`` elements are computed a
  block of queries at a time (``lax.map``, the largest divisor of the query count that fits); self-attention over a
  whole feature map (``GLOBAL_BLOCK_CHUNKS``, Hiera's global blocks) first splits into fixed chunks of 256
  queries. XLA:CPU maps fresh pages for every large temporary, so small reused buffers are faster, and memory stays
  bounded however many objects are batched (REFERENCE.md, "What XLA:CPU does"). Softmax in float32; each query
  row's numbers are those of the unchunked computation.
- ``"xla"``: the same einsum, float32 softmax, einsum in one piece, for XLA to fuse on GPU/TPU. Chosen over
  ``jax.nn.dot_product_attention(implementation="xla")``, which scales the float32 logits instead of the queries,
  returns the compute dtype instead of float32, has no dropout and gives a fully masked row uniform weights; this
  one has the semantics of ``"chunked"`` and agrees with it to float32 rounding.
- ``"cudnn"``: ``jax.nn.dot_product_attention(implementation="cudnn")`` (fused flash attention). Used only on GPU with
  a bf16/fp16 compute dtype, a head dim that is a multiple of 8 and at most 128 (256 from Hopper on) and no dropout;
  otherwise ``"xla"`` runs, with one log line. The key mask becomes cuDNN's additive bias (materialised at
  ``(B, 1, Nq, Nk)``, a finite large negative), so a row whose keys are all masked averages all values where the
  other implementations give NaN. The output is cast to float32.
- ``"auto"``: ``"fused"`` on CPU, ``"cudnn"`` (where allowed, else ``"xla"``) on GPU, ``"xla"`` on TPU and others.
  It resolves with ``jax.default_backend()`` when traced: a ``jax.export`` for another platform must name the
  implementation explicitly.

Memory compaction (``COMPACT_MEMORY``, ``config.model.compact_memory``): whether the tracking step attends only to
the memory slots in use (``tracker/engine.py``, ``slot_buckets``): ``"auto"`` is on for CPU, where the first frames
of a propagation are FLOP-bound and otherwise attend to every (masked) slot, and off on GPU/TPU, where each bucket's
copy of the memory attention adds to the compile of every object count; ``"on"`` / ``"off"`` force it.

Every resolved choice is logged once (``logging.info``), so a benchmark log shows which kernel ran.

Conv formulations (``layers.Conv2d``): a 1x1 stride-1 conv is always a matmul (XLA lowers it to the same dot on
every backend). A stride-1 depthwise conv has ``depthwise_impl`` (``DEPTHWISE_CONV_IMPLS``): ``"shifted"`` (a sum of
``kh * kw`` shifted products; 5 ms against 72 ms for ``feature_group_count`` on XLA:CPU), ``"xla"``
(``lax.conv_general_dilated`` with ``feature_group_count``, cuDNN's / the TPU's depthwise kernels) or ``"auto"``:
``"shifted"`` on CPU, ``"xla"`` elsewhere.
"""

import dataclasses
import functools
import logging
import math
from typing import Any

import jax
import jax.numpy as jnp

Dtype = Any

ATTENTION_IMPLS = ("auto", "fused", "chunked", "xla", "cudnn")
DEPTHWISE_CONV_IMPLS = ("auto", "shifted", "xla")
COMPACT_MEMORY = ("auto", "on", "off")

# Most attention-score elements the "chunked" path holds at once (128 MB in float32). 8 objects attending 4096
# queries to 28,736 memory tokens would otherwise hold 3.8 GB of scores per layer (plus the softmax's copies) and
# exhaust a 24 GB host.
SCORE_BUDGET = 2**25


@dataclasses.dataclass(frozen=True)
class QueryChunks:
    """Fixed query chunks of the "chunked" path: ``size`` queries a chunk (the last one padded) once the score
    matrix has more than ``above`` elements and there are more than ``size`` queries."""

    size: int
    above: int


@dataclasses.dataclass(frozen=True)
class FusedTiles:
    """The "fused" path's tiling: ``query_block`` queries against ``key_tile`` keys at a time.

    An attention with fewer than two key tiles, or whose score matrix has at most ``min_scores`` elements, runs
    "chunked". One with no key mask and at most ``whole_keys`` keys takes all its keys as one tile,
    ``whole_query_block`` queries at a time (0 turns this off).
    """

    query_block: int
    key_tile: int
    whole_keys: int = 0
    whole_query_block: int = 1024
    min_scores: int = 0


# A 2048 x 512 float32 score tile is 4 MB. Measured on the memory attention's shapes (benchmarks/attention.py
# and the same kernel at other tiles, Xeon Sapphire Rapids class, 2026-12-07): 2048-query blocks ran 2-6% faster than
# 1024 (189 -> 191-202 GFLOP/s for 1 and 3 objects), 512 slower (158); key tiles of 256 to 1024 ran alike.
# Unmasked self-attention over a 64x64 map (Hiera's global blocks, 4 heads of 96; the memory attention's
# self-attention, one head of 256) ran 8-18% faster as one 4096-key tile in 1024-query blocks, on both ISAs (Xeon,
# 2026-12-08: 136 -> 120 ms and 126 -> 109 ms AVX2-limited for a global block; 66 -> 61 and 66 -> 55 ms for the
# self-attention). The SAM heads' token-to-image attention (7 queries, 4096 keys, 8 heads of 16) ran 2.3x faster
# in one piece ("chunked": 4.2 -> 1.8 ms for 3 objects) than tiled; hence ``min_scores``.
FUSED = FusedTiles(query_block=2048, key_tile=512, whole_keys=4096, whole_query_block=1024, min_scores=2**22)

# Hiera's global blocks at 1024 px: 4096 x 4096 scores per head (268 MB for 4 heads) become 16 chunks of 16 MB.
GLOBAL_BLOCK_CHUNKS = QueryChunks(size=256, above=2**22)

# The axis name ``tracker.compiled.propagate_videos_chunk`` maps a batch of videos over. Under ``vmap`` a branch
# whose predicate differs per member runs every branch and selects; a data-dependent branch (a memory bucket, a
# skipped key tile) reduces its predicate over this axis, so the whole batch takes one branch.
VIDEO_AXIS = "videos"


def over_videos(x: jax.Array, reduce) -> jax.Array:
    """``reduce(x, VIDEO_AXIS)`` (``lax.pmax`` / ``lax.pmin``) under a ``vmap`` named ``VIDEO_AXIS``, else x."""
    try:
        return reduce(x, VIDEO_AXIS)
    except NameError:  # not mapped over videos
        return x


@functools.lru_cache(maxsize=None)
def _log_choice(requested: str, resolved: str, why: str) -> None:
    """Log each distinct resolution once (the cache makes repeats a no-op)."""
    logging.info("attention_impl=%r runs %r (%s)", requested, resolved, why)


def _cudnn_refusal(backend: str, dtype: Dtype, head_dim: int, dropout: bool) -> str | None:
    """Why cuDNN flash attention cannot run this call, or None if it can."""
    if backend != "gpu":
        return f"backend {backend!r} is not gpu"
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return f"compute dtype {jnp.dtype(dtype).name} is not bfloat16/float16"
    if dropout:
        return "attention dropout is on"
    capability = getattr(jax.devices()[0], "compute_capability", "0.0")
    max_dim = 256 if float(capability) >= 9.0 else 128
    if head_dim % 8 or head_dim > max_dim:
        return f"head dim {head_dim} is not a multiple of 8 up to {max_dim} (compute capability {capability})"
    return None


def resolve_attention_impl(impl: str, dtype: Dtype = jnp.float32, head_dim: int = 64, dropout: bool = False) -> str:
    """The implementation that ``dot_product_attention`` runs for ``impl`` on the default backend.

    Args:
      impl: one of ``ATTENTION_IMPLS``.
      dtype: the compute dtype of the call.
      head_dim: the per-head feature size.
      dropout: whether attention dropout is on for this call.
    Returns:
      ``"fused"``, ``"chunked"``, ``"xla"`` or ``"cudnn"``.
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    backend = jax.default_backend()
    resolved = impl
    if impl == "auto":
        resolved = {"cpu": "fused", "gpu": "cudnn"}.get(backend, "xla")
    why = f"backend {backend}"
    if resolved == "cudnn":
        refusal = _cudnn_refusal(backend, dtype, head_dim, dropout)
        if refusal is not None:
            resolved, why = "xla", f"cudnn refused: {refusal}"
    _log_choice(impl, resolved, why)
    return resolved


def resolve_depthwise_conv_impl(impl: str) -> str:
    """``"shifted"`` or ``"xla"`` for ``impl`` in ``DEPTHWISE_CONV_IMPLS`` on the default backend."""
    if impl not in DEPTHWISE_CONV_IMPLS:
        raise ValueError(f"depthwise_impl must be one of {DEPTHWISE_CONV_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "shifted" if jax.default_backend() == "cpu" else "xla"
    return impl


def resolve_compact_memory(setting: str, platforms: tuple[str, ...] | None = None) -> bool:
    """Whether the tracking step compacts its memory slots, for ``setting`` in ``COMPACT_MEMORY``: ``"auto"`` is
    on where every platform is the CPU (``platforms``, e.g. a ``jax.export``'s; default: the default backend)."""
    if setting not in COMPACT_MEMORY:
        raise ValueError(f"compact_memory must be one of {COMPACT_MEMORY}, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    platforms = platforms or (jax.default_backend(),)
    on = all(p == "cpu" for p in platforms)
    _log_choice("compact_memory=auto", "on" if on else "off", f"platforms {platforms}")
    return on


def _query_block(batch_heads: int, num_queries: int, num_keys: int) -> int:
    """The largest divisor of ``num_queries`` whose score block fits ``SCORE_BUDGET`` elements (at least 1)."""
    limit = max(1, SCORE_BUDGET // max(1, batch_heads * num_keys))
    if num_queries <= limit:
        return num_queries
    block = limit
    while num_queries % block:
        block -= 1
    return block


def _sdpa(q, k, v, dtype, key_mask, dropout_rate, dropout_rng):
    """One-piece attention: bf16/f32 dots with float32 accumulation, float32 softmax, float32 result."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    # (B, h, Nq, d) x (B, h, Nk, d) -> (B, h, Nq, Nk)
    s = jnp.einsum("bhqd,bhkd->bhqk", (q * scale).astype(dtype), k.astype(dtype), preferred_element_type=jnp.float32)
    if key_mask is not None:
        s = jnp.where(key_mask[:, None, None, :], s, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1)
    if dropout_rate > 0.0 and dropout_rng is not None:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, p.shape)
        p = jnp.where(keep, p / (1.0 - dropout_rate), 0.0)
    # (B, h, Nq, Nk) x (B, h, Nk, d) -> (B, h, Nq, d)
    return jnp.einsum("bhqk,bhkd->bhqd", p.astype(dtype), v.astype(dtype), preferred_element_type=jnp.float32)


def _budgeted(q, k, v, dtype, key_mask):
    """``_sdpa`` a block of queries at a time (``lax.map``) when the scores exceed ``SCORE_BUDGET``."""
    B, h, Nq, d = q.shape
    block = _query_block(B * h, Nq, k.shape[2])
    if block == Nq:
        return _sdpa(q, k, v, dtype, key_mask, 0.0, None)
    # (B, h, Nq, d) -> (Nq / block, B, h, block, d)
    qs = q.reshape(B, h, Nq // block, block, d).transpose(2, 0, 1, 3, 4)
    out = jax.lax.map(lambda qb: _sdpa(qb, k, v, dtype, key_mask, 0.0, None), qs)
    # (Nq / block, B, h, block, dv) -> (B, h, Nq, dv)
    return out.transpose(1, 2, 0, 3, 4).reshape(B, h, Nq, v.shape[-1])


def _chunked(q, k, v, dtype, key_mask, query_chunks):
    B, h, Nq, d = q.shape
    c = query_chunks
    if c is None or B * h * Nq * k.shape[2] <= c.above or Nq <= c.size:
        return _budgeted(q, k, v, dtype, key_mask)
    n = -(-Nq // c.size)
    q = jnp.pad(q, ((0, 0), (0, 0), (0, n * c.size - Nq), (0, 0)))
    # (B, h, n*size, d) -> (n, B, h, size, d)
    qc = q.reshape(B, h, n, c.size, d).transpose(2, 0, 1, 3, 4)
    out = jax.lax.map(lambda qq: _budgeted(qq, k, v, dtype, key_mask), qc)
    # (n, B, h, size, dv) -> (B, h, n*size, dv) -> (B, h, Nq, dv)
    return out.transpose(1, 2, 0, 3, 4).reshape(B, h, n * c.size, v.shape[-1])[:, :, :Nq]


def fused_tiles(batch_heads: int, num_queries: int, num_keys: int, masked: bool) -> FusedTiles | None:
    """The tiles ``"fused"`` runs an attention of this shape with (``FUSED``), or None where it runs "chunked"."""
    t = FUSED
    if num_keys < 2 * t.key_tile or batch_heads * num_queries * num_keys <= t.min_scores:
        return None
    if not masked and num_keys <= t.whole_keys:
        return FusedTiles(query_block=t.whole_query_block, key_tile=num_keys)
    return t


def _fused(q, k, v, dtype, key_mask, tiles: FusedTiles):
    """Online-softmax attention: per head, query block and key tile (see the module docstring)."""
    B, h, Nq, d = q.shape
    Nk, dv = k.shape[2], v.shape[-1]
    T = tiles.key_tile
    n = -(-Nk // T)
    qb = min(tiles.query_block, Nq)
    nq = -(-Nq // qb)
    if key_mask is None and n * T != Nk:
        key_mask = jnp.ones((B, Nk), bool)
    if n * T != Nk:  # the padding keys are masked
        k, v = (jnp.pad(x, ((0, 0), (0, 0), (0, n * T - Nk), (0, 0))) for x in (k, v))
        key_mask = jnp.pad(key_mask, ((0, 0), (0, n * T - Nk)))
    scale = 1.0 / math.sqrt(d)
    # (B, h, Nq, d) -> (B*h, nq, qb, d), padded queries dropped at the end
    qs = jnp.pad(q * scale, ((0, 0), (0, 0), (0, nq * qb - Nq), (0, 0))).reshape(B * h, nq, qb, d).astype(dtype)
    # (B, h, n*T, d) -> (B*h, n, T, d); values (B, h, n*T, dv) -> (B*h, n, T, dv)
    ks, vs = (x.reshape(B * h, n, T, x.shape[-1]).astype(dtype) for x in (k, v))
    # (B, n*T) -> (B*h, n, T)
    ms = None if key_mask is None else jnp.repeat(key_mask.reshape(B, 1, n, T), h, axis=1).reshape(B * h, n, T)

    def head(x):
        qh, kh, vh, mh = x

        def block(qq):
            def update(carry, kk, vv, mm):
                m, l, acc = carry  # running max (qb,), sum (qb,), output (qb, dv), float32
                # (qb, d) x (T, d) -> (qb, T)
                s = jnp.dot(qq, kk.T, preferred_element_type=jnp.float32)
                if mm is None:
                    row_max = s.max(axis=-1)
                else:
                    # The masked scores' pass feeds only the row max (the exponentials re-apply the mask in their
                    # own loop): a tile with every key valid, all but the last of a memory, skips it.
                    def masked(x):
                        return jnp.where(mm[None, :], x, -jnp.inf)

                    full = over_videos(mm.all().astype(jnp.int32), jax.lax.pmin) > 0
                    row_max = jax.lax.cond(full, lambda x: x.max(axis=-1), lambda x: masked(x).max(axis=-1), s)
                    s = masked(s)
                m_new = jnp.maximum(m, row_max)
                m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # no keys yet: keep exp(-inf) = 0
                p = jnp.exp(s - m_safe[:, None])
                corr = jnp.exp(m - m_safe)
                # (qb, T) x (T, dv) -> (qb, dv)
                pv = jnp.dot(p.astype(dtype), vv, preferred_element_type=jnp.float32)
                return m_new, l * corr + p.sum(axis=-1), acc * corr[:, None] + pv

            def tile(carry, y):
                kk, vv, mm = y
                if mm is None:
                    return update(carry, kk, vv, None), None
                # A tile whose keys are all masked leaves the carry as it is (the update would add exp(-inf) = 0
                # and scale by exp(0) = 1): skipping it is exact, and a memory's empty slots cost nothing. Over a
                # batch of videos the tile is skipped where it is empty in every video (else vmap's select would
                # run it for all).
                used = over_videos(mm.any().astype(jnp.int32), jax.lax.pmax) > 0
                return jax.lax.cond(used, lambda c: update(c, kk, vv, mm), lambda c: c, carry), None

            init = (jnp.full((qb,), -jnp.inf), jnp.zeros((qb,)), jnp.zeros((qb, dv)))
            (_, l, acc), _ = jax.lax.scan(tile, init, (kh, vh, mh))
            return acc / l[:, None]

        return jax.lax.map(block, qh)

    out = jax.lax.map(head, (qs, ks, vs, ms))
    # (B*h, nq, qb, dv) -> (B, h, Nq, dv)
    return out.reshape(B, h, nq * qb, dv)[:, :, :Nq]


def _cudnn(q, k, v, dtype, key_mask):
    B, h, Nq, d = q.shape
    dv = v.shape[-1]
    if dv < d:  # cuDNN (and jax.nn.dot_product_attention) take values of the keys' shape: zero columns, cut after
        v = jnp.pad(v, ((0, 0), (0, 0), (0, 0), (0, d - dv)))
    # (B, h, N, d) -> (B, N, h, d), the layout of jax.nn.dot_product_attention
    qt, kt, vt = (x.astype(dtype).transpose(0, 2, 1, 3) for x in (q, k, v))
    mask = None
    if key_mask is not None:
        # cuDNN takes the mask as a bias with the full (Nq, Nk) extent: (B, Nk) -> (B, 1, Nq, Nk)
        mask = jnp.broadcast_to(key_mask[:, None, None, :], (B, 1, Nq, k.shape[2]))
    out = jax.nn.dot_product_attention(qt, kt, vt, mask=mask, scale=1.0 / math.sqrt(d), implementation="cudnn")
    # (B, Nq, h, d) -> (B, h, Nq, dv)
    return out.transpose(0, 2, 1, 3)[..., :dv].astype(jnp.float32)


def dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    impl: str = "auto",
    dtype: Dtype = jnp.float32,
    key_mask: jax.Array | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    query_chunks: QueryChunks | None = None,
) -> jax.Array:
    """softmax(q k^T / sqrt(d)) v with the implementation ``impl`` (see the module docstring).

    Args:
      q: queries ``(B, heads, Nq, d)`` (RoPE already applied).
      k, v: keys ``(B, heads, Nk, d)`` and values ``(B, heads, Nk, dv)`` (``dv`` may differ from ``d``).
      impl: one of ``ATTENTION_IMPLS``; static.
      dtype: compute dtype of both dots (float32 accumulation); the softmax runs in float32.
      key_mask: ``(B, Nk)`` bool, False for keys that get zero weight; None attends to all.
      dropout_rate: attention-probability dropout, applied only with a ``dropout_rng``.
      dropout_rng: PRNG key for the dropout, or None.
      query_chunks: fixed query chunks for the "chunked" path (``GLOBAL_BLOCK_CHUNKS`` for self-attention over a
        whole feature map); the other implementations ignore it.
    Returns:
      ``(B, heads, Nq, dv)`` float32.
    """
    dropout = dropout_rate > 0.0 and dropout_rng is not None
    resolved = resolve_attention_impl(impl, dtype, q.shape[-1], dropout)
    if resolved == "cudnn":
        return _cudnn(q, k, v, dtype, key_mask)
    # Dropout draws one mask over the whole score matrix, so it is never chunked.
    if resolved == "xla" or dropout:
        return _sdpa(q, k, v, dtype, key_mask, dropout_rate if dropout else 0.0, dropout_rng)
    if resolved == "fused":
        tiles = fused_tiles(q.shape[0] * q.shape[1], q.shape[2], k.shape[2], key_mask is not None)
        if tiles is not None:
            return _fused(q, k, v, dtype, key_mask, tiles)
    return _chunked(q, k, v, dtype, key_mask, query_chunks)
