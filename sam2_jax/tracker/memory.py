"""The memory rule and the memory attention: which memories a frame attends to, and the attention over them.

Ports the official ``SAM2Base._prepare_memory_conditioned_features`` (sam2 1.1.0) on the fixed slots of
``TrackerState``: which conditioning / recent memories and object pointers a frame sees, with which temporal
encodings, is a mask over the slots (the policy's ``recent_selection`` / ``pointer_selection`` pick the ring
entries, ``rings.py`` holds the rules). **Change the memory rule here.**
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from sam2_jax.modeling import backend
from sam2_jax.modeling.position_encoding import PositionEmbeddingSine, square_side
from sam2_jax.modeling.sam2_base import ImageFeatures, SAM2Base
from sam2_jax.modeling.sam2_utils import get_1d_sine_pe
from sam2_jax.tracker import rings
from sam2_jax.tracker.calls import Rngs, call
from sam2_jax.tracker.policies import SAM2, TrackerPolicy
from sam2_jax.tracker.state import TrackerState
from sam2_jax.tracker.step_config import DEFAULT, StepConfig


def _maskmem_pos_enc(module: SAM2Base, h: int, w: int) -> jax.Array:
    """The memory encoder's position encoding (identical for every frame): (h*w, mem_dim)."""
    pe = module.config.memory_encoder.position_encoding
    enc = PositionEmbeddingSine(pe.num_pos_feats, pe.temperature, pe.normalize, pe.scale).encode_hw(h, w)
    return enc.reshape(h * w, -1)  # (h, w, C) -> (h*w, C)


def selected_cond(state: TrackerState, t: jax.Array, max_cond: int) -> jax.Array:
    """Official ``select_closest_cond_frames`` as a mask (O, K): all valid slots when ``max_cond`` is -1 or not
    exceeded; else the closest before t, the closest at/after t, then the temporally closest others."""
    valid, f = state.cond_valid, state.cond_frame
    K = f.shape[1]
    if max_cond == -1 or max_cond >= K:
        return valid
    big = jnp.iinfo(jnp.int32).max
    before = valid & (f < t)
    after = valid & (f >= t)
    i_before = jnp.argmax(jnp.where(before, f, -big), axis=1)
    i_after = jnp.argmin(jnp.where(after, f, big), axis=1)
    slots = jnp.arange(K)[None, :]
    sel = (before.any(1, keepdims=True) & (slots == i_before[:, None])) | (
        after.any(1, keepdims=True) & (slots == i_after[:, None])
    )
    num_remain = max_cond - sel.sum(1, keepdims=True)
    rest = valid & ~sel
    # rank the rest by temporal distance (ties by slot order, the official dict's insertion order)
    key = jnp.where(rest, jnp.abs(f - t) * K + slots, big)
    rank = jnp.argsort(jnp.argsort(key, axis=1), axis=1)
    return sel | (rest & (rank < num_remain))


class MemoryInputs(NamedTuple):
    """The keys a frame's memory attention sees (``memory_inputs``)."""

    memory: jax.Array  # (O, Nm, mem_dim): K conditioning + R recent slots of hw tokens, then pointer tokens
    memory_pos: jax.Array  # (O, Nm, mem_dim) sine + temporal encodings travelling with each token
    mask: jax.Array  # (O, Nm) bool: the official memory set
    num_ptr_tokens: int  # the trailing pointer tokens (excluded from RoPE)
    key_scale: jax.Array | None = None  # (O, Nm) SAM2Long's key weights by object-score rank; None otherwise


