"""Port of ``training/loss_fns.py`` (sam2 1.1.0): focal + dice on masks, L1/MSE on the IoU prediction, sigmoid
cross-entropy on the object score, over several prediction steps per frame (``MultiStepMultiMasksAndIous``).

Deviations from the official code:
- Static shapes: the prediction steps of a frame are stacked, ``(S, N, M, H, W)``, with ``step_valid (S,)`` marking
  real steps and ``mask_valid (S, M)`` marking real mask channels. A step with one mask (a corrective click) is a
  step whose other channels are invalid; the official code passes a list of steps whose ``M`` differs (3 then 1).
  Invalid channels take no part in the lowest-loss choice nor in the IoU average, invalid steps add nothing.
- ``num_objects`` is a number given by the caller (the official code all-reduces ``targets.shape[1]`` over the
  process group and divides by the world size; under ``jit`` with a global batch that is simply the number of
  objects per clip).
- The reduction returns a dict of the four weighted terms plus ``core_loss`` as jax scalars.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

CORE_LOSS_KEY = "core_loss"


class LossWeights(NamedTuple):
    """Weights of the four terms (official MOSE/SA-V config: 20 : 1 : 1 : 1)."""

    loss_mask: float = 20.0
    loss_dice: float = 1.0
    loss_iou: float = 1.0
    loss_class: float = 1.0


DEFAULT_WEIGHTS = LossWeights()


def _bce_with_logits(x: jax.Array, t: jax.Array) -> jax.Array:
    # The stable form torch's binary_cross_entropy_with_logits uses.
    return jnp.maximum(x, 0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x)))


def sigmoid_focal_loss(inputs: jax.Array, targets: jax.Array, alpha: float = 0.25, gamma: float = 2.0) -> jax.Array:
    """Elementwise RetinaNet focal loss (no reduction).

    Args:
        inputs: logits of any shape.
        targets: same shape, 0/1.
        alpha: weight of positives (negative: no weighting).
        gamma: focusing exponent.

    Returns:
        The loss per element, same shape as ``inputs``.
    """
    prob = jax.nn.sigmoid(inputs)
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = _bce_with_logits(inputs, targets) * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def multimask_focal(
    src_masks: jax.Array, targets: jax.Array, num_objects: float, alpha: float = 0.25, gamma: float = 2.0
) -> jax.Array:
    """Focal loss per object and mask, averaged over pixels: (N, M, H, W) -> (N, M), divided by ``num_objects``."""
    loss = sigmoid_focal_loss(src_masks, targets, alpha, gamma)
    return loss.reshape(loss.shape[:2] + (-1,)).mean(-1) / num_objects


def multimask_dice(src_masks: jax.Array, targets: jax.Array, num_objects: float) -> jax.Array:
    """Dice loss (with +1 smoothing) per object and mask: (N, M, H, W) -> (N, M), divided by ``num_objects``."""
    p = jax.nn.sigmoid(src_masks).reshape(src_masks.shape[:2] + (-1,))
    t = targets.reshape(targets.shape[:2] + (-1,))
    numerator = 2 * (p * t).sum(-1)
    denominator = p.sum(-1) + t.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)) / num_objects


def multimask_iou(
    src_masks: jax.Array, targets: jax.Array, pred_ious: jax.Array, num_objects: float, use_l1_loss: bool = True
) -> jax.Array:
    """Error of the predicted IoU against the IoU of the thresholded mask: (N, M, H, W), (N, M) -> (N, M).

    Args:
        src_masks: mask logits (N, M, H, W).
        targets: 0/1 targets (N, M, H, W).
        pred_ious: the decoder's IoU predictions (N, M) (already sigmoid when ``iou_prediction_use_sigmoid``).
        num_objects: the normaliser.
        use_l1_loss: L1 if True, else squared error.

    Returns:
        The per-mask loss (N, M), divided by ``num_objects``; no gradient reaches the masks.
    """
    pred = (src_masks > 0).reshape(src_masks.shape[:2] + (-1,))
    gt = (targets > 0).reshape(targets.shape[:2] + (-1,))
    area_i = jnp.sum(pred & gt, -1).astype(jnp.float32)
    area_u = jnp.sum(pred | gt, -1).astype(jnp.float32)
    actual = area_i / jnp.maximum(area_u, 1.0)
    err = jnp.abs(pred_ious - actual) if use_l1_loss else (pred_ious - actual) ** 2
    return err / num_objects


def step_losses(
    src_masks: jax.Array,
    target_masks: jax.Array,
    ious: jax.Array,
    object_score_logits: jax.Array,
    num_objects: float,
    mask_valid: jax.Array | None = None,
    weights: LossWeights = DEFAULT_WEIGHTS,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    supervise_all_iou: bool = True,
    iou_use_l1_loss: bool = True,
    pred_obj_scores: bool = True,
    focal_alpha_obj_score: float = -1.0,
    focal_gamma_obj_score: float = 0.0,
    obj_valid: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The four unweighted losses of one prediction step (official ``_update_losses``).

    Args:
        src_masks: mask logits (N, M, H, W) at the ground truth's resolution.
        target_masks: ground truth (N, H, W), 0/1.
        ious: predicted IoUs (N, M).
        object_score_logits: (N, 1).
        num_objects: the normaliser (objects per clip).
        mask_valid: (M,) bool, which channels are real (default: all).
        weights: used only to pick the lowest-loss mask (focal and dice weights).
        focal_alpha, focal_gamma: focal loss on masks.
        supervise_all_iou: average the IoU loss over all (valid) masks, else only on the lowest-loss one.
        iou_use_l1_loss: L1 (official configs) or squared error.
        pred_obj_scores: supervise the object score; else every object counts as present and the class loss is 0.
        focal_alpha_obj_score, focal_gamma_obj_score: focal parameters of the object-score loss (-1, 0: plain BCE).
        obj_valid: (N,) bool, real objects (default all); a padded object adds nothing, as if it were absent
            (``num_objects`` must then count the real objects only).

    Returns:
        dict ``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class`` (scalars, summed over objects).
    """
    N, M = src_masks.shape[:2]
    targets = jnp.broadcast_to(target_masks[:, None].astype(src_masks.dtype), src_masks.shape)
    focal = multimask_focal(src_masks, targets, num_objects, focal_alpha, focal_gamma)
    dice = multimask_dice(src_masks, targets, num_objects)
    iou = multimask_iou(src_masks, targets, ious, num_objects, iou_use_l1_loss)
    if pred_obj_scores:
        target_obj = jnp.any(target_masks.reshape(N, -1) > 0, axis=-1)[:, None].astype(focal.dtype)
        cls = sigmoid_focal_loss(object_score_logits, target_obj, focal_alpha_obj_score, focal_gamma_obj_score)
        cls = cls.mean(1) if obj_valid is None else jnp.where(obj_valid, cls.mean(1), 0.0)
        loss_class = cls.sum() / num_objects
    else:
        target_obj = jnp.ones((N, 1), focal.dtype)
        loss_class = jnp.zeros((), focal.dtype)
    valid = jnp.ones((M,), bool) if mask_valid is None else mask_valid
    if M > 1:
        combo = focal * weights.loss_mask + dice * weights.loss_dice
        best = jnp.argmin(jnp.where(valid[None], combo, jnp.inf), axis=-1)[:, None]  # (N, 1)
        loss_mask = jnp.take_along_axis(focal, best, axis=1)
        loss_dice = jnp.take_along_axis(dice, best, axis=1)
        if supervise_all_iou:
            n_valid = jnp.maximum(valid.sum(), 1).astype(iou.dtype)
            loss_iou = (jnp.where(valid[None], iou, 0.0).sum(-1) / n_valid)[:, None]
        else:
            loss_iou = jnp.take_along_axis(iou, best, axis=1)
    else:
        loss_mask, loss_dice, loss_iou = focal, dice, iou
    # Mask, dice and IoU losses only where the object is present; the object score is always supervised.
    if obj_valid is not None:
        target_obj = jnp.where(obj_valid[:, None], target_obj, 0.0)
    return {
        "loss_mask": (loss_mask * target_obj).sum(),
        "loss_dice": (loss_dice * target_obj).sum(),
        "loss_iou": (loss_iou * target_obj).sum(),
        "loss_class": loss_class,
    }


