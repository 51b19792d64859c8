"""The training forward of SAM 2: port of ``training/model/sam2.py`` (``SAM2Train``, sam2 1.1.0) on the tracker's
fixed-size state.

A clip of T frames and O objects is processed as the official ``forward_tracking`` does: image features of all
frames first; then the initial conditioning frames (1 to 2, the first frame and random others), each prompted with
its ground-truth mask, a click sampled from it or its noised box, and (for clicks and boxes) 7 corrective clicks
sampled from the error of the previous prediction; then the other frames in temporal order, each conditioned on
the memories written so far, some (``num_frames_to_correct``) also corrected with clicks and then stored as
conditioning frames. The loss (``loss_fns``) is accumulated over every prediction step of every frame.

How it maps onto the tracker (``sam2_jax/tracker``): the memory is a ``TrackerState`` (conditioning slots, rings of
recent memories and pointers, validity masks); memory selection is ``step.memory_inputs``, writes are
``step.write_recent`` plus a conditioning-slot write; the per-frame model calls are the ``SAM2Base`` methods the
tracker uses. The tracked frames run under ``lax.scan``.

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

from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.tracker.state import TrackerState, empty_state
from sam2_jax.tracker.engine import FrameFeatures, memory_inputs, write_recent
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
    return SAM2Base(config=ml_collections.FrozenConfigDict(cfg), dtype=module.dtype)


def _apply(module: SAM2Base, params, method: str, *args, rngs=None, **kwargs):
    return module.apply({"params": params}, *args, method=getattr(SAM2Base, method), rngs=rngs, **kwargs)


def _use_multimask(c, is_init_cond_frame: bool, num_pts: int) -> bool:
    """Official ``_use_multimask`` (static: the number of points of each step is known when tracing)."""
    return bool(
        c.multimask_output_in_sam
        and (is_init_cond_frame or c.multimask_output_for_tracking)
        and c.multimask_min_pt_num <= num_pts <= c.multimask_max_pt_num
    )


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


def _step_loss(ctx: _Ctx, outs, gt_t: jax.Array) -> dict[str, jax.Array]:
    # outs[1]: high-res multimasks (O, M, S, S); outs[2]: ious (O, M); outs[6]: object score logits (O, 1)
    return loss_fns.step_losses(
        outs[1], gt_t, outs[2], outs[6], ctx.num_objects, None, ctx.weights, obj_valid=ctx.obj_valid, **ctx.loss_kw
    )


def _heads(ctx: _Ctx, pix, hr, coords, labels, mask_in, multimask: bool):
    return _apply(ctx.module, ctx.params, "_forward_sam_heads", pix, coords, labels, mask_in, hr, multimask)


def _correct(ctx: _Ctx, pix, hr, gt_t, outs, coords, labels, is_init: bool, keys, from_gt):
    """Official ``_iter_correct_pt_sampling``: ``num_correction`` clicks, each from the error of the previous step,
    each step fed the previous low-res mask. Returns (summed losses of these steps, final outputs)."""
    c = ctx.module.config
    losses = _zero_losses()
    for i in range(ctx.num_correction):
        low_res, high_res = outs[3], outs[4]
        pred = jnp.where(from_gt[i], False, jax.lax.stop_gradient(high_res) > 0)
        pts, lbl = get_next_point(keys[i], gt_t[:, None], pred, ctx.point_sampling)
        coords = pts if coords is None else jnp.concatenate([coords, pts], axis=1)
        labels = lbl if labels is None else jnp.concatenate([labels, lbl], axis=1)
        multimask = _use_multimask(c, is_init, labels.shape[1])
        # (O, 1, 4h, 4w) -> (O, 4h, 4w, 1)
        outs = _heads(ctx, pix, hr, coords, labels, low_res.transpose(0, 2, 3, 1), multimask)
        losses = _add(losses, _step_loss(ctx, outs, gt_t))
    return losses, outs


def _finals(outs) -> tuple:
    return outs[3], outs[4], outs[5], outs[6]


def _frame_feats(feats: FrameFeatures, t: jax.Array, O: int):
    """Frame t's features broadcast to the O objects: pixel features (O, h, w, C) and high-res list."""
    take = lambda x: jax.lax.dynamic_index_in_dim(x, t, 0, keepdims=True)
    top = take(feats.vision_feat)
    one = FrameFeatures(top, take(feats.vision_pos), tuple(take(x) for x in feats.high_res))
    hr = [jnp.broadcast_to(x, (O, *x.shape[1:])) for x in one.high_res] or None
    return one, jnp.broadcast_to(top, (O, *top.shape[1:])), hr


