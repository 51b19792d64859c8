"""Port of ``sam2/sam2_image_predictor.py``: ``SAM2ImagePredictor`` with the official API, numpy in and out.

Deviations from the official file:
- Bad input raises ``ValueError`` naming the value (the official asserts or raises RuntimeError): wrong image
  rank/dtype/channels, ``predict`` before ``set_image``, points without labels or with mismatched counts, a box of the
  wrong shape, a ``mask_input`` of the wrong size; and, through ``sam2_jax.utils.validation`` (shared with the video
  predictor and the CLI), NaN/inf points, boxes or mask inputs, labels other than 0/1 (-1 padding, 2/3 paired box
  corners), boxes with ``x1 <= x0`` or ``y1 <= y0`` (the official answers those with NaN scores or garbage).
- Outputs are ``TensorLikeArray`` (``sam2_jax.utils.arrays``): numpy arrays that also answer ``.cpu()``,
  ``.numpy()``, ``.float()``, ``.detach()``.
- Images must be uint8 RGB (HWC arrays or PIL images); the official silently treats a float array as already scaled.
- Hole filling / sprinkle removal (``max_hole_area`` / ``max_sprinkle_area``) runs with our own connected components
  (the official needs its CUDA extension and skips the step on CPU with a warning).
- ``from_pretrained(model_id)`` takes the official Hugging Face ids and looks for the converted or official
  checkpoint in the local cache (``sam2_jax.checkpoints``): these machines cannot download.
- Each prompt shape compiles once (jit); the image encoder compiles once per batch size.
"""

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.build import build_sam2_hf
from sam2_jax.modeling.sam2_base import ImageEmbeddings, SAM2Base
from sam2_jax.modeling.sam2_model import SAM2Model
from sam2_jax.tracker import calls, compiled
from sam2_jax.tracker.state import pad_clicks
from sam2_jax.utils.arrays import tensor_like
from sam2_jax.utils.compile_cache import enable_compilation_cache
from sam2_jax.utils.transforms import SAM2Transforms, as_rgb_array
from sam2_jax.utils.validation import check_boxes, check_labels, check_mask, check_points

logger = logging.getLogger(__name__)