def memory_inputs(
    module: SAM2Base,
    params,
    state: TrackerState,
    frame_idx: jax.Array,
    reverse: jax.Array,
    policy: TrackerPolicy = SAM2,
) -> MemoryInputs:
    """The official memory selection of ``_prepare_memory_conditioned_features`` as masks over the state's slots.

    Layout: K conditioning slots then R recent slots of ``hw`` tokens each, then (K + P) pointers of
    ``C / mem_dim`` tokens each (attention is order-free; every positional signal travels with its token).
    The policy picks the recent and pointer ring entries (``recent_selection`` / ``pointer_selection``) and may
    weight the keys (``key_scale``).
    """
    c = module.config
    t = jnp.asarray(frame_idx, jnp.int32)
    O, K = state.cond_frame.shape
    R = state.recent_frame.shape[1]
    hw, mem_dim = state.cond_mem.shape[2:]
    num_maskmem = c.num_maskmem

    selected = selected_cond(state, t, c.max_cond_frames_in_attn)
    unselected = state.cond_valid & ~selected
    policy.check(module)
    recent_ok, recent_tpos_idx = policy.recent_selection(state, t, reverse, num_maskmem)
    cond_rel = rings.rel(state.cond_frame, t, reverse)
    # An unselected conditioning frame inside the window stands in for a missing non-conditioning memory.
    has_recent = (state.recent_frame[:, None, :] == state.cond_frame[:, :, None]) & recent_ok[:, None, :]
    cond_as_recent = unselected & (cond_rel >= 1) & (cond_rel <= R) & ~has_recent.any(-1)
    cond_mem_ok = selected | cond_as_recent
    # maskmem_tpos_enc index: num_maskmem - t_pos - 1, t_pos = 0 for conditioning, num_maskmem - t_rel otherwise
    cond_tpos_idx = jnp.where(selected, num_maskmem - 1, jnp.clip(cond_rel - 1, 0, num_maskmem - 1))
    # (O, K+R, mem_dim)
    tpos = call(module, params, SAM2Base.maskmem_tpos, jnp.concatenate([cond_tpos_idx, recent_tpos_idx], 1))

    mem = jnp.concatenate([state.cond_mem, state.recent_mem], axis=1).astype(jnp.float32)  # (O, K+R, hw, mem)
    side = square_side(hw, "a memory")
    mem_pos = _maskmem_pos_enc(module, side, side)[None, None] + tpos[:, :, None, :]
    mem_mask = jnp.broadcast_to(jnp.concatenate([cond_mem_ok, recent_ok], 1)[:, :, None], (O, K + R, hw))
    # (O, K+R, hw, mem) -> (O, (K+R)*hw, mem)
    memory = mem.reshape(O, -1, mem_dim)
    memory_pos = jnp.broadcast_to(mem_pos, mem.shape).reshape(O, -1, mem_dim)
    mask = mem_mask.reshape(O, -1)
    if not c.use_obj_ptrs_in_encoder:
        return MemoryInputs(memory, memory_pos, mask, 0)
    max_ptrs = jnp.minimum(state.num_frames, c.max_obj_ptrs_in_encoder)
    ptr_tokens, ptr_pos, ptr_ok = _pointer_tokens(module, params, state, t, reverse, selected, unselected, policy)
    frame_ok = jnp.concatenate([cond_mem_ok, recent_ok], 1)
    key_scale = policy.key_scale(state, t, reverse, frame_ok, recent_tpos_idx, ptr_ok, max_ptrs, hw)
    return MemoryInputs(
        jnp.concatenate([memory, ptr_tokens], 1),
        jnp.concatenate([memory_pos, ptr_pos], 1),
        jnp.concatenate([mask, ptr_ok], 1),
        ptr_tokens.shape[1],
        key_scale,
    )


