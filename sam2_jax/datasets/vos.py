"""Readers for the on-disk video object segmentation formats, used in place (plain iterators over a folder).

No single official counterpart: the layouts are those read by the DAVIS 2017 toolkit (``davis2017/davis.py``), by
the official ``tools/vos_inference.py`` and ``sav_dataset/sav_evaluator.py`` (SA-V val/test), and by
``sav_dataset/utils/sav_utils.py`` (SA-V train):

- ``DavisFolder``: DAVIS 2017 / YouTube-VOS / MOSE. ``JPEGImages[/<res>]/<video>/<frame>.jpg`` and palette (or
  grayscale) PNGs ``Annotations[/<res>]/<video>/<frame>.png`` whose pixel value is the object id (0 background;
  255 is DAVIS' void label and is read as background, as the DAVIS toolkit does). Annotations may be sparse (a PNG
  only on some frames, as YouTube-VOS at 6 fps or MOSE): a PNG annotates every object on its frame. The videos of
  a split come from ``ImageSets/<year>/<split>.txt`` when it exists, else every annotated video.
- ``SAVFolder``: SA-V val/test. ``JPEGImages_24fps/<video>/<frame>.jpg`` and one binary PNG per object and
  annotated frame, ``Annotations_6fps/<video>/<object id>/<frame>.png`` (nonzero = object). An object folder
  annotates only the frames it has PNGs for. The videos come from ``[sav_]<split>.txt`` (``sav_val.txt``) when it
  exists, else every annotated video.
- ``SAVTrainFolder``: SA-V train. ``<video>.mp4`` with ``<video>_manual.json`` (or ``_auto.json``): COCO RLE
  masklets ``masklet[a][k]`` on every 4th frame of the 24 fps video (the dataset's 6 fps annotation), object ids
  ``masklet_id``.

Every reader yields ``VOSVideo``: frames as a ``VideoSource`` input (a folder, a video file, or an array), and the
masks of the annotated frames, bit-packed (``np.packbits``) so a long high-resolution video stays small in memory.
Bad data (a missing or unreadable frame or annotation, an annotation whose size differs from its frame, a badly
named file, a corrupt JSON) raises ``DataError`` naming the video and the file for ``load``; iterating a reader
skips such a video, logs the message and keeps it in ``reader.errors``, and goes on with the rest.
"""

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DAVIS_VOID = 255
FRAME_EXTS = (".jpg", ".jpeg", ".png")


class DataError(ValueError):
    """Bad data in one video (or image): the message names the video and the file."""


def davis_palette() -> bytes:
    """The DAVIS / official ``vos_inference.py`` palette: colour of index i from the bits of i (768 bytes)."""
    pal = bytearray()
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += bytes((r, g, b))
    return bytes(pal)


DAVIS_PALETTE = davis_palette()


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """``(..., H, W)`` bool -> ``(..., ceil(H*W/8))`` uint8 (``np.packbits`` of the flattened mask)."""
    m = np.asarray(masks, bool)
    return np.packbits(m.reshape(*m.shape[:-2], -1), axis=-1)


def unpack_masks(packed: np.ndarray, height: int, width: int) -> np.ndarray:
    """Inverse of ``pack_masks``."""
    flat = np.unpackbits(packed, axis=-1, count=height * width)
    return flat.reshape(*packed.shape[:-1], height, width).astype(bool)


@dataclasses.dataclass
class VOSVideo:
    """One video with its annotations.

    Attributes:
      video_id: the video's name (its folder or file stem).
      frames: what ``VideoSource`` / ``SAM2VideoPredictor.init_state`` takes: a folder of ``<int>.jpg`` frames, a
        video file path or its bytes, or a ``(T, H, W, 3)`` uint8 array.
      frame_names: ``T`` frame names without extension, in temporal order (the names predictions are written as).
      height, width: frame size.
      object_ids: ``(O,)`` int64 object ids, increasing.
      mask_frames: ``(A,)`` int64 indices (into ``frame_names``) of the annotated frames, increasing.
      annotated: ``(A, O)`` bool, whether object k has an annotation on annotated frame a (False only for SA-V
        object folders that lack that frame).
      packed_masks: ``(A, O, ceil(H*W/8))`` uint8 bit-packed masks (``masks`` unpacks them).
      layout: ``"davis"`` (one palette PNG per frame) or ``"sav"`` (one binary PNG per object and frame): how the
        ground truth is laid out and how predictions are written.
    """

    video_id: str
    frames: Any
    frame_names: list[str]
    height: int
    width: int
    object_ids: np.ndarray
    mask_frames: np.ndarray
    annotated: np.ndarray
    packed_masks: np.ndarray
    layout: str = "davis"

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)

    def masks(self, a: int | None = None) -> np.ndarray:
        """Masks of annotated frame ``a`` as ``(O, H, W)`` bool, or of all as ``(A, O, H, W)`` when ``a`` is None."""
        packed = self.packed_masks if a is None else self.packed_masks[a]
        return unpack_masks(packed, self.height, self.width)

    def first_annotated(self) -> np.ndarray:
        """``(O,)`` index into ``mask_frames`` of each object's first non-empty annotation (-1 if never present)."""
        present = self.packed_masks.any(axis=-1) & self.annotated  # (A, O)
        first = np.argmax(present, axis=0)
        return np.where(present.any(axis=0), first, -1)


