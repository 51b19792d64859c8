"""Port of ``sam2/utils/transforms.py``: ``SAM2Transforms``, the image predictor's pre- and post-processing.

Deviations:
- Images come out channels-last: ``__call__`` gives ``(resolution, resolution, 3)``, ``forward_batch``
  ``(B, resolution, resolution, 3)``. The steps equal the official torchvision pipeline (``ToTensor`` then
  ``Resize((r, r))``, which on a float tensor is bilinear with antialias, then ``Normalize`` with ImageNet
  mean/std), resized with ``sam2_jax.utils.interpolate``. A float64 image is processed in float32 (the
  official pipeline would stay in float64).
- ``postprocess_masks`` keeps the official ``(B, M, h, w)`` mask layout (what the predictors return), and its
  hole filling / sprinkle removal always runs: the official one needs the CUDA extension ``sam2._C`` and
  silently skips the step without it (so on CPU the reference behaves as if both areas were 0).
- XLA rewrites a division by a broadcast constant into a multiplication by its reciprocal (1 ulp off in ~30%
  of the elements); the divisions of ``ToTensor``, ``Normalize`` and the coordinate scaling go through
  ``_divide``, which keeps them true divisions like PyTorch's.
- Not a ``torch.nn.Module``: a plain class holding the settings; the array work is jitted per input shape.
"""

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sam2_jax.utils.interpolate import interpolate
from sam2_jax.utils.misc import remove_small_regions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _divide(x: jax.Array, d) -> jax.Array:
    """``x / d`` rounded like PyTorch: the barrier stops XLA from turning it into ``x * (1 / d)``."""
    return x / lax.optimization_barrier(jnp.broadcast_to(jnp.asarray(d, x.dtype), x.shape))


def _as_image_array(image) -> np.ndarray:
    """Checks a ``ToTensor`` input; uint8 stays uint8 (scaled in ``_preprocess``), floats become float32."""
    img = np.asarray(image)  # a PIL image becomes (H, W, 3) uint8
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32)
    raise ValueError(f"expected a uint8 or float image, got dtype {img.dtype}")


@functools.partial(jax.jit, static_argnames=("resolution",))
def _preprocess(img: jax.Array, resolution: int) -> jax.Array:
    if img.dtype == jnp.uint8:
        img = _divide(img.astype(jnp.float32), 255.0)
    img = interpolate(img[None], (resolution, resolution), "bilinear", antialias=True)[0]
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return _divide(img - mean, std)


@functools.partial(jax.jit, static_argnames=("orig_hw",))
def _upsample_masks(masks: jax.Array, orig_hw: tuple[int, int]) -> jax.Array:
    masks = jnp.transpose(masks, (0, 2, 3, 1))  # (B, M, h, w) -> (B, h, w, M)
    masks = interpolate(masks, orig_hw, "bilinear")
    return jnp.transpose(masks, (0, 3, 1, 2))  # (B, H, W, M) -> (B, M, H, W)


class SAM2Transforms:
    """Pre-processing of images and prompts, post-processing of masks, for the image predictor.

    Attributes:
      resolution: side of the square model input (1024 for the official models).
      mask_threshold: score above which a pixel is foreground (0.0).
      max_hole_area: background components of at most this area are filled (0 turns it off).
      max_sprinkle_area: foreground components of at most this area are removed (0 turns it off).
    """

    def __init__(
        self,
        resolution: int,
        mask_threshold: float,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
    ):
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.resolution = int(resolution)
        self.mask_threshold = float(mask_threshold)
        self.max_hole_area = float(max_hole_area)
        self.max_sprinkle_area = float(max_sprinkle_area)
        self.mean = list(IMAGENET_MEAN)
        self.std = list(IMAGENET_STD)

    def _key(self) -> tuple:
        return (self.resolution, self.mask_threshold, self.max_hole_area, self.max_sprinkle_area)

    def __eq__(self, other) -> bool:
        return isinstance(other, SAM2Transforms) and self._key() == other._key()

    def __hash__(self) -> int:
        # Hashable by its settings, so a jitted function can take it as a static argument.
        return hash(self._key())

    def __call__(self, image) -> jax.Array:
        """``(H, W, 3)`` uint8 (or float, taken as already in [0, 1]) image or PIL image -> normalised
        ``(resolution, resolution, 3)`` float32."""
        return _preprocess(jnp.asarray(_as_image_array(image)), self.resolution)

    def forward_batch(self, img_list: Sequence) -> jax.Array:
        """A list of images (any sizes) -> ``(B, resolution, resolution, 3)``."""
        return jnp.stack([self(img) for img in img_list], axis=0)

    def transform_coords(self, coords, normalize: bool = False, orig_hw: tuple[int, int] | None = None) -> jax.Array:
        """Point coordinates ``(..., 2)`` as ``(x, y)`` -> model input coordinates in ``[0, resolution]``.

        Args:
          coords: absolute image coordinates when ``normalize`` is True (then ``orig_hw`` is required),
            otherwise coordinates already normalised to [0, 1].
          normalize: divide by the original width / height first.
          orig_hw: the original image ``(H, W)``.
        """
        coords = jnp.asarray(coords, jnp.float32)
        if coords.shape[-1:] != (2,):
            raise ValueError(f"coords must have a last axis of size 2, got shape {coords.shape}")
        if normalize:
            if orig_hw is None:
                raise ValueError("orig_hw is required when normalize=True")
            h, w = orig_hw
            coords = _divide(coords, jnp.asarray([w, h], jnp.float32))
        return coords * self.resolution

    def transform_boxes(self, boxes, normalize: bool = False, orig_hw: tuple[int, int] | None = None) -> jax.Array:
        """Boxes ``(B, 4)`` as ``(x0, y0, x1, y1)`` -> corners ``(B, 2, 2)`` in model input coordinates."""
        boxes = jnp.asarray(boxes, jnp.float32)
        if boxes.size % 4:
            raise ValueError(f"boxes must hold groups of 4 coordinates, got shape {boxes.shape}")
        return self.transform_coords(boxes.reshape(-1, 2, 2), normalize, orig_hw)  # (B, 4) -> (B, 2, 2)

    def postprocess_masks(self, masks, orig_hw: tuple[int, int]) -> jax.Array:
        """Low-res mask logits ``(B, M, h, w)`` -> ``(B, M, H, W)`` at the original image size.

        Small holes / sprinkles are handled on the low-res logits first (see ``remove_small_regions``), then
        the logits are upsampled bilinearly (``align_corners=False``, no antialias).
        """
        masks = jnp.asarray(masks, jnp.float32)
        if masks.ndim != 4:
            raise ValueError(f"masks must have shape (B, M, h, w), got {masks.shape}")
        orig_hw = tuple(int(s) for s in orig_hw)
        if len(orig_hw) != 2:
            raise ValueError(f"orig_hw must be (H, W), got {orig_hw}")
        # Two dispatches on purpose: in one jit, XLA:CPU fuses the region edits (gathers of component areas)
        # into every tap of the upsampling and recomputes them per output pixel, 3-5x slower.
        masks = remove_small_regions(masks, self.mask_threshold, self.max_hole_area, self.max_sprinkle_area)
        return _upsample_masks(masks, orig_hw)


def as_rgb_array(image: Any, what: str = "image") -> np.ndarray:
    """HWC uint8 RGB from a numpy array or a PIL image; ValueError naming ``what`` otherwise."""
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover
        PILImage = None
    if PILImage is not None and isinstance(image, PILImage.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be an HWC uint8 RGB np.ndarray or a PIL image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be HWC with 3 channels (RGB), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 in [0, 255], got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return image
