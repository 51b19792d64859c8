"""Simulated user prompts of the SAM 2 evaluation protocols (paper §6.1, §6.2, App. F.1.2, F.1.3).

The paper places the first click at the object's centre and each later click at the centre of the error region
(F.1.2, F.1.3), citing SAM and RITM for the click simulation; its footnote defining "centre" was not in the text we
read, so we take the RITM/SAM definition below (the pixel farthest from the region's boundary).

- ``next_click``: the RITM click (``sam2/modeling/sam2_utils.py`` ``sample_one_point_from_error_center``, used by
  the official training and interactive evaluation): with the error regions false negative = gt & ~pred and false
  positive = pred & ~gt, each padded by one background pixel, take the Euclidean distance of every error pixel to
  the nearest non-error pixel (``cv2.distanceTransform(DIST_L2, precise)`` there, ``distance_transform_edt``
  here: the same exact distances). The click goes to the error pixel farthest inside its region, positive when the
  false-negative maximum is strictly larger, else negative (a tie is negative); among equal maxima the first pixel
  in raster order. The first click (empty prediction) is the pixel of the mask farthest from its boundary.
  Coordinates are the integer pixel (x = column, y = row), as the official code passes them.
- ``mask_to_box``: ``sam2_utils.mask_to_box``: ``[x_min, y_min, x_max, y_max]`` over the mask's pixels, with the
  max inclusive (the last column and row that hold the mask).
"""

import numpy as np
from scipy import ndimage


def _inner_distance(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def next_click(gt: np.ndarray, pred: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The next simulated click: at the centre of the larger error region (module docstring).

    Args:
      gt: ``(H, W)`` ground-truth mask.
      pred: ``(H, W)`` current prediction (None = empty: the first click, at the mask's centre).

    Returns:
      ``(point, label)``: ``point`` float32 ``[x, y]``, ``label`` 1 (positive) or 0 (negative).
    """
    gt = np.asarray(gt, bool)
    pred = np.zeros_like(gt) if pred is None else np.asarray(pred, bool)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"need two (H, W) masks of one shape, got {gt.shape} and {pred.shape}")
    fn = _inner_distance(gt & ~pred).ravel()
    fp = _inner_distance(pred & ~gt).ravel()
    i_fn, i_fp = int(np.argmax(fn)), int(np.argmax(fp))
    positive = fn[i_fn] > fp[i_fp]
    idx = i_fn if positive else i_fp
    w = gt.shape[1]
    return np.array([idx % w, idx // w], np.float32), int(positive)


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """``[x_min, y_min, x_max, y_max]`` float32 of a non-empty ``(H, W)`` mask (max inclusive).

    Args:
      mask: the mask.

    Returns:
      the box.
    """
    ys, xs = np.nonzero(np.asarray(mask, bool))
    if xs.size == 0:
        raise ValueError("cannot take the box of an empty mask")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
