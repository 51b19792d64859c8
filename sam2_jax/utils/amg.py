"""Port of ``sam2/utils/amg.py``: point grids, crop boxes, stability scores, mask boxes, RLE and NMS for the
automatic mask generator.

Deviations from the official file:
- Arrays are numpy (host side) or JAX (``calculate_stability_score``, ``batched_mask_to_box``: these run inside
  the generator's jitted batch call); there is no torch and no ``MaskData`` class: the generator keeps a plain dict
  of numpy arrays and lists and filters it with ``filter_data`` / ``cat_data``.
- RLE: masks are encoded, decoded and measured with ``pycocotools.mask`` (``encode``, ``decode``, ``area``): the
  generator keeps COCO (compressed) RLEs internally. ``mask_to_rle`` therefore returns COCO RLEs; the official
  ``mask_to_rle_pytorch`` returns uncompressed ``{"size", "counts": [ints]}`` dicts, which ``uncompressed_rle``
  gives here (run lengths of the pycocotools-decoded mask; pycocotools has no public call that returns them).
- ``nms`` / ``batched_nms`` are numpy versions of torchvision's CPU kernel: stable descending sort of the scores,
  float32 box arithmetic, the IoU compared to the threshold in float64. One category only is what the generator
  uses; ``batched_nms`` offsets boxes per category (torchvision's coordinate trick) for any number.
- ``remove_small_regions`` labels 8-connected components with ``scipy.ndimage.label`` (the official uses OpenCV).
"""

import math
from itertools import product
from typing import Any, Generator

import jax
import jax.numpy as jnp
import numpy as np
from pycocotools import mask as mask_utils

