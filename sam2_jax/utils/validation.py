"""One validation layer for prompts, shared by ``SAM2ImagePredictor``, ``SAM2VideoPredictor`` and the ``sam2-jax``
command line.

The official predictors check little: a NaN click or box, a label of 7, a box with ``x1 < x0`` or a mask input
full of NaN go through the model and come back as NaN scores, empty masks or an object reported absent on every
later frame, with no error. Here every such input raises a ``ValueError`` naming the value and what was expected,
before anything is stored, so a rejected call leaves a predictor's state as it was.

What is accepted (the README's table lists the same):
- coordinates: finite numbers (NaN / inf rejected), shape ``(N, 2)`` (or a leading batch axis where the API has one);
- labels: integers, 1 (positive click), 0 (negative click), and the official encoder's -1 (padding point) and 2 / 3
  (a box's top-left / bottom-right corner, which must come in pairs, as the official encodes boxes);
- boxes: finite ``[x0, y0, x1, y1]`` with ``x0 < x1`` and ``y0 < y1`` (zero area, or corners swapped, rejected);
- masks: finite values (a NaN cast to bool would silently become foreground);
- object ids: Python or numpy integers (not bool, not strings, not floats);
- frame indices: integers (checked against the video's length by the video predictor).
"""

from typing import Any

import numpy as np

POINT_LABELS = (-1, 0, 1, 2, 3)  # padding, negative, positive, box top-left, box bottom-right


def _finite_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float32 array; a ValueError naming it when it is not numeric or not finite."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"{name} must be finite numbers, got {arr[tuple(bad)]} at index {bad} in {value!r}")
    return arr


def check_points(points: Any, name: str = "point_coords") -> np.ndarray:
    """Click coordinates: finite, last axis 2.

    Args:
      points: array-like ``(..., 2)`` of (x, y).
      name: how the caller's API names it, for the message.
    Returns:
      float32 array of the same shape.
    Raises:
      ValueError: not numeric, not finite, or the last axis is not 2.
    """
    pts = _finite_array(points, name)
    if pts.ndim < 1 or pts.shape[-1] != 2:
        raise ValueError(f"{name} must be (N, 2) points (x, y), got shape {pts.shape}")
    return pts


def check_labels(labels: Any, name: str = "point_labels") -> np.ndarray:
    """Click labels: integers in ``POINT_LABELS``, with as many 2s (box top-left) as 3s (box bottom-right) in each
    prompt (the last axis).

    Args:
      labels: array-like of labels.
      name: how the caller's API names it.
    Returns:
      int32 array of the same shape.
    Raises:
      ValueError: a non-integer, NaN, an unknown label, or an unpaired box-corner label.
    """
    lab = np.asarray(labels)
    if lab.dtype == bool or not (np.issubdtype(lab.dtype, np.integer) or np.issubdtype(lab.dtype, np.floating)):
        raise ValueError(f"{name} must be integers (1 positive, 0 negative), got {labels!r}")
    if np.issubdtype(lab.dtype, np.floating):
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise ValueError(f"{name} must be integers (1 positive, 0 negative), got {labels!r}")
    lab = lab.astype(np.int64)
    bad = sorted(set(np.unique(lab).tolist()) - set(POINT_LABELS))
    if bad:
        raise ValueError(
            f"{name} must be 1 (positive) or 0 (negative) (or -1 padding, 2/3 box corners), got {bad} in {labels!r}"
        )
    if lab.ndim and np.any((lab == 2).sum(-1) != (lab == 3).sum(-1)):
        raise ValueError(
            f"{name}: box-corner labels 2 and 3 must come in pairs (top-left, bottom-right), got {labels!r}"
        )
    return lab.astype(np.int32)


def check_boxes(box: Any, name: str = "box") -> np.ndarray:
    """Boxes ``[x0, y0, x1, y1]``: finite, ``x0 < x1`` and ``y0 < y1``.

    Args:
      box: array-like ``(4,)`` or ``(..., 4)``.
      name: how the caller's API names it.
    Returns:
      float32 array of the same shape.
    Raises:
      ValueError: not numeric, not finite, the last axis is not 4, or a box is empty or has swapped corners.
    """
    b = _finite_array(box, name)
    if b.ndim < 1 or b.shape[-1] != 4:
        raise ValueError(f"{name} must be [x0, y0, x1, y1] (XYXY), got shape {b.shape}")
    flat = b.reshape(-1, 4)
    bad = np.flatnonzero((flat[:, 2] <= flat[:, 0]) | (flat[:, 3] <= flat[:, 1]))
    if bad.size:
        raise ValueError(
            f"{name} must have x0 < x1 and y0 < y1 (XYXY, non-empty), got {flat[bad[0]].tolist()}"
            + (f" (box {int(bad[0])})" if flat.shape[0] > 1 else "")
        )
    return b


def check_inside(points: Any, box: Any, hw: tuple[int, int], what: str) -> None:
    """Clicks ``[(x, y), ...]`` and a box ``[x0, y0, x1, y1]`` (either may be None) inside an ``(H, W)`` picture,
    edges included (the predictors take any coordinates; the command line and the server refuse a prompt off the
    picture, which is a mistake there).

    Raises:
      ValueError: naming the first point or the box outside ``what``.
    """
    h, w = hw
    for x, y in [] if points is None else points:
        if not (0 <= x <= w and 0 <= y <= h):
            raise ValueError(f"point ({x:g}, {y:g}) lies outside the {w}x{h} {what}")
    if box is not None and not (0 <= box[0] and 0 <= box[1] and box[2] <= w and box[3] <= h):
        raise ValueError(f"box {[float(v) for v in box]} lies outside the {w}x{h} {what}")


def check_mask(mask: Any, name: str = "mask_input") -> np.ndarray:
    """A mask or mask logits: numeric and finite.

    Args:
      mask: array-like (bool, integer or float).
      name: how the caller's API names it.
    Returns:
      float32 array of the same shape.
    Raises:
      ValueError: not numeric or not finite (a NaN would become foreground once cast to bool).
    """
    return _finite_array(mask, name)


def check_obj_id(obj_id: Any) -> int:
    """An object id: a Python or numpy integer (the official ids are ints; a float or string id fails later there).

    Returns:
      The id as a Python int.
    Raises:
      ValueError: a bool, float, string or anything else.
    """
    if isinstance(obj_id, bool | np.bool_) or not isinstance(obj_id, int | np.integer):
        raise ValueError(f"obj_id must be an int, got {obj_id!r} ({type(obj_id).__name__})")
    return int(obj_id)


def check_frame_idx(frame_idx: Any, num_frames: int | None = None) -> int:
    """A frame index: an integer in ``[0, num_frames)`` (any non-negative one when ``num_frames`` is None).

    Raises:
      ValueError: not an integer (bools and floats included), negative, or past the end.
    """
    if isinstance(frame_idx, bool | np.bool_) or not isinstance(frame_idx, int | np.integer):
        raise ValueError(f"frame_idx must be an int, got {frame_idx!r}")
    if frame_idx < 0 or (num_frames is not None and frame_idx >= num_frames):
        raise ValueError(f"frame_idx {frame_idx} is outside the video (num_frames={num_frames})")
    return int(frame_idx)
