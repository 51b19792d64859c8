"""The training forward of SAM 2: port of ``training/model/sam2.py`` (``SAM2Train``, sam2 1.1.0) on the tracker's
fixed-size state.

A clip of T frames and O objects is processed as the official ``forward_tracking`` does: image features of all
frames first; then the initial conditioning frames (1 to 2, the first frame and random others), each prompted with
its ground-truth mask, a click sampled from it or its noised box, and (for clicks and boxes) 7 corrective clicks
sampled from the error of the previous prediction; then the other frames in temporal order, each conditioned on
the memories written so far, some (``num_frames_to_correct``) also corrected with clicks and then stored as
conditioning frames. The loss (``loss_fns``) is accumulated over every prediction step of every frame.

How it maps onto the tracker: the memory is a ``TrackerState`` (conditioning slots, rings of recent memories and
pointers, validity masks) and every per-frame computation is a function of ``sam2_jax/tracker/engine.py``, the same
ones inference runs: ``frame_features``, ``prompt_features`` and ``sam_heads`` / ``use_mask_as_output`` on prompted
frames, ``track_frame`` (memory selection, memory attention with dropout, heads) on tracked frames,
``encode_memory``, ``write_cond`` / ``write_recent``. What this module adds is training's alone: the prompt plan,
the corrective-click loop and the losses. The tracked frames run under ``lax.scan``.

Deviations from the official code:
- The random decisions that do not depend on predictions (prompt type, number and choice of initial conditioning
  frames, frames to correct, whether a corrective click is drawn from the ground truth) are drawn on the host up
  front by ``sample_prompt_plan`` (``numpy.random.Generator``, the official code also uses one); click positions
  and box noise, which depend on the prediction or are per pixel, use ``jax.random`` keys on the device.
- Static shapes: two initial-conditioning slots with validity (scanned; an unused one writes nothing), ``T - 1``
  scan steps with validity (the last is unused when there are two initial frames), the prompt type chosen with
  ``lax.switch``, corrections on a tracked frame with ``lax.cond``.
- Memories stay float32 during training (the official trainer keeps them in the autocast dtype; the inference
  predictor's bfloat16 storage is an inference detail); the official training mode also lets every conditioning
  frame's object pointer in, future ones included, which the training module's config reflects
  (``only_obj_ptrs_in_the_past_for_eval = False`` is the eval-only switch).
- The loss is computed inside the frame step, so the multi-step high-resolution masks are never stacked.
- Single images (the official ``num_frames == 1`` case): the plan comes from ``data.image_prompt_plan`` (clicks or
  a box, one conditioning frame, corrections on it) and ``clip_losses`` runs with no tracked frame (T = 1); the
  losses equal those of the same frame in a two-frame clip whose second frame is not tracked (test).
- Objects per clip are fixed (O): a clip with fewer objects is padded, ``obj_valid`` marks the real ones. A padded
  object is computed (objects never interact in the model) but adds no loss and no gradient, and the normaliser
  counts the real objects of the batch, so the loss is that of the clip without it (the official code concatenates
  the clips' variable object counts and divides by their total).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sam2_jax.modeling.sam2_base import ImageFeatures, SAM2Base, SamHeadsOutput
from sam2_jax.modeling.sam2_model import make_module
from sam2_jax.tracker import calls, engine, rings
from sam2_jax.tracker.state import TrackerState, empty_state
from sam2_jax.tracker.step_config import StepConfig
from sam2_jax.training import loss_fns
from sam2_jax.training.prompts import get_next_point, sample_box_points

MASK, CLICK, BOX = 0, 1, 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FINALS = 4  # (low_res_masks, high_res_masks, obj_ptr, object_score_logits)


class PromptPlan(NamedTuple):
    """Prompt decisions of one clip, drawn on the host (numpy arrays; a leading batch axis when batched).

    Attributes:
        init_frames: (I,) int32 initial conditioning frames (slot 0 is frame 0), I = ``num_init_cond_frames``.
        init_valid: (I,) bool.
        prompt_type: (I,) int32, ``MASK`` / ``CLICK`` / ``BOX`` per initial frame.
        track_frames: (T - 1,) int32 the other frames in temporal order (padded with 0).
        track_valid: (T - 1,) bool.
        extra_correct_frames: (E,) int32 tracked frames that receive corrective clicks (-1 padding),
            E = ``num_frames_to_correct - 1``.
        sample_from_gt: (I + E, num_correction_pt_per_frame) bool, corrective click drawn from the ground truth
            alone (rows: initial slots, then extra frames).
    """

    init_frames: np.ndarray
    init_valid: np.ndarray
    prompt_type: np.ndarray
    track_frames: np.ndarray
    track_valid: np.ndarray
    extra_correct_frames: np.ndarray
    sample_from_gt: np.ndarray


def sample_prompt_plan(rng: np.random.Generator, num_frames: int, p: ml_collections.ConfigDict) -> PromptPlan:
    """The official ``prepare_prompt_inputs`` decisions (training mode) for one clip.

    Args:
        rng: host generator (its state is part of the data-iterator state).
        num_frames: T (at least 2; single images use ``data.image_prompt_plan``).
        p: ``config.train.prompts``.

    Returns:
        A ``PromptPlan`` of numpy arrays.
    """
    if num_frames < 2:
        raise ValueError(f"video clips need at least 2 frames, got {num_frames} (images: data.image_prompt_plan)")
    I, E = p.num_init_cond_frames, max(p.num_frames_to_correct - 1, 0)
    use_pt = rng.random() < p.prob_to_use_pt_input
    n_init = I
    if p.rand_init_cond_frames and I > 1:
        n_init = int(rng.integers(1, I, endpoint=True))
    n_correct = p.num_frames_to_correct
    if use_pt and p.rand_frames_to_correct and n_correct > n_init:
        n_correct = int(rng.integers(n_init, n_correct, endpoint=True))
    init = [0] + rng.choice(np.arange(1, num_frames), n_init - 1, replace=False).tolist()
    types = [BOX if (use_pt and rng.random() < p.prob_to_use_box_input) else (CLICK if use_pt else MASK) for _ in init]
    rest = [t for t in range(num_frames) if t not in init]
    extra = []
    if use_pt and n_correct > n_init:
        extra = rng.choice(rest, n_correct - n_init, replace=False).tolist()
    from_gt = rng.random((I + E, p.num_correction_pt_per_frame)) < p.prob_to_sample_from_gt

    def pad(xs, n, fill):
        return np.array(list(xs) + [fill] * (n - len(xs)), np.int32)

    return PromptPlan(
        init_frames=pad(init, I, 0),
        init_valid=np.arange(I) < n_init,
        prompt_type=pad(types, I, MASK),
        track_frames=pad(rest, num_frames - 1, 0),
        track_valid=np.arange(num_frames - 1) < len(rest),
        extra_correct_frames=pad(extra, E, -1),
        sample_from_gt=from_gt,
    )


def training_module(module: SAM2Base) -> SAM2Base:
    """The same model in the official training mode: object pointers of every conditioning frame (the eval-only
    ``only_obj_ptrs_in_the_past_for_eval`` off) and no dynamic multimask fallback (off when ``self.training``)."""
    cfg = ml_collections.ConfigDict(module.config)
    cfg.only_obj_ptrs_in_the_past_for_eval = False
    if cfg.get("sam_mask_decoder_extra_args"):
        cfg.sam_mask_decoder_extra_args.dynamic_multimask_via_stability = False
    return make_module(cfg, module.dtype)


def _zero_losses() -> dict[str, jax.Array]:
    return {k: jnp.zeros((), jnp.float32) for k in ("loss_mask", "loss_dice", "loss_iou", "loss_class")}


def _add(a: dict, b: dict) -> dict:
    return {k: a[k] + b[k] for k in a}


def _masked(valid: jax.Array, losses: dict) -> dict:
    return {k: jnp.where(valid, v, 0.0) for k, v in losses.items()}


class _Ctx(NamedTuple):
    """What every frame function needs; static fields are Python values."""

    module: SAM2Base
    params: Any
    num_objects: jax.Array  # loss normaliser (real objects per global batch)
    obj_valid: jax.Array | None  # (O,) bool: real objects; None: all
    loss_kw: dict
    weights: loss_fns.LossWeights
    num_correction: int
    deterministic: bool
    point_sampling: str  # "uniform" (official training) or "center" (official eval; deterministic)
    box_noise: float


def _step_loss(ctx: _Ctx, outs: SamHeadsOutput, gt_t: jax.Array) -> dict[str, jax.Array]:
    return loss_fns.step_losses(
        outs.high_res_multimasks,
        gt_t,
        outs.ious,
        outs.object_score_logits,
        ctx.num_objects,
        None,
        ctx.weights,
        obj_valid=ctx.obj_valid,
        **ctx.loss_kw,
    )


def _heads(ctx: _Ctx, pix, hr, coords, labels, mask_in, multimask: bool) -> SamHeadsOutput:
    return calls.sam_heads(ctx.module, ctx.params, pix, coords, labels, mask_in, hr, multimask)


def _correct(ctx: _Ctx, pix, hr, gt_t, outs, coords, labels, is_init: bool, keys, from_gt):
    """Official ``_iter_correct_pt_sampling``: ``num_correction`` clicks, each from the error of the previous step,
    each step fed the previous low-res mask. Returns (summed losses of these steps, final outputs)."""
    losses = _zero_losses()
    for i in range(ctx.num_correction):
        low_res, high_res = outs.low_res_masks, outs.high_res_masks
        pred = jnp.where(from_gt[i], False, jax.lax.stop_gradient(high_res) > 0)
        pts, lbl = get_next_point(keys[i], gt_t[:, None], pred, ctx.point_sampling)
        coords = pts if coords is None else jnp.concatenate([coords, pts], axis=1)
        labels = lbl if labels is None else jnp.concatenate([labels, lbl], axis=1)
        multimask = ctx.module.use_multimask(is_init, labels.shape[1])
        # (O, 1, 4h, 4w) -> (O, 4h, 4w, 1)
        outs = _heads(ctx, pix, hr, coords, labels, low_res.transpose(0, 2, 3, 1), multimask)
        losses = _add(losses, _step_loss(ctx, outs, gt_t))
    return losses, outs


def _finals(outs: SamHeadsOutput) -> tuple:
    return outs.low_res_masks, outs.high_res_masks, outs.obj_ptr, outs.object_score_logits


def _init_frame(ctx: _Ctx, state: TrackerState, feats: ImageFeatures, gt: jax.Array, t, ptype, key, from_gt):
    """An initial conditioning frame (no memory) with its prompt; returns (losses, finals)."""
    O = gt.shape[1]
    one = calls.frame_at(feats, t)
    hr = calls.broadcast_high_res(one, O)
    gt_t = jax.lax.dynamic_index_in_dim(gt, t, 0, keepdims=False)  # (O, S, S)
    k_prompt, k_corr = jax.random.split(key)
    corr_keys = jax.random.split(k_corr, max(ctx.num_correction, 1))

    def mask_branch(_):
        pix0 = jnp.broadcast_to(one.vision_feat, (O, *one.vision_feat.shape[1:]))
        outs = calls.use_mask_as_output(ctx.module, ctx.params, pix0, hr, gt_t[..., None].astype(jnp.float32))
        return _step_loss(ctx, outs, gt_t), _finals(outs)

    def point_branch(box: bool):
        def run(_):
            pix = engine.prompt_features(ctx.module, ctx.params, state, one, t, False, is_init_cond_frame=True)
            if box:
                coords, labels = sample_box_points(k_prompt, gt_t[:, None], noise=ctx.box_noise)
            else:
                coords, labels = get_next_point(k_prompt, gt_t[:, None], None, ctx.point_sampling)
            outs = _heads(ctx, pix, hr, coords, labels, None, ctx.module.use_multimask(True, labels.shape[1]))
            losses = _step_loss(ctx, outs, gt_t)
            more, outs = _correct(ctx, pix, hr, gt_t, outs, coords, labels, True, corr_keys, from_gt)
            return _add(losses, more), _finals(outs)

        return run

    return jax.lax.switch(ptype, [mask_branch, point_branch(False), point_branch(True)], None)


def _encode_memory(ctx: _Ctx, one: ImageFeatures, high_res, obj_score) -> jax.Array:
    """Memory (O, hw, m) of a frame; training mode: click masks are not binarized (official ``self.training``)."""
    return calls.encode_memory(ctx.module, ctx.params, one, high_res, obj_score, False, training=True)


def clip_losses(
    module: SAM2Base,
    params,
    images: jax.Array,
    masks: jax.Array,
    plan: PromptPlan,
    key: jax.Array,
    config: ml_collections.ConfigDict,
    num_objects: float | jax.Array | None = None,
    deterministic: bool = True,
    obj_valid: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """The official ``SAM2Train.forward`` + ``MultiStepMultiMasksAndIous`` on one clip.

    Args:
        module: a ``training_module`` (training-mode memory rule).
        params: model params.
        images: (T, S, S, 3) normalised frames.
        masks: (T, O, S, S) bool ground truth at the model resolution.
        plan: the clip's ``PromptPlan`` (jnp or np arrays).
        key: PRNG key (clicks, box noise, dropout).
        config: full config (``.train.loss``, ``.train.prompts``).
        num_objects: loss normaliser (real objects in the global batch; default: the real objects of this clip).
        deterministic: no drop path / dropout.
        obj_valid: (O,) bool, real objects (padded ones add no loss); default all.

    Returns:
        (losses dict with ``core_loss``, final low-res mask logits per frame (T, O, 4h, 4w)).
    """
    T, O = masks.shape[:2]
    ctx = _make_ctx(module, params, config, O, num_objects, obj_valid, deterministic)
    plan = jax.tree.map(jnp.asarray, plan)
    gt = masks.astype(bool)
    k_img, k_init, k_track = jax.random.split(key, 3)
    image_params = params
    if config.train.freeze_image_encoder:
        # Not updated by the optimiser: no gradient, so XLA drops the encoder's backward pass (the mask decoder's
        # high-res projections, also applied in forward_image, keep theirs).
        image_params = {**params, "image_encoder": jax.lax.stop_gradient(params["image_encoder"])}
    remat = _remat_policy(config)
    feats = _encode_frames(module, image_params, images, k_img, deterministic, remat)

    I, E = plan.init_frames.shape[0], plan.extra_correct_frames.shape[0]
    num_cond = I + (E if config.train.prompts.add_all_frames_to_correct_as_cond else 0)
    c, h = module.config, feats.vision_feat.shape[1]
    lo = 4 * h
    state = empty_state(
        O, num_cond, c.num_maskmem, c.max_obj_ptrs_in_encoder, h * h, module.mem_dim, module.hidden_dim, (lo, lo), T
    )
    state = state.replace(cond_mem=state.cond_mem.astype(jnp.float32), recent_mem=state.recent_mem.astype(jnp.float32))
    preds = jnp.zeros((T, O, lo, lo), jnp.float32)

    init_body = functools.partial(_init_body, ctx, feats, gt)
    if remat in ("frames", "full"):
        init_body = jax.checkpoint(init_body)
    xs = (jnp.arange(I), plan.init_frames, plan.init_valid, plan.prompt_type, jax.random.split(k_init, I))
    (state, preds, losses), _ = jax.lax.scan(init_body, (state, preds, _zero_losses()), (*xs, plan.sample_from_gt[:I]))
    n_cond = jnp.sum(plan.init_valid.astype(jnp.int32))

    body = functools.partial(_track_body, ctx, feats, gt, plan, config.train.prompts.add_all_frames_to_correct_as_cond)
    if remat in ("frames", "full"):
        # Each tracked frame's step (memory attention, heads, corrections, memory encoder) is recomputed in the
        # backward pass: the scan keeps only its carry per frame, not the attention activations.
        body = jax.checkpoint(body)
    keys = jax.random.split(k_track, T - 1)
    (_, _, preds), per_frame = jax.lax.scan(body, (state, n_cond, preds), (plan.track_frames, plan.track_valid, keys))
    losses = _add(losses, {k: v.sum() for k, v in per_frame.items()})
    losses[loss_fns.CORE_LOSS_KEY] = loss_fns.reduce_loss(losses, ctx.weights)
    return losses, preds


REMAT_POLICIES = ("none", "frames", "encoder", "full")


def _encode_frames(module, params, images, key, deterministic: bool, remat: str) -> ImageFeatures:
    """The image encoder on every frame: images (T, S, S, 3) -> ``ImageFeatures`` (T, ...).

    Frame by frame with frame ``t``'s dropout key ``split(key, T)[t]``, so every policy draws the same random
    numbers: ``vmap`` (one batched program) without encoder remat; with it (``"encoder"``, ``"full"``) a ``lax.map``
    whose per-frame step is checkpointed, so the backward pass recomputes and holds one frame's encoder activations
    at a time instead of all T frames'."""

    def one(image, k):  # (S, S, 3) -> ImageFeatures (1, ...)
        rngs = None if deterministic else {"dropout": k}
        return calls.frame_features(module, params, image[None], deterministic, rngs)

    keys = jax.random.split(key, images.shape[0])
    if remat in ("encoder", "full"):
        feats = jax.lax.map(lambda xs: jax.checkpoint(one)(*xs), (images, keys))
    else:
        feats = jax.vmap(one)(images, keys)
    return jax.tree.map(lambda x: x[:, 0], feats)  # (T, 1, ...) -> (T, ...)


