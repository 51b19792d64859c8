"""The official training augmentations of a clip, in numpy and PIL, every draw from a ``np.random.Generator``.

Ports the behaviour of ``training/dataset/transforms.py`` (sam2 1.1.0) as the fine-tuning config
``sam2/configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml`` composes it (``augment_clip``, in this order):

1. ``RandomHorizontalFlip(consistent_transform=True)``: the whole clip, probability ``hflip_prob``.
2. ``RandomAffine(degrees=25, shear=20, image_interpolation="bilinear", consistent_transform=True)``.
3. ``RandomResizeAPI(sizes=resolution, square=True)``: to the model's square input.
4. ``RandomMosaicVideoAPI(prob, grid 2x2)`` (not in the MOSE config; our choice of place, see ``random_mosaic``).
5. ``ColorJitter(consistent_transform=True, brightness=0.1, contrast=0.03, saturation=0.03, hue=None)``.
6. ``RandomGrayscale(p=0.05, consistent_transform=True)``.
7. ``ColorJitter(consistent_transform=False, brightness=0.1, contrast=0.05, saturation=0.05, hue=None)``.

``ToTensorAPI`` / ``NormalizeAPI`` are not here: clips stay ``uint8`` and the model normalises them.

The official pipeline holds frames as PIL images and masks as ``uint8`` torch tensors, and torchvision takes a
different code path for each; the conventions below are those of the path each one takes:

- Coordinates are continuous with pixel ``i`` covering ``[i, i + 1)`` (its centre at ``i + 0.5``), for both PIL and
  torch's ``grid_sample(align_corners=False)``, so an image and its masks warped by the same matrix stay aligned.
- Affine (torchvision ``F.affine``): about the image centre ``(W/2, H/2)``; a point ``p`` goes to
  ``c + t + s * R(angle) @ SHy(shear_y) @ SHx(shear_x) @ (p - c)`` with ``x`` right, ``y`` down,
  ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` (a positive angle turns the picture clockwise on screen),
  ``SHx(s) = [[1, -tan s], [0, 1]]`` and ``SHy(s) = [[1, 0], [-tan s, 1]]``. ``RandomAffine.get_params`` draws
  ``angle ~ U(-degrees, degrees)``, ``shear_x ~ U(-shear, shear)``, ``shear_y = 0`` (a scalar shear shears x only),
  no translation and scale 1 unless configured. Frames are warped by PIL (``Image.transform``, bilinear, filled
  with the mean colour ``(123, 116, 103)``), as torchvision does for PIL images; masks by nearest sampling with
  ``rint`` (round half to even) of the source pixel index and zero outside, as ``grid_sample(mode="nearest")``.
  If a sampled object's mask is empty on the first frame after the warp, the try is dropped; after
  ``num_tentatives`` failed tries the clip is left unwarped.
- Resize (torchvision ``F.resize``): frames by PIL's bilinear resize (PIL filters with a kernel widened by the scale
  factor when shrinking); masks as torch does a ``uint8`` tensor: antialiased bilinear of the 0/1 values, rounded
  (half to even), i.e. ``> 0.5``. We compute that bilinear with PIL on ``float32`` (torch's antialias mode was
  written to match PIL's).
- Colour jitter (``T.ColorJitter.get_params`` then the PIL ``F.adjust_*``): the order of brightness (0), contrast
  (1), saturation (2), hue (3) is a random permutation; factors are ``U(max(0, 1 - x), 1 + x)``. On PIL images
  the adjustments are ``ImageEnhance``: ``blend(degenerate, img, f)`` = ``degenerate + f * (img - degenerate)``,
  clipped to [0, 255], with degenerate black (brightness), the uniform grey of the rounded mean of the image's
  luma (contrast), and the image's luma (saturation). Hue jitter is not supported (the configs use ``hue: null``).
- Grayscale (``T.Grayscale(3)`` on PIL): PIL's ``convert("L")``, ITU-R 601-2 luma
  ``L = R * 299/1000 + G * 587/1000 + B * 114/1000`` (PIL's fixed point), copied to three channels.
- Mosaic (``random_mosaic_frame``): each of the ``grid_h x grid_w`` cells (cell ``(i, j)`` spans rows
  ``i*H//grid_h .. (i+1)*H//grid_h``) holds the whole frame shrunk to the cell (PIL bilinear); the masks are shrunk
  likewise (``> 0.5`` after antialiased bilinear) into one target cell only, drawn once per clip; the other cells
  are distractor copies without masks. With ``use_random_hflip`` each cell is flipped with probability 0.5.

Deviations: the draws come from one ``np.random.Generator`` instead of Python's ``random`` and torch's global
generator (so the same seed gives other numbers than the official run); hue jitter is not ported.
"""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance

