"""tensorflow-datasets builders over the folder readers, written as ``array_record`` and read with
``builder.as_data_source()``: no TensorFlow is needed to build or to read.

Every feature is a ``tfds.features.Tensor`` (``tfds.features.Image`` / ``Video`` need TensorFlow to encode): frames
are kept as their JPEG bytes (decoded with PIL when read, so the pixels equal the folder's), an SA-V train video as
its MP4 bytes, masks bit-packed (``np.packbits``) and ZLIB-compressed, SA-1B masks as their COCO RLE strings.

Usage::

    builder = VOSFolderBuilder(config="davis", data_dir="~/tensorflow_datasets", file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="/data/DAVIS"))
    source = builder.as_data_source()["val"]          # random access, no TensorFlow
    video = vos_video_from_record(source[0])          # a VOSVideo, as the folder reader gives

Configs: ``davis`` (DAVIS 2017 / YouTube-VOS / MOSE, ``DavisFolder``), ``sav`` (SA-V val/test, ``SAVFolder``),
``sav_train`` (``SAVTrainFolder``); the split name is the reader's split (``val`` unless ``split=`` is given).
``SA1BBuilder`` holds SA-1B images. A video the reader rejects is left out with its message logged and stored in
``builder.skipped`` during the build (and in ``<data_dir>/.../skipped.json`` beside the records).
"""

import dataclasses
import inspect
import json
import logging
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from sam2_jax.datasets import sa1b, vos
from sam2_jax.datasets.writers import decode_jpeg

log = logging.getLogger(__name__)

_VOS_FEATURES = {
    "video_id": tfds.features.Tensor(shape=(), dtype=np.str_),
    "layout": tfds.features.Tensor(shape=(), dtype=np.str_),
    "frame_names": tfds.features.Tensor(shape=(None,), dtype=np.str_),
    "frames_jpeg": tfds.features.Tensor(shape=(None,), dtype=np.object_),
    "video_bytes": tfds.features.Tensor(shape=(), dtype=np.object_),
    "height": tfds.features.Tensor(shape=(), dtype=np.int32),
    "width": tfds.features.Tensor(shape=(), dtype=np.int32),
    "object_ids": tfds.features.Tensor(shape=(None,), dtype=np.int64),
    "mask_frames": tfds.features.Tensor(shape=(None,), dtype=np.int64),
    "annotated": tfds.features.Tensor(shape=(None, None), dtype=np.bool_, encoding=tfds.features.Encoding.ZLIB),
    "packed_masks": tfds.features.Tensor(
        shape=(None, None, None), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
    ),
}


def _frame_files(folder: str) -> list[str]:
    files = vos.int_stem_files(folder, (".jpg", ".jpeg"), "frame")
    return [os.path.join(folder, files[n]) for n in sorted(files)]


def vos_record(video: vos.VOSVideo) -> dict:
    """A ``VOSVideo`` as a builder example (frames from a folder as JPEG bytes, a video file as its bytes)."""
    jpegs: list[bytes] = []
    blob = b""
    if isinstance(video.frames, str) and os.path.isdir(video.frames):
        for p in _frame_files(video.frames):
            with open(p, "rb") as f:
                jpegs.append(f.read())
    elif isinstance(video.frames, str):
        with open(video.frames, "rb") as f:
            blob = f.read()
    elif isinstance(video.frames, bytes):
        blob = video.frames
    else:
        from sam2_jax.datasets.writers import encode_jpeg

        jpegs = [encode_jpeg(f) for f in np.asarray(video.frames)]
    return {
        "video_id": video.video_id,
        "layout": video.layout,
        "frame_names": np.array(video.frame_names, dtype=np.object_),
        "frames_jpeg": np.array(jpegs, dtype=np.object_),
        "video_bytes": blob,
        "height": np.int32(video.height),
        "width": np.int32(video.width),
        "object_ids": np.asarray(video.object_ids, np.int64),
        "mask_frames": np.asarray(video.mask_frames, np.int64),
        "annotated": np.asarray(video.annotated, bool),
        "packed_masks": np.asarray(video.packed_masks, np.uint8),
    }


