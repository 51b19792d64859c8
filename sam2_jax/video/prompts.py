"""A prompt on a video frame as the official predictor takes it, checked and brought to model-input coordinates.

The checks of ``add_new_points_or_box`` and ``add_new_mask`` in ``sam2/sam2_video_predictor.py``, apart from the
predictor's bookkeeping so that the facade reads as the official API. Bad input raises ``ValueError`` naming it
(``sam2_jax.utils.validation``, shared with the image predictor and the CLI) before any state changes.
"""

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.utils.interpolate import interpolate
from sam2_jax.utils.validation import check_boxes, check_labels, check_mask, check_points


def point_inputs(
    points, labels, box, clear_old_points: bool, normalize_coords: bool, video_hw: tuple[int, int], image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Checked clicks and box as the official point inputs.

    Args:
      points, labels: ``(N, 2)`` clicks (video pixels, or ``[0, 1]`` with ``normalize_coords=False``) and ``(N,)``
        labels, or None.
      box: ``[x0, y0, x1, y1]`` or None; it needs ``clear_old_points``.
      video_hw: the video's ``(H, W)``; ``image_size`` the model's input size.
    Returns:
      coords ``(1, N, 2)`` float32 in model-input pixels (a box first, as corners labelled 2 and 3) and labels
      ``(1, N)``.
    """
    if (points is not None) != (labels is not None):
        raise ValueError("points and labels must be provided together")
    if points is None and box is None:
        raise ValueError("at least one of points or box must be provided as input")
    pts = np.zeros((0, 2), np.float32) if points is None else check_points(points, "points")
    lab = np.zeros((0,), np.int32) if labels is None else check_labels(labels, "labels")
    if pts.ndim == 2:
        pts = pts[None]
    if lab.ndim == 1:
        lab = lab[None]
    if pts.ndim != 3 or pts.shape[0] != 1 or pts.shape[-1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {np.shape(points)}")
    if lab.shape != pts.shape[:2]:
        raise ValueError(f"labels shape {np.shape(labels)} does not match {pts.shape[1]} points")
    H, W = video_hw
    if box is not None:
        if not clear_old_points:
            raise ValueError(
                "cannot add box without clearing old points, since box prompt must be provided "
                "before any point prompt (please use clear_old_points=True instead)"
            )
        b = check_boxes(box, "box")
        if b.size != 4:
            raise ValueError(f"box must be [x0, y0, x1, y1], got shape {b.shape}")
        pts = np.concatenate([b.reshape(1, 2, 2), pts], axis=1)
        lab = np.concatenate([np.array([[2, 3]], np.int32), lab], axis=1)
    if normalize_coords:
        if pts.size and (
            pts[..., 0].min() < 0 or pts[..., 1].min() < 0 or pts[..., 0].max() > W or pts[..., 1].max() > H
        ):
            raise ValueError(f"points/box {pts.reshape(-1, 2).tolist()} lie outside the {W}x{H} video frame")
        pts = pts / np.array([W, H], np.float32)
    elif pts.size and (pts.min() < 0 or pts.max() > 1):
        raise ValueError(f"normalize_coords=False expects coordinates in [0, 1], got {pts.reshape(-1, 2).tolist()}")
    return (pts * image_size).astype(np.float32), lab


def mask_input(mask, video_hw: tuple[int, int], image_size: int) -> jax.Array:
    """A binary ``(H, W)`` mask at video or model-input size -> the model-input mask ``(1, S, S, 1)`` float32 of
    0 and 1 (resized as the official: bilinear with antialiasing, then ``>= 0.5``)."""
    m = np.asarray(mask)
    if m.dtype != bool:
        check_mask(m, "mask")
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if m.shape != tuple(video_hw) and m.shape != (image_size, image_size):
        raise ValueError(
            f"mask shape {m.shape} is neither the video's {tuple(video_hw)} nor the model's {(image_size, image_size)}"
        )
    m = jnp.asarray(m.astype(bool).astype(np.float32))[None, :, :, None]  # (1, H, W, 1)
    if m.shape[1:3] != (image_size, image_size):
        m = interpolate(m, (image_size, image_size), "bilinear", antialias=True)
        m = (m >= 0.5).astype(jnp.float32)
    return m