IMAGE_MEAN_FILL = (123, 116, 103)  # RandomAffine's image_mean: the fill of the area warped in from outside


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The parameters of ``augment_clip``; defaults are the official MOSE fine-tuning values.

    Attributes:
      hflip_prob: probability of flipping the whole clip.
      degrees, shear: ``RandomAffine`` ranges ``U(-degrees, degrees)``, ``U(-shear, shear)`` (0 turns it off when
        both are 0 and ``translate`` / ``scale`` are None).
      translate: ``(fx, fy)`` fractions of width and height, or None.
      scale: ``(lo, hi)`` or None.
      affine_tentatives: ``RandomAffine.num_tentatives``.
      affine_interpolation: ``"bilinear"`` or ``"bicubic"`` for frames (masks are always nearest).
      jitter: ``(brightness, contrast, saturation)`` of the clip-wide colour jitter.
      grayscale_prob: probability of turning the whole clip grey.
      frame_jitter: ``(brightness, contrast, saturation)`` of the per-frame colour jitter.
      mosaic_prob: probability of the mosaic (0: off).
      mosaic_grid: ``(grid_h, grid_w)``.
      mosaic_hflip: ``use_random_hflip`` of the mosaic.
    """

    hflip_prob: float = 0.5
    degrees: float = 25.0
    shear: float = 20.0
    translate: tuple[float, float] | None = None
    scale: tuple[float, float] | None = None
    affine_tentatives: int = 1
    affine_interpolation: str = "bilinear"
    jitter: tuple[float, float, float] = (0.1, 0.03, 0.03)
    grayscale_prob: float = 0.05
    frame_jitter: tuple[float, float, float] = (0.1, 0.05, 0.05)
    mosaic_prob: float = 0.1
    mosaic_grid: tuple[int, int] = (2, 2)
    mosaic_hflip: bool = False


# ---------------------------------------------------------------------------------------------------------------
# Flip


def hflip(frames: list[Image.Image], masks: np.ndarray) -> tuple[list[Image.Image], np.ndarray]:
    """Mirrors every frame and ``(T, K, H, W)`` mask left to right."""
    return [f.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for f in frames], masks[..., ::-1]


# ---------------------------------------------------------------------------------------------------------------
# Affine


def affine_params(
    rng: np.random.Generator,
    degrees: float,
    shear: float,
    size: tuple[int, int],
    translate: Sequence[float] | None = None,
    scale: Sequence[float] | None = None,
) -> tuple[float, tuple[float, float], float, tuple[float, float]]:
    """One draw of ``RandomAffine.get_params``: ``(angle, (tx, ty), scale, (shear_x, shear_y))``, degrees/pixels.

    Args:
      rng: the generator.
      degrees, shear: half-widths of the angle and x-shear ranges (shear_y is 0, as for a scalar shear).
      size: ``(width, height)`` of the frames (for the translation).
      translate: maximal translation as fractions ``(fx, fy)`` of width and height; pixels are rounded.
      scale: ``(lo, hi)`` range of the scale.
    """
    angle = float(rng.uniform(-degrees, degrees))
    if translate is not None:
        tx = float(np.round(rng.uniform(-translate[0] * size[0], translate[0] * size[0])))
        ty = float(np.round(rng.uniform(-translate[1] * size[1], translate[1] * size[1])))
    else:
        tx = ty = 0.0
    s = float(rng.uniform(scale[0], scale[1])) if scale is not None else 1.0
    sx = float(rng.uniform(-shear, shear)) if shear else 0.0
    return angle, (tx, ty), s, (sx, 0.0)


def affine_matrix(
    angle: float, translate: Sequence[float], scale: float, shear: Sequence[float], center: Sequence[float]
) -> np.ndarray:
    """The forward ``3x3`` map of torchvision's ``F.affine`` in continuous pixel coordinates (module docstring).

    Args:
      angle: degrees; positive turns the picture clockwise on screen (``y`` points down).
      translate: ``(tx, ty)`` pixels added after the rotation.
      scale: isotropic scale.
      shear: ``(shear_x, shear_y)`` degrees.
      center: the fixed point, ``(W/2, H/2)`` for the image centre.

    Returns:
      ``M`` with ``[x_out, y_out, 1] = M @ [x_in, y_in, 1]``.
    """
    a, sx, sy = (math.radians(v) for v in (angle, shear[0], shear[1]))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shy = np.array([[1.0, 0.0], [-math.tan(sy), 1.0]])
    shx = np.array([[1.0, -math.tan(sx)], [0.0, 1.0]])
    lin = scale * rot @ shy @ shx
    c = np.asarray(center, np.float64)
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = c + np.asarray(translate, np.float64) - lin @ c
    return m


def warp_image(img: Image.Image, matrix: np.ndarray, interpolation: str = "bilinear", fill=IMAGE_MEAN_FILL):
    """``img`` warped by the forward map ``matrix`` (PIL resamples at output pixel centres; outside: ``fill``)."""
    inv = np.linalg.inv(matrix)
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[interpolation]
    coeffs = tuple(float(v) for v in inv[:2].reshape(-1))
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=resample, fillcolor=tuple(fill))


def warp_masks(masks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(..., H, W)`` bool masks warped by the forward map ``matrix``, nearest source pixel, False outside.

    Output pixel ``(i, j)`` reads source index ``rint(M^-1 (j + 0.5, i + 0.5) - 0.5)`` (torch's ``grid_sample``
    with ``align_corners=False`` and ``nearest``: ``rint`` rounds half to even).
    """
    h, w = masks.shape[-2:]
    inv = np.linalg.inv(matrix)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    src_x = np.rint(inv[0, 0] * x + inv[0, 1] * y + inv[0, 2] - 0.5).astype(np.int64)
    src_y = np.rint(inv[1, 0] * x + inv[1, 1] * y + inv[1, 2] - 0.5).astype(np.int64)
    inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    flat = np.where(inside, src_y * w + src_x, 0).reshape(-1)
    lead = masks.shape[:-2]
    out = masks.reshape(-1, h * w)[:, flat] & inside.reshape(1, -1)
    return out.reshape(*lead, h, w)