def int_stem_files(folder: str, exts: Sequence[str], what: str) -> dict[int, str]:
    """``{int(stem): filename}`` of the files with the given extensions; DataError on a non-integer name."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise DataError(f"cannot list {what} folder {folder}: {e}") from e
    out: dict[int, str] = {}
    for n in names:
        stem, ext = os.path.splitext(n)
        if ext.lower() not in exts:
            continue
        if not stem.isdigit():
            raise DataError(f"{what} file {os.path.join(folder, n)} is not named <int>{ext}")
        if int(stem) in out:
            raise DataError(f"{what} files {out[int(stem)]} and {n} in {folder} have the same number")
        out[int(stem)] = n
    return out


def _image_size(path: str) -> tuple[int, int]:
    """(height, width) from the file header; DataError if unreadable."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from e


def read_label_png(path: str) -> np.ndarray:
    """An annotation PNG as ``(H, W)`` uint8 labels: palette ('P') or grayscale ('L') PNGs only.

    Args:
      path: the PNG file.

    Returns:
      the pixel values (the palette indices for a palette PNG).
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "1"):
                raise DataError(f"annotation {path} is a {im.mode} PNG; expected a palette (P) or grayscale (L) PNG")
            return np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"cannot read annotation {path}: {e}") from e


def write_label_png(path: str, labels: np.ndarray, palette: bytes = DAVIS_PALETTE) -> None:
    """Writes ``(H, W)`` uint8 labels as a palette PNG (the official ``save_ann_png``)."""
    im = Image.fromarray(np.asarray(labels, np.uint8), mode="P")
    im.putpalette(palette)
    im.save(path)


def _frames_folder(folder: str, video: str) -> tuple[list[str], list[int], dict[int, str]]:
    files = int_stem_files(folder, (".jpg", ".jpeg"), "frame")
    if not files:
        raise DataError(f"video {video}: no JPEG frames in {folder}")
    nums = sorted(files)
    # Frames go in constant steps (1 for DAVIS/SA-V, 5 for YouTube-VOS): a gap is a missing frame.
    if len(nums) > 2:
        steps = np.diff(nums)
        step = int(np.min(steps))
        if np.any(steps != step):
            gap = nums[int(np.argmax(steps != step))]
            raise DataError(
                f"video {video}: frame missing after {files[gap]} in {folder} (frames go in steps of {step})"
            )
    return [os.path.splitext(files[n])[0] for n in nums], nums, files


class Reader:
    """Shared iteration: ``video_ids()`` lists the candidates, ``load(video_id)`` reads one or raises DataError."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def video_ids(self) -> list[str]:
        raise NotImplementedError

    def load(self, video_id: str) -> VOSVideo:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.video_ids())

    def __iter__(self) -> Iterator[VOSVideo]:
        self.errors = []
        for vid in self.video_ids():
            try:
                yield self.load(vid)
            except DataError as e:
                log.warning("skipping video %s: %s", vid, e)
                self.errors.append((vid, str(e)))