def _pointer_tokens(module: SAM2Base, params, state: TrackerState, t, reverse, selected, unselected, policy):
    """The object-pointer tokens: (O, (K+P)*split, mem_dim) tokens, their encodings and validity (O, (K+P)*split);
    each C-dim pointer is split into ``split = C / mem_dim`` tokens."""
    c = module.config
    O = state.num_objects
    C, mem_dim = state.cond_ptr.shape[-1], state.cond_mem.shape[-1]
    max_ptrs = jnp.minimum(state.num_frames, c.max_obj_ptrs_in_encoder)
    cond_ptr_sel = selected
    if c.only_obj_ptrs_in_the_past_for_eval:
        # boolean algebra, not jnp.where on booleans: ONNX Runtime has no CPU Where kernel for bool (the ONNX export)
        past = (reverse & (state.cond_frame >= t)) | (~reverse & (state.cond_frame <= t))
        cond_ptr_sel = selected & past
    cond_rel = rings.rel(state.cond_frame, t, reverse)
    in_video = lambda f: (f >= 0) & (f < state.num_frames)
    ptr_ok, ptr_rel = policy.pointer_selection(state, t, reverse, max_ptrs)
    has_ptr = (state.ptr_frame[:, None, :] == state.cond_frame[:, :, None]) & ptr_ok[:, None, :]
    cond_ptr_as_recent = (
        unselected & (cond_rel >= 1) & (cond_rel <= max_ptrs - 1) & ~has_ptr.any(-1) & in_video(state.cond_frame)
    )
    cond_pos = cond_rel if c.use_signed_tpos_enc_to_obj_ptrs else jnp.abs(t - state.cond_frame)
    cond_pos = jnp.where(cond_ptr_sel, cond_pos, cond_rel)
    ptrs = jnp.concatenate([state.cond_ptr, state.ptr], 1)  # (O, K+P, C)
    pos = jnp.concatenate([cond_pos, ptr_rel], 1).astype(jnp.float32)  # (O, K+P)
    ok = jnp.concatenate([cond_ptr_sel | cond_ptr_as_recent, ptr_ok], 1)
    n = ptrs.shape[1]
    if c.add_tpos_enc_to_obj_ptrs:
        t_diff_max = jnp.maximum(max_ptrs - 1, 1).astype(jnp.float32)
        tpos_dim = C if c.proj_tpos_enc_in_obj_ptrs else mem_dim
        obj_pos = call(module, params, SAM2Base.obj_ptr_tpos, get_1d_sine_pe(pos / t_diff_max, tpos_dim))
    else:
        obj_pos = jnp.zeros((O, n, mem_dim), jnp.float32)
    split = C // mem_dim
    # (O, n, C) -> (O, n * split, mem_dim)
    return ptrs.reshape(O, n * split, mem_dim), jnp.repeat(obj_pos, split, axis=1), jnp.repeat(ok, split, axis=1)


def slot_buckets(num_slots: int) -> tuple[int, ...]:
    """The memory-slot counts a compacted memory attention compiles for: 1, then ``num_slots`` (7 slots -> 1, 7).

    Frame 1 of a propagation attends to its one slot; later frames to every slot, the empty ones masked. The CPU
    attention (``"fused"``, ``backend.py``) skips a key tile whose keys are all masked, so the empty slots cost
    only their key and value projections (1.1 GFLOP a slot and object against 69 GFLOP of attention, tiny): the
    first frames cost what the official code's do. Each count is one more copy of the memory attention in the
    compiled step: the powers of four before this (1, 4, 7) compiled a 2-frame chunk of the tiny model in 13.1-15.5 s
    (1 object) and 11.8-13.6 s (3 objects), these in 10.2-10.6 s and 10.2-11.1 s, with the same XLA temp buffers
    (two alternating runs, AMD EPYC Zen 4, 2026-12-07). Under ``propagate_videos_chunk``'s ``vmap`` a tile is
    skipped where it is empty in every video of the batch (``backend.over_videos``). With ``"chunked"`` the empty
    slots are computed with zero weights."""
    return (1, num_slots) if num_slots > 1 else (1,)