def _remat_policy(config) -> str:
    """``config.train.remat``: what the backward pass recomputes instead of storing. ``"none"``; ``"frames"``: each
    frame's tracking step (memory attention, heads, corrections, memory encoder); ``"encoder"``: the image encoder, one
    frame at a time (``_encode_frames``); ``"full"``: both (the default of ``configs/train_common.py``: tiny, 256 px,
    3 frames: 533 MB of temporaries against 1,302 with ``"frames"``, at 1.12x its step time on a CPU). Numbers do
    not change, only peak memory and step time."""
    remat = config.train.get("remat", "none")
    if remat not in REMAT_POLICIES:
        raise ValueError(f"train.remat must be one of {REMAT_POLICIES}, got {remat!r}")
    return remat


def _make_ctx(module, params, config, O: int, num_objects, obj_valid, deterministic: bool) -> _Ctx:
    lc = dict(config.train.loss)
    weights = loss_fns.LossWeights(*(lc.pop(k) for k in loss_fns.LossWeights._fields))
    if num_objects is None:
        num_objects = O if obj_valid is None else jnp.sum(obj_valid)
    return _Ctx(
        module=module,
        params=params,
        num_objects=jnp.asarray(num_objects, jnp.float32),
        obj_valid=obj_valid,
        loss_kw=lc,
        weights=weights,
        num_correction=config.train.prompts.num_correction_pt_per_frame,
        deterministic=deterministic,
        point_sampling=config.train.prompts.point_sampling,
        box_noise=config.train.prompts.box_noise,
    )


