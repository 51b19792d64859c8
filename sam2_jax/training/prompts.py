"""Training-time prompt samplers: port of ``get_next_point``, ``sample_box_points``,
``sample_random_points_from_errors`` and ``sample_one_point_from_error_center`` of ``sam2/modeling/sam2_utils.py``.

Deviations from the official code:
- Randomness comes from explicit ``jax.random`` keys (the official code draws from torch's global generator), so the
  uniform and noised-box samplers are reproducible per key but not equal in value to torch's draws.
- ``sample_one_point_from_error_center`` computes the exact Euclidean distance transform in JAX (two separable
  passes: distance to the nearest zero along each column, then a minimum over all columns of each row), where the
  official code calls OpenCV's ``distanceTransform(DIST_L2, 0)`` per mask on the host. Only the official
  ``padding=True`` (the image border counts as background) is provided. Distances are compared squared, as
  integers, so ties resolve as the official float comparison of exact distances does (first index wins).
- Every function is jittable and takes the batch ``(B, 1, H, W)`` as the official ones do.
"""

import jax
import jax.numpy as jnp

from sam2_jax.utils.misc import mask_to_box

__all__ = [
    "get_next_point",
    "sample_box_points",
    "sample_one_point_from_error_center",
    "sample_random_points_from_errors",
    "squared_distance_transform",
]


