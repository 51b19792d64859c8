"""The tracker engine: the pure per-frame functions that every driver composes.

Inference (``SAM2VideoPredictor``, streaming, ``eval.py``), training (``training/sam2_train.py``), export and the
benchmarks all run these functions; none of them calls the model another way. Each one ports a piece of the
official ``SAM2Base.track_step`` / ``_prepare_memory_conditioned_features`` (sam2 1.1.0) on the fixed-size
``TrackerState`` (see state.py): which memories a frame attends to is a mask over fixed slots, nothing branches on
data, and every object of a frame is computed at once (they share the frame's image features).

Per frame (a table with the drivers is in ``docs/architecture.md``):
- ``frame_features``: image encoder -> ``ImageFeatures`` (once per frame, shared by the objects).
- ``memory_inputs`` -> ``condition_on_memory``: the memory rule (which conditioning / recent memories and object
  pointers a frame sees, with which temporal encodings) and the memory attention. **Change the memory rule here.**
- ``prompt_features``: the features a prompt is decoded on (no-memory embedding on an initial conditioning frame,
  else memory-conditioned).
- ``sam_heads`` / ``use_mask_as_output``: prompt encoder + mask decoder + object pointer.
- ``encode_memory``: the memory encoder on a frame's mask; ``write_recent`` / ``write_cond`` store it in the state.
- ``track_frame`` (a frame with no new prompt), ``track_step`` (+ memory write: the body of the scan; its part after
  the encoder is ``track_features``),
  ``scan_frames`` (``lax.scan`` over a chunk; jitted as ``propagate_chunk``, and over a batch of videos as
  ``propagate_videos_chunk``); ``interact`` (a prompted frame), ``encode_prompt_memory``.

Functions that may run in training take ``deterministic`` and ``rngs`` (``{"dropout": key}``): dropout in the
memory attention and drop path in the trunk are on with ``deterministic=False``.

Deviations from the official code:
- ``memory_temporal_stride_for_eval`` must be 1 (the default of every official config): the recent-memory ring
  holds the last ``num_maskmem - 1`` frames.
- Frames with a new prompt (clicks, box, mask) are not scanned: the predictor runs ``interact`` for them (as the
  official ``add_new_points_or_box`` / ``add_new_mask`` do) and stores the result as a conditioning slot; the scan
  then reuses that output when it reaches the frame, like the official ``propagate_in_video``.
- All objects are computed on every frame, also on an object's conditioning frame, whose computed output is then
  replaced by the stored one (static shapes; the official skips the computation). A frame that conditions every
  object is not computed (``track_step``'s ``lax.cond``), and the tracking step attends only to the memory slots
  in use, in buckets (``condition_on_memory(compact=True)``), so the first frames of a propagation cost what they
  cost the official code.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling import backend
from sam2_jax.modeling.position_encoding import PositionEmbeddingSine, square_side
from sam2_jax.modeling.sam2_base import DecoderOutput, ImageEmbeddings, ImageFeatures, SAM2Base, SamHeadsOutput
from sam2_jax.modeling.sam2_utils import get_1d_sine_pe
from sam2_jax.tracker import kalman
from sam2_jax.tracker.policies import SAM2, TrackerPolicy
from sam2_jax.tracker.state import TrackerState
from sam2_jax.utils.interpolate import interpolate
from sam2_jax.utils.misc import fill_holes_in_mask_scores

Rngs = dict[str, jax.Array] | None


class StepOutput(NamedTuple):
    """What ``track_step`` returns per frame (stacked ``(T, ...)`` by ``propagate_chunk``)."""

    pred_masks: jax.Array  # (O, 1, 4h, 4w) low-res logits (after hole filling when configured)
    object_score_logits: jax.Array  # (O, 1)
    obj_ptr: jax.Array  # (O, C)
    maskmem: jax.Array  # (O, hw, mem_dim) bfloat16: this frame's memory (valid where not is_cond)
    is_cond: jax.Array  # (O,) bool: the output is the object's stored conditioning output
    admitted: jax.Array  # (O,) bool: the frame entered the memory as an admitted frame (sam2: every tracked frame)
    best_iou: jax.Array  # (O,) predicted IoU of the kept candidate
    kf_box: jax.Array  # (O, 4) xyxy: SAMURAI's Kalman box after this frame (zeros for other policies)
    kf_score: jax.Array  # (O,) SAMURAI's Kalman IoU of the kept mask, NaN outside its stable phase (and other policies)
    # SAM2Long only (None, no leaves, for the other policies): per object and new pathway (O, P)
    path_parent: jax.Array | None = None  # (O, P) int32: the pathway each new pathway continues
    path_score: jax.Array | None = None  # (O, P) float32: cumulative score (sum of log(IoU + 1e-5))
    path_masks: jax.Array | None = None  # (O, P, 1, 4h, 4w): each new pathway's low-res logits on this frame


class TrackedFrame(NamedTuple):
    """``track_frame``'s outputs: the memory-conditioned features and the heads run on them."""

    pix_feat_with_mem: jax.Array  # (O, h, w, C)
    heads: SamHeadsOutput


class PromptOutput(NamedTuple):
    """``interact``'s outputs for one object on a prompted frame."""

    pred_masks: jax.Array  # (1, 1, 4h, 4w) low-res logits (after hole filling when configured)
    object_score_logits: jax.Array  # (1, 1)
    obj_ptr: jax.Array  # (1, C)


def _call(module: SAM2Base, params, method, *args, rngs: Rngs = None, **kwargs):
    """``module.apply`` of one public ``SAM2Base`` method (a function, never a name)."""
    return module.apply({"params": params}, *args, method=method, rngs=rngs, **kwargs)


# --- image features -----------------------------------------------------------------------------------------------
def frame_features(
    module: SAM2Base, params, image: jax.Array, deterministic: bool = True, rngs: Rngs = None
) -> ImageFeatures:
    """image (B, S, S, 3) normalised -> ``ImageFeatures`` with a leading B (1 for a video frame)."""
    return _call(module, params, SAM2Base.encode_image, image, deterministic, rngs=rngs)


def frame_at(feats: ImageFeatures, t: jax.Array) -> ImageFeatures:
    """Frame ``t`` (traced) of features computed for a stack of frames: (T, ...) -> (1, ...)."""
    take = lambda x: jax.lax.dynamic_index_in_dim(x, t, 0, keepdims=True)
    return ImageFeatures(take(feats.vision_feat), take(feats.vision_pos), tuple(take(x) for x in feats.high_res))


def broadcast_high_res(feats: ImageFeatures, num_objects: int) -> list[jax.Array] | None:
    """A frame's high-res features (1, ...) for each object (O, ...), or None without high-res features."""
    return [jnp.broadcast_to(x, (num_objects, *x.shape[1:])) for x in feats.high_res] or None


