"""Writes videos and images with masks in the on-disk formats the readers take (DAVIS, SA-V val/test, SA-V train,
SA-1B): for tests, examples, and for turning the synthetic source into a benchmark-shaped folder.

Frames are written as JPEG with PIL at a fixed quality (deterministic: the same frame gives the same bytes), except
SA-V train videos, which are H.264 in RGB with ``crf=0`` (``libx264rgb``: lossless), so a video written from the
decoded JPEG frames decodes to exactly the pixels the JPEG formats give (``jpeg_roundtrip``).
"""

import io
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from sam2_jax.datasets.vos import DAVIS_PALETTE, write_label_png

JPEG_QUALITY = 95


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``(H, W, 3)`` uint8 -> JPEG bytes (PIL, fixed settings)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> ``(H, W, 3)`` uint8 RGB."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def jpeg_roundtrip(frames: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """The pixels a reader gets back from frames written by these writers."""
    return np.stack([decode_jpeg(encode_jpeg(f, quality)) for f in frames])


def _labels(masks: np.ndarray, object_ids: Sequence[int]) -> np.ndarray:
    """``(O, H, W)`` disjoint masks -> ``(H, W)`` uint8 labels; the lowest id wins an overlap (official
    ``put_per_obj_mask``)."""
    lab = np.zeros(masks.shape[1:], np.uint8)
    for k in np.argsort(object_ids)[::-1]:
        lab[masks[k]] = object_ids[k]
    return lab


def _check(frames: np.ndarray, masks: np.ndarray, object_ids: Sequence[int]) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    if masks.shape[0] != frames.shape[0] or masks.shape[2:] != frames.shape[1:3] or masks.shape[1] != len(object_ids):
        raise ValueError(f"masks {masks.shape} do not fit frames {frames.shape} and {len(object_ids)} object ids")


def write_davis(
    videos: Iterable,
    root: str,
    split: str = "val",
    resolution: str | None = "480p",
    annotation_stride: int = 1,
    jpeg_quality: int = JPEG_QUALITY,
) -> list[str]:
    """DAVIS layout: ``JPEGImages/<res>/<video>/%05d.jpg``, palette ``Annotations/<res>/<video>/%05d.png`` on
    every ``annotation_stride``-th frame, and ``ImageSets/2017/<split>.txt``.

    Args:
      videos: items with ``video_id``, ``frames`` ``(T, H, W, 3)`` uint8, ``masks`` ``(T, O, H, W)`` bool and
        ``object_ids`` (1..255), e.g. ``SyntheticVideo``.
      root: output folder.
      split: the list's name.
      resolution: the subfolder (None: none).
      annotation_stride: write annotations on frames ``0, s, 2s, ...``.
      jpeg_quality: PIL JPEG quality.

    Returns:
      the video names written.
    """
    sub = (resolution,) if resolution else ()
    names = []
    for v in videos:
        _check(v.frames, v.masks, v.object_ids)
        fdir = os.path.join(root, "JPEGImages", *sub, v.video_id)
        adir = os.path.join(root, "Annotations", *sub, v.video_id)
        os.makedirs(fdir, exist_ok=True)
        os.makedirs(adir, exist_ok=True)
        for t, frame in enumerate(v.frames):
            with open(os.path.join(fdir, f"{t:05d}.jpg"), "wb") as f:
                f.write(encode_jpeg(frame, jpeg_quality))
            if t % annotation_stride == 0:
                write_label_png(os.path.join(adir, f"{t:05d}.png"), _labels(v.masks[t], v.object_ids))
        names.append(v.video_id)
    os.makedirs(os.path.join(root, "ImageSets", "2017"), exist_ok=True)
    with open(os.path.join(root, "ImageSets", "2017", f"{split}.txt"), "w") as f:
        f.write("".join(f"{n}\n" for n in names))
    return names


def write_sav(
    videos: Iterable, root: str, split: str = "val", annotation_stride: int = 4, jpeg_quality: int = JPEG_QUALITY
) -> list[str]:
    """SA-V val/test layout: ``JPEGImages_24fps/<video>/%05d.jpg``, ``Annotations_6fps/<video>/%03d/%05d.png``
    (binary palette PNGs, one per object and annotated frame) and ``sav_<split>.txt``.

    Args:
      videos: as ``write_davis``.
      root: output folder.
      split: the list's name.
      annotation_stride: annotated frames ``0, s, 2s, ...`` (SA-V: 4, i.e. 6 of 24 fps).
      jpeg_quality: PIL JPEG quality.

    Returns:
      the video names written.
    """
    names = []
    for v in videos:
        _check(v.frames, v.masks, v.object_ids)
        fdir = os.path.join(root, "JPEGImages_24fps", v.video_id)
        os.makedirs(fdir, exist_ok=True)
        for t, frame in enumerate(v.frames):
            with open(os.path.join(fdir, f"{t:05d}.jpg"), "wb") as f:
                f.write(encode_jpeg(frame, jpeg_quality))
        for k, oid in enumerate(v.object_ids):
            adir = os.path.join(root, "Annotations_6fps", v.video_id, f"{int(oid):03d}")
            os.makedirs(adir, exist_ok=True)
            for t in range(0, len(v.frames), annotation_stride):
                write_label_png(os.path.join(adir, f"{t:05d}.png"), v.masks[t, k].astype(np.uint8))
        names.append(v.video_id)
    with open(os.path.join(root, f"sav_{split}.txt"), "w") as f:
        f.write("".join(f"{n}\n" for n in names))
    return names


def encode_rle(mask: np.ndarray) -> dict:
    """``(H, W)`` bool -> COCO RLE ``{"size": [H, W], "counts": str}`` (as in SA-V and SA-1B JSON)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_lossless_mp4(path: str, frames: np.ndarray, fps: int = 24) -> None:
    """``(T, H, W, 3)`` uint8 -> an MP4 that decodes to exactly these pixels (H.264 RGB, crf 0)."""
    import av

    with av.open(path, "w", format="mp4") as c:
        s = c.add_stream("libx264rgb", rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "rgb24"
        s.options = {"crf": "0", "preset": "ultrafast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def write_sav_train(videos: Iterable, root: str, annotation: str = "manual") -> list[str]:
    """SA-V train layout: ``<video>.mp4`` (lossless, see module docstring) and ``<video>_<annotation>.json`` with
    COCO RLE masklets on every 4th frame.

    Args:
      videos: as ``write_davis``; write ``jpeg_roundtrip`` frames to match the JPEG formats pixel for pixel.
      root: output folder.
      annotation: ``"manual"`` or ``"auto"``.

    Returns:
      the video names written.
    """
    from sam2_jax.datasets.vos import SAV_TRAIN_STRIDE

    os.makedirs(root, exist_ok=True)
    names = []
    for v in videos:
        _check(v.frames, v.masks, v.object_ids)
        t, h, w = v.frames.shape[:3]
        write_lossless_mp4(os.path.join(root, f"{v.video_id}.mp4"), v.frames)
        ann_frames = range(0, t, SAV_TRAIN_STRIDE)
        ann = {
            "video_id": v.video_id,
            "video_frame_count": float(t),
            "video_height": float(h),
            "video_width": float(w),
            "masklet": [[encode_rle(v.masks[i, k]) for k in range(len(v.object_ids))] for i in ann_frames],
            "masklet_id": [int(o) for o in v.object_ids],
            "masklet_num": len(v.object_ids),
            "masklet_type": [annotation] * len(v.object_ids),
        }
        with open(os.path.join(root, f"{v.video_id}_{annotation}.json"), "w") as f:
            json.dump(ann, f)
        names.append(v.video_id)
    return names


def write_sa1b(images: Iterable, root: str, jpeg_quality: int = JPEG_QUALITY) -> list[str]:
    """SA-1B layout: ``<id>.jpg`` + ``<id>.json`` with one RLE annotation per mask.

    Args:
      images: items with ``image_id``, ``image`` ``(H, W, 3)`` uint8 and ``masks`` ``(N, H, W)`` bool, e.g.
        ``SyntheticImage``; empty masks are left out, as SA-1B has none.
      root: output folder.
      jpeg_quality: PIL JPEG quality.

    Returns:
      the image ids written.
    """
    os.makedirs(root, exist_ok=True)
    names = []
    for i, im in enumerate(images):
        h, w = im.image.shape[:2]
        with open(os.path.join(root, f"{im.image_id}.jpg"), "wb") as f:
            f.write(encode_jpeg(im.image, jpeg_quality))
        anns = []
        for k, m in enumerate(im.masks):
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "segmentation": encode_rle(m),
                    "bbox": [
                        float(xs.min()),
                        float(ys.min()),
                        float(xs.max() - xs.min() + 1),
                        float(ys.max() - ys.min() + 1),
                    ],
                    "area": int(m.sum()),
                    "predicted_iou": 1.0,
                    "stability_score": 1.0,
                    "point_coords": [[float(xs[len(xs) // 2]), float(ys[len(ys) // 2])]],
                    "crop_box": [0.0, 0.0, float(w), float(h)],
                    "object_index": k,
                }
            )
        info = {"image_id": i, "width": w, "height": h, "file_name": f"{im.image_id}.jpg"}
        with open(os.path.join(root, f"{im.image_id}.json"), "w") as f:
            json.dump({"image": info, "annotations": anns}, f)
        names.append(im.image_id)
    return names


__all__ = [
    "DAVIS_PALETTE",
    "decode_jpeg",
    "encode_jpeg",
    "encode_rle",
    "jpeg_roundtrip",
    "write_davis",
    "write_lossless_mp4",
    "write_sa1b",
    "write_sav",
    "write_sav_train",
]