def random_affine(
    rng: np.random.Generator, frames: list[Image.Image], masks: np.ndarray, cfg: AugmentConfig, consistent: bool = True
) -> tuple[list[Image.Image], np.ndarray]:
    """``RandomAffine``: one draw for the clip (``consistent``) or one per frame; a try is dropped when a mask of
    the first frame comes out empty, and after ``cfg.affine_tentatives`` dropped tries the clip is unchanged.

    Args:
      rng: the generator.
      frames: T PIL images of one size.
      masks: ``(T, K, H, W)`` bool.
      cfg: ``degrees``, ``shear``, ``translate``, ``scale``, ``affine_tentatives``, ``affine_interpolation``.
      consistent: the official ``consistent_transform``.

    Returns:
      the warped frames and masks.
    """
    w, h = frames[0].size
    center = (w * 0.5, h * 0.5)

    def draw():
        return affine_matrix(*affine_params(rng, cfg.degrees, cfg.shear, (w, h), cfg.translate, cfg.scale), center)

    for _ in range(cfg.affine_tentatives):
        mats = [draw()] * len(frames) if consistent else [draw() for _ in frames]
        first = warp_masks(masks[0], mats[0])
        if not first.reshape(first.shape[0], -1).any(axis=1).all():
            continue  # an object left the first frame: the official drops this try
        out_masks = np.stack([first] + [warp_masks(masks[t], mats[t]) for t in range(1, len(frames))])
        out_frames = [warp_image(f, m, cfg.affine_interpolation) for f, m in zip(frames, mats, strict=True)]
        return out_frames, out_masks
    return frames, masks


