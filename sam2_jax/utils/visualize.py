"""Mask PNGs and overlays (one colour per object, contours, prompt points and boxes) as the official notebooks
draw them, with PIL only."""

import numpy as np
from PIL import Image, ImageDraw

# matplotlib's tab10, the palette the official notebooks use for object ids
PALETTE = np.array(
    [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ],
    np.uint8,
)


def _contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def overlay(
    image: np.ndarray,
    masks: list[np.ndarray],
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    alpha: float = 0.5,
) -> Image.Image:
    """Image (H, W, 3) uint8 with each binary mask (H, W) tinted in its own colour and outlined; positive points
    green, negative red (white-edged stars in the notebooks, discs here); boxes in green."""
    out = image.astype(np.float32).copy()
    for i, m in enumerate(masks):
        m = np.asarray(m).astype(bool)
        c = PALETTE[i % len(PALETTE)].astype(np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * c
        out[_contour(m)] = 255.0
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    r = max(4, round(min(image.shape[:2]) / 80))
    if points is not None:
        for (x, y), lab in zip(np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1), strict=True):
            color = (0, 200, 0) if lab == 1 else (220, 0, 0)
            d.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(255, 255, 255), width=2)
    if boxes is not None:
        for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4):
            d.rectangle([x0, y0, x1, y1], outline=(0, 200, 0), width=max(2, r // 2))
    return img


def mask_png(mask: np.ndarray) -> Image.Image:
    """A binary mask (H, W) as an 8-bit PNG image (0 / 255)."""
    return Image.fromarray((np.asarray(mask).astype(bool) * 255).astype(np.uint8), mode="L")
