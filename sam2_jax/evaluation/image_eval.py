"""The image task: 1-click and 5-click mIoU on SA-1B-format data (SAM 2 paper §6.3 / App. F, the SAM protocol).

Protocol, for every annotated mask of every image (all the masks of an image are prompted together, as a batch of
independent prompts on one image embedding):

- click 1 at the mask's centre (``prompts.next_click`` with no prediction: the pixel farthest from the boundary),
  predicted with ``multimask_output=True``; the output with the highest predicted IoU is kept (SAM's ambiguity
  resolution for a single click);
- clicks 2..N at the centre of the larger error region of the current mask (positive on a false negative,
  negative on a false positive), all clicks so far given together, with the previous low-resolution logits as
  ``mask_input`` and ``multimask_output=False``;
- the IoU (``metrics.region_similarity``; 1 when both masks are empty) of the binary mask (logits > 0) at image
  resolution after each click; k-click mIoU is the mean over all masks of all images.
"""

import csv
import dataclasses
import logging
import os
import time
from collections.abc import Iterable

import numpy as np

from sam2_jax.datasets.sa1b import SA1BImage
from sam2_jax.datasets.vos import DataError
from sam2_jax.evaluation.metrics import region_similarity
from sam2_jax.evaluation.prompts import next_click

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ImageEvalResult:
    """Per-mask IoUs and their means.

    Attributes:
      rows: ``(image_id, annotation_id, ious)`` with ``ious[k]`` after ``k + 1`` clicks.
      miou: ``(num_clicks,)`` mean IoU after 1..N clicks.
      skipped: ``(image_id, reason)``.
      seconds: wall time.
    """

    rows: list[tuple[str, int, np.ndarray]]
    miou: np.ndarray
    skipped: list[tuple[str, str]]
    seconds: float = 0.0


def click_ious(predictor, image: np.ndarray, gts: np.ndarray, num_clicks: int) -> np.ndarray:
    """IoU after each click for each mask of one image (module docstring).

    Args:
      predictor: a ``SAM2ImagePredictor``.
      image: ``(H, W, 3)`` uint8.
      gts: ``(M, H, W)`` bool ground-truth masks.
      num_clicks: N.

    Returns:
      ``(M, N)`` float64 IoUs.
    """
    predictor.set_image(image)
    m = len(gts)
    points = np.zeros((m, 0, 2), np.float32)
    labels = np.zeros((m, 0), np.int32)
    pred = np.zeros_like(gts)
    low = None
    ious = np.zeros((m, num_clicks))
    for c in range(num_clicks):
        new = [next_click(g, None if c == 0 else p) for g, p in zip(gts, pred, strict=True)]
        points = np.concatenate([points, np.stack([p for p, _ in new])[:, None]], axis=1)
        labels = np.concatenate([labels, np.array([[lab] for _, lab in new], np.int32)], axis=1)
        masks, scores, logits = predictor.predict(
            point_coords=points,
            point_labels=labels,
            mask_input=None if low is None else low[:, None],
            multimask_output=c == 0,
            return_logits=True,
        )
        masks, scores, logits = np.asarray(masks), np.asarray(scores), np.asarray(logits)
        if masks.ndim == 3:  # a single prompt comes back without its batch axis
            masks, scores, logits = masks[None], scores[None], logits[None]
        best = np.argmax(scores, axis=1) if c == 0 else np.zeros(m, np.int64)
        pick = np.arange(m)
        pred = masks[pick, best] > 0
        low = logits[pick, best]
        ious[:, c] = region_similarity(pred, gts)
    return ious


def evaluate_images(
    predictor,
    images: Iterable[SA1BImage],
    num_clicks: int = 5,
    max_masks: int = 0,
    progress: bool = True,
) -> ImageEvalResult:
    """k-click mIoU over SA-1B-format images.

    Args:
      predictor: a ``SAM2ImagePredictor``.
      images: ``SA1BImage``s (e.g. an ``SA1BFolder``, whose skipped images join the result's).
      num_clicks: clicks per mask.
      max_masks: at most this many masks per image, the first in the JSON (0: all).
      progress: progress bar over images.

    Returns:
      the ``ImageEvalResult``.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    rows, skipped = [], []
    total = len(images) if hasattr(images, "__len__") else None
    for im in tqdm(images, total=total, disable=not progress, desc="images", unit="image"):
        try:
            n = len(im.rles) if not max_masks else min(max_masks, len(im.rles))
            if n == 0:
                raise DataError(f"image {im.image_id}: no annotations")
            gts = im.masks(range(n))
            ious = click_ious(predictor, im.load_image(), gts, num_clicks)
        except (DataError, ValueError) as e:
            log.warning("skipping image %s: %s", im.image_id, e)
            skipped.append((im.image_id, str(e)))
            continue
        rows += [(im.image_id, int(im.annotation_ids[i]), ious[i]) for i in range(n)]
    skipped += getattr(images, "errors", [])
    miou = np.mean([r[2] for r in rows], axis=0) if rows else np.full(num_clicks, np.nan)
    return ImageEvalResult(rows, miou, skipped, time.perf_counter() - start)


def run_image_task(cfg, model) -> ImageEvalResult:
    """``eval.py --task image``: SA-1B folder in, per-mask CSV and summary out.

    Args:
      cfg: the ``RunConfig`` (``data_root``, ``prompt`` ``clickN`` for N clicks, default 5, ``num_images``,
        ``output_dir``).
      model: the ``SAM2Model``.

    Returns:
      the result.
    """
    from sam2_jax.datasets.sa1b import SA1BFolder
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

    n_clicks = int(cfg.prompt[5:]) if cfg.prompt.startswith("click") else 5
    folder = SA1BFolder(cfg.data_root)
    if cfg.num_images:
        folder = SA1BFolder(cfg.data_root, images=folder.image_ids()[: cfg.num_images])
    result = evaluate_images(SAM2ImagePredictor(model), folder, n_clicks, progress=cfg.progress)
    if cfg.output_dir:
        os.makedirs(cfg.output_dir, exist_ok=True)
        with open(os.path.join(cfg.output_dir, "image_per_mask.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "annotation", *[f"iou_{k + 1}_click" for k in range(n_clicks)]])
            for iid, aid, ious in result.rows:
                w.writerow([iid, aid, *[repr(float(x)) for x in ious]])
        with open(os.path.join(cfg.output_dir, "image_summary.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*[f"{k + 1}-click mIoU" for k in range(n_clicks)], "num_masks", "num_images", "num_skipped"])
            w.writerow(
                [
                    *[repr(float(x)) for x in result.miou],
                    len(result.rows),
                    len({r[0] for r in result.rows}),
                    len(result.skipped),
                ]
            )
    print(format_image_summary(result))
    return result


def format_image_summary(result: ImageEvalResult) -> str:
    """The printed summary (0-100 scale, two decimals)."""
    clicks = "  ".join(f"{k + 1}-click {100 * x:.2f}" for k, x in enumerate(result.miou))
    lines = [f"mIoU: {clicks}", f"{len(result.rows)} masks, {len(result.skipped)} images skipped"]
    lines += [f"  skipped {i}: {why}" for i, why in result.skipped]
    return "\n".join(lines)
