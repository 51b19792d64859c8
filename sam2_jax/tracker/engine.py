"""The tracker engine: the per-frame step that every driver composes.

Inference (``SAM2VideoPredictor``, streaming, ``eval.py``), training (``training/sam2_train.py``), export and the
benchmarks all run these functions; none of them calls the model another way. Each one ports a piece of the
official ``SAM2Base.track_step`` (sam2 1.1.0) on the fixed-size ``TrackerState`` (see state.py): which memories a
frame attends to is a mask over fixed slots, nothing branches on data, and every object of a frame is computed at
once (they share the frame's image features). The tracker package, bottom up (a table with the drivers is in
``docs/architecture.md``):

- ``calls.py``: the model calls (image encoder -> ``ImageFeatures``, the heads, the memory encoder).
- ``rings.py``: the fixed slots: which ring entries a frame may read, the writes after a frame.
- ``policies/``: the tracking policies, the hooks this step calls (candidate choice, memory admission, ring rules).
- ``memory.py``: the memory rule and the memory attention (``condition_on_memory``).
- here: ``prompt_features`` (the features a prompt is decoded on), ``track_frame`` (a frame with no new prompt),
  ``track_step`` (+ memory write: the body of the scan; its part after the encoder is ``track_features``),
  ``scan_frames`` (``lax.scan`` over a chunk), ``interact`` (a prompted frame), ``encode_prompt_memory``.
- ``compiled.py``: the jitted entry points (``propagate_chunk``, ``propagate_videos_chunk``, ``jit_interact``, …).

Every step function takes one static ``StepConfig`` (policy, hole filling, compaction, determinism). Functions that
may run in training take ``rngs`` (``{"dropout": key}``): dropout in the memory attention and drop path in the trunk
are on with ``cfg.deterministic=False``.

Deviations from the official code:
- ``memory_temporal_stride_for_eval`` must be 1 (the default of every official config): the recent-memory ring
  holds the last ``num_maskmem - 1`` frames.
- Frames with a new prompt (clicks, box, mask) are not scanned: the predictor runs ``interact`` for them (as the
  official ``add_new_points_or_box`` / ``add_new_mask`` do) and stores the result as a conditioning slot; the scan
  then reuses that output when it reaches the frame, like the official ``propagate_in_video``.
- All objects are computed on every frame, also on an object's conditioning frame, whose computed output is then
  replaced by the stored one (static shapes; the official skips the computation). A frame that conditions every
  object is not computed (``track_step``'s ``lax.cond``), and with ``cfg.compact`` the tracking step attends only
  to the memory slots in use, in buckets (``memory.condition_on_memory``), so the first frames of a propagation
  cost what they cost the official code.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sam2_jax.modeling.backend import over_videos
from sam2_jax.modeling.sam2_base import ImageFeatures, SAM2Base, SamHeadsOutput
from sam2_jax.tracker import rings
from sam2_jax.tracker.calls import (
    Rngs,
    broadcast_high_res,
    call,
    encode_memory,
    frame_features,
    postprocess_pred_masks,
    sam_heads,
    use_mask_as_output,
)
from sam2_jax.tracker.memory import condition_on_memory
from sam2_jax.tracker.state import TrackerState
from sam2_jax.tracker.step_config import DEFAULT, StepConfig
from sam2_jax.utils.interpolate import interpolate


class StepOutput(NamedTuple):
    """What ``track_step`` returns per frame (stacked ``(T, ...)`` by ``scan_frames``)."""

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


def prompt_features(
    module: SAM2Base,
    params,
    state: TrackerState,
    feats: ImageFeatures,
    frame_idx: jax.Array,
    reverse: jax.Array,
    is_init_cond_frame: bool,
    cfg: StepConfig = DEFAULT,
    rngs: Rngs = None,
) -> jax.Array:
    """The features (O, h, w, C) a prompt on this frame is decoded on: with the no-memory embedding on an initial
    conditioning frame (``directly_add_no_mem_embed``, every official config), else conditioned on the memory."""
    if not is_init_cond_frame:
        return condition_on_memory(module, params, state, feats, frame_idx, reverse, cfg, rngs)
    if not module.config.directly_add_no_mem_embed:
        raise ValueError("only directly_add_no_mem_embed=True models are supported by the tracker")
    pix = feats.vision_feat + call(module, params, SAM2Base.no_mem)
    return jnp.broadcast_to(pix, (state.num_objects, *pix.shape[1:]))


def track_frame(
    module: SAM2Base,
    params,
    state: TrackerState,
    feats: ImageFeatures,
    frame_idx: jax.Array,
    reverse: jax.Array,
    cfg: StepConfig = DEFAULT,
    rngs: Rngs = None,
) -> TrackedFrame:
    """Every object of ``state`` on a frame with no new prompt: memory attention, then the heads with no prompt
    (the official ``track_step`` without the memory write). Training runs this too, with dropout on. The policy
    may choose the kept candidate (``TrackerPolicy.choose``: SAMURAI's Kalman filter)."""
    pix = condition_on_memory(module, params, state, feats, frame_idx, reverse, cfg, rngs)
    multimask = module.use_multimask(is_init_cond_frame=False, num_pts=0)
    hr = broadcast_high_res(feats, state.num_objects)
    heads = sam_heads(
        module,
        params,
        pix,
        None,
        None,
        None,
        hr,
        multimask,
        choose=cfg.policy.choose(module, state),
        obj_score_threshold=cfg.policy.obj_score_threshold,
    )
    return TrackedFrame(pix, heads)


# --- inference ----------------------------------------------------------------------------------------------------
def track_step(
    module: SAM2Base,
    params,
    state: TrackerState,
    image: jax.Array,
    frame_idx: jax.Array,
    reverse: jax.Array,
    cfg: StepConfig = DEFAULT,
) -> tuple[TrackerState, StepOutput]:
    """Track every object of ``state`` on one frame with no new prompt and write the frame's memory.

    Args:
      image: (1, S, S, 3) normalised frame. frame_idx: () int. reverse: () bool, the tracking direction.
      cfg: the static step configuration; a policy with ``own_step`` (SAM2Long) runs its own step instead.
    """
    if cfg.policy.own_step:
        return cfg.policy.step(module, params, state, image, frame_idx, reverse, cfg)
    t = jnp.asarray(frame_idx, jnp.int32)

    def tracked(st: TrackerState) -> tuple[TrackerState, StepOutput]:
        feats = frame_features(module, params, image)
        return track_features(module, params, st, feats, t, reverse, cfg)

    # A frame that conditions every object (where a propagation starts) outputs what the prompts stored, as the
    # official propagate_in_video does: no encoder, no attention.
    all_cond = rings.conditioning_slot(state, t)[0].all().astype(jnp.int32)
    stored = functools.partial(_conditioning_frame, t=t, cfg=cfg)
    return jax.lax.cond(over_videos(all_cond, jax.lax.pmin) > 0, stored, tracked, state)


def _conditioning_frame(state: TrackerState, t: jax.Array, cfg: StepConfig) -> tuple[TrackerState, StepOutput]:
    """``track_features`` on a frame that conditions every object, without computing it: each object outputs its
    stored prompt result and the rings get the same (invalid) write. Outputs only a tracked frame has (admission,
    IoU, Kalman score) are False / NaN; drivers skip conditioning frames' outputs."""
    O = state.num_objects
    _, take = rings.conditioning_slot(state, t)
    maskmem, obj_ptr = take(state.cond_mem), take(state.cond_ptr)
    is_cond, admitted = jnp.ones((O,), bool), jnp.zeros((O,), bool)
    state = cfg.policy.write_memory(state, t, maskmem, obj_ptr, ~is_cond, admitted)
    nan = jnp.full((O,), jnp.nan, jnp.float32)
    pred = take(state.cond_pred_masks)[:, None]
    kf_box = cfg.policy.kf_box(state)
    out = StepOutput(pred, take(state.cond_obj_score)[:, None], obj_ptr, maskmem, is_cond, admitted, nan, kf_box, nan)
    return state, out


def track_features(
    module: SAM2Base,
    params,
    state: TrackerState,
    feats: ImageFeatures,
    frame_idx: jax.Array,
    reverse: jax.Array,
    cfg: StepConfig = DEFAULT,
) -> tuple[TrackerState, StepOutput]:
    """``track_step`` on a frame's features (``frame_features`` of the one frame) rather than its image: the ONNX
    tracking graph (``sam2_jax.export.onnx_export``) takes the encoder graph's outputs, so the encoder is not converted
    (and its weights not stored) twice. Not for a policy with its own step (it tracks from the image)."""
    policy = cfg.policy
    if policy.own_step:
        raise ValueError(f"track_features does not run the {policy.name} policy: call track_step")
    t = jnp.asarray(frame_idx, jnp.int32)
    heads = track_frame(module, params, state, feats, t, reverse, cfg).heads
    maskmem = encode_memory(module, params, feats, heads.high_res_masks, heads.object_score_logits, False)
    maskmem = maskmem.astype(jnp.bfloat16)  # stored as the official predictor stores maskmem_features
    low_res = postprocess_pred_masks(heads.low_res_masks, cfg.fill_hole_area)

    # An object whose conditioning frame this is outputs its stored prompt result instead.
    is_cond, take = rings.conditioning_slot(state, t)
    pred_masks = jnp.where(is_cond[:, None, None, None], take(state.cond_pred_masks)[:, None], low_res)
    obj_score = jnp.where(is_cond[:, None], take(state.cond_obj_score)[:, None], heads.object_score_logits)
    obj_ptr = jnp.where(is_cond[:, None], take(state.cond_ptr), heads.obj_ptr)

    adm = policy.admit(state, heads, t, reverse, is_cond)
    state = policy.write_memory(state, t, maskmem, obj_ptr, ~is_cond, adm.admitted)
    state = policy.after_frame(state, adm)
    kf_box = policy.kf_box(state)
    out = StepOutput(pred_masks, obj_score, obj_ptr, maskmem, is_cond, adm.admitted, adm.best_iou, kf_box, adm.kf_score)
    return state, out


def scan_frames(
    module: SAM2Base,
    params,
    state: TrackerState,
    images: jax.Array,
    frame_idxs: jax.Array,
    reverse: jax.Array,
    cfg: StepConfig = DEFAULT,
) -> tuple[TrackerState, StepOutput]:
    """``lax.scan`` of ``track_step`` over a chunk: images (T, S, S, 3), frame_idxs (T,). Outputs stacked (T, …)."""

    def body(st, x):
        image, t = x
        return track_step(module, params, st, image[None], t, reverse, cfg)

    return jax.lax.scan(body, state, (images, frame_idxs))


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
    cfg: StepConfig = DEFAULT,
) -> PromptOutput:
    """A prompted frame of one object (the official ``_run_single_frame_inference`` with ``run_mem_encoder=False``).

    Args:
      state: the object's memory (O = 1), used unless ``is_init_cond_frame``.
      point_coords (1, N, 2) in model-input pixels and point_labels (1, N), or None; mask_input (1, S, S, 1)
        binary at model resolution, or None; prev_mask_logits (1, 1, 4h, 4w) previous low-res logits fed with
        new clicks, or None.
      cfg: ``cfg.compact`` attends only to the memory slots in use (``memory.condition_on_memory``): a correction
        on one of the first frames then costs what the official's does. Off for the exported and ONNX graphs (a
        slot count that is symbolic there, and no ``lax.switch`` in ONNX).
    Returns:
      ``PromptOutput``.
    """
    hr = list(feats.high_res) or None
    threshold = cfg.policy.obj_score_threshold
    if mask_input is not None and module.config.use_mask_input_as_output_without_sam:
        outs = use_mask_as_output(module, params, feats.vision_feat, hr, mask_input, threshold)
    else:
        pix = prompt_features(module, params, state, feats, frame_idx, reverse, is_init_cond_frame, cfg)
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
            obj_score_threshold=threshold,
        )
    low_res = postprocess_pred_masks(outs.low_res_masks, cfg.fill_hole_area)
    return PromptOutput(low_res, outs.object_score_logits, outs.obj_ptr)


def encode_prompt_memory(
    module: SAM2Base, params, feats: ImageFeatures, pred_masks: jax.Array, object_score_logits: jax.Array
) -> jax.Array:
    """Memory of a prompted frame from its stored low-res logits (the official ``propagate_in_video_preflight``):
    upsample to the model resolution, binarize as a mask from clicks, encode. Returns (1, hw, m) bfloat16."""
    S = module.config.image_size
    # (1, 1, 4h, 4w) -> (1, 4h, 4w, 1) -> (1, S, S, 1) -> (1, 1, S, S)
    high = interpolate(pred_masks.transpose(0, 2, 3, 1), (S, S), "bilinear").transpose(0, 3, 1, 2)
    return encode_memory(module, params, feats, high, object_score_logits, True).astype(jnp.bfloat16)