def _str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def vos_video_from_record(record: dict) -> vos.VOSVideo:
    """A builder example (from ``as_data_source()``) as a ``VOSVideo``; JPEG frames are decoded into an array.

    Args:
      record: one element of the data source.

    Returns:
      the video, equal to what the folder reader gives (frames as pixels instead of a path).
    """
    jpegs = list(record["frames_jpeg"])
    frames = np.stack([decode_jpeg(b) for b in jpegs]) if jpegs else bytes(record["video_bytes"])
    return vos.VOSVideo(
        video_id=_str(record["video_id"]),
        frames=frames,
        frame_names=[_str(n) for n in record["frame_names"]],
        height=int(record["height"]),
        width=int(record["width"]),
        object_ids=np.asarray(record["object_ids"], np.int64),
        mask_frames=np.asarray(record["mask_frames"], np.int64),
        annotated=np.asarray(record["annotated"], bool).reshape(len(record["mask_frames"]), -1),
        packed_masks=np.asarray(record["packed_masks"], np.uint8),
        layout=_str(record["layout"]),
    )


@dataclasses.dataclass
class VOSFolderConfig(tfds.core.BuilderConfig):
    """Which reader builds the dataset."""

    reader: str = "davis"


def make_reader(kind: str, root: str, split: str | None = None, **kwargs) -> vos.Reader:
    """The folder reader of a layout: ``davis``, ``sav`` or ``sav_train``.

    Args:
      kind: the layout.
      root: the folder.
      split: the split (DAVIS ``ImageSets`` list, SA-V ``<split>.txt``).
      **kwargs: passed to the reader.

    Returns:
      the reader.
    """
    if kind == "davis":
        return vos.DavisFolder(root, split=split or "val", **kwargs)
    if kind == "sav":
        return vos.SAVFolder(root, split=split, **kwargs)
    if kind == "sav_train":
        return vos.SAVTrainFolder(root, **kwargs)
    raise ValueError(f"unknown layout {kind!r}, expected davis, sav or sav_train")


class _CodePath:
    """tfds 4.9.10 looks up a builder's source file through ``importlib_resources``, which it does not install on
    Python >= 3.9; the file of the class is what it wants."""

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls))


class _SkipLogging(_CodePath):
    skipped: list

    def _note_skip(self, name: str, message: str) -> None:
        log.warning("skipping %s: %s", name, message)
        self.skipped.append((name, message))

    def _save_skipped(self) -> None:
        path = os.path.join(str(self.data_dir), "skipped.json")
        with open(path, "w") as f:
            json.dump(self.skipped, f, indent=1)