def reduce_loss(losses: dict[str, jax.Array], weights: LossWeights = DEFAULT_WEIGHTS) -> jax.Array:
    """Weighted sum of the four terms (official ``reduce_loss``: zero weights are skipped)."""
    total = jnp.zeros((), jnp.float32)
    for key, w in weights._asdict().items():
        if w != 0:
            total = total + losses[key] * w
    return total


def multistep_multimask_loss(
    masks: jax.Array,
    ious: jax.Array,
    object_score_logits: jax.Array,
    targets: jax.Array,
    num_objects: float,
    step_valid: jax.Array | None = None,
    mask_valid: jax.Array | None = None,
    weights: LossWeights = DEFAULT_WEIGHTS,
    **kwargs,
) -> dict[str, jax.Array]:
    """``MultiStepMultiMasksAndIous`` over a clip: losses summed over frames and prediction steps.

    Args:
        masks: (T, S, N, M, H, W) mask logits of every frame's prediction steps (S = 1 + corrective steps).
        ious: (T, S, N, M) predicted IoUs.
        object_score_logits: (T, S, N, 1).
        targets: (T, N, H, W) ground truth, 0/1.
        num_objects: objects per clip (the official ``targets.shape[1]`` clamped to at least 1).
        step_valid: (T, S) bool, which steps exist (default all).
        mask_valid: (T, S, M) bool, which mask channels each step output (default all).
        weights: the four loss weights.
        **kwargs: further options of ``step_losses`` (focal parameters, ``supervise_all_iou``, ...).

    Returns:
        dict of the four summed terms and ``core_loss``, their weighted sum.
    """
    T, S, N, M = ious.shape
    num_objects = max(float(num_objects), 1.0)
    step_valid = jnp.ones((T, S), bool) if step_valid is None else step_valid
    mask_valid = jnp.ones((T, S, M), bool) if mask_valid is None else mask_valid

    def per_step(m, i, o, t, mv):
        return step_losses(m, t, i, o, num_objects, mv, weights, **kwargs)

    per_frame = jax.vmap(per_step, in_axes=(0, 0, 0, None, 0))  # over steps
    per_clip = jax.vmap(per_frame, in_axes=(0, 0, 0, 0, 0))  # over frames
    terms = per_clip(masks, ious, object_score_logits, targets, mask_valid)  # each (T, S)
    losses = {k: jnp.where(step_valid, v, 0.0).sum() for k, v in terms.items()}
    losses[CORE_LOSS_KEY] = reduce_loss(losses, weights)
    return losses
