"""Port of ``sam2/automatic_mask_generator.py``: ``SAM2AutomaticMaskGenerator`` with the official parameters,
semantics and output records, numpy in and out.

The image (and each crop) is embedded once; the grid points then run in batches of ``points_per_batch`` through
one jitted call per batch that does the prompt encoder, the mask decoder, the upsampling to the crop's size, the
stability scores, the thresholding and the mask boxes. Only the masks that survive the filters leave the device,
and they are stored as COCO RLEs (pycocotools).

Deviations from the official file:
- The last, partial batch of points is padded to ``points_per_batch`` (by repeating its last point, results
  dropped) so every batch of a crop size reuses one compiled call.
- Inside the call, masks are upsampled and reduced a few at a time (``lax.map``), so device memory holds
  ``upsample_chunk`` full-size logit maps, not ``points_per_batch * 3`` of them (1.6 GB for a 64-point batch on
  a 1800x1200 photo in the official).
- ``min_mask_region_area`` is passed on to the image predictor's hole filling / sprinkle removal, as the official
  does; ours runs on any device (the official skips it without its CUDA extension, so on CPU the official
  behaves as if it were 0). ``postprocess_small_regions`` uses scipy instead of OpenCV.
- Bad arguments raise ``ValueError`` (the official asserts); ``progress=True`` shows a progress bar over crops
  and point batches (not an official argument).
- The ``uncompressed_rle`` output is built from the pycocotools RLE (see ``sam2_jax.utils.amg``).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.build import build_sam2_hf
from sam2_jax.modeling.sam2_model import SAM2Model
from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
from sam2_jax.tracker import calls
from sam2_jax.utils.amg import (
    area_from_rle,
    batch_iterator,
    batched_mask_to_box,
    batched_nms,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    calculate_stability_score,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle,
    remove_small_regions,
    rle_to_mask,
    uncompressed_rle,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from sam2_jax.utils.interpolate import interpolate
from sam2_jax.utils.misc import remove_small_regions as remove_small_regions_lowres
from sam2_jax.utils.transforms import as_rgb_array

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class SAM2AutomaticMaskGenerator:
    """Masks for a whole image from a grid of point prompts, filtered by predicted IoU, stability and NMS."""

    def __init__(
        self,
        model: SAM2Model,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        progress: bool = False,
        upsample_chunk: int = 8,
        **kwargs,
    ) -> None:
        """
        Args:
          model: a model from ``sam2_jax.build_sam2``.
          points_per_side: points along one side of the grid (``points_per_side**2`` in all); None when
            ``point_grids`` is given.
          points_per_batch: points run through the model together.
          pred_iou_thresh: keep masks whose predicted IoU is above this (0 turns the filter off).
          stability_score_thresh: keep masks whose stability score is at least this (0 turns it off).
          stability_score_offset: logit offset of the two thresholds the stability score compares.
          mask_threshold: logit threshold of a binary mask.
          box_nms_thresh: box IoU above which duplicate masks of one crop are suppressed.
          crop_n_layers: also run on ``(2**i)**2`` crops for layers ``i = 1..crop_n_layers``.
          crop_nms_thresh: box IoU for suppressing duplicates between crops (smaller crops win).
          crop_overlap_ratio: overlap of the first layer's crops as a fraction of the image's short side.
          crop_n_points_downscale_factor: layer ``i`` uses ``points_per_side / factor**i`` points a side.
          point_grids: explicit ``[0, 1]`` grids, one per crop layer (exclusive with ``points_per_side``).
          min_mask_region_area: holes and islands up to this area (low-res mask pixels) are removed.
          output_mode: ``"binary_mask"``, ``"uncompressed_rle"`` or ``"coco_rle"``.
          use_m2m: refine each mask once with its own low-res logits as a mask prompt.
          multimask_output: three masks per point instead of one.
          progress: show a progress bar over crops and point batches.
          upsample_chunk: masks upsampled at a time inside the jitted call (bounds device memory).
        """
        self.point_grids = _point_grids(points_per_side, point_grids, crop_n_layers, crop_n_points_downscale_factor)
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"Unknown output_mode {output_mode!r}; expected one of {OUTPUT_MODES}")
        if int(points_per_batch) < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        self.predictor = SAM2ImagePredictor(
            model, max_hole_area=min_mask_region_area, max_sprinkle_area=min_mask_region_area
        )
        self.model = model
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output
        self.progress = progress
        self.upsample_chunk = int(upsample_chunk)
        # Shared by every generator of the same model: the module is a static (hashable) argument.
        self._batch_fn = functools.partial(_decode_batch, model.module)

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs) -> "SAM2AutomaticMaskGenerator":
        """Build from an official model id (``facebook/sam2.1-hiera-tiny`` …) using the local checkpoint cache."""
        return cls(build_sam2_hf(model_id), **kwargs)

    # --- public -----------------------------------------------------------------------------------------------
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks for the whole image.

        Args:
          image: HWC uint8 RGB array (or PIL image).
        Returns:
          a list of records, one per mask: ``segmentation`` (``(H, W)`` bool array, or an RLE dict per
          ``output_mode``), ``area`` (int), ``bbox`` (XYWH floats), ``predicted_iou``, ``point_coords``
          (``[[x, y]]``), ``stability_score`` and ``crop_box`` (XYWH floats).
        """
        image = as_rgb_array(image)
        data = self._generate_masks(image)
        if self.output_mode == "coco_rle":
            segs = [coco_encode_rle(r) for r in data["rles"]]
        elif self.output_mode == "binary_mask":
            segs = [rle_to_mask(r) for r in data["rles"]]
        else:
            segs = [uncompressed_rle(r) for r in data["rles"]]
        return [
            {
                "segmentation": segs[i],
                "area": area_from_rle(data["rles"][i]),
                "bbox": box_xyxy_to_xywh(data["boxes"][i]).tolist(),
                "predicted_iou": float(data["iou_preds"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability_score"][i]),
                "crop_box": box_xyxy_to_xywh(data["crop_boxes"][i]).tolist(),
            }
            for i in range(len(segs))
        ]

    # --- crops --------------------------------------------------------------------------------------------------
    def _generate_masks(self, image: np.ndarray) -> dict:
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        pieces = []
        crops = zip(crop_boxes, layer_idxs, strict=True)
        if self.progress and len(crop_boxes) > 1:
            from tqdm import tqdm

            crops = tqdm(crops, total=len(crop_boxes), desc="crops", unit="crop")
        for crop_box, layer_idx in crops:
            pieces.append(self._process_crop(image, crop_box, layer_idx, orig_size))
        data = cat_data(pieces)
        if len(crop_boxes) > 1:
            # Duplicates between crops: masks of smaller crops win.
            scores = np.float32(1.0) / box_area(data["crop_boxes"]).astype(np.float32)
            keep = batched_nms(
                data["boxes"].astype(np.float32), scores, np.zeros(len(scores)), iou_threshold=self.crop_nms_thresh
            )
            data = filter_data(data, keep)
        data["boxes"] = data["boxes"].astype(np.float32)
        data["crop_boxes"] = data["crop_boxes"].astype(np.float32)
        return data

    def _process_crop(self, image, crop_box, crop_layer_idx, orig_size) -> dict:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        cropped_size = cropped.shape[:2]
        self.predictor.set_image(cropped)
        # Points in crop pixels, float32 as the official tensor.
        points_for_image = (self.point_grids[crop_layer_idx] * np.array(cropped_size)[None, ::-1]).astype(np.float32)
        batches = list(batch_iterator(self.points_per_batch, points_for_image))
        if self.progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="point batches", unit="batch", leave=False)
        pieces = [self._process_batch(p, cropped_size, crop_box, orig_size) for (p,) in batches]
        self.predictor.reset_predictor()
        data = cat_data(pieces)

        # Duplicates within the crop (boxes still in crop coordinates, as the official).
        keep = batched_nms(
            data["boxes"].astype(np.float32),
            data["iou_preds"],
            np.zeros(len(data["iou_preds"])),
            iou_threshold=self.box_nms_thresh,
        )
        data = filter_data(data, keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = np.asarray([crop_box] * len(data["rles"]), np.int64).reshape(-1, 4)
        return data

    # --- point batches ------------------------------------------------------------------------------------------
    def _run(self, coords: np.ndarray, mask_input: np.ndarray | None, multimask: bool, im_size, finish: bool):
        """One jitted call on a batch padded to ``points_per_batch``: coords ``(n, 2)`` model-input pixels."""
        n = len(coords)
        pad = self.points_per_batch - n
        if pad:
            coords = np.concatenate([coords, np.repeat(coords[-1:], pad, axis=0)])
            if mask_input is not None:
                mask_input = np.concatenate([mask_input, np.repeat(mask_input[-1:], pad, axis=0)])
        feats = self.predictor.features
        out = self._batch_fn(
            self.model.params,
            feats.image_embed,
            feats.high_res_feats,
            jnp.asarray(coords[:, None, :]),  # (B, 1, 2)
            jnp.ones((len(coords), 1), jnp.int32),
            None if mask_input is None else jnp.asarray(mask_input),
            multimask=bool(multimask),
            orig_hw=tuple(int(s) for s in im_size),
            finish=finish,
            mask_threshold=float(self.mask_threshold),
            offset=float(self.stability_score_offset),
            hole_area=float(self.min_mask_region_area),
            chunk=self.upsample_chunk,
        )
        m = out["iou"].shape[0] // len(coords)  # masks per point
        return {k: v[: n * m] for k, v in out.items()}, m

    def _process_batch(self, points: np.ndarray, im_size, crop_box, orig_size) -> dict:
        orig_h, orig_w = orig_size
        in_points = np.asarray(self.predictor.transforms.transform_coords(points, normalize=True, orig_hw=im_size))
        out, m = self._run(in_points, None, self.multimask_output, im_size, finish=not self.use_m2m)
        points_rep = np.repeat(points, m, axis=0)
        if self.use_m2m:
            # One refinement step with each mask's own low-res logits as the mask prompt, single-mask output.
            low_res = np.asarray(out["low_res"])
            in_rep = np.repeat(in_points, m, axis=0)
            parts = [
                self._run(c, lr[:, None], False, im_size, finish=True)[0]
                for c, lr in batch_iterator(self.points_per_batch, in_rep, low_res)
            ]
            out = {k: jnp.concatenate([p[k] for p in parts]) for k in parts[0]}
        iou = np.asarray(out["iou"], np.float32)
        stab = np.asarray(out["stability"], np.float32)
        boxes = np.asarray(out["boxes"]).astype(np.int64)
        keep = np.ones(len(iou), bool)
        if self.pred_iou_thresh > 0.0:
            keep &= iou > self.pred_iou_thresh
        if self.stability_score_thresh > 0.0:
            keep &= stab >= self.stability_score_thresh
        keep &= ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        idx = np.flatnonzero(keep)
        masks = _take(out["masks"], idx)
        masks = uncrop_masks(masks, crop_box, orig_h, orig_w)
        return {
            "rles": list(mask_to_rle(masks)),
            "iou_preds": iou[idx],
            "points": points_rep[idx],
            "stability_score": stab[idx],
            "boxes": boxes[idx],
        }

    @staticmethod
    def postprocess_small_regions(mask_data: dict, min_area: int, nms_thresh: float) -> dict:
        """Remove holes and islands smaller than ``min_area`` from every mask, then drop new duplicates with box
        NMS (unchanged masks preferred). Works on the dict ``_generate_masks`` returns; returns a new one."""
        if len(mask_data["rles"]) == 0:
            return mask_data
        new_masks, scores = [], []
        for rle in mask_data["rles"]:
            mask = rle_to_mask(rle)
            mask, changed_holes = remove_small_regions(mask, min_area, mode="holes")
            mask, changed_islands = remove_small_regions(mask, min_area, mode="islands")
            new_masks.append(mask)
            scores.append(float(not (changed_holes or changed_islands)))
        masks = np.stack(new_masks)
        boxes = np.asarray(batched_mask_to_box(jnp.asarray(masks)))
        keep = batched_nms(boxes.astype(np.float32), np.asarray(scores, np.float32), np.zeros(len(boxes)), nms_thresh)
        data = dict(mask_data)
        data["rles"] = list(data["rles"])
        data["boxes"] = np.array(data["boxes"], copy=True)
        for i in keep:
            if scores[i] == 0.0:
                data["rles"][i] = mask_to_rle(masks[i : i + 1])[0]
                data["boxes"][i] = boxes[i]
        return filter_data(data, keep)


def _take(masks: jax.Array, idx: np.ndarray) -> np.ndarray:
    """The rows ``idx`` of a device array, gathered on the device (index count padded to a power of two, so few
    shapes compile) before the copy to the host."""
    if len(idx) == 0:
        return np.zeros((0,) + masks.shape[1:], bool)
    size = 1 << (len(idx) - 1).bit_length()
    padded = np.concatenate([idx, np.full(size - len(idx), idx[-1])])
    return np.asarray(masks[jnp.asarray(padded)])[: len(idx)]


@functools.partial(
    jax.jit,
    static_argnums=(0,),
    static_argnames=("multimask", "orig_hw", "finish", "mask_threshold", "offset", "hole_area", "chunk"),
)
def _decode_batch(
    module,
    params,
    image_embed,
    high_res,
    coords,
    labels,
    mask_input,
    *,
    multimask,
    orig_hw,
    finish,
    mask_threshold,
    offset,
    hole_area,
    chunk,
):
    """Decoder on a batch of point prompts; with ``finish`` also the full-size binary masks, their stability
    scores and boxes. Returns a dict of ``(B * M, ...)`` arrays (``M`` masks per prompt)."""
    mask_nhwc = None if mask_input is None else mask_input.transpose(0, 2, 3, 1)  # (B, 1, h, w) -> (B, h, w, 1)
    low_res, iou, _, _ = calls.decode_prompts(
        module, params, image_embed, high_res, coords, labels, mask_nhwc, multimask, coords.shape[0] > 1
    )
    b, m, h, w = low_res.shape
    out = {"iou": iou.reshape(b * m), "low_res": jnp.clip(low_res, -32.0, 32.0).reshape(b * m, h, w)}
    if not finish:
        return out
    if hole_area > 0:
        low_res = remove_small_regions_lowres(low_res, mask_threshold, hole_area, hole_area)
    flat = low_res.reshape(b * m, h, w, 1)  # (B, M, h, w) -> (B*M, h, w, 1)

    def one(x):  # (h, w, 1) low-res logits -> full-size mask, stability, box
        logits = interpolate(x[None], orig_hw, "bilinear")[0, :, :, 0]  # (H, W)
        mask = logits > mask_threshold
        return mask, calculate_stability_score(logits, mask_threshold, offset), batched_mask_to_box(mask)

    masks, stab, boxes = jax.lax.map(one, flat, batch_size=chunk)
    out.update(masks=masks, stability=stab, boxes=boxes)
    return out


def _point_grids(points_per_side, point_grids, crop_n_layers: int, downscale: int) -> list[np.ndarray]:
    """The ``[0, 1]`` point grid of each crop layer, from ``points_per_side`` or given (exactly one of them)."""
    if (points_per_side is None) == (point_grids is None):
        raise ValueError("exactly one of points_per_side or point_grids must be provided")
    if points_per_side is not None:
        if int(points_per_side) < 1:
            raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
        return build_all_layer_point_grids(int(points_per_side), crop_n_layers, downscale)
    if len(point_grids) < crop_n_layers + 1:
        raise ValueError(
            f"point_grids has {len(point_grids)} grids, crop_n_layers={crop_n_layers} needs {crop_n_layers + 1}"
        )
    return [np.asarray(g, np.float64) for g in point_grids]


def cat_data(pieces: list[dict]) -> dict:
    """Concatenate the per-batch / per-crop dicts (arrays along axis 0, lists joined)."""
    if not pieces:
        return {
            "rles": [],
            "iou_preds": np.zeros(0, np.float32),
            "points": np.zeros((0, 2), np.float32),
            "stability_score": np.zeros(0, np.float32),
            "boxes": np.zeros((0, 4), np.int64),
        }
    out = {}
    for k, v in pieces[0].items():
        if isinstance(v, list):
            out[k] = [x for p in pieces for x in p[k]]
        else:
            out[k] = np.concatenate([p[k] for p in pieces], axis=0)
    return out


def filter_data(data: dict, keep: np.ndarray) -> dict:
    """Rows ``keep`` (indices, in that order) of every entry."""
    keep = np.asarray(keep, np.int64)
    return {k: ([v[i] for i in keep] if isinstance(v, list) else v[keep]) for k, v in data.items()}
