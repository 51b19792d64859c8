"""Test cases built from the real SA-V annotation in ``../shared/data/sav``: ground truth against eroded, shifted
and dropped versions of itself, on every third annotated frame (41 frames, 5 objects, 848x480)."""

import functools
import json
import os

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

SHARED = os.environ.get("SAM2_JAX_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
SAV_JSON = os.path.join(SHARED, "data", "sav", "sav_000001_manual.json")


def sav_masks(path: str = SAV_JSON, step: int = 3) -> np.ndarray:
    """(T, O, H, W) bool masks of every ``step``-th annotated frame."""
    with open(path) as f:
        ann = json.load(f)
    frames = ann["masklet"][::step]
    return np.stack([np.stack([mask_utils.decode(rle) > 0 for rle in objs]) for objs in frames])


def _shift(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(m)
    h, w = m.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = m[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@functools.cache
def sav_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (gt, pred), each (T, O, H, W) bool."""
    gt = sav_masks()
    eroded = np.stack([[ndimage.binary_erosion(m, iterations=2) for m in objs] for objs in gt])
    dropped = gt.copy()
    dropped[::4] = False  # every fourth scored frame lost for every object
    dropped[5:9, 3] = False
    return {
        "identity": (gt, gt),
        "eroded2": (gt, eroded),
        "shift5": (gt, _shift(gt, 0, 5)),
        "shift12": (gt, _shift(gt, 7, -12)),
        "dropped": (gt, dropped),
    }