def _read_list(path: str) -> list[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


class _FolderOfVideos(Reader):
    """A reader over ``image_dir/<video>`` frame folders and ``ann_dir/<video>`` annotation folders."""

    image_dir: str
    ann_dir: str
    _videos: list[str]

    def video_ids(self) -> list[str]:
        return list(self._videos)

    def _list_videos(self, videos: Sequence[str] | None, listing: str | None) -> list[str]:
        """Explicit names, else the listing file when it exists, else every annotated video folder."""
        if videos is not None:
            return list(videos)
        if listing and os.path.exists(listing):
            return _read_list(listing)
        return sorted(v for v in os.listdir(self.ann_dir) if os.path.isdir(os.path.join(self.ann_dir, v)))

    def _video_dirs(self, video_id: str) -> tuple[str, str]:
        frame_dir = os.path.join(self.image_dir, video_id)
        ann_dir = os.path.join(self.ann_dir, video_id)
        if not os.path.isdir(frame_dir):
            raise DataError(f"video {video_id}: frame folder {frame_dir} not found")
        if not os.path.isdir(ann_dir):
            raise DataError(f"video {video_id}: annotation folder {ann_dir} not found")
        return frame_dir, ann_dir


class DavisFolder(_FolderOfVideos):
    """DAVIS 2017 / YouTube-VOS / MOSE layout (module docstring).

    Args:
      root: the dataset folder (with ``JPEGImages`` and ``Annotations``; for YouTube-VOS and MOSE the split folder,
        e.g. ``ytvos/valid``).
      split: ``ImageSets/<year>/<split>.txt`` lists the videos when it exists (DAVIS: ``train``, ``val``).
      resolution: the subfolder under ``JPEGImages`` and ``Annotations`` (DAVIS: ``480p`` or
        ``Full-Resolution``); None picks ``480p`` when it exists, else none.
      year: the ``ImageSets`` year.
      videos: explicit video names (overrides the lists).
    """

    def __init__(
        self,
        root: str,
        split: str | None = "val",
        resolution: str | None = None,
        year: str = "2017",
        videos: Sequence[str] | None = None,
    ):
        super().__init__()
        if not os.path.isdir(root):
            raise ValueError(f"dataset folder {root!r} does not exist")
        if resolution is None and os.path.isdir(os.path.join(root, "JPEGImages", "480p")):
            resolution = "480p"
        sub = (resolution,) if resolution else ()
        self.root = root
        self.image_dir = os.path.join(root, "JPEGImages", *sub)
        self.ann_dir = os.path.join(root, "Annotations", *sub)
        for d in (self.image_dir, self.ann_dir):
            if not os.path.isdir(d):
                raise ValueError(f"{d!r} not found: expected the DAVIS layout JPEGImages[/<res>], Annotations[/<res>]")
        listing = os.path.join(root, "ImageSets", year, f"{split}.txt") if split else None
        self._videos = self._list_videos(videos, listing)

    def load(self, video_id: str) -> VOSVideo:
        frame_dir, ann_dir = self._video_dirs(video_id)
        names, nums, files = _frames_folder(frame_dir, video_id)
        pngs = int_stem_files(ann_dir, (".png",), "annotation")
        if not pngs:
            raise DataError(f"video {video_id}: no annotation PNGs in {ann_dir}")
        index = {n: i for i, n in enumerate(nums)}
        height, width = _image_size(os.path.join(frame_dir, files[nums[0]]))
        labels, mask_frames = [], []
        for n in sorted(pngs):
            path = os.path.join(ann_dir, pngs[n])
            if n not in index:
                raise DataError(f"video {video_id}: annotation {path} has no frame {n} in {frame_dir}")
            lab = read_label_png(path)
            if lab.shape != (height, width):
                raise DataError(
                    f"video {video_id}: annotation {path} is {lab.shape[1]}x{lab.shape[0]} but the frames are "
                    f"{width}x{height}"
                )
            fh, fw = _image_size(os.path.join(frame_dir, files[n]))
            if (fh, fw) != (height, width):
                raise DataError(f"video {video_id}: frame {files[n]} is {fw}x{fh}, frame 0 is {width}x{height}")
            labels.append(np.where(lab == DAVIS_VOID, 0, lab))
            mask_frames.append(index[n])
        labels = np.stack(labels)
        ids = np.unique(labels)
        ids = ids[ids != 0].astype(np.int64)
        masks = labels[:, None] == ids[None, :, None, None]
        return VOSVideo(
            video_id=video_id,
            frames=frame_dir,
            frame_names=names,
            height=height,
            width=width,
            object_ids=ids,
            mask_frames=np.asarray(mask_frames, np.int64),
            annotated=np.ones((len(mask_frames), len(ids)), bool),
            packed_masks=pack_masks(masks),
            layout="davis",
        )


class SAVFolder(_FolderOfVideos):
    """SA-V val/test layout (module docstring).

    Args:
      root: the split folder (with ``JPEGImages_24fps`` and ``Annotations_6fps``).
      split: ``<root>/<split>.txt`` or ``<root>/sav_<split>.txt`` lists the videos when it exists (SA-V ships
        ``sav_val.txt`` and ``sav_test.txt``).
      videos: explicit video names (overrides the list).
    """

    def __init__(self, root: str, split: str | None = None, videos: Sequence[str] | None = None):
        super().__init__()
        self.root = root
        self.image_dir = os.path.join(root, "JPEGImages_24fps")
        self.ann_dir = os.path.join(root, "Annotations_6fps")
        for d in (self.image_dir, self.ann_dir):
            if not os.path.isdir(d):
                raise ValueError(f"{d!r} not found: expected the SA-V layout JPEGImages_24fps, Annotations_6fps")
        listings = [os.path.join(root, f"{n}.txt") for n in (split, f"sav_{split}")] if split else []
        listings = [p for p in listings if os.path.exists(p)]
        self._videos = self._list_videos(videos, listings[0] if listings else None)

    def load(self, video_id: str) -> VOSVideo:
        frame_dir, ann_dir = self._video_dirs(video_id)
        names, nums, files = _frames_folder(frame_dir, video_id)
        index = {n: i for i, n in enumerate(nums)}
        height, width = _image_size(os.path.join(frame_dir, files[nums[0]]))
        objs = sorted(d for d in os.listdir(ann_dir) if os.path.isdir(os.path.join(ann_dir, d)))
        if not objs:
            raise DataError(f"video {video_id}: no object folders in {ann_dir}")
        bad = [d for d in objs if not d.isdigit()]
        if bad:
            raise DataError(f"video {video_id}: object folders {bad} in {ann_dir} are not named by integer ids")
        obj_ids = np.array([int(d) for d in objs], np.int64)
        order = np.argsort(obj_ids, kind="stable")
        objs, obj_ids = [objs[i] for i in order], obj_ids[order]
        per_obj = [int_stem_files(os.path.join(ann_dir, d), (".png",), "annotation") for d in objs]
        all_nums = sorted(set().union(*per_obj))
        for n in all_nums:
            if n not in index:
                where = next(os.path.join(ann_dir, d) for d, p in zip(objs, per_obj, strict=True) if n in p)
                raise DataError(f"video {video_id}: annotation {n} in {where} has no frame in {frame_dir}")
        masks = np.zeros((len(all_nums), len(objs), height, width), bool)
        annotated = np.zeros((len(all_nums), len(objs)), bool)
        for a, n in enumerate(all_nums):
            for k, (d, pngs) in enumerate(zip(objs, per_obj, strict=True)):
                if n not in pngs:
                    continue
                path = os.path.join(ann_dir, d, pngs[n])
                lab = read_label_png(path)
                if lab.shape != (height, width):
                    raise DataError(
                        f"video {video_id}: annotation {path} is {lab.shape[1]}x{lab.shape[0]} but the frames are "
                        f"{width}x{height}"
                    )
                masks[a, k] = lab > 0
                annotated[a, k] = True
        return VOSVideo(
            video_id=video_id,
            frames=frame_dir,
            frame_names=names,
            height=height,
            width=width,
            object_ids=obj_ids,
            mask_frames=np.array([index[n] for n in all_nums], np.int64),
            annotated=annotated,
            packed_masks=pack_masks(masks),
            layout="sav",
        )


SAV_TRAIN_STRIDE = 4  # SA-V train masklets annotate every 4th frame of the 24 fps video (6 fps)


def read_sav_json(path: str, video_id: str | None = None) -> dict:
    """An SA-V train annotation JSON, checked: ``masklet`` (A lists of O COCO RLEs), ``masklet_id`` (O ids),
    ``video_height``, ``video_width``, ``video_frame_count``.

    Args:
      path: the ``_manual.json`` or ``_auto.json`` file.
      video_id: for messages.

    Returns:
      the parsed JSON.
    """
    name = video_id or os.path.basename(path)
    try:
        with open(path) as f:
            ann = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"video {name}: cannot read annotation {path}: {e}") from e
    for key in ("masklet", "masklet_id", "video_height", "video_width", "video_frame_count"):
        if key not in ann:
            raise DataError(f"video {name}: annotation {path} has no {key!r}")
    n = len(ann["masklet_id"])
    for a, objs in enumerate(ann["masklet"]):
        if len(objs) != n:
            raise DataError(f"video {name}: {path} frame {a} has {len(objs)} masks for {n} masklet ids")
    return ann