def _init_body(ctx: _Ctx, feats: ImageFeatures, gt: jax.Array, carry, xs):
    """Scan body over the initial conditioning frames: they have no memory, so they only write (a scan compiles the
    prompt branches once)."""
    state, preds, losses = carry
    j, t, valid, ptype, key, from_gt = xs
    lj, (low, high, ptr, score) = _init_frame(ctx, state, feats, gt, t, ptype, key, from_gt)
    maskmem = _encode_memory(ctx, calls.frame_at(feats, t), high, score)
    state = rings.write_cond(state, j, t, maskmem, ptr, low, score, valid)
    preds = jnp.where(valid, preds.at[t].set(low[:, 0]), preds)
    return (state, preds, _add(losses, _masked(valid, lj))), None


def _track_body(ctx: _Ctx, feats: ImageFeatures, gt: jax.Array, plan: PromptPlan, add_all: bool, carry, xs):
    """Scan body over the other frames in temporal order: ``engine.track_frame`` (memory attention with dropout,
    heads), corrective clicks on the frames to correct, then the memory write (as a conditioning frame when a
    corrected frame is added as one)."""
    state, n_cond, preds = carry
    t, valid, key = xs
    I, E = plan.init_frames.shape[0], plan.extra_correct_frames.shape[0]
    k_drop, k_corr = jax.random.split(key)
    one = calls.frame_at(feats, t)
    hr = calls.broadcast_high_res(one, state.num_objects)
    gt_t = jax.lax.dynamic_index_in_dim(gt, t, 0, keepdims=False)
    rngs = None if ctx.deterministic else {"dropout": k_drop}
    cfg = StepConfig(deterministic=ctx.deterministic)
    pix, outs = engine.track_frame(ctx.module, ctx.params, state, one, t, False, cfg, rngs)
    step0 = _step_loss(ctx, outs, gt_t)
    is_extra = (plan.extra_correct_frames == t) & (plan.extra_correct_frames >= 0)
    to_correct = is_extra.any() if E else jnp.asarray(False)
    more, finals = _zero_losses(), _finals(outs)
    if E:
        from_gt = plan.sample_from_gt[I + jnp.argmax(is_extra)]
        corr_keys = jax.random.split(k_corr, max(ctx.num_correction, 1))
        more, finals = jax.lax.cond(
            to_correct,
            lambda _: (lambda r: (r[0], _finals(r[1])))(
                _correct(ctx, pix, hr, gt_t, outs, None, None, False, corr_keys, from_gt)
            ),
            lambda _: (_zero_losses(), _finals(outs)),
            None,
        )
    low, high, ptr, score = finals
    frame_losses = jax.tree.map(lambda a, b: jnp.where(valid, a + b, 0.0), step0, more)
    maskmem = _encode_memory(ctx, one, high, score)
    as_cond = to_correct & add_all & valid
    K = state.num_cond_slots
    cond_state = rings.write_cond(state, jnp.minimum(n_cond, K - 1), t, maskmem, ptr, low, score, True)
    cond_state = rings.write_recent(cond_state, t, maskmem, ptr, False)
    new = rings.select_state(as_cond, cond_state, rings.write_recent(state, t, maskmem, ptr, True))
    state = rings.select_state(valid, new, state)
    preds = jnp.where(valid, preds.at[t].set(low[:, 0]), preds)
    return (state, n_cond + as_cond.astype(jnp.int32), preds), frame_losses