# ---------------------------------------------------------------------------------------------------------------
# Resize


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(..., H, W)`` bool masks resized as torch resizes a 0/1 ``uint8`` tensor (antialiased bilinear, > 0.5)."""
    h, w = masks.shape[-2:]
    if (h, w) == (height, width):
        return masks.copy()
    flat = masks.reshape(-1, h, w)
    out = np.empty((flat.shape[0], height, width), bool)
    for i, m in enumerate(flat):
        img = Image.fromarray(m.astype(np.float32), mode="F")
        out[i] = np.asarray(img.resize((width, height), Image.Resampling.BILINEAR)) > 0.5
    return out.reshape(*masks.shape[:-2], height, width)


def resize_clip(frames: list[Image.Image], masks: np.ndarray, size: int) -> tuple[list[Image.Image], np.ndarray]:
    """``RandomResizeAPI(sizes=size, square=True)``: frames (PIL bilinear) and masks to ``size x size``."""
    out = [f if f.size == (size, size) else f.resize((size, size), Image.Resampling.BILINEAR) for f in frames]
    return out, resize_masks(masks, size, size)


# ---------------------------------------------------------------------------------------------------------------
# Mosaic


def _cells(n: int, parts: int) -> list[tuple[int, int]]:
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def mosaic_frame(
    frame: Image.Image, masks: np.ndarray, grid: tuple[int, int], target: tuple[int, int], flips: np.ndarray
) -> tuple[Image.Image, np.ndarray]:
    """One frame of the mosaic: the frame shrunk into every cell, its ``(K, H, W)`` masks into cell ``target``.

    Args:
      frame: a PIL image.
      masks: ``(K, H, W)`` bool.
      grid: ``(grid_h, grid_w)``.
      target: ``(row, col)`` of the cell that keeps the masks.
      flips: ``(grid_h, grid_w)`` bool, cells mirrored left to right.

    Returns:
      the mosaic frame and masks (empty outside the target cell).
    """
    w, h = frame.size
    rows, cols = _cells(h, grid[0]), _cells(w, grid[1])
    out = Image.new("RGB", (w, h))
    shrunk: dict[tuple[int, int], Image.Image] = {}
    for i, (y0, y1) in enumerate(rows):
        for j, (x0, x1) in enumerate(cols):
            key = (y1 - y0, x1 - x0)
            if key not in shrunk:
                shrunk[key] = frame.resize((key[1], key[0]), Image.Resampling.BILINEAR)
            cell = shrunk[key]
            out.paste(cell.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flips[i, j] else cell, (x0, y0))
    (y0, y1), (x0, x1) = rows[target[0]], cols[target[1]]
    cell_masks = resize_masks(masks, y1 - y0, x1 - x0)
    if flips[target]:
        cell_masks = cell_masks[..., ::-1]
    out_masks = np.zeros_like(masks)
    out_masks[:, y0:y1, x0:x1] = cell_masks
    return out, out_masks


def random_mosaic(
    rng: np.random.Generator, frames: list[Image.Image], masks: np.ndarray, cfg: AugmentConfig
) -> tuple[list[Image.Image], np.ndarray]:
    """``RandomMosaicVideoAPI``: with probability ``cfg.mosaic_prob``, every frame becomes a mosaic of itself with
    the masks in one random cell (the same cell and flips for the whole clip).

    The official fine-tuning config does not use it; the issue asks for it with probability 0.1. We apply it after
    the resize to the square input (the cells are then ``S/2`` for a 2x2 grid) and before the colour jitter.
    """
    if not cfg.mosaic_prob or rng.random() >= cfg.mosaic_prob:
        return frames, masks
    gh, gw = cfg.mosaic_grid
    target = (int(rng.integers(gh)), int(rng.integers(gw)))
    flips = rng.random((gh, gw)) < 0.5 if cfg.mosaic_hflip else np.zeros((gh, gw), bool)
    pairs = [mosaic_frame(f, m, (gh, gw), target, flips) for f, m in zip(frames, masks, strict=True)]
    return [p[0] for p in pairs], np.stack([p[1] for p in pairs])


# ---------------------------------------------------------------------------------------------------------------
# Colour


def jitter_params(rng: np.random.Generator, strengths: Sequence[float]) -> tuple[np.ndarray, tuple[float, ...]]:
    """``T.ColorJitter.get_params`` without hue: ``(order, (brightness, contrast, saturation) factors)``.

    ``order`` is a permutation of ``0..3`` (3, hue, is skipped when applied); factor ``x`` is drawn from
    ``U(max(0, 1 - x), 1 + x)`` (always drawn, so the number of draws does not depend on the values).
    """
    order = rng.permutation(4)
    factors = tuple(float(rng.uniform(max(0.0, 1.0 - s), 1.0 + s)) for s in strengths)
    return order, factors


def adjust_brightness(img: Image.Image, factor: float) -> Image.Image:
    """``F.adjust_brightness`` on PIL: ``clip(factor * img)``."""
    return ImageEnhance.Brightness(img).enhance(factor)


def adjust_contrast(img: Image.Image, factor: float) -> Image.Image:
    """``F.adjust_contrast`` on PIL: ``clip(m + factor * (img - m))``, ``m`` the rounded mean luma."""
    return ImageEnhance.Contrast(img).enhance(factor)


def adjust_saturation(img: Image.Image, factor: float) -> Image.Image:
    """``F.adjust_saturation`` on PIL: ``clip(L + factor * (img - L))``, ``L`` the pixel's luma."""
    return ImageEnhance.Color(img).enhance(factor)