# --- point grids and crops ------------------------------------------------------------------------------------


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n_per_side**2, 2)`` points ``(x, y)`` evenly spaced in ``[0, 1]``, cell centres, row-major."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)  # (n, n, 2) -> (n*n, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer; layer ``i`` has ``int(n_per_side / scale_per_layer**i)`` points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` (the whole image, then ``(2**i)**2`` overlapping crops for layer ``i``)
    and the layer index of each."""
    crop_boxes, layer_idxs = [[0, 0, im_size[1], im_size[0]]], [0]
    im_h, im_w = im_size
    short_side = min(im_h, im_w)

    def crop_len(orig_len, n_crops, overlap):
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        n_crops_per_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops_per_side))
        crop_w = crop_len(im_w, n_crops_per_side, overlap)
        crop_h = crop_len(im_h, n_crops_per_side, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_crops_per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_crops_per_side)]
        for x0, y0 in product(x0s, y0s):  # x-major, as the official
            crop_boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(i_layer + 1)
    return crop_boxes, layer_idxs


def batch_iterator(batch_size: int, *args) -> Generator[list[Any], None, None]:
    """Slices of ``batch_size`` along the first axis of each arg (all of the same length)."""
    if not args or any(len(a) != len(args[0]) for a in args):
        raise ValueError("batch_iterator needs inputs of the same length")
    n_batches = len(args[0]) // batch_size + int(len(args[0]) % batch_size != 0)
    for b in range(n_batches):
        yield [arg[b * batch_size : (b + 1) * batch_size] for arg in args]


# --- mask statistics (JAX, inside the jitted batch call) -----------------------------------------------------


def calculate_stability_score(masks: jax.Array, mask_threshold: float, threshold_offset: float) -> jax.Array:
    """IoU of the masks thresholded at ``mask_threshold +/- threshold_offset`` (one contains the other), from
    logits ``(..., H, W)``; float32 ``(...)``, NaN where both are empty (as the official 0 / 0)."""
    inter = jnp.sum(masks > (mask_threshold + threshold_offset), axis=(-2, -1), dtype=jnp.int32)
    union = jnp.sum(masks > (mask_threshold - threshold_offset), axis=(-2, -1), dtype=jnp.int32)
    return inter.astype(jnp.float32) / union.astype(jnp.float32)


def batched_mask_to_box(masks: jax.Array) -> jax.Array:
    """XYXY boxes ``(..., 4)`` int32 around boolean masks ``(..., H, W)`` (inclusive max corner), ``[0, 0, 0, 0]``
    for an empty mask."""
    h, w = masks.shape[-2:]
    rows = jnp.any(masks, axis=-1)  # (..., H)
    cols = jnp.any(masks, axis=-2)  # (..., W)
    ys, xs = jnp.arange(h, dtype=jnp.int32), jnp.arange(w, dtype=jnp.int32)
    top = jnp.min(jnp.where(rows, ys, h), axis=-1)
    bottom = jnp.max(jnp.where(rows, ys, 0), axis=-1)
    left = jnp.min(jnp.where(cols, xs, w), axis=-1)
    right = jnp.max(jnp.where(cols, xs, 0), axis=-1)
    box = jnp.stack([left, top, right, bottom], axis=-1)
    empty = ~jnp.any(rows, axis=-1)
    return jnp.where(empty[..., None], 0, box)


# --- boxes and coordinates (numpy) ----------------------------------------------------------------------------


def box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def is_box_near_crop_edge(
    boxes: np.ndarray, crop_box: list[int], orig_box: list[int], atol: float = 20.0
) -> np.ndarray:
    """True for boxes (crop coordinates) within ``atol`` of a crop edge that is not also an image edge."""
    boxes = uncrop_boxes_xyxy(boxes, crop_box).astype(np.float32)
    near_crop = np.abs(boxes - np.asarray(crop_box, np.float32)[None]) <= atol
    near_image = np.abs(boxes - np.asarray(orig_box, np.float32)[None]) <= atol
    return np.any(near_crop & ~near_image, axis=1)


def box_xyxy_to_xywh(box_xyxy: np.ndarray) -> np.ndarray:
    box = np.array(box_xyxy, copy=True)
    box[..., 2] = box[..., 2] - box[..., 0]
    box[..., 3] = box[..., 3] - box[..., 1]
    return box


def uncrop_boxes_xyxy(boxes: np.ndarray, crop_box: list[int]) -> np.ndarray:
    x0, y0 = crop_box[:2]
    return boxes + np.asarray([x0, y0, x0, y0], boxes.dtype)


def uncrop_points(points: np.ndarray, crop_box: list[int]) -> np.ndarray:
    x0, y0 = crop_box[:2]
    return points + np.asarray([x0, y0], points.dtype)


def uncrop_masks(masks: np.ndarray, crop_box: list[int], orig_h: int, orig_w: int) -> np.ndarray:
    """Masks ``(N, h, w)`` of a crop placed in ``(N, orig_h, orig_w)`` zeros."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    return np.pad(masks, ((0, 0), (y0, orig_h - y1), (x0, orig_w - x1)))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS as torchvision's CPU kernel; indices kept, highest score first (ties in input order)."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    boxes = np.asarray(boxes, np.float32)
    order = np.argsort(-np.asarray(scores), kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for k, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[k + 1 :]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou.astype(np.float64) > iou_threshold]] = True
    return np.asarray(keep, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, iou_threshold: float) -> np.ndarray:
    """NMS within each category ``idxs``: boxes of different categories never suppress each other."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    boxes = np.asarray(boxes, np.float32)
    offsets = np.asarray(idxs, np.float32) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


# --- RLE (pycocotools) ----------------------------------------------------------------------------------------


def mask_to_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """Boolean masks ``(N, H, W)`` -> COCO RLEs ``{"size": [H, W], "counts": bytes}`` (pycocotools)."""
    if len(masks) == 0:
        return []
    # (N, H, W) -> (H, W, N) in Fortran order, the layout pycocotools encodes
    return mask_utils.encode(np.asfortranarray(np.transpose(masks, (1, 2, 0)).astype(np.uint8)))


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """A COCO (compressed, counts as bytes or str) or uncompressed RLE -> boolean ``(H, W)``."""
    h, w = rle["size"]
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, h, w)
    return mask_utils.decode(rle).astype(bool)


def area_from_rle(rle: dict[str, Any]) -> int:
    h, w = rle["size"]
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, h, w)
    return int(mask_utils.area(rle))


def coco_encode_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """A COCO RLE ready for JSON: ``{"size": [H, W], "counts": str}``."""
    h, w = rle["size"]
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, h, w)
    counts = rle["counts"]
    return {"size": [int(h), int(w)], "counts": counts.decode("utf-8") if isinstance(counts, bytes) else counts}


def uncompressed_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """The official uncompressed RLE ``{"size": [H, W], "counts": [ints]}`` (column-major runs, starting with
    the number of zeros) of a COCO RLE."""
    mask = rle_to_mask(rle)
    h, w = mask.shape
    flat = mask.T.reshape(-1)  # column-major, as COCO RLE
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [h * w]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) smaller than ``area_thresh`` in a boolean
    mask (8-connectivity); returns the mask and whether it changed. When every island is small the largest stays."""
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    correct_holes = mode == "holes"
    working = correct_holes ^ np.asarray(mask, bool)
    regions, n = ndimage.label(working, structure=np.ones((3, 3), bool))
    sizes = np.bincount(regions.reshape(-1), minlength=n + 1)[1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill_labels = [0] + small
    if not correct_holes:
        fill_labels = [i for i in range(n + 1) if i not in fill_labels]
        if not fill_labels:  # every region is small: keep the largest
            fill_labels = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill_labels), True