def _init_frame(ctx: _Ctx, feats: FrameFeatures, gt: jax.Array, t, ptype, key, from_gt):
    """An initial conditioning frame (no memory) with its prompt; returns (losses, finals)."""
    c = ctx.module.config
    O = gt.shape[1]
    _, pix0, hr = _frame_feats(feats, t, O)
    gt_t = jax.lax.dynamic_index_in_dim(gt, t, 0, keepdims=False)  # (O, S, S)
    k_prompt, k_corr = jax.random.split(key)
    corr_keys = jax.random.split(k_corr, max(ctx.num_correction, 1))

    def mask_branch(_):
        outs = _apply(ctx.module, ctx.params, "_use_mask_as_output", pix0, hr, gt_t[..., None].astype(jnp.float32))
        return _step_loss(ctx, outs, gt_t), _finals(outs)

    def point_branch(box: bool):
        def run(_):
            pix = pix0 + _apply(ctx.module, ctx.params, "no_mem")
            if box:
                coords, labels = sample_box_points(k_prompt, gt_t[:, None], noise=ctx.box_noise)
            else:
                coords, labels = get_next_point(k_prompt, gt_t[:, None], None, ctx.point_sampling)
            outs = _heads(ctx, pix, hr, coords, labels, None, _use_multimask(c, True, labels.shape[1]))
            losses = _step_loss(ctx, outs, gt_t)
            more, outs = _correct(ctx, pix, hr, gt_t, outs, coords, labels, True, corr_keys, from_gt)
            return _add(losses, more), _finals(outs)

        return run

    return jax.lax.switch(ptype, [mask_branch, point_branch(False), point_branch(True)], None)


def _encode_memory(ctx: _Ctx, pix0, high_res, obj_score):
    mem, _ = _apply(ctx.module, ctx.params, "_encode_new_memory", pix0, high_res, obj_score, False, True)
    return mem.reshape(mem.shape[0], -1, mem.shape[-1])  # (O, h, w, m) -> (O, hw, m)


def _write_cond(state: TrackerState, k, t, maskmem, obj_ptr, low_res, obj_score, valid) -> TrackerState:
    """Store frame t as conditioning slot k (and drop any ring entry of t, as the official moves it)."""
    new = state.replace(
        cond_mem=state.cond_mem.at[:, k].set(maskmem.astype(state.cond_mem.dtype)),
        cond_ptr=state.cond_ptr.at[:, k].set(obj_ptr),
        cond_frame=state.cond_frame.at[:, k].set(t),
        cond_valid=state.cond_valid.at[:, k].set(True),
        cond_pred_masks=state.cond_pred_masks.at[:, k].set(low_res[:, 0]),
        cond_obj_score=state.cond_obj_score.at[:, k].set(obj_score[:, 0]),
    )
    return _select(valid, new, state)