def apply_jitter(img: Image.Image, order: np.ndarray, factors: Sequence[float]) -> Image.Image:
    """The adjustments in ``order`` (0 brightness, 1 contrast, 2 saturation; 3, hue, skipped)."""
    fns = (adjust_brightness, adjust_contrast, adjust_saturation)
    for k in order:
        if k < 3:
            img = fns[k](img, factors[k])
    return img


def random_jitter(
    rng: np.random.Generator, frames: list[Image.Image], strengths: Sequence[float], consistent: bool
) -> list[Image.Image]:
    """``ColorJitter(brightness, contrast, saturation, hue=None)``: one draw per clip or one per frame."""
    if consistent:
        order, factors = jitter_params(rng, strengths)
        return [apply_jitter(f, order, factors) for f in frames]
    return [apply_jitter(f, *jitter_params(rng, strengths)) for f in frames]


def to_grayscale(img: Image.Image) -> Image.Image:
    """``T.Grayscale(num_output_channels=3)`` on PIL: the 601-2 luma of ``convert("L")`` in all three channels."""
    return img.convert("L").convert("RGB")


def random_grayscale(rng: np.random.Generator, frames: list[Image.Image], p: float) -> list[Image.Image]:
    """``RandomGrayscale(p, consistent_transform=True)``: the whole clip grey with probability ``p``."""
    if rng.random() < p:
        return [to_grayscale(f) for f in frames]
    return frames


# ---------------------------------------------------------------------------------------------------------------
# The pipeline


def augment_clip(
    rng: np.random.Generator, frames: np.ndarray, masks: np.ndarray, size: int, cfg: AugmentConfig = AugmentConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """The official training transforms of one clip (module docstring), all draws from ``rng``.

    Args:
      rng: the clip's generator.
      frames: ``(T, H, W, 3)`` uint8 at the source's size.
      masks: ``(T, K, H, W)`` bool, the clip's objects (the affine's first-frame check needs each nonempty on
        frame 0 to warp).
      size: the square output side (the model's ``image_size``).
      cfg: the parameters.

    Returns:
      ``(T, size, size, 3)`` uint8 frames and ``(T, K, size, size)`` bool masks.
    """
    frames = np.asarray(frames)
    masks = np.asarray(masks, bool)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    if masks.ndim != 4 or masks.shape[0] != frames.shape[0] or masks.shape[2:] != frames.shape[1:3]:
        raise ValueError(
            f"masks must be (T, K, H, W) = (T, K, {frames.shape[1]}, {frames.shape[2]}), got {masks.shape}"
        )
    imgs = [Image.fromarray(f) for f in frames]
    if rng.random() < cfg.hflip_prob:
        imgs, masks = hflip(imgs, masks)
    if cfg.degrees or cfg.shear or cfg.translate is not None or cfg.scale is not None:
        imgs, masks = random_affine(rng, imgs, masks, cfg)
    imgs, masks = resize_clip(imgs, masks, size)
    imgs, masks = random_mosaic(rng, imgs, masks, cfg)
    imgs = random_jitter(rng, imgs, cfg.jitter, consistent=True)
    imgs = random_grayscale(rng, imgs, cfg.grayscale_prob)
    imgs = random_jitter(rng, imgs, cfg.frame_jitter, consistent=False)
    return np.stack([np.asarray(f, np.uint8) for f in imgs]), np.ascontiguousarray(masks)