def normalize_images(frames: jax.Array) -> jax.Array:
    """uint8 (..., S, S, 3) frames -> float32 ImageNet-normalised (the official ``NormalizeAPI``)."""
    x = frames.astype(jnp.float32) / 255.0
    return (x - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)


@functools.partial(jax.jit, static_argnames=("module", "config", "deterministic"))
def batch_losses(
    module: SAM2Base,
    params,
    frames: jax.Array,
    masks: jax.Array,
    plan: PromptPlan,
    key: jax.Array,
    config: ml_collections.FrozenConfigDict,
    deterministic: bool = True,
    obj_valid: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Losses of a batch of clips: frames (B, T, S, S, 3) uint8, masks (B, T, O, S, S); plan with a leading B;
    ``obj_valid`` (B, O) bool marks the real objects (default all).

    Returns the losses summed over clips (each normalised by the real objects of the batch, at least 1, as the
    official normaliser counts the objects of the whole batch) and the final low-res predictions (B, T, O, 4h, 4w).
    """
    B, _, O = masks.shape[:3]
    if obj_valid is None:
        obj_valid = jnp.ones((B, O), bool)
    n = jnp.maximum(jnp.sum(obj_valid), 1).astype(jnp.float32)
    keys = jax.random.split(key, B)

    def fn(f, m, p, k, v):
        return clip_losses(module, params, normalize_images(f), m, p, k, config, n, deterministic, v)

    losses, preds = jax.vmap(fn)(frames, masks, plan, keys, obj_valid)
    return {k: v.sum() for k, v in losses.items()}, preds