def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def _condition_on_memory(ctx: _Ctx, state: TrackerState, one: FrameFeatures, t, key) -> jax.Array:
    """``step.condition_on_memory`` with memory-attention dropout when training (``deterministic=False``)."""
    O = state.num_objects
    _, h, w, C = one.vision_feat.shape
    memory, memory_pos, mask, num_ptr = memory_inputs(ctx.module, ctx.params, state, t, jnp.asarray(False))
    # (1, h, w, C) -> (O, h*w, C)
    curr = jnp.broadcast_to(one.vision_feat.reshape(1, h * w, C), (O, h * w, C))
    curr_pos = jnp.broadcast_to(one.vision_pos.reshape(1, h * w, C), (O, h * w, C))
    rngs = None if ctx.deterministic else {"dropout": key}
    out = _apply(
        ctx.module,
        ctx.params,
        "attend_memory",
        curr,
        curr_pos,
        memory,
        memory_pos,
        num_ptr,
        mask,
        ctx.deterministic,
        rngs=rngs,
    )
    return out.reshape(O, h, w, C)


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
    c = module.config
    T, O = masks.shape[:2]
    lc = dict(config.train.loss)
    weights = loss_fns.LossWeights(*(lc.pop(k) for k in loss_fns.LossWeights._fields))
    ctx = _Ctx(
        module=module,
        params=params,
        num_objects=jnp.asarray(
            num_objects if num_objects is not None else (O if obj_valid is None else jnp.sum(obj_valid)), jnp.float32
        ),
        obj_valid=obj_valid,
        loss_kw=lc,
        weights=weights,
        num_correction=config.train.prompts.num_correction_pt_per_frame,
        deterministic=deterministic,
        point_sampling=config.train.prompts.point_sampling,
        box_noise=config.train.prompts.box_noise,
    )
    plan = jax.tree.map(jnp.asarray, plan)
    gt = masks.astype(bool)
    k_img, k_init, k_track = jax.random.split(key, 3)
    rngs = None if deterministic else {"dropout": k_img}
    image_params = params
    if config.train.freeze_image_encoder:
        # Not updated by the optimiser: no gradient, so XLA drops the encoder's backward pass (the mask decoder's
        # high-res projections, also applied in forward_image, keep theirs).
        image_params = {**params, "image_encoder": jax.lax.stop_gradient(params["image_encoder"])}
    backbone_out = _apply(module, image_params, "forward_image", images, deterministic, rngs=rngs)
    fl, pl = _apply(module, params, "prepare_backbone_features", backbone_out)
    feats = FrameFeatures(fl[-1], pl[-1], tuple(fl[:-1]))  # each (T, ...)

    I = plan.init_frames.shape[0]
    E = plan.extra_correct_frames.shape[0]
    add_all = config.train.prompts.add_all_frames_to_correct_as_cond
    K = I + (E if add_all else 0)
    h = feats.vision_feat.shape[1]
    C, mem_dim = module.hidden_dim, module.mem_dim
    lo = 4 * h
    state = empty_state(O, K, c.num_maskmem, c.max_obj_ptrs_in_encoder, h * h, mem_dim, C, (lo, lo), T)
    state = state.replace(cond_mem=state.cond_mem.astype(jnp.float32), recent_mem=state.recent_mem.astype(jnp.float32))
    preds = jnp.zeros((T, O, lo, lo), jnp.float32)
    losses = _zero_losses()

    def init_body(carry, xs):
        # Initial conditioning frames have no memory, so they only write; a scan compiles the prompt branches once.
        state, preds, losses = carry
        j, t, valid, ptype, key, from_gt = xs
        lj, (low, high, ptr, score) = _init_frame(ctx, feats, gt, t, ptype, key, from_gt)
        _, pix0, _ = _frame_feats(feats, t, O)
        maskmem = _encode_memory(ctx, pix0, high, score)
        state = _write_cond(state, j, t, maskmem, ptr, low, score, valid)
        preds = jnp.where(valid, preds.at[t].set(low[:, 0]), preds)
        return (state, preds, _add(losses, _masked(valid, lj))), None

    xs = (
        jnp.arange(I),
        plan.init_frames,
        plan.init_valid,
        plan.prompt_type,
        jax.random.split(k_init, I),
        plan.sample_from_gt[:I],
    )
    (state, preds, losses), _ = jax.lax.scan(init_body, (state, preds, losses), xs)
    n_cond = jnp.sum(plan.init_valid.astype(jnp.int32))

    def body(carry, xs):
        state, n_cond, preds = carry
        t, valid, key = xs
        k_drop, k_corr = jax.random.split(key)
        one, pix0, hr = _frame_feats(feats, t, O)
        gt_t = jax.lax.dynamic_index_in_dim(gt, t, 0, keepdims=False)
        pix = _condition_on_memory(ctx, state, one, t, k_drop)
        outs = _heads(ctx, pix, hr, None, None, None, _use_multimask(c, False, 0))
        step0 = _step_loss(ctx, outs, gt_t)
        is_extra = (plan.extra_correct_frames == t) & (plan.extra_correct_frames >= 0)
        to_correct = is_extra.any() if E else jnp.asarray(False)
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
        else:
            more, finals = _zero_losses(), _finals(outs)
        low, high, ptr, score = finals
        frame_losses = jax.tree.map(lambda a, b: jnp.where(valid, a + b, 0.0), step0, more)
        maskmem = _encode_memory(ctx, pix0, high, score)
        as_cond = to_correct & add_all & valid
        cond_state = write_recent(
            _write_cond(state, jnp.minimum(n_cond, K - 1), t, maskmem, ptr, low, score, True), t, maskmem, ptr, False
        )
        new = _select(as_cond, cond_state, write_recent(state, t, maskmem, ptr, True))
        state = _select(valid, new, state)
        preds = jnp.where(valid, preds.at[t].set(low[:, 0]), preds)
        return (state, n_cond + as_cond.astype(jnp.int32), preds), frame_losses

    keys = jax.random.split(k_track, T - 1)
    (_, _, preds), per_frame = jax.lax.scan(body, (state, n_cond, preds), (plan.track_frames, plan.track_valid, keys))
    losses = _add(losses, {k: v.sum() for k, v in per_frame.items()})
    losses[loss_fns.CORE_LOSS_KEY] = loss_fns.reduce_loss(losses, weights)
    return losses, preds


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