class SAM2ImagePredictor:
    """Computes an image embedding once, then predicts masks for point / box / mask prompts on it."""

    def __init__(
        self,
        sam_model: SAM2Model,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        **kwargs,
    ) -> None:
        """
        Args:
          sam_model: a model from ``sam2_jax.build_sam2``.
          mask_threshold: threshold on mask logits for binary masks.
          max_hole_area: fill holes up to this area (in low-res mask pixels) when > 0.
          max_sprinkle_area: remove foreground specks up to this area when > 0.
        """
        enable_compilation_cache()
        self.model = sam_model
        self._transforms = SAM2Transforms(
            resolution=sam_model.image_size,
            mask_threshold=mask_threshold,
            max_hole_area=max_hole_area,
            max_sprinkle_area=max_sprinkle_area,
        )
        self.mask_threshold = mask_threshold
        self._bb_feat_sizes = [(256, 256), (128, 128), (64, 64)]
        self.reset_predictor()

    @property
    def features(self) -> ImageEmbeddings | None:
        """The embeddings of the image(s) set (``image_embed``, ``high_res_feats``), or None."""
        return self._features

    @property
    def device(self) -> jax.Device:
        """The device holding the model's params (the official ``predictor.device``)."""
        return self.model.device

    @property
    def transforms(self) -> SAM2Transforms:
        """The image and prompt transforms (model input resolution, mask post-processing)."""
        return self._transforms

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs) -> "SAM2ImagePredictor":
        """Build from an official model id (``facebook/sam2.1-hiera-tiny`` …) using the local checkpoint cache."""
        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)

    # --- images -----------------------------------------------------------------------------------------------
    def set_image(self, image: Any) -> None:
        """Compute the embedding of one image: an HWC uint8 RGB array or a PIL image, any size."""
        self.reset_predictor()
        image = as_rgb_array(image)
        self._orig_hw = [image.shape[:2]]
        input_image = jnp.asarray(self._transforms(image))[None]  # (1, 1024, 1024, 3)
        self._features = compiled.jit_image_embeddings(self.model.module, self.model.params, input_image)
        self._is_image_set = True

    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        """Compute the embeddings of a list of HWC uint8 RGB arrays (for ``predict_batch``)."""
        self.reset_predictor()
        if not isinstance(image_list, list | tuple) or not image_list:
            raise ValueError(f"image_list must be a non-empty list of HWC uint8 arrays, got {type(image_list)}")
        images = []
        for i, image in enumerate(image_list):
            if not isinstance(image, np.ndarray):
                raise ValueError(f"image_list[{i}] must be an np.ndarray (HWC RGB), got {type(image).__name__}")
            images.append(as_rgb_array(image, f"image_list[{i}]"))
        self._orig_hw = [im.shape[:2] for im in images]
        batch = jnp.asarray(self._transforms.forward_batch(images))  # (B, 1024, 1024, 3)
        self._features = compiled.jit_image_embeddings(self.model.module, self.model.params, batch)
        self._is_image_set = True
        self._is_batch = True

    def get_image_embedding(self) -> np.ndarray:
        """The image embedding ``(B, C, 64, 64)`` (channel-first, as the official returns it)."""
        self._require_image("get_image_embedding")
        # (B, h, w, C) -> (B, C, h, w)
        return np.asarray(self._features.image_embed).transpose(0, 3, 1, 2)

    def reset_predictor(self) -> None:
        """Forget the image and its embedding."""
        self._is_image_set = False
        self._features = None
        self._orig_hw = None
        self._is_batch = False

    # --- prediction -------------------------------------------------------------------------------------------
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts on the image set with ``set_image``.

        Args:
          point_coords: (N, 2) or (B, N, 2) points (x, y) in image pixels (or [0, 1] with normalize_coords=False).
          point_labels: (N,) or (B, N): 1 foreground, 0 background.
          box: (4,) or (B, 4) boxes XYXY.
          mask_input: (1, 256, 256) or (B, 1, 256, 256) low-res logits from a previous prediction.
          multimask_output: three masks instead of one.
          return_logits: mask logits instead of binary masks.
          normalize_coords: coordinates are in image pixels (True) or already in [0, 1] (False).
        Returns:
          masks (C, H, W) (or (B, C, H, W) for batched prompts), IoU predictions (C,), low-res logits (C, 256, 256).
        """
        self._require_image("predict")
        out = self._predict_one(
            0, point_coords, point_labels, box, mask_input, multimask_output, return_logits, normalize_coords
        )
        return out

    def predict_batch(
        self,
        point_coords_batch: list | None = None,
        point_labels_batch: list | None = None,
        box_batch: list | None = None,
        mask_input_batch: list | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """``predict`` for each image of ``set_image_batch``, with per-image prompt lists."""
        if not self._is_batch:
            raise ValueError("predict_batch needs images set with set_image_batch(...)")
        self._require_image("predict_batch")
        n = len(self._orig_hw)
        for name, lst in (
            ("point_coords_batch", point_coords_batch),
            ("point_labels_batch", point_labels_batch),
            ("box_batch", box_batch),
            ("mask_input_batch", mask_input_batch),
        ):
            if lst is not None and len(lst) != n:
                raise ValueError(f"{name} has {len(lst)} entries, expected one per image ({n})")
        pick = lambda lst, i: None if lst is None else lst[i]
        all_masks, all_ious, all_low = [], [], []
        for i in range(n):
            m, s, low = self._predict_one(
                i,
                pick(point_coords_batch, i),
                pick(point_labels_batch, i),
                pick(box_batch, i),
                pick(mask_input_batch, i),
                multimask_output,
                return_logits,
                normalize_coords,
            )
            all_masks.append(m)
            all_ious.append(s)
            all_low.append(low)
        return all_masks, all_ious, all_low

    def _predict_one(
        self, img_idx, point_coords, point_labels, box, mask_input, multimask_output, return_logits, normalize_coords
    ):
        coords, labels, mask = self._prep_prompts(
            point_coords, point_labels, box, mask_input, normalize_coords, img_idx
        )
        if coords is not None:
            # Clicks pad to a bucket (masked slots), so a session adding clicks compiles once per bucket.
            coords, labels = pad_clicks(coords, labels)
        image_embed = self._features.image_embed[img_idx : img_idx + 1]
        high_res = [f[img_idx : img_idx + 1] for f in self._features.high_res_feats]
        batched_mode = coords is not None and coords.shape[0] > 1
        if mask is not None and coords is not None and mask.shape[0] not in (1, coords.shape[0]):
            raise ValueError(f"mask_input has batch {mask.shape[0]}, prompts have batch {coords.shape[0]}")
        masks, iou, low_res = _decode(
            self.model.module,
            self._transforms,
            self.model.params,
            image_embed,
            high_res,
            coords,
            labels,
            mask,
            multimask_output=bool(multimask_output),
            repeat_image=batched_mode,
            orig_hw=tuple(int(v) for v in self._orig_hw[img_idx]),
            return_logits=bool(return_logits),
        )
        masks, iou, low_res = (
            tensor_like(masks),
            tensor_like(np.asarray(iou, np.float32)),
            tensor_like(np.asarray(low_res, np.float32)),
        )
        if masks.shape[0] == 1:  # the official squeezes the prompt batch axis of 1
            masks, iou, low_res = masks[0], iou[0], low_res[0]
        return masks, iou, low_res

    def _prep_prompts(self, point_coords, point_labels, box, mask_logits, normalize_coords, img_idx):
        """Validate and transform prompts to model-input pixels; boxes become two corner points (labels 2, 3)
        placed before the clicks, as the official ``_predict`` does."""
        orig_hw = self._orig_hw[img_idx]
        coords = labels = mask = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be supplied if point_coords is supplied")
            pc = check_points(point_coords, "point_coords")
            pl = check_labels(point_labels, "point_labels")
            if pc.ndim not in (2, 3):
                raise ValueError(f"point_coords must be (N, 2) or (B, N, 2), got shape {pc.shape}")
            if pl.shape != pc.shape[:-1]:
                raise ValueError(f"point_labels shape {pl.shape} does not match point_coords {pc.shape[:-1]}")
            if pc.ndim == 2:
                pc, pl = pc[None], pl[None]
            coords = self._transforms.transform_coords(pc, normalize=normalize_coords, orig_hw=orig_hw)
            labels = pl.astype(np.int32)
        elif point_labels is not None:
            raise ValueError("point_labels given without point_coords")
        if box is not None:
            b = check_boxes(box, "box")
            if b.ndim not in (1, 2):
                raise ValueError(f"box must be (4,) or (B, 4) in XYXY, got shape {b.shape}")
            box_coords = self._transforms.transform_boxes(
                b.reshape(-1, 4), normalize=normalize_coords, orig_hw=orig_hw
            ).reshape(-1, 2, 2)
            box_labels = np.tile(np.array([[2, 3]], np.int32), (box_coords.shape[0], 1))
            if coords is not None:
                if coords.shape[0] != box_coords.shape[0]:
                    raise ValueError(f"{box_coords.shape[0]} box(es) but point prompts have batch {coords.shape[0]}")
                coords = np.concatenate([box_coords, coords], axis=1)
                labels = np.concatenate([box_labels, labels], axis=1)
            else:
                coords, labels = box_coords, box_labels
        if mask_logits is not None:
            m = check_mask(mask_logits, "mask_input")
            if m.ndim == 3:
                m = m[None]
            r = self.model.image_size // 4  # the low-res logits' side (256 at the official 1024)
            if m.ndim != 4 or m.shape[1:] != (1, r, r):
                raise ValueError(
                    f"mask_input must be (1, {r}, {r}) or (B, 1, {r}, {r}) low-res logits, got {np.shape(mask_logits)}"
                )
            mask = m
        if coords is not None:
            coords = np.asarray(coords, np.float32)
        return coords, labels, mask

    def _require_image(self, what: str) -> None:
        if not self._is_image_set:
            raise ValueError(f"{what}: an image must be set with .set_image(...) first")


@functools.partial(
    jax.jit, static_argnums=(0, 1), static_argnames=("multimask_output", "repeat_image", "orig_hw", "return_logits")
)
def _decode(
    module: SAM2Base,
    transforms: SAM2Transforms,
    params,
    image_embed,
    high_res,
    coords,
    labels,
    mask,
    *,
    multimask_output: bool,
    repeat_image: bool,
    orig_hw: tuple[int, int],
    return_logits: bool,
):
    """Masks at the image size, IoU predictions and clipped low-res logits of one image's prompts (jitted with the
    module static: every predictor of the same model shares the compiles)."""
    # mask (B, 1, 256, 256) -> (B, 256, 256, 1) for the prompt encoder
    mask_nhwc = None if mask is None else mask.transpose(0, 2, 3, 1)
    out = calls.decode_prompts(
        module, params, image_embed, high_res, coords, labels, mask_nhwc, multimask_output, repeat_image
    )
    masks = transforms.postprocess_masks(out.low_res_masks, orig_hw)
    low_res = jnp.clip(out.low_res_masks, -32.0, 32.0)
    if not return_logits:
        masks = masks > transforms.mask_threshold
    return masks, out.iou_predictions, low_res