def _check_masks(gt_masks: jax.Array, pred_masks: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    gt_masks = jnp.asarray(gt_masks)
    if gt_masks.ndim != 4 or gt_masks.shape[1] != 1:
        raise ValueError(f"gt_masks should be (B, 1, H, W), got shape {gt_masks.shape}")
    gt_masks = gt_masks.astype(bool)
    if pred_masks is None:
        return gt_masks, jnp.zeros_like(gt_masks)
    pred_masks = jnp.asarray(pred_masks)
    if pred_masks.shape != gt_masks.shape:
        raise ValueError(f"pred_masks shape {pred_masks.shape} differs from gt_masks shape {gt_masks.shape}")
    return gt_masks, pred_masks.astype(bool)


def sample_box_points(
    key: jax.Array | None,
    masks: jax.Array,
    noise: float = 0.1,
    noise_bound: int = 20,
    top_left_label: int = 2,
    bottom_right_label: int = 3,
) -> tuple[jax.Array, jax.Array]:
    """A box prompt from each mask: its bounding box corners, each moved by uniform noise.

    Args:
        key: PRNG key for the noise (unused, may be None, when ``noise`` is 0).
        masks: (B, 1, H, W) boolean masks.
        noise: maximum shift as a fraction of the box width / height.
        noise_bound: maximum shift in pixels.
        top_left_label, bottom_right_label: the prompt encoder's corner labels.

    Returns:
        points (B, 2, 2) float32 ``(x, y)`` of the two corners and labels (B, 2) int32.
    """
    masks = jnp.asarray(masks).astype(bool)
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks should be (B, 1, H, W), got shape {masks.shape}")
    B, _, H, W = masks.shape
    box = mask_to_box(masks).astype(jnp.float32)  # (B, 1, 4)
    if noise > 0.0:
        if key is None:
            raise ValueError("sample_box_points needs a PRNG key when noise > 0")
        max_dx = jnp.minimum((box[..., 2] - box[..., 0]) * noise, noise_bound)
        max_dy = jnp.minimum((box[..., 3] - box[..., 1]) * noise, noise_bound)
        u = 2 * jax.random.uniform(key, (B, 1, 4)) - 1
        box = box + u * jnp.stack([max_dx, max_dy, max_dx, max_dy], axis=-1)
        box = jnp.clip(box, 0.0, jnp.array([W - 1, H - 1, W - 1, H - 1], jnp.float32))
    labels = jnp.broadcast_to(jnp.array([top_left_label, bottom_right_label], jnp.int32), (B, 2))
    return box.reshape(B, 2, 2), labels  # (B, 1, 4) -> (B, 2, 2)


def sample_random_points_from_errors(
    key: jax.Array, gt_masks: jax.Array, pred_masks: jax.Array | None, num_pt: int = 1
) -> tuple[jax.Array, jax.Array]:
    """``num_pt`` independent clicks per mask, uniform over the error region.

    A click falls uniformly in the union of false negatives (positive label) and false positives (negative label);
    where the prediction is exactly right, it is a negative click in the background.

    Args:
        key: PRNG key.
        gt_masks: (B, 1, H, W) boolean ground truth.
        pred_masks: (B, 1, H, W) boolean prediction, or None for an empty one.
        num_pt: clicks per mask.

    Returns:
        points (B, num_pt, 2) float32 ``(x, y)`` and labels (B, num_pt) int32 (1 positive, 0 negative).
    """
    gt, pred = _check_masks(gt_masks, pred_masks)
    B, _, H, W = gt.shape
    fp = ~gt & pred
    fn = gt & ~pred
    all_correct = jnp.all((gt == pred).reshape(B, -1), axis=1)[:, None, None, None]
    # Channel 0 negative (FP, or background when all is correct), channel 1 positive (FN); the largest noise wins.
    noise = jax.random.uniform(key, (B, num_pt, H, W, 2))
    region = jnp.stack([fp | (all_correct & ~gt), fn], axis=-1)  # (B, 1, H, W, 2)
    noise = noise * region
    idx = jnp.argmax(noise.reshape(B, num_pt, -1), axis=2)
    labels = (idx % 2).astype(jnp.int32)
    idx = idx // 2
    points = jnp.stack([idx % W, idx // W], axis=2).astype(jnp.float32)
    return points, labels


def squared_distance_transform(mask: jax.Array) -> jax.Array:
    """Exact squared Euclidean distance from each pixel of ``mask`` to the nearest background pixel, with the
    image border counted as background (``cv2.distanceTransform(pad(mask, 1), DIST_L2, 0)[1:-1, 1:-1] ** 2``).

    Args:
        mask: (..., H, W) boolean.

    Returns:
        (..., H, W) int32 squared distances (0 on the background).
    """
    mask = jnp.asarray(mask).astype(bool)
    H, W = mask.shape[-2:]
    rows = jnp.arange(H, dtype=jnp.int32)[:, None]
    big = jnp.int32(4 * (H + W + 2))
    # Pass 1, along columns: distance to the nearest zero above or below (the padding rows -1 and H are zeros).
    last_zero = jax.lax.cummax(jnp.where(mask, -1, rows), axis=mask.ndim - 2)
    next_zero = jax.lax.cummin(jnp.where(mask, H, rows), axis=mask.ndim - 2, reverse=True)
    g = jnp.minimum(rows - last_zero, next_zero - rows)  # (..., H, W)
    g = jnp.minimum(g, big)
    # Pass 2, along rows: min over columns k of (j - k)^2 + g_k^2, and the padding columns -1 and W (g = 0).
    cols = jnp.arange(W, dtype=jnp.int32)
    dj2 = (cols[:, None] - cols[None, :]) ** 2  # (W_j, W_k)
    g2 = g * g

    def row_min(g2_row: jax.Array) -> jax.Array:  # (W,) -> (W,)
        return jnp.min(dj2 + g2_row[None, :], axis=1)

    flat = g2.reshape(-1, W)  # (..., H, W) -> (N*H, W)
    d2 = jax.lax.map(row_min, flat).reshape(g2.shape)
    border = jnp.minimum(cols + 1, W - cols) ** 2
    return jnp.where(mask, jnp.minimum(d2, border), 0)


def sample_one_point_from_error_center(
    gt_masks: jax.Array, pred_masks: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """One click per mask at the centre of the larger error region (RITM clicker): the error pixel farthest from
    the region's boundary, positive if it lies in the false negatives and strictly farther than any false positive.

    Args:
        gt_masks: (B, 1, H, W) boolean ground truth.
        pred_masks: (B, 1, H, W) boolean prediction, or None for an empty one.

    Returns:
        points (B, 1, 2) float32 ``(x, y)`` and labels (B, 1) int32.
    """
    gt, pred = _check_masks(gt_masks, pred_masks)
    B, _, H, W = gt.shape
    fn_d = squared_distance_transform((gt & ~pred)[:, 0]).reshape(B, -1)
    fp_d = squared_distance_transform((~gt & pred)[:, 0]).reshape(B, -1)
    fn_arg = jnp.argmax(fn_d, axis=1)
    fp_arg = jnp.argmax(fp_d, axis=1)
    positive = jnp.take_along_axis(fn_d, fn_arg[:, None], 1)[:, 0] > jnp.take_along_axis(fp_d, fp_arg[:, None], 1)[:, 0]
    idx = jnp.where(positive, fn_arg, fp_arg)
    points = jnp.stack([idx % W, idx // W], axis=-1).astype(jnp.float32)[:, None]
    return points, positive.astype(jnp.int32)[:, None]


def get_next_point(
    key: jax.Array | None, gt_masks: jax.Array, pred_masks: jax.Array | None, method: str
) -> tuple[jax.Array, jax.Array]:
    """One corrective click per mask, ``"uniform"`` over the error (training) or at its ``"center"`` (evaluation).

    Args:
        key: PRNG key (needed by ``"uniform"``).
        gt_masks: (B, 1, H, W) boolean ground truth.
        pred_masks: (B, 1, H, W) boolean prediction, or None.
        method: ``"uniform"`` or ``"center"``.

    Returns:
        points (B, 1, 2) float32 and labels (B, 1) int32.
    """
    if method == "uniform":
        if key is None:
            raise ValueError("get_next_point(method='uniform') needs a PRNG key")
        return sample_random_points_from_errors(key, gt_masks, pred_masks)
    if method == "center":
        return sample_one_point_from_error_center(gt_masks, pred_masks)
    raise ValueError(f"unknown sampling method {method!r}, expected 'uniform' or 'center'")