def compact_slots(mem_in: MemoryInputs, hw: int, num_slots: int) -> MemoryInputs:
    """``mem_in`` with only ``num_slots`` memory slots of ``hw`` tokens: each object's attended slots first (in slot
    order), then unattended ones to fill. Exact when no object attends to more than ``num_slots`` slots: attention
    is order-free, every positional signal travels with its token, and the pointer tokens stay as they are."""
    O, Nm, _ = mem_in.memory.shape
    total = (Nm - mem_in.num_ptr_tokens) // hw
    if num_slots >= total:
        return mem_in
    slot_ok = mem_in.mask[:, : total * hw].reshape(O, total, hw)[:, :, 0]  # a slot's tokens share its validity
    order = jnp.argsort(~slot_ok, axis=1, stable=True)[:, :num_slots]  # (O, num_slots)

    def gather(x):  # (O, Nm, ...) -> (O, num_slots * hw + ptr tokens, ...)
        slots = x[:, : total * hw].reshape(O, total, hw, *x.shape[2:])
        idx = order.reshape(O, num_slots, *(1,) * (slots.ndim - 2))
        kept = jnp.take_along_axis(slots, idx, axis=1).reshape(O, num_slots * hw, *x.shape[2:])
        return jnp.concatenate([kept, x[:, total * hw :]], axis=1)

    scale = None if mem_in.key_scale is None else gather(mem_in.key_scale)
    return MemoryInputs(
        gather(mem_in.memory), gather(mem_in.memory_pos), gather(mem_in.mask), mem_in.num_ptr_tokens, scale
    )


def condition_on_memory(
    module: SAM2Base,
    params,
    state: TrackerState,
    feats: ImageFeatures,
    frame_idx: jax.Array,
    reverse: jax.Array,
    cfg: StepConfig = DEFAULT,
    rngs: Rngs = None,
) -> jax.Array:
    """The frame's top-level features (1, h, w, C) conditioned on each object's memory: (O, h, w, C).

    The official ``_prepare_memory_conditioned_features`` for a frame that has memories (``memory_inputs`` picks
    them) under ``cfg.policy``; dropout in the memory attention runs with ``cfg.deterministic=False`` and
    ``rngs={"dropout": key}``. ``cfg.compact``: attend only to as many memory slots as the objects use, the
    smallest of ``slot_buckets`` that holds them (a ``lax.switch``): the first frames of a propagation, whose rings
    are still filling, then cost what they cost the official code. Off where the step is mapped over a batch without
    ``backend.VIDEO_AXIS`` (training), where ``vmap`` would run every branch, and where the model's
    ``compact_memory`` resolves off (``backend.py``: GPU/TPU by default).
    """
    O = state.num_objects
    _, h, w, C = feats.vision_feat.shape
    mem_in = memory_inputs(module, params, state, frame_idx, reverse, cfg.policy)
    # (1, h, w, C) -> (O, h*w, C)
    curr = jnp.broadcast_to(feats.vision_feat.reshape(1, h * w, C), (O, h * w, C))
    curr_pos = jnp.broadcast_to(feats.vision_pos.reshape(1, h * w, C), (O, h * w, C))

    def attend(m: MemoryInputs) -> jax.Array:
        scale = {} if m.key_scale is None else {"key_scale": m.key_scale}
        return call(
            module,
            params,
            SAM2Base.attend_memory,
            curr,
            curr_pos,
            m.memory,
            m.memory_pos,
            m.num_ptr_tokens,
            m.mask,
            cfg.deterministic,
            rngs=rngs,
            **scale,
        )

    K, R = state.num_cond_slots, state.recent_frame.shape[1]
    # a symbolic slot count (a jax.export for any number of conditioning slots) keeps every slot
    compact = (
        cfg.compact
        and isinstance(K, int)
        and backend.resolve_compact_memory(getattr(module.config, "compact_memory", "auto"))
    )
    sizes = slot_buckets(K + R) if compact else ()
    if len(sizes) <= 1:
        return attend(mem_in).reshape(O, h, w, C)
    hw = state.cond_mem.shape[2]
    used = mem_in.mask[:, : (K + R) * hw].reshape(O, K + R, hw)[:, :, 0].sum(1).max()
    branch = jnp.searchsorted(jnp.asarray(sizes), backend.over_videos(used, jax.lax.pmax))
    out = jax.lax.switch(branch, [lambda n=n: attend(compact_slots(mem_in, hw, n)) for n in sizes])
    return out.reshape(O, h, w, C)