def image_embeddings(module: SAM2Base, params, images: jax.Array) -> ImageEmbeddings:
    """What the image predictor keeps per image: images (B, S, S, 3) normalised -> ``ImageEmbeddings``."""
    return _call(module, params, SAM2Base.image_embeddings, images)


# --- heads --------------------------------------------------------------------------------------------------------
def sam_heads(module: SAM2Base, params, *args, **kwargs) -> SamHeadsOutput:
    """``SAM2Base.sam_heads`` (official ``_forward_sam_heads``): ``(backbone_features (O, h, w, C), point_coords,
    point_labels, mask_inputs, high_res_features, multimask_output)``, as its docstring says."""
    return _call(module, params, SAM2Base.sam_heads, *args, **kwargs)


def decode_prompts(module: SAM2Base, params, *args, **kwargs) -> DecoderOutput:
    """``SAM2Base.decode_prompts``: prompt encoder + mask decoder on an image embedding, as the image predictor and
    the automatic mask generator call them (no object-score gating); arguments as its docstring says."""
    return _call(module, params, SAM2Base.decode_prompts, *args, **kwargs)


def use_mask_as_output(
    module: SAM2Base,
    params,
    pix_feat: jax.Array,
    high_res: list[jax.Array] | None,
    mask: jax.Array,
    obj_score_threshold: float = 0.0,
) -> SamHeadsOutput:
    """``SAM2Base.use_mask_as_output``: a binary mask (O, S, S, 1) taken as the output."""
    return _call(module, params, SAM2Base.use_mask_as_output, pix_feat, high_res, mask, obj_score_threshold)


def _postprocess_pred_masks(pred_masks: jax.Array, fill_hole_area: int) -> jax.Array:
    if fill_hole_area > 0:
        return fill_holes_in_mask_scores(pred_masks, fill_hole_area)
    return pred_masks


# --- memory -------------------------------------------------------------------------------------------------------
def encode_memory(
    module: SAM2Base,
    params,
    feats: ImageFeatures,
    high_res_masks: jax.Array,
    object_score_logits: jax.Array,
    is_mask_from_pts: jax.Array | bool,
    training: bool = False,
) -> jax.Array:
    """The memory of a frame (1, h, w, C features) for each of O masks (O, 1, S, S): (O, hw, mem_dim) float32."""
    O = high_res_masks.shape[0]
    pix_feat = jnp.broadcast_to(feats.vision_feat, (O, *feats.vision_feat.shape[1:]))
    mem = _call(
        module,
        params,
        SAM2Base.encode_memory,
        pix_feat,
        high_res_masks,
        object_score_logits,
        is_mask_from_pts,
        training,
    ).maskmem_features
    return mem.reshape(O, -1, mem.shape[-1])  # (O, h, w, m) -> (O, hw, m)


def _maskmem_pos_enc(module: SAM2Base, h: int, w: int) -> jax.Array:
    """The memory encoder's position encoding (identical for every frame): (h*w, mem_dim)."""
    pe = module.config.memory_encoder.position_encoding
    enc = PositionEmbeddingSine(pe.num_pos_feats, pe.temperature, pe.normalize, pe.scale).encode_hw(h, w)
    return enc.reshape(h * w, -1)  # (h, w, C) -> (h*w, C)