def decode_rles(rles: Sequence[dict], height: int, width: int, where: str) -> np.ndarray:
    """COCO RLEs (``{"size": [H, W], "counts": str}``) as ``(N, H, W)`` bool; DataError on a wrong size."""
    from pycocotools import mask as mask_utils

    out = np.zeros((len(rles), height, width), bool)
    for i, rle in enumerate(rles):
        if list(rle.get("size", ())) != [height, width]:
            raise DataError(f"{where}: mask {i} has size {rle.get('size')} but the frames are {height}x{width} (HxW)")
        try:
            out[i] = mask_utils.decode(rle) > 0
        except Exception as e:  # pycocotools raises bare exceptions on bad counts
            raise DataError(f"{where}: mask {i} is not a valid COCO RLE: {e}") from e
    return out


def sav_train_video(video_id: str, video: Any, ann: dict, frame_count: int | None = None) -> VOSVideo:
    """A ``VOSVideo`` from an SA-V train annotation and its video (a path, bytes or array).

    Args:
      video_id: the name.
      video: the ``VideoSource`` input.
      ann: ``read_sav_json``'s result.
      frame_count: number of video frames (default: the JSON's ``video_frame_count``).

    Returns:
      the video, annotated frames ``0, 4, 8, ...``.
    """
    h, w = int(ann["video_height"]), int(ann["video_width"])
    t = int(frame_count if frame_count is not None else ann["video_frame_count"])
    a = len(ann["masklet"])
    if a == 0 or math.ceil(t / SAV_TRAIN_STRIDE) != a:
        raise DataError(
            f"video {video_id}: {a} annotated frames do not fit {t} video frames annotated every {SAV_TRAIN_STRIDE}"
        )
    masks = np.stack([decode_rles(objs, h, w, f"video {video_id} frame {i}") for i, objs in enumerate(ann["masklet"])])
    ids = np.array([int(i) for i in ann["masklet_id"]], np.int64)
    return VOSVideo(
        video_id=video_id,
        frames=video,
        frame_names=[f"{i:05d}" for i in range(t)],
        height=h,
        width=w,
        object_ids=ids,
        mask_frames=np.arange(a, dtype=np.int64) * SAV_TRAIN_STRIDE,
        annotated=np.ones((a, len(ids)), bool),
        packed_masks=pack_masks(masks),
        layout="sav",
    )