class VOSFolderBuilder(_SkipLogging, tfds.core.GeneratorBasedBuilder):
    """A VOS folder (DAVIS / YouTube-VOS / MOSE, SA-V val/test, SA-V train) as a tfds dataset.

    Args (besides the ``GeneratorBasedBuilder`` ones):
      split: the split to build and its video list (default ``val``: DAVIS ``ImageSets/2017/val.txt``, SA-V
        ``sav_val.txt``; all annotated videos when there is no list).
      videos: explicit video names.
    """

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [VOSFolderConfig(name=n, reader=n) for n in ("davis", "sav", "sav_train")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at the dataset folder, used in place."

    def __init__(self, *, split: str = "val", videos=None, **kwargs):
        self._split = split
        self._videos = videos
        self.skipped = []
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(_VOS_FEATURES), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        kw = {"videos": self._videos} if self._videos is not None else {}
        reader = make_reader(self.builder_config.reader, str(dl_manager.manual_dir), self._split, **kw)
        return {self._split: self._generate_examples(reader)}

    def _generate_examples(self, reader):
        self.skipped = []
        for vid in reader.video_ids():
            try:
                rec = vos_record(reader.load(vid))
            except vos.DataError as e:
                self._note_skip(vid, str(e))
                continue
            yield vid, rec

    def download_and_prepare(self, *args, **kwargs):
        super().download_and_prepare(*args, **kwargs)
        self._save_skipped()


class SyntheticVOSBuilder(_CodePath, tfds.core.GeneratorBasedBuilder):
    """The synthetic source (``SyntheticVideoDataset``) as a tfds dataset, one split ``train``.

    Args (besides the ``GeneratorBasedBuilder`` ones):
      dataset: the ``SyntheticVideoDataset`` to write (frames stored as JPEG, all frames annotated).
    """

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, dataset=None, **kwargs):
        self._dataset = dataset
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(_VOS_FEATURES), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        if self._dataset is None:
            raise ValueError("SyntheticVOSBuilder needs dataset=SyntheticVideoDataset(...) to build")
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for v in self._dataset:
            t, o = v.masks.shape[:2]
            video = vos.VOSVideo(
                video_id=v.video_id,
                frames=v.frames,
                frame_names=[f"{i:05d}" for i in range(t)],
                height=v.frames.shape[1],
                width=v.frames.shape[2],
                object_ids=np.asarray(v.object_ids, np.int64),
                mask_frames=np.arange(t, dtype=np.int64),
                annotated=np.ones((t, o), bool),
                packed_masks=vos.pack_masks(v.masks),
            )
            yield v.video_id, vos_record(video)


_SA1B_FEATURES = {
    "image_id": tfds.features.Tensor(shape=(), dtype=np.str_),
    "image_jpeg": tfds.features.Tensor(shape=(), dtype=np.object_),
    "height": tfds.features.Tensor(shape=(), dtype=np.int32),
    "width": tfds.features.Tensor(shape=(), dtype=np.int32),
    "annotation_ids": tfds.features.Tensor(shape=(None,), dtype=np.int64),
    "rle_counts": tfds.features.Tensor(shape=(None,), dtype=np.object_),
    "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float64),
}


def sa1b_image_from_record(record: dict) -> sa1b.SA1BImage:
    """A ``SA1BBuilder`` example as an ``SA1BImage`` (the image decoded into an array)."""
    h, w = int(record["height"]), int(record["width"])
    rles = [{"size": [h, w], "counts": _str(c)} for c in record["rle_counts"]]
    return sa1b.SA1BImage(
        image_id=_str(record["image_id"]),
        image=decode_jpeg(bytes(record["image_jpeg"])),
        height=h,
        width=w,
        annotation_ids=np.asarray(record["annotation_ids"], np.int64),
        rles=rles,
        boxes=np.asarray(record["boxes"], np.float64).reshape(-1, 4),
    )


class SA1BBuilder(_SkipLogging, tfds.core.GeneratorBasedBuilder):
    """An SA-1B folder (``<id>.jpg`` + ``<id>.json``) as a tfds dataset, one split ``train``."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at a folder of SA-1B <id>.jpg + <id>.json files."

    def __init__(self, **kwargs):
        self.skipped = []
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(_SA1B_FEATURES), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(sa1b.SA1BFolder(str(dl_manager.manual_dir)))}

    def _generate_examples(self, folder):
        self.skipped = []
        for iid in folder.image_ids():
            try:
                rec = folder.load(iid)
                with open(rec.image, "rb") as f:
                    jpeg = f.read()
            except (vos.DataError, OSError) as e:
                self._note_skip(iid, str(e))
                continue
            yield (
                iid,
                {
                    "image_id": iid,
                    "image_jpeg": jpeg,
                    "height": np.int32(rec.height),
                    "width": np.int32(rec.width),
                    "annotation_ids": rec.annotation_ids,
                    "rle_counts": np.array([r["counts"] for r in rec.rles], dtype=np.object_),
                    "boxes": rec.boxes,
                },
            )

    def download_and_prepare(self, *args, **kwargs):
        super().download_and_prepare(*args, **kwargs)
        self._save_skipped()