def _selected_cond(state: TrackerState, t: jax.Array, max_cond: int) -> jax.Array:
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
    With a policy that selects memories (``policy.selects_memory``) every written recent slot attends, its temporal
    encoding from its rank in recency (the references' ``valid_indices[-t_rel]``).
    """
    c = module.config
    t = jnp.asarray(frame_idx, jnp.int32)
    O, K = state.cond_frame.shape
    R = state.recent_frame.shape[1]
    hw, mem_dim = state.cond_mem.shape[2:]
    num_maskmem = c.num_maskmem

    selected = _selected_cond(state, t, c.max_cond_frames_in_attn)
    unselected = state.cond_valid & ~selected
    recent_ok, recent_tpos_idx = recent_selection(state, t, reverse, num_maskmem, policy)
    cond_rel = _rel(state.cond_frame, t, reverse)
    # An unselected conditioning frame inside the window stands in for a missing non-conditioning memory.
    has_recent = (state.recent_frame[:, None, :] == state.cond_frame[:, :, None]) & recent_ok[:, None, :]
    cond_as_recent = unselected & (cond_rel >= 1) & (cond_rel <= R) & ~has_recent.any(-1)
    cond_mem_ok = selected | cond_as_recent
    # maskmem_tpos_enc index: num_maskmem - t_pos - 1, t_pos = 0 for conditioning, num_maskmem - t_rel otherwise
    cond_tpos_idx = jnp.where(selected, num_maskmem - 1, jnp.clip(cond_rel - 1, 0, num_maskmem - 1))
    # (O, K+R, mem_dim)
    tpos = _call(module, params, SAM2Base.maskmem_tpos, jnp.concatenate([cond_tpos_idx, recent_tpos_idx], 1))

    mem = jnp.concatenate([state.cond_mem, state.recent_mem], axis=1).astype(jnp.float32)  # (O, K+R, hw, mem)
    side = square_side(hw, "a memory")
    mem_pos = _maskmem_pos_enc(module, side, side)[None, None] + tpos[:, :, None, :]
    mem_mask = jnp.broadcast_to(jnp.concatenate([cond_mem_ok, recent_ok], 1)[:, :, None], (O, K + R, hw))
    # (O, K+R, hw, mem) -> (O, (K+R)*hw, mem)
    memory = mem.reshape(O, -1, mem_dim)
    memory_pos = jnp.broadcast_to(mem_pos, mem.shape).reshape(O, -1, mem_dim)
    mask = mem_mask.reshape(O, -1)
    if not c.use_obj_ptrs_in_encoder:
        if policy.name == "sam2long":
            raise ValueError("the sam2long policy needs use_obj_ptrs_in_encoder (its key weighting covers pointers)")
        return MemoryInputs(memory, memory_pos, mask, 0)
    ptr_tokens, ptr_pos, ptr_ok = _pointer_tokens(module, params, state, t, reverse, selected, unselected, policy)
    key_scale = None
    if policy.name == "sam2long":
        frame_ok = jnp.concatenate([cond_mem_ok, recent_ok], 1)
        ptr_sel, ptr_rel = pointer_selection(
            state, t, reverse, jnp.minimum(state.num_frames, c.max_obj_ptrs_in_encoder), policy
        )
        cond_ptr_ok = ptr_ok.reshape(O, K + ptr_sel.shape[1], -1)[:, :K, 0]
        w_frame, w_ptr = sam2long_key_weights(
            state, frame_ok, recent_tpos_idx, jnp.concatenate([cond_ptr_ok, ptr_sel], 1), ptr_rel
        )
        split = ptr_tokens.shape[1] // w_ptr.shape[1]
        key_scale = jnp.concatenate([jnp.repeat(w_frame, hw, axis=1), jnp.repeat(w_ptr, split, axis=1)], 1)
    return MemoryInputs(
        jnp.concatenate([memory, ptr_tokens], 1),
        jnp.concatenate([memory_pos, ptr_pos], 1),
        jnp.concatenate([mask, ptr_ok], 1),
        ptr_tokens.shape[1],
        key_scale,
    )


def _torch_linspace(n: jax.Array, i: jax.Array, lo: float = 0.95, hi: float = 1.05) -> jax.Array:
    """``torch.linspace(lo, hi, n)[i]`` in float32, as torch's CPU kernel computes it (the first half from ``lo``,
    the second half back from ``hi``); ``lo`` where n == 1."""
    step = (jnp.float32(hi) - jnp.float32(lo)) / jnp.maximum(n - 1, 1).astype(jnp.float32)
    fwd = jnp.float32(lo) + step * i.astype(jnp.float32)
    bwd = jnp.float32(hi) - step * (n - i - 1).astype(jnp.float32)
    return jnp.where(n == 1, jnp.float32(lo), jnp.where(i < n // 2, fwd, bwd))


def _rank_weights(score: jax.Array, ok: jax.Array, pos: jax.Array) -> jax.Array:
    """(O, N) scores of the entries where ``ok`` -> the weight ``linspace(0.95, 1.05, n)[rank]`` of each entry, rank
    by ascending score among the ``ok`` entries (ties by list position ``pos``), 1 where not ``ok``."""
    lower = (score[:, None, :] < score[:, :, None]) | (
        (score[:, None, :] == score[:, :, None]) & (pos[:, None, :] < pos[:, :, None])
    )
    rank = (lower & ok[:, None, :]).sum(-1)
    n = ok.sum(1, keepdims=True)
    return jnp.where(ok, _torch_linspace(n, rank), 1.0)


def sam2long_key_weights(
    state: TrackerState, frame_ok: jax.Array, recent_rank: jax.Array, ptr_ok: jax.Array, ptr_rel: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """SAM2Long's memory-attention key weights (its ``MemoryAttentionLayer._forward_ca`` with
    ``object_frame_scores`` / ``object_ptr_scores`` from ``_prepare_memory_conditioned_features``).

    Each attended memory frame (K conditioning + R recent slots, ``frame_ok`` (O, K+R)) and each attended pointer
    (K + P, ``ptr_ok``) gets ``linspace(0.95, 1.05, n)[rank]``, rank by ascending object score among its kind
    (a conditioning entry scores 10, as the reference's constant; a ring entry its stored object score); ties keep
    the reference's list order (conditioning first, then memories oldest first, pointers newest first). With a
    single memory frame nothing is weighted (the reference's ``num_frame == 1``). Returns (O, K+R) and (O, K+P).
    """
    K, R = state.cond_frame.shape[1], state.recent_frame.shape[1]
    ten = jnp.full(state.cond_frame.shape, 10.0, jnp.float32)
    f_score = jnp.concatenate([ten, state.recent_obj_score], 1)
    f_pos = jnp.concatenate([jnp.broadcast_to(jnp.arange(K) - K - R - 1, state.cond_frame.shape), -recent_rank], 1)
    p_score = jnp.concatenate([ten, state.ptr_obj_score], 1)
    p_pos = jnp.concatenate([jnp.broadcast_to(jnp.arange(K) - K, state.cond_frame.shape), ptr_rel], 1)
    several = frame_ok.sum(1, keepdims=True) > 1
    w_frame = jnp.where(several, _rank_weights(f_score, frame_ok, f_pos), 1.0)
    w_ptr = jnp.where(several, _rank_weights(p_score, ptr_ok, p_pos), 1.0)
    return w_frame, w_ptr


def _rel(frames: jax.Array, t: jax.Array, reverse: jax.Array) -> jax.Array:
    """How many frames before t each frame lies in the tracking direction (t - f forward, f - t in reverse)."""
    return (t - frames) * jnp.where(reverse, -1, 1)


def recent_selection(
    state: TrackerState, t: jax.Array, reverse: jax.Array, num_maskmem: int, policy: TrackerPolicy = SAM2
) -> tuple[jax.Array, jax.Array]:
    """Which recent-ring slots frame t attends to (O, R) and their ``maskmem_tpos_enc`` index (O, R).

    sam2: frames t-1 … t-R by index, index ``t_rel - 1``. A memory-selecting policy: every written slot (the ring
    holds the list the references build), index = rank in recency (their ``valid_indices[-t_rel]``).
    """
    R = state.recent_frame.shape[1]
    rel = _rel(state.recent_frame, t, reverse)
    if policy.selects_memory:
        rank = _recency_rank(state.recent_frame, t, reverse)
        return state.recent_valid & (rel >= 1), jnp.clip(rank, 0, num_maskmem - 1)
    return state.recent_valid & (rel >= 1) & (rel <= R), jnp.clip(rel - 1, 0, num_maskmem - 1)


def pointer_selection(
    state: TrackerState, t: jax.Array, reverse: jax.Array, max_ptrs: jax.Array, policy: TrackerPolicy = SAM2
) -> tuple[jax.Array, jax.Array]:
    """Which pointer-ring slots frame t attends to (O, P) and their temporal offsets (O, P).

    sam2 (and SAMURAI): frames t-1 … t-(max_ptrs-1) by index, offset ``t_rel``. SAM 3: the pointers of
    ``valid_indices[-1]``, …, ``valid_indices[-(L-1)]`` at offsets 1 … L-1, where the list holds the last
    ``min(admitted, max_ptrs - 1)`` admitted frames, then t-1 when it was not admitted.
    """
    rel = _rel(state.ptr_frame, t, reverse)
    if policy.selects_pointers:
        rank = _recency_rank(state.ptr_frame, t, reverse)
        n_list = jnp.minimum(state.admit_count, max_ptrs - 1) + (~state.last_admitted).astype(jnp.int32)
        return state.ptr_valid & (rel >= 1) & (rank < n_list[:, None] - 1), rank + 1
    in_video = (state.ptr_frame >= 0) & (state.ptr_frame < state.num_frames)
    return state.ptr_valid & (rel >= 1) & (rel <= max_ptrs - 1) & in_video, rel


def _recency_rank(frames: jax.Array, t: jax.Array, reverse: jax.Array) -> jax.Array:
    """(O, N) ring frames -> how many written slots (frame >= 0) hold a more recent frame (0: the newest)."""
    rel = _rel(frames, t, reverse)
    written = frames >= 0
    newer = written[:, None, :] & (rel[:, None, :] < rel[:, :, None])  # (O, i, j): slot j newer than slot i
    return newer.sum(-1)


def _pointer_tokens(module: SAM2Base, params, state: TrackerState, t, reverse, selected, unselected, policy=SAM2):
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
    cond_rel = _rel(state.cond_frame, t, reverse)
    in_video = lambda f: (f >= 0) & (f < state.num_frames)
    ptr_ok, ptr_rel = pointer_selection(state, t, reverse, max_ptrs, policy)
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
        obj_pos = _call(module, params, SAM2Base.obj_ptr_tpos, get_1d_sine_pe(pos / t_diff_max, tpos_dim))
    else:
        obj_pos = jnp.zeros((O, n, mem_dim), jnp.float32)
    split = C // mem_dim
    # (O, n, C) -> (O, n * split, mem_dim)
    return ptrs.reshape(O, n * split, mem_dim), jnp.repeat(obj_pos, split, axis=1), jnp.repeat(ok, split, axis=1)


# The axis name ``propagate_videos_chunk`` maps the videos over: a branch taken on data is chosen for the whole
# batch (a predicate that differs per video would make ``vmap`` run every branch and select).
VIDEO_AXIS = "videos"


def _over_videos(x: jax.Array, reduce) -> jax.Array:
    """``reduce(x, VIDEO_AXIS)`` (``lax.pmax`` / ``lax.pmin``) under ``propagate_videos_chunk``'s vmap, else x."""
    try:
        return reduce(x, VIDEO_AXIS)
    except NameError:  # not mapped over videos
        return x


def slot_buckets(num_slots: int) -> tuple[int, ...]:
    """The memory-slot counts a compacted memory attention compiles for: powers of four below ``num_slots``, then
    ``num_slots`` (7 slots -> 1, 4, 7: frames 1-6 of a propagation attend to 1, 4, 4, 4, 7, 7 slots where the
    official attends to 1-6; each count is one more copy of the memory attention in the compiled step, so the
    buckets are few)."""
    sizes, n = [], 1
    while n < num_slots:
        sizes.append(n)
        n *= 4
    return (*sizes, num_slots)


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
    deterministic: bool = True,
    rngs: Rngs = None,
    policy: TrackerPolicy = SAM2,
    compact: bool = False,
) -> jax.Array:
    """The frame's top-level features (1, h, w, C) conditioned on each object's memory: (O, h, w, C).

    The official ``_prepare_memory_conditioned_features`` for a frame that has memories (``memory_inputs`` picks
    them); dropout in the memory attention runs with ``deterministic=False`` and ``rngs={"dropout": key}``.
    ``compact`` (static): attend only to as many memory slots as the objects use, the smallest of ``slot_buckets``
    that holds them (a ``lax.switch``): the first frames of a propagation, whose rings are still filling, then cost
    what they cost the official code. Off where the step is mapped over a batch without ``VIDEO_AXIS`` (training),
    where ``vmap`` would run every branch, and where the model's ``compact_memory`` resolves off (``backend.py``:
    GPU/TPU by default).
    """
    O = state.num_objects
    _, h, w, C = feats.vision_feat.shape
    mem_in = memory_inputs(module, params, state, frame_idx, reverse, policy)
    # (1, h, w, C) -> (O, h*w, C)
    curr = jnp.broadcast_to(feats.vision_feat.reshape(1, h * w, C), (O, h * w, C))
    curr_pos = jnp.broadcast_to(feats.vision_pos.reshape(1, h * w, C), (O, h * w, C))

    def attend(m: MemoryInputs) -> jax.Array:
        scale = {} if m.key_scale is None else {"key_scale": m.key_scale}
        return _call(
            module,
            params,
            SAM2Base.attend_memory,
            curr,
            curr_pos,
            m.memory,
            m.memory_pos,
            m.num_ptr_tokens,
            m.mask,
            deterministic,
            rngs=rngs,
            **scale,
        )

    K, R = state.num_cond_slots, state.recent_frame.shape[1]
    # a symbolic slot count (a jax.export for any number of conditioning slots) keeps every slot
    compact = (
        compact
        and isinstance(K, int)
        and backend.resolve_compact_memory(getattr(module.config, "compact_memory", "auto"))
    )
    sizes = slot_buckets(K + R) if compact else ()
    if len(sizes) <= 1:
        return attend(mem_in).reshape(O, h, w, C)
    hw = state.cond_mem.shape[2]
    used = mem_in.mask[:, : (K + R) * hw].reshape(O, K + R, hw)[:, :, 0].sum(1).max()
    branch = jnp.searchsorted(jnp.asarray(sizes), _over_videos(used, jax.lax.pmax))
    out = jax.lax.switch(branch, [lambda n=n: attend(compact_slots(mem_in, hw, n)) for n in sizes])
    return out.reshape(O, h, w, C)


def prompt_features(
    module: SAM2Base,
    params,
    state: TrackerState,
    feats: ImageFeatures,
    frame_idx: jax.Array,
    reverse: jax.Array,
    is_init_cond_frame: bool,
    deterministic: bool = True,
    rngs: Rngs = None,
    policy: TrackerPolicy = SAM2,
    compact: bool = False,
) -> jax.Array:
    """The features (O, h, w, C) a prompt on this frame is decoded on: with the no-memory embedding on an initial
    conditioning frame (``directly_add_no_mem_embed``, every official config), else conditioned on the memory
    (``compact`` as ``condition_on_memory``'s)."""
    if not is_init_cond_frame:
        return condition_on_memory(
            module, params, state, feats, frame_idx, reverse, deterministic, rngs, policy, compact
        )
    if not module.config.directly_add_no_mem_embed:
        raise ValueError("only directly_add_no_mem_embed=True models are supported by the tracker")
    pix = feats.vision_feat + _call(module, params, SAM2Base.no_mem)
    return jnp.broadcast_to(pix, (state.num_objects, *pix.shape[1:]))


def track_frame(
    module: SAM2Base,
    params,
    state: TrackerState,
    feats: ImageFeatures,
    frame_idx: jax.Array,
    reverse: jax.Array,
    deterministic: bool = True,
    rngs: Rngs = None,
    policy: TrackerPolicy = SAM2,
    compact: bool = False,
) -> TrackedFrame:
    """Every object of ``state`` on a frame with no new prompt: memory attention, then the heads with no prompt
    (the official ``track_step`` without the memory write). Training runs this too, with dropout on. SAMURAI
    (``policy``) keeps the candidate its Kalman filter chooses (``kalman.samurai_choice``)."""
    pix = condition_on_memory(module, params, state, feats, frame_idx, reverse, deterministic, rngs, policy, compact)
    multimask = module.use_multimask(is_init_cond_frame=False, num_pts=0)
    hr = broadcast_high_res(feats, state.num_objects)
    choose = None
    if policy.name == "samurai":
        if not multimask:
            raise ValueError("the samurai policy needs multimask_output_for_tracking=True (its Kalman choice)")
        kf = kalman.KalmanState(state.kf_mean, state.kf_cov, state.kf_stable)
        choose = lambda ious, masks: kalman.samurai_choice(kf, ious, masks, policy).best
    heads = sam_heads(
        module,
        params,
        pix,
        None,
        None,
        None,
        hr,
        multimask,
        choose=choose,
        obj_score_threshold=policy.obj_score_threshold,
    )
    return TrackedFrame(pix, heads)


# --- state writes -------------------------------------------------------------------------------------------------
def write_recent(state: TrackerState, t: jax.Array, maskmem: jax.Array, obj_ptr: jax.Array, valid: jax.Array):
    """Write frame t's non-conditioning memory (O, hw, m) and pointer (O, C) into the rings (slot t mod size)."""
    R, P = state.recent_frame.shape[1], state.ptr_frame.shape[1]
    r, p = jnp.mod(t, R), jnp.mod(t, P)
    return state.replace(
        recent_mem=state.recent_mem.at[:, r].set(maskmem.astype(state.recent_mem.dtype)),
        recent_frame=state.recent_frame.at[:, r].set(t),
        recent_valid=state.recent_valid.at[:, r].set(valid),
        ptr=state.ptr.at[:, p].set(obj_ptr),
        ptr_frame=state.ptr_frame.at[:, p].set(t),
        ptr_valid=state.ptr_valid.at[:, p].set(valid),
    )


def write_admitted(
    state: TrackerState,
    t: jax.Array,
    maskmem: jax.Array,
    obj_ptr: jax.Array,
    valid: jax.Array,
    admitted: jax.Array,
    policy: TrackerPolicy,
    obj_score: jax.Array | None = None,
) -> TrackerState:
    """The rings of a memory-selecting policy: frame t's memory (O, hw, m) and pointer (O, C) go to slot
    ``admit_count % size`` of each object; the count advances where ``admitted`` (O,), so a frame that is not
    admitted stays only until the next write: the ring holds the last admitted frames, then t-1 (the references'
    ``valid_indices``). SAMURAI's pointer ring keeps the SAM 2 rule (slot ``t % P``). ``obj_score`` (O,), when
    given (SAM2Long), is stored beside each entry (its key weight)."""
    O = state.num_objects
    R, P = state.recent_frame.shape[1], state.ptr_frame.shape[1]
    o = jnp.arange(O)
    r = jnp.mod(state.admit_count, R)
    p = jnp.mod(state.admit_count, P) if policy.selects_pointers else jnp.full((O,), jnp.mod(t, P))
    if obj_score is not None:
        state = state.replace(
            recent_obj_score=state.recent_obj_score.at[o, r].set(obj_score),
            ptr_obj_score=state.ptr_obj_score.at[o, p].set(obj_score),
        )
    return state.replace(
        recent_mem=state.recent_mem.at[o, r].set(maskmem.astype(state.recent_mem.dtype)),
        recent_frame=state.recent_frame.at[o, r].set(t),
        recent_valid=state.recent_valid.at[o, r].set(valid),
        ptr=state.ptr.at[o, p].set(obj_ptr),
        ptr_frame=state.ptr_frame.at[o, p].set(t),
        ptr_valid=state.ptr_valid.at[o, p].set(valid),
        admit_count=state.admit_count + admitted.astype(jnp.int32),
        last_admitted=admitted,
    )


class Admission(NamedTuple):
    """A policy's verdict on a tracked frame (``admission``)."""

    admitted: jax.Array  # (O,) bool
    best_iou: jax.Array  # (O,) predicted IoU of the kept candidate
    kalman: kalman.KalmanState  # SAMURAI's filter after the frame (unchanged for other policies)
    kf_score: jax.Array  # (O,) Kalman IoU of the kept mask; NaN where the filter did not score (the reference's None)


def admission(
    policy: TrackerPolicy, state: TrackerState, heads: SamHeadsOutput, t: jax.Array, reverse: jax.Array, is_cond
) -> Admission:
    """Whether each object's tracked frame enters the memory, as the policy's reference decides it.

    - sam2: every tracked (non-conditioning) frame.
    - samurai: predicted IoU of the kept mask > ``memory_bank_iou_threshold``, object score >
      ``memory_bank_obj_score_threshold`` and, in the filter's stable phase, its Kalman IoU >
      ``memory_bank_kf_score_threshold``; frames before ``samurai_admit_from_frame`` never (forward).
    - sam3_selection: ``cal_mem_score`` = norm(object score) * max predicted IoU > ``mf_threshold``, norm(s) =
      2 sigmoid(s) - 1 where s > 0 else 0; frame 0 never (forward), as ``frame_filter``'s range.
    """
    kf = kalman.KalmanState(state.kf_mean, state.kf_cov, state.kf_stable)
    obj = heads.object_score_logits[:, 0]
    best_iou = heads.ious.max(-1)
    admitted = ~is_cond
    kf_score = jnp.full(obj.shape, jnp.nan, jnp.float32)
    if policy.name == "samurai":
        choice = kalman.samurai_choice(kf, heads.ious, heads.high_res_multimasks, policy)
        best_iou = jnp.take_along_axis(heads.ious, choice.best[:, None], 1)[:, 0]
        kf_ok = ~choice.kf_scored | (choice.kf_score > policy.memory_bank_kf_score_threshold)
        kf_score = jnp.where(choice.kf_scored, choice.kf_score, jnp.nan)
        admitted &= (best_iou > policy.memory_bank_iou_threshold) & (obj > policy.memory_bank_obj_score_threshold)
        admitted &= kf_ok & (reverse | (t >= policy.samurai_admit_from_frame))
        # the reference's filter only steps on frames it decodes (a conditioning frame reuses its stored output)
        per_object = lambda a, b: jnp.where(is_cond.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
        kf = jax.tree.map(per_object, kf, choice.kalman)
    elif policy.name == "sam3_selection":
        norm = jnp.where(obj > 0, jax.nn.sigmoid(obj) * 2 - 1, 0.0)
        admitted &= (norm * best_iou > policy.mf_threshold) & (reverse | (t >= 1))
    return Admission(admitted, best_iou, kf, kf_score)


def write_cond(
    state: TrackerState,
    k: jax.Array,
    t: jax.Array,
    maskmem: jax.Array,
    obj_ptr: jax.Array,
    low_res: jax.Array,
    obj_score: jax.Array,
    valid: jax.Array | bool = True,
) -> TrackerState:
    """Store frame t as conditioning slot k of every object (where ``valid``): memory (O, hw, m), pointer (O, C),
    low-res logits (O, 1, 4h, 4w) and object score (O, 1)."""
    new = state.replace(
        cond_mem=state.cond_mem.at[:, k].set(maskmem.astype(state.cond_mem.dtype)),
        cond_ptr=state.cond_ptr.at[:, k].set(obj_ptr),
        cond_frame=state.cond_frame.at[:, k].set(t),
        cond_valid=state.cond_valid.at[:, k].set(True),
        cond_pred_masks=state.cond_pred_masks.at[:, k].set(low_res[:, 0]),
        cond_obj_score=state.cond_obj_score.at[:, k].set(obj_score[:, 0]),
    )
    return select_state(valid, new, state)


def select_state(pred: jax.Array | bool, a: Any, b: Any) -> Any:
    """``a`` where ``pred`` else ``b``, leaf by leaf (a traced branch without Python control flow)."""
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


# --- inference ----------------------------------------------------------------------------------------------------
def track_step(
    module: SAM2Base,
    params,
    state: TrackerState,
    image: jax.Array,
    frame_idx: jax.Array,
    reverse: jax.Array,
    fill_hole_area: int = 0,
    policy: TrackerPolicy = SAM2,
) -> tuple[TrackerState, StepOutput]:
    """Track every object of ``state`` on one frame with no new prompt and write the frame's memory.

    Args:
      image: (1, S, S, 3) normalised frame. frame_idx: () int. reverse: () bool, the tracking direction.
      fill_hole_area: the predictor's ``fill_hole_area`` applied to the returned low-res masks (static).
      policy: the tracking policy (static): candidate choice and memory admission (``policies.py``).
    """
    if policy.name == "sam2long":
        return sam2long_step(module, params, state, image, frame_idx, reverse, fill_hole_area, policy)
    t = jnp.asarray(frame_idx, jnp.int32)

    def tracked(st: TrackerState) -> tuple[TrackerState, StepOutput]:
        feats = frame_features(module, params, image)
        return track_features(module, params, st, feats, t, reverse, fill_hole_area, policy, compact=True)

    # A frame that conditions every object (where a propagation starts) outputs what the prompts stored, as the
    # official propagate_in_video does: no encoder, no attention.
    all_cond = _conditioning_slot(state, t)[0].all().astype(jnp.int32)
    stored = functools.partial(_conditioning_frame, t=t, policy=policy)
    return jax.lax.cond(_over_videos(all_cond, jax.lax.pmin) > 0, stored, tracked, state)


def _conditioning_slot(state: TrackerState, t: jax.Array) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """Which objects frame t conditions (O,) bool, and ``take``: a conditioning field (O, K, ...) -> (O, ...) at each
    object's slot of frame t (an arbitrary slot for an object that frame t does not condition)."""
    at_cond = state.cond_valid & (state.cond_frame == t)  # (O, K)
    k = jnp.argmax(at_cond, axis=1)
    O = at_cond.shape[0]
    return at_cond.any(1), lambda x: jnp.take_along_axis(x, k.reshape((O,) + (1,) * (x.ndim - 1)), axis=1)[:, 0]


def _conditioning_frame(state: TrackerState, t: jax.Array, policy: TrackerPolicy) -> tuple[TrackerState, StepOutput]:
    """``track_features`` on a frame that conditions every object, without computing it: each object outputs its
    stored prompt result and the rings get the same (invalid) write. Outputs only a tracked frame has (admission,
    IoU, Kalman score) are False / NaN; drivers skip conditioning frames' outputs."""
    O = state.num_objects
    _, take = _conditioning_slot(state, t)
    maskmem, obj_ptr = take(state.cond_mem), take(state.cond_ptr)
    is_cond, admitted = jnp.ones((O,), bool), jnp.zeros((O,), bool)
    if policy.selects_memory:
        state = write_admitted(state, t, maskmem, obj_ptr, ~is_cond, admitted, policy)
    else:
        state = write_recent(state, t, maskmem, obj_ptr, ~is_cond)
    kf_box = kalman.xyah_to_xyxy(state.kf_mean) if policy.name == "samurai" else jnp.zeros((O, 4), jnp.float32)
    nan = jnp.full((O,), jnp.nan, jnp.float32)
    pred = take(state.cond_pred_masks)[:, None]
    out = StepOutput(pred, take(state.cond_obj_score)[:, None], obj_ptr, maskmem, is_cond, admitted, nan, kf_box, nan)
    return state, out


def track_features(
    module: SAM2Base,
    params,
    state: TrackerState,
    feats: ImageFeatures,
    frame_idx: jax.Array,
    reverse: jax.Array,
    fill_hole_area: int = 0,
    policy: TrackerPolicy = SAM2,
    compact: bool = False,
) -> tuple[TrackerState, StepOutput]:
    """``track_step`` on a frame's features (``frame_features`` of the one frame) rather than its image: the ONNX
    tracking graph (``sam2_jax.export.onnx_export``) takes the encoder graph's outputs, so the encoder is not converted
    (and its weights not stored) twice. Not for SAM2Long (``sam2long_step`` tracks its pathways from the image)."""
    if policy.name == "sam2long":
        raise ValueError("track_features does not run the sam2long policy: call track_step")
    O = state.num_objects
    t = jnp.asarray(frame_idx, jnp.int32)
    heads = track_frame(module, params, state, feats, t, reverse, policy=policy, compact=compact).heads
    maskmem = encode_memory(module, params, feats, heads.high_res_masks, heads.object_score_logits, False)
    maskmem = maskmem.astype(jnp.bfloat16)  # stored as the official predictor stores maskmem_features
    low_res = _postprocess_pred_masks(heads.low_res_masks, fill_hole_area)

    # An object whose conditioning frame this is outputs its stored prompt result instead.
    is_cond, take = _conditioning_slot(state, t)
    pred_masks = jnp.where(is_cond[:, None, None, None], take(state.cond_pred_masks)[:, None], low_res)
    obj_score = jnp.where(is_cond[:, None], take(state.cond_obj_score)[:, None], heads.object_score_logits)
    obj_ptr = jnp.where(is_cond[:, None], take(state.cond_ptr), heads.obj_ptr)

    adm = admission(policy, state, heads, t, reverse, is_cond)
    if policy.selects_memory:
        state = write_admitted(state, t, maskmem, obj_ptr, ~is_cond, adm.admitted, policy)
        state = state.replace(kf_mean=adm.kalman.mean, kf_cov=adm.kalman.cov, kf_stable=adm.kalman.stable)
    else:
        state = write_recent(state, t, maskmem, obj_ptr, ~is_cond)
    kf_box = kalman.xyah_to_xyxy(state.kf_mean) if policy.name == "samurai" else jnp.zeros((O, 4), jnp.float32)
    out = StepOutput(pred_masks, obj_score, obj_ptr, maskmem, is_cond, adm.admitted, adm.best_iou, kf_box, adm.kf_score)
    return state, out


# --- SAM2Long -----------------------------------------------------------------------------------------------------
class PathwayChoice(NamedTuple):
    """``sam2long_select``'s choice per object and new pathway (O, P)."""

    parent: jax.Array  # int32: the pathway the new pathway continues
    cand: jax.Array  # int32: which of the parent's multimask candidates it keeps
    score: jax.Array  # float32: its cumulative score


def sam2long_select(
    path_score: jax.Array, ious: jax.Array, obj_score: jax.Array, first: jax.Array, policy: TrackerPolicy
) -> PathwayChoice:
    """SAM2Long's constrained tree step (``SAM2VideoPredictor._run_single_frame_inference`` of
    github Mark12Ding/SAM2Long), per object, on the P pathways' M candidates.

    Args:
      path_score: (O, P) cumulative scores; ious: (O, P, M) predicted IoUs; obj_score: (O, P) object-score
        logits; first: (O,) bool, the first frame after the conditioning frame (a single pathway: every new
        pathway keeps pathway 0's best-IoU candidate, scores restart at 0).
    Otherwise each candidate scores ``path_score + log(iou + 1e-5)``, sorted descending (a stable sort, as
    Python's). When ``max |object score| > sam2long_uncertainty`` the top P are kept; else the diverse rule: in
    sorted order, candidates whose signed IoU (negative where the pathway's object score <= 0) rounded to 2
    decimals was not seen yet, up to P; then, pathway by pathway, the best candidate of each pathway not yet
    continued, until P. New pathway i is the i-th kept candidate (pathway 0 the best).
    """
    O, P, M = ious.shape
    total = (path_score[:, :, None] + jnp.log(ious + 1e-5)).reshape(O, P * M)
    order = jnp.argsort(-total, axis=1, stable=True)  # candidate index (p * M + j) in sorted position
    signed = jnp.where(obj_score[:, :, None] > 0, ious, -ious).reshape(O, P * M)
    key = jnp.take_along_axis(jnp.round(signed * 100), order, 1)  # Python's round(x, 2), as hundredths
    parent_sorted = order // M
    m = jnp.arange(P * M)
    seen = ((key[:, None, :] == key[:, :, None]) & (m[None, :] < m[:, None])[None]).any(-1)
    take_key = ~seen & (jnp.cumsum(~seen, axis=1) <= P)  # (O, PM) in sorted position
    used = ((parent_sorted[:, :, None] == jnp.arange(P)) & take_key[:, :, None]).any(1)  # (O, P) pathway continued
    best_pos = jnp.argmax(parent_sorted[:, :, None] == jnp.arange(P), axis=1)  # (O, P) each pathway's best position
    entry_pos = jnp.concatenate([jnp.broadcast_to(m, (O, P * M)), best_pos], 1)
    eligible = jnp.concatenate([take_key, ~used], 1)
    pick = jnp.argsort(~eligible, axis=1, stable=True)[:, :P]
    diverse = jnp.take_along_axis(entry_pos, pick, 1)
    certain = jnp.abs(obj_score).max(1, keepdims=True) > policy.sam2long_uncertainty
    pos = jnp.where(certain, jnp.arange(P), diverse)
    flat = jnp.take_along_axis(order, pos, 1)
    parent, cand, score = flat // M, flat % M, jnp.take_along_axis(total, flat, 1)
    f = first[:, None]
    best0 = jnp.argmax(ious[:, 0], axis=-1)[:, None]
    return PathwayChoice(
        jnp.where(f, 0, parent).astype(jnp.int32),
        jnp.where(f, best0, cand).astype(jnp.int32),
        jnp.where(f, 0.0, score).astype(jnp.float32),
    )


def sam2long_step(
    module: SAM2Base,
    params,
    state: TrackerState,
    image: jax.Array,
    frame_idx: jax.Array,
    reverse: jax.Array,
    fill_hole_area: int,
    policy: TrackerPolicy,
) -> tuple[TrackerState, StepOutput]:
    """``track_step`` under SAM2Long: ``state`` holds P = ``policy.num_pathways`` rows per object (row o * P + p,
    ``repeat_pathways``), each pathway with its own rings, admission history and cumulative score.

    All O * P rows are tracked at once (memory attention with SAM2Long's key weights, heads with all three
    candidates and their pointers), ``sam2long_select`` keeps P of the P * 3 candidates per object, each new
    pathway takes its parent's rows (a gather along P) and writes the kept candidate's memory, admitted when its
    IoU > ``sam2long_iou_threshold`` and its object score > 0 (the previous frame always attends). Returns the
    best pathway's outputs (O rows) and every pathway's parent, score and mask (``StepOutput.path_*``).
    """
    P = policy.num_pathways
    N = state.num_objects
    if N % P:
        raise ValueError(f"the sam2long state has {N} rows, not a multiple of {P} pathways (repeat_pathways)")
    O = N // P
    if not module.use_multimask(is_init_cond_frame=False, num_pts=0):
        raise ValueError("the sam2long policy needs multimask_output_for_tracking=True (its three candidates)")
    t = jnp.asarray(frame_idx, jnp.int32)
    feats = frame_features(module, params, image)
    pix = condition_on_memory(module, params, state, feats, t, reverse, policy=policy, compact=True)
    hr = broadcast_high_res(feats, N)
    heads, cand_ptrs = sam_heads(module, params, pix, None, None, None, hr, True, all_obj_ptrs=True)
    M = heads.ious.shape[1]
    is_cond, take = _conditioning_slot(state, t)  # (N,); take reads the slot of the rows' shared prompts
    first = (state.cond_valid & (_rel(state.cond_frame, t, reverse) == 1)).any(1).reshape(O, P)[:, 0]
    choice = sam2long_select(
        state.path_score.reshape(O, P),
        heads.ious.reshape(O, P, M),
        heads.object_score_logits.reshape(O, P),
        first,
        policy,
    )
    # a conditioning frame outputs its stored result and leaves the pathways as they are
    cond_o = is_cond.reshape(O, P)[:, :1]
    parent = jnp.where(cond_o, jnp.arange(P), choice.parent)
    score = jnp.where(cond_o, state.path_score.reshape(O, P), choice.score)
    rows = (jnp.arange(O)[:, None] * P + parent).reshape(N)
    cand = choice.cand.reshape(N)
    state = jax.tree.map(lambda x: x[rows] if x.ndim else x, state)
    low = heads.low_res_multimasks[rows, cand][:, None]
    high = heads.high_res_multimasks[rows, cand][:, None]
    obj = heads.object_score_logits[rows]
    ptr = cand_ptrs[rows, cand]
    iou = heads.ious[rows, cand]
    maskmem = encode_memory(module, params, feats, high, obj, False).astype(jnp.bfloat16)
    low_res = _postprocess_pred_masks(low, fill_hole_area)

    pred_masks = jnp.where(is_cond[:, None, None, None], take(state.cond_pred_masks)[:, None], low_res)
    obj_score = jnp.where(is_cond[:, None], take(state.cond_obj_score)[:, None], obj)
    obj_ptr = jnp.where(is_cond[:, None], take(state.cond_ptr), ptr)
    admitted = ~is_cond & (iou > policy.sam2long_iou_threshold) & (obj[:, 0] > 0)
    state = write_admitted(state, t, maskmem, obj_ptr, ~is_cond, admitted, policy, obj_score=obj[:, 0])
    state = state.replace(path_score=score.reshape(N))
    best = jnp.arange(O) * P
    out = StepOutput(
        pred_masks[best],
        obj_score[best],
        obj_ptr[best],
        maskmem[best],
        is_cond[best],
        admitted[best],
        iou[best],
        jnp.zeros((O, 4), jnp.float32),
        jnp.full((O,), jnp.nan, jnp.float32),
        parent.astype(jnp.int32),
        score,
        pred_masks.reshape(O, P, *pred_masks.shape[1:]),
    )
    return state, out


def repeat_pathways(state: TrackerState, num_pathways: int, xp=jnp) -> TrackerState:
    """A state of O objects -> the SAM2Long state of O * P rows (row o * P + p: object o's pathway p, all equal,
    scores 0). ``xp=np`` on the host."""
    grow = lambda x: x if np.ndim(x) == 0 else xp.repeat(x, num_pathways, axis=0)
    st = jax.tree.map(grow, state)
    return st.replace(path_score=xp.zeros_like(st.path_score))


def scan_frames(
    module: SAM2Base,
    params,
    state: TrackerState,
    images: jax.Array,
    frame_idxs: jax.Array,
    reverse: jax.Array,
    fill_hole_area: int = 0,
    policy: TrackerPolicy = SAM2,
) -> tuple[TrackerState, StepOutput]:
    """``lax.scan`` of ``track_step`` over a chunk: images (T, S, S, 3), frame_idxs (T,). Outputs stacked (T, …)."""

    def body(st, x):
        image, t = x
        return track_step(module, params, st, image[None], t, reverse, fill_hole_area, policy)

    return jax.lax.scan(body, state, (images, frame_idxs))


propagate_chunk = jax.jit(
    scan_frames, static_argnames=("module", "fill_hole_area", "policy"), donate_argnames=("state",)
)


@functools.partial(jax.jit, static_argnames=("module", "fill_hole_area", "policy"), donate_argnames=("state",))
def propagate_videos_chunk(
    module: SAM2Base,
    params,
    state: TrackerState,
    images: jax.Array,
    frame_idxs: jax.Array,
    reverse: jax.Array,
    fill_hole_area: int = 0,
    policy: TrackerPolicy = SAM2,
) -> tuple[TrackerState, StepOutput]:
    """``scan_frames`` of several videos at once, in one program (the official code tracks one video at a time,
    upstream #399): every argument but ``params`` has a leading video axis V.

    Args:
      state: ``TrackerState`` (V, O, …) (``stack_states``: the same object and slot counts in every video).
      images: (V, T, S, S, 3) normalised frames. frame_idxs: (V, T) int. reverse: (V,) bool.
    Returns:
      the state (V, O, …) and ``StepOutput`` stacked (V, T, O, …).
    """
    one = lambda st, im, ix, rv: scan_frames(module, params, st, im, ix, rv, fill_hole_area, policy)
    return jax.vmap(one, axis_name=VIDEO_AXIS)(state, images, frame_idxs, reverse)


def interact(
    module: SAM2Base,
    params,
    state: TrackerState,
    feats: ImageFeatures,
    frame_idx: jax.Array,
    reverse: jax.Array,
    point_coords: jax.Array | None,
    point_labels: jax.Array | None,
    mask_input: jax.Array | None,
    prev_mask_logits: jax.Array | None,
    is_init_cond_frame: bool = False,
    fill_hole_area: int = 0,
    policy: TrackerPolicy = SAM2,
    compact: bool = False,
) -> PromptOutput:
    """A prompted frame of one object (the official ``_run_single_frame_inference`` with ``run_mem_encoder=False``).

    Args:
      state: the object's memory (O = 1), used unless ``is_init_cond_frame``.
      point_coords (1, N, 2) in model-input pixels and point_labels (1, N), or None; mask_input (1, S, S, 1)
        binary at model resolution, or None; prev_mask_logits (1, 1, 4h, 4w) previous low-res logits fed with
        new clicks, or None.
      compact: attend only to the memory slots in use (``condition_on_memory``): a correction on one of the first
        frames then costs what the official's does. Off for the exported and ONNX graphs (a slot count that is
        symbolic there, and no ``lax.switch`` in ONNX).
    Returns:
      ``PromptOutput``.
    """
    hr = list(feats.high_res) or None
    if mask_input is not None and module.config.use_mask_input_as_output_without_sam:
        outs = use_mask_as_output(module, params, feats.vision_feat, hr, mask_input, policy.obj_score_threshold)
    else:
        pix = prompt_features(
            module, params, state, feats, frame_idx, reverse, is_init_cond_frame, policy=policy, compact=compact
        )
        num_pts = 0 if point_labels is None else point_labels.shape[1]
        multimask = module.use_multimask(is_init_cond_frame, num_pts)
        mask_in = mask_input
        if prev_mask_logits is not None:
            # (1, 1, 4h, 4w) -> (1, 4h, 4w, 1)
            mask_in = prev_mask_logits.transpose(0, 2, 3, 1)
        outs = sam_heads(
            module,
            params,
            pix,
            point_coords,
            point_labels,
            mask_in,
            hr,
            multimask,
            obj_score_threshold=policy.obj_score_threshold,
        )
    return PromptOutput(
        _postprocess_pred_masks(outs.low_res_masks, fill_hole_area), outs.object_score_logits, outs.obj_ptr
    )


def encode_prompt_memory(
    module: SAM2Base, params, feats: ImageFeatures, pred_masks: jax.Array, object_score_logits: jax.Array
) -> jax.Array:
    """Memory of a prompted frame from its stored low-res logits (the official ``propagate_in_video_preflight``):
    upsample to the model resolution, binarize as a mask from clicks, encode. Returns (1, hw, m) bfloat16."""
    S = module.config.image_size
    # (1, 1, 4h, 4w) -> (1, 4h, 4w, 1) -> (1, S, S, 1) -> (1, 1, S, S)
    high = interpolate(pred_masks.transpose(0, 2, 3, 1), (S, S), "bilinear").transpose(0, 3, 1, 2)
    return encode_memory(module, params, feats, high, object_score_logits, True).astype(jnp.bfloat16)


# --- compiled entry points ----------------------------------------------------------------------------------------
# The package's one jit-caching policy: module-level ``jax.jit`` with the Flax module as a static argument (a module
# is hashable by its frozen config and dtype), so every predictor, evaluator and benchmark built on the same model
# shares one compile per shape.
jit_image_embeddings = jax.jit(image_embeddings, static_argnums=0)
jit_frame_features = jax.jit(frame_features, static_argnums=0, static_argnames=("deterministic",))
jit_interact = jax.jit(
    interact, static_argnums=0, static_argnames=("is_init_cond_frame", "fill_hole_area", "policy", "compact")
)
jit_encode_prompt_memory = jax.jit(encode_prompt_memory, static_argnums=0)