class SAVTrainFolder(Reader):
    """SA-V train layout: ``<video>.mp4`` + ``<video>_manual.json`` / ``_auto.json`` (module docstring).

    Args:
      root: the folder (e.g. ``sav_000``).
      annotation: ``"manual"`` or ``"auto"``.
      videos: explicit video names (default: every ``*_<annotation>.json``).
    """

    def __init__(self, root: str, annotation: str = "manual", videos: Sequence[str] | None = None):
        super().__init__()
        if annotation not in ("manual", "auto"):
            raise ValueError(f"annotation must be 'manual' or 'auto', got {annotation!r}")
        if not os.path.isdir(root):
            raise ValueError(f"dataset folder {root!r} does not exist")
        self.root = root
        self.annotation = annotation
        suffix = f"_{annotation}.json"
        if videos is not None:
            self._videos = list(videos)
        else:
            self._videos = sorted(n[: -len(suffix)] for n in os.listdir(root) if n.endswith(suffix))

    def video_ids(self) -> list[str]:
        return list(self._videos)

    def load(self, video_id: str) -> VOSVideo:
        mp4 = os.path.join(self.root, f"{video_id}.mp4")
        if not os.path.isfile(mp4):
            raise DataError(f"video {video_id}: video file {mp4} not found")
        ann = read_sav_json(os.path.join(self.root, f"{video_id}_{self.annotation}.json"), video_id)
        return sav_train_video(video_id, mp4, ann)


def vos_video_from_arrays(
    video_id: str,
    frames: np.ndarray,
    masks: np.ndarray,
    object_ids: Sequence[int],
    annotation_stride: int = 1,
    layout: str = "davis",
) -> VOSVideo:
    """A ``VOSVideo`` from in-memory arrays (e.g. a ``SyntheticVideo``), annotated every ``annotation_stride``.

    Args:
      video_id: the name.
      frames: ``(T, H, W, 3)`` uint8.
      masks: ``(T, O, H, W)`` bool ground truth of every frame.
      object_ids: ``(O,)`` ids.
      annotation_stride: keep the annotations of frames ``0, s, 2s, ...``.
      layout: the output layout predictions default to.

    Returns:
      the video.
    """
    frames, masks = np.asarray(frames), np.asarray(masks, bool)
    t, o = masks.shape[:2]
    if frames.shape[0] != t or frames.shape[1:3] != masks.shape[2:] or len(object_ids) != o:
        raise ValueError(f"frames {frames.shape}, masks {masks.shape} and {len(object_ids)} ids do not fit")
    rows = np.arange(0, t, annotation_stride, dtype=np.int64)
    return VOSVideo(
        video_id=video_id,
        frames=frames,
        frame_names=[f"{i:05d}" for i in range(t)],
        height=frames.shape[1],
        width=frames.shape[2],
        object_ids=np.asarray(object_ids, np.int64),
        mask_frames=rows,
        annotated=np.ones((len(rows), o), bool),
        packed_masks=pack_masks(masks[rows]),
        layout=layout,
    )
