"""Reader for SA-1B images used in place: ``<id>.jpg`` beside ``<id>.json``.

The JSON is SA-1B's (``segment-anything`` dataset card): ``{"image": {"image_id", "width", "height",
"file_name"}, "annotations": [{"id", "segmentation": {"size": [H, W], "counts": str}, "bbox": [x, y, w, h],
"area", "predicted_iou", "stability_score", "point_coords", "crop_box"}]}`` with COCO RLE masks. Masks stay RLE in
``SA1BImage`` and are decoded on demand (an SA-1B image has about 100 masks of 1500x2250 pixels).

A missing image, an unreadable JSON, a mask whose size differs from the image raise ``DataError`` for ``load``;
iterating ``SA1BFolder`` skips the image, logs the message and keeps it in ``errors``.
"""

import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from sam2_jax.datasets.vos import DataError, decode_rles

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SA1BImage:
    """One image and its annotations.

    Attributes:
      image_id: the file stem (e.g. ``sa_1``).
      image: the image file path, or an ``(H, W, 3)`` uint8 array.
      height, width: image size.
      annotation_ids: ``(N,)`` int64.
      rles: N COCO RLE dicts.
      boxes: ``(N, 4)`` float64 ``[x, y, w, h]`` boxes (as in the JSON).
    """

    image_id: str
    image: Any
    height: int
    width: int
    annotation_ids: np.ndarray
    rles: list[dict]
    boxes: np.ndarray

    def masks(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """``(N, H, W)`` bool masks (all, or those at ``indices``)."""
        rles = self.rles if indices is None else [self.rles[i] for i in indices]
        return decode_rles(rles, self.height, self.width, f"image {self.image_id}")

    def load_image(self) -> np.ndarray:
        """The image as ``(H, W, 3)`` uint8 RGB."""
        if isinstance(self.image, np.ndarray):
            return self.image
        try:
            with Image.open(self.image) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"image {self.image_id}: cannot read {self.image}: {e}") from e


def sa1b_image(image_id: str, image: Any, ann: dict) -> SA1BImage:
    """An ``SA1BImage`` from a parsed SA-1B JSON, checked.

    Args:
      image_id: the name.
      image: a path or an array.
      ann: the parsed JSON.

    Returns:
      the image record.
    """
    try:
        info = ann["image"]
        h, w = int(info["height"]), int(info["width"])
        anns = ann["annotations"]
        rles = [a["segmentation"] for a in anns]
        ids = np.array([int(a["id"]) for a in anns], np.int64)
        boxes = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"image {image_id}: annotation is not SA-1B JSON: missing or bad {e}") from e
    for i, rle in enumerate(rles):
        if not isinstance(rle, dict) or list(rle.get("size", ())) != [h, w]:
            size = rle.get("size") if isinstance(rle, dict) else rle
            raise DataError(f"image {image_id}: mask {i} has size {size} but the image is {h}x{w} (HxW)")
    return SA1BImage(image_id, image, h, w, ids, rles, boxes)


class SA1BFolder:
    """A folder of SA-1B ``<id>.jpg`` + ``<id>.json`` pairs.

    Args:
      root: the folder (e.g. an extracted ``sa_000000`` tar).
      images: explicit image ids (default: every ``*.json`` with its stem).
    """

    def __init__(self, root: str, images: Sequence[str] | None = None):
        if not os.path.isdir(root):
            raise ValueError(f"dataset folder {root!r} does not exist")
        self.root = root
        self.errors: list[tuple[str, str]] = []
        if images is not None:
            self._ids = list(images)
        else:
            self._ids = sorted(os.path.splitext(n)[0] for n in os.listdir(root) if n.endswith(".json"))

    def image_ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def load(self, image_id: str) -> SA1BImage:
        jpg = os.path.join(self.root, f"{image_id}.jpg")
        if not os.path.isfile(jpg):
            raise DataError(f"image {image_id}: {jpg} not found")
        path = os.path.join(self.root, f"{image_id}.json")
        try:
            with open(path) as f:
                ann = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(f"image {image_id}: cannot read annotation {path}: {e}") from e
        rec = sa1b_image(image_id, jpg, ann)
        try:
            with Image.open(jpg) as im:
                size = im.size
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"image {image_id}: cannot read {jpg}: {e}") from e
        if size != (rec.width, rec.height):
            raise DataError(
                f"image {image_id}: {jpg} is {size[0]}x{size[1]} but its JSON says {rec.width}x{rec.height}"
            )
        return rec

    def __iter__(self) -> Iterator[SA1BImage]:
        self.errors = []
        for i in self._ids:
            try:
                yield self.load(i)
            except DataError as e:
                log.warning("skipping image %s: %s", i, e)
                self.errors.append((i, str(e)))
