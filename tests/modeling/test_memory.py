"""Memory attention and memory encoder: parity with the official modules, memory masks, dtype, dropout."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.configs import get_config
from sam2_jax.modeling.memory_attention import MemoryAttention
from sam2_jax.modeling.memory_encoder import MemoryEncoder
from tests.reference import component_params, nchw_to_nhwc, official_model, requires_torch, to_torch

C, CM = 256, 64  # d_model, memory channels


def _attention_inputs(seed: int, batch: int, side: int, num_frames: int, num_ptr: int):
    """Batch-first curr (B, HW, C), memory (B, Nm, 64) and their position encodings."""
    rng = np.random.default_rng(seed)
    hw, nm = side * side, num_frames * side * side + num_ptr
    curr = rng.standard_normal((batch, hw, C)).astype(np.float32)
    curr_pos = rng.uniform(-1, 1, (batch, hw, C)).astype(np.float32)
    memory = rng.standard_normal((batch, nm, CM)).astype(np.float32)
    memory_pos = rng.uniform(-1, 1, (batch, nm, CM)).astype(np.float32)
    return curr, memory, curr_pos, memory_pos


@functools.partial(jax.jit, static_argnums=(0, 6))
def _run_attention(module, params, curr, memory, curr_pos, memory_pos, num_ptr, memory_mask=None):
    return module.apply({"params": params}, curr, memory, curr_pos, memory_pos, num_ptr, memory_mask)


def _official_attention(name, curr, memory, curr_pos, memory_pos, num_ptr):
    import torch

    torch.set_num_threads(2)
    seq = [to_torch(a.transpose(1, 0, 2)) for a in (curr, memory, curr_pos, memory_pos)]  # (B, N, C) -> (N, B, C)
    with torch.no_grad():
        out = official_model(name).memory_attention(
            curr=seq[0], memory=seq[1], curr_pos=seq[2], memory_pos=seq[3], num_obj_ptr_tokens=num_ptr
        )
    return out.numpy().transpose(1, 0, 2)  # (HW, B, C) -> (B, HW, C)


def _check_attention(name, side, num_frames, num_ptr, atol):
    inputs = _attention_inputs(side + num_ptr, 2, side, num_frames, num_ptr)
    module = MemoryAttention.from_config(get_config(name).model.memory_attention)
    ours = np.asarray(_run_attention(module, component_params("memory_attention", name), *inputs, num_ptr))
    ref = _official_attention(name, *inputs, num_ptr)
    err = np.abs(ours - ref).max()
    print(f"memory attention {name} {side}x{side}, {num_frames} frames + {num_ptr} ptrs: max abs err {err:.2e}")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=atol)


@requires_torch
@pytest.mark.parametrize("num_ptr", [0, 4])
def test_memory_attention_small_matches_official(num_ptr):
    _check_attention("sam2.1_hiera_t", side=8, num_frames=3, num_ptr=num_ptr, atol=1e-5)


@requires_torch
def test_memory_attention_full_size_matches_official():
    # 64x64 queries: the official cached 64x64 RoPE grid; 16 object-pointer tokens excluded from RoPE.
    _check_attention("sam2.1_hiera_t", side=64, num_frames=2, num_ptr=16, atol=1.5e-5)


def _random_params(module, *args, seed: int = 0, **static_kwargs):
    """PyTorch-like random params from the shapes alone (``module.init`` compiles for half a minute here)."""
    shapes = jax.eval_shape(functools.partial(module.init, jax.random.key(0), **static_kwargs), *args)["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            bound = 1 / np.sqrt(np.prod(leaf.shape[:-1]))
            return rng.uniform(-bound, bound, leaf.shape).astype(np.float32)
        base = 1.0 if name == "scale" else 0.0
        return (base + 0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def test_memory_mask_equals_removed_slots():
    module = MemoryAttention.from_config(get_config("sam2.1_hiera_t").model.memory_attention)
    side, num_frames, num_ptr = 4, 3, 6
    curr, memory, curr_pos, memory_pos = _attention_inputs(1, 2, side, num_frames, num_ptr)
    params = _random_params(module, curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=num_ptr)
    hw = side * side
    # Drop memory frame 1 and pointers 0 and 3 (a whole frame keeps the other frames' RoPE phases unchanged).
    keep = np.ones(memory.shape[1], bool)
    keep[hw : 2 * hw] = False
    keep[num_frames * hw + np.array([0, 3])] = False
    mask = np.broadcast_to(keep, memory.shape[:2])
    masked = _run_attention(module, params, curr, memory, curr_pos, memory_pos, num_ptr, mask)
    removed = _run_attention(module, params, curr, memory[:, keep], curr_pos, memory_pos[:, keep], num_ptr - 2)
    full = _run_attention(module, params, curr, memory, curr_pos, memory_pos, num_ptr)
    print(f"memory mask vs removed slots: max abs err {np.abs(masked - removed).max():.2e}")
    np.testing.assert_allclose(masked, removed, rtol=0, atol=1e-5)
    assert np.abs(full - removed).max() > 1e-2  # the dropped slots do matter


def test_memory_mask_per_batch_row():
    # Row 0 sees every slot, row 1 loses a frame: each row equals its own unmasked / removed run.
    module = MemoryAttention.from_config(get_config("sam2.1_hiera_t").model.memory_attention)
    side, num_frames, num_ptr = 4, 2, 2
    curr, memory, curr_pos, memory_pos = _attention_inputs(2, 2, side, num_frames, num_ptr)
    params = _random_params(module, curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=num_ptr)
    hw = side * side
    mask = np.ones(memory.shape[:2], bool)
    mask[1, :hw] = False
    masked = np.asarray(_run_attention(module, params, curr, memory, curr_pos, memory_pos, num_ptr, mask))
    full = np.asarray(_run_attention(module, params, curr, memory, curr_pos, memory_pos, num_ptr))
    removed = np.asarray(_run_attention(module, params, curr, memory[:, hw:], curr_pos, memory_pos[:, hw:], num_ptr))
    np.testing.assert_allclose(masked[0], full[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(masked[1], removed[1], rtol=0, atol=1e-5)


def test_project_memory_then_attend_equals_call_in_bfloat16():
    cfg = get_config("sam2.1_hiera_t").model.memory_attention
    f32 = MemoryAttention.from_config(cfg)
    bf16 = MemoryAttention.from_config(cfg, dtype=jnp.bfloat16)
    side, num_ptr = 8, 4
    curr, memory, curr_pos, memory_pos = _attention_inputs(3, 2, side, 2, num_ptr)
    params = _random_params(f32, curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=num_ptr)

    def two_step(curr, memory, curr_pos, memory_pos):
        kv = bf16.apply({"params": params}, memory, memory_pos, side * side, num_ptr, method="project_memory")
        return kv, bf16.apply({"params": params}, curr, curr_pos, kv, method="attend")

    kv, out = jax.jit(two_step)(curr, memory, curr_pos, memory_pos)
    assert all(k.dtype == v.dtype == jnp.bfloat16 for k, v in kv)  # cached memory halves in size
    call = _run_attention(bf16, params, curr, memory, curr_pos, memory_pos, num_ptr)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(call))
    ref = _run_attention(f32, params, curr, memory, curr_pos, memory_pos, num_ptr)
    err = np.abs(np.asarray(out) - np.asarray(ref)).max()
    print(f"memory attention bf16 vs f32: max abs err {err:.2e}")
    assert 0 < err < 0.1


def _apply_with_rng(module, params, *args, deterministic: bool):
    """``module.apply`` jitted, with a ``'dropout'`` RNG given in both modes."""
    fn = functools.partial(module.apply, deterministic=deterministic, rngs={"dropout": jax.random.key(1)})
    return jax.tree.map(np.asarray, jax.jit(fn)({"params": params}, *args))


def test_memory_attention_dropout_only_when_not_deterministic():
    module = MemoryAttention.from_config(get_config("sam2.1_hiera_t").model.memory_attention)
    inputs = _attention_inputs(4, 1, 4, 1, 0)
    params = _random_params(module, *inputs)
    plain = np.asarray(_run_attention(module, params, *inputs, 0))
    det = _apply_with_rng(module, params, *inputs, deterministic=True)
    drop = _apply_with_rng(module, params, *inputs, deterministic=False)
    np.testing.assert_array_equal(det, plain)
    assert np.abs(drop - det).max() > 1e-2


def test_memory_attention_rejects_bad_memory_length():
    module = MemoryAttention.from_config(get_config("sam2.1_hiera_t").model.memory_attention)
    curr, memory, curr_pos, memory_pos = _attention_inputs(5, 1, 4, 2, 0)
    with pytest.raises(ValueError, match="whole number"):
        jax.eval_shape(module.init, jax.random.key(0), curr, memory[:, :-3], curr_pos, memory_pos[:, :-3])


@functools.partial(jax.jit, static_argnums=(0, 4))
def _run_encoder(module, params, pix_feat, masks, skip_mask_sigmoid):
    out = module.apply({"params": params}, pix_feat, masks, skip_mask_sigmoid)
    return out["vision_features"], out["vision_pos_enc"][0]


def _check_encoder(name, skip_mask_sigmoid, side, atol):
    import torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(7)
    pix_feat = rng.standard_normal((2, side, side, C)).astype(np.float32)
    masks = (8 * rng.standard_normal((2, 16 * side, 16 * side, 1))).astype(np.float32)
    if skip_mask_sigmoid:
        masks = (masks > 0).astype(np.float32)
    module = MemoryEncoder.from_config(get_config(name).model.memory_encoder)
    feats, pos = _run_encoder(module, component_params("memory_encoder", name), pix_feat, masks, skip_mask_sigmoid)
    with torch.no_grad():
        ref = official_model(name).memory_encoder(
            to_torch(pix_feat.transpose(0, 3, 1, 2)),  # (B, H, W, C) -> (B, C, H, W)
            to_torch(masks.transpose(0, 3, 1, 2)),
            skip_mask_sigmoid=skip_mask_sigmoid,
        )
    ref_feats, ref_pos = nchw_to_nhwc(ref["vision_features"]), nchw_to_nhwc(ref["vision_pos_enc"][0])
    err = np.abs(np.asarray(feats) - ref_feats).max()
    print(
        f"memory encoder {name} skip_mask_sigmoid={skip_mask_sigmoid}: max abs err {err:.2e}, "
        f"pos {np.abs(np.asarray(pos) - ref_pos).max():.2e}, |features| max {np.abs(ref_feats).max():.1f}"
    )
    np.testing.assert_allclose(np.asarray(feats), ref_feats, rtol=0, atol=atol)
    np.testing.assert_allclose(np.asarray(pos), ref_pos, rtol=0, atol=1e-6)


@requires_torch
@pytest.mark.parametrize("skip_mask_sigmoid", [False, True])
def test_memory_encoder_matches_official(skip_mask_sigmoid):
    _check_encoder("sam2.1_hiera_t", skip_mask_sigmoid, side=64, atol=1.5e-5)


def test_memory_encoder_drop_path_only_when_not_deterministic():
    cfg = get_config("sam2.1_hiera_t").model.memory_encoder
    cfg.fuser.layer.drop_path = 0.5
    module = MemoryEncoder.from_config(cfg)
    pix_feat, masks = jnp.ones((4, 2, 2, C)), jnp.zeros((4, 32, 32, 1))
    params = _random_params(module, pix_feat, masks)
    det = _apply_with_rng(module, params, pix_feat, masks, deterministic=True)["vision_features"]
    drop = _apply_with_rng(module, params, pix_feat, masks, deterministic=False)["vision_features"]
    assert np.abs(drop - det).max() > 1e-2


@requires_torch
def test_sam2_memory_modules_match_official():
    # Memory attention and encoder are the same for every size; check them once on a SAM 2 (not 2.1) model, at a
    # 16 x 16 feature map (256 px; the 2.1 tests above cover the 64 x 64 of 1024 px).
    _check_attention("sam2_hiera_t", side=16, num_frames=2, num_ptr=16, atol=1.5e-5)
    _check_encoder("sam2_hiera_t", False, side=16, atol=1.5e-5)
