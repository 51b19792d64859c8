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


def distinct_colors(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 3)`` uint8 colours, well apart in hue (golden-ratio steps), bright and saturated."""
    import colorsys

    start = np.random.default_rng(seed).random()
    hues = (start + 0.61803398875 * np.arange(n)) % 1.0
    sats = 0.65 + 0.3 * ((np.arange(n) * 7) % 3) / 2
    return np.array(
        [[round(255 * c) for c in colorsys.hsv_to_rgb(h, s, 0.95)] for h, s in zip(hues, sats, strict=True)], np.uint8
    )


def davis_palette() -> np.ndarray:
    """The 256-colour palette of DAVIS / PASCAL VOC annotation PNGs (index 0 black, 1 red, 2 green, ...)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):  # spread the bits of the index over the high bits of r, g, b
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def label_map(masks: dict[int, np.ndarray], hw: tuple[int, int]) -> np.ndarray:
    """``{obj_id: (H, W) bool}`` -> (H, W) uint8 object ids, 0 background; lower ids win where objects overlap (as the
    official VOS writer)."""
    out = np.zeros(hw, np.uint8)
    for o in sorted(masks, reverse=True):
        out[masks[o]] = o
    return out


def palette_png(label_map: np.ndarray) -> Image.Image:
    """An ``(H, W)`` map of object ids (0 background, at most 255) as a palette PNG image in the DAVIS layout."""
    img = Image.fromarray(np.asarray(label_map, np.uint8), mode="P")
    img.putpalette(davis_palette().reshape(-1).tolist())
    return img


def overlay_objects(
    image: np.ndarray,
    masks: dict[int, np.ndarray],
    prompts: dict[int, dict] | None = None,
    alpha: float = 0.5,
) -> Image.Image:
    """Video-frame overlay: each object id tinted in its own tab10 colour (as the official notebooks colour
    ``obj_id``) and outlined; ``prompts`` maps an object id to ``{"points", "labels", "box"}`` drawn on top."""
    out = image.astype(np.float32).copy()
    for obj_id in sorted(masks):
        m = np.asarray(masks[obj_id]).astype(bool)
        c = PALETTE[obj_id % len(PALETTE)].astype(np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * c
        out[_contour(m)] = 255.0
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    for p in (prompts or {}).values():
        img = overlay(np.asarray(img), [], p.get("points"), p.get("labels"), p.get("box"), alpha=0.0)
    return img


def overlay_auto(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.55) -> Image.Image:
    """Automatic-mask-generator overlay as the official notebook's ``show_anns``: largest masks first (small ones
    stay visible on top), a distinct colour each, white contours."""
    out = image.astype(np.float32).copy()
    order = sorted(range(len(masks)), key=lambda i: -int(np.asarray(masks[i]).sum()))
    colors = distinct_colors(len(masks))
    for k, i in enumerate(order):
        m = np.asarray(masks[i]).astype(bool)
        out[m] = (1 - alpha) * out[m] + alpha * colors[k].astype(np.float32)
        out[_contour(m)] = 255.0
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def contact_sheet(
    frames: list[Image.Image], labels: list[str] | None = None, columns: int = 3, width: int = 320
) -> Image.Image:
    """Frames side by side in a grid, each scaled to ``width`` pixels wide, with an optional caption each."""
    if not frames:
        raise ValueError("contact_sheet needs at least one frame")
    w0, h0 = frames[0].size
    height = max(1, round(width * h0 / w0))
    columns = max(1, min(columns, len(frames)))
    rows = -(-len(frames) // columns)
    pad = 4
    sheet = Image.new("RGB", (columns * (width + pad) + pad, rows * (height + pad) + pad), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for k, f in enumerate(frames):
        x, y = pad + (k % columns) * (width + pad), pad + (k // columns) * (height + pad)
        sheet.paste(f.convert("RGB").resize((width, height), Image.BILINEAR), (x, y))
        if labels:
            d.rectangle([x, y, x + 8 * len(labels[k]) + 6, y + 16], fill=(0, 0, 0))
            d.text((x + 3, y + 2), labels[k], fill=(255, 255, 255))
    return sheet


def write_video(frames: list[Image.Image], path, fps: float = 10.0) -> None:
    """Write frames as an animated GIF (``.gif``, PIL) or an H.264 MP4 (any other suffix, PyAV)."""
    from pathlib import Path

    path = Path(path)
    if not frames:
        raise ValueError("write_video needs at least one frame")
    if path.suffix.lower() == ".gif":
        frames[0].save(
            path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0, optimize=False
        )
        return
    import av

    w, h = frames[0].size
    w2, h2 = w - w % 2, h - h % 2  # yuv420p needs even sides
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        for f in frames:
            arr = np.asarray(f.convert("RGB"))[:h2, :w2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
