"""Training batches: clips of one or more sources (synthetic, DAVIS/YouTube-VOS/MOSE folders, SA-V, SA-1B) mixed
step by step, with the official augmentations, seeded per step and clip so the iterator state is one integer.

Ports the data side of the official trainer (sam2 1.1.0, ``training/dataset/``):

- Mixing (``TorchTrainMixedDataset`` / ``MixedDataLoader``): each step's batch comes from one source, drawn with
  probability proportional to its number of batches ``floor(len * multiplier / batch_size)`` or to its configured
  ``prob``; every source has its own batch size, clip length (1 for images) and number of objects, so batch shapes
  differ between sources (two jit shapes for a video and an image source).
- Clips (``VOSDataset`` + ``RandomUniformSampler``): a random video; T consecutive annotated frames from a random
  start, in reverse with probability ``train.prompts.reverse_time_prob``; the objects visible on the first frame of
  the clip (another start is drawn, up to 1000 times, when none is), of which up to ``max_num_objects`` are chosen
  at random (``random.sample``: random order). An object absent from a later frame gets an empty mask (the
  official ``always_target``). A video that fails to load or is too short is replaced by another random one, up
  to 100 times. SA-1B images (``SA1BRawDataset``): the image repeated ``num_frames`` times, objects drawn from its
  masks of nonzero area (optionally below ``mask_area_frac_thresh`` of the image). SA-V train clips decode only
  their own masks from the JSON's RLEs (first-frame visibility from the RLE areas).
- Augmentation: ``sam2_jax.training.transforms.augment_clip`` (flip, affine, resize to ``model.image_size``,
  mosaic, colour jitter, grayscale, per-frame colour jitter).
- Prompts: ``sample_prompt_plan`` for videos; for single images the official special case of
  ``prepare_prompt_inputs`` (points or a box always, one conditioning frame, no extra corrected frame).

Clips with fewer objects than ``max_num_objects`` are padded with empty masks and ``obj_valid`` False.

Deviations: the official loaders walk each dataset once per epoch in a shuffled order (``DistributedSampler``) and
stop a source when it is exhausted; here every clip draws its video independently (with replacement) and steps
never run out, so that batch ``s`` is a pure function of ``(train.data.seed, s)``: the source from
``default_rng([seed, s])``, clip ``i`` (video, frames, objects, augmentation, prompt plan) from
``default_rng([seed, s, i])``. Resuming at step ``s`` reproduces the batches an uninterrupted run would have seen,
and each host of a multi-host run can make only its clips (``clip_slice``). Sparse annotations (YouTube-VOS,
SA-V at 6 fps) are sampled on the annotated frames only, as the official ``JSONRawDataset(rm_unannotated=True)``
does for SA-V.

The input pipeline runs on the host (numpy and PIL) through ``grain``: ``batch_dataset`` is the ``MapDataset`` of
the steps (step ``s`` -> its batch, made lazily), ``batch_iterator`` its iterator, which makes steps ahead on
``train.data.workers`` threads (and, with ``train.data.processes``, in worker processes) and yields them in order.
The iterator's state (``get_state``: the next step) is saved with the orbax checkpoint and restored on resume
(``trainer``), so a resumed run reads on from where the killed one stopped.
"""

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from sam2_jax.datasets.sa1b import SA1BFolder
from sam2_jax.datasets.synthetic import SyntheticVideoDataset
from sam2_jax.datasets.vos import (
    SAV_TRAIN_STRIDE,
    DataError,
    DavisFolder,
    SAVFolder,
    SAVTrainFolder,
    decode_rles,
    read_sav_json,
    unpack_masks,
)
from sam2_jax.training import transforms
from sam2_jax.training.sam2_train import BOX, CLICK, MASK, PromptPlan, sample_prompt_plan

log = logging.getLogger(__name__)

SOURCE_KINDS = ("synthetic", "vos_folder", "sav", "sav_train", "sa1b")
MAX_START_RETRIES = 1000  # RandomUniformSampler's MAX_RETRIES: starts tried for a visible first-frame object
MAX_VIDEO_RETRIES = 100  # VOSDataset's MAX_RETRIES: videos tried when one fails to load


class Batch(dict):
    """``frames (B, T, S, S, 3) uint8``, ``masks (B, T, O, S, S) bool``, ``obj_valid (B, O) bool`` (False for the
    padding of clips with fewer objects, whose masks are empty), ``plan`` (``PromptPlan`` of (B, ...))."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One training source: a reader and its batch geometry.

    Attributes:
      name: the key in ``config.train.data.sources``.
      kind: one of ``SOURCE_KINDS``.
      reader: ``SyntheticVideoDataset``, ``DavisFolder``, ``SAVFolder``, ``SAVTrainFolder`` or ``SA1BFolder``.
      batch_size, num_frames, max_num_objects: clips per batch, frames per clip, object slots per clip.
      weight: the unnormalised mixing weight (its number of batches, or the configured ``prob``).
      mask_area_frac_thresh: SA-1B only: masks covering at least this fraction of the image are skipped.
    """

    name: str
    kind: str
    reader: Any
    batch_size: int
    num_frames: int
    max_num_objects: int
    weight: float
    mask_area_frac_thresh: float = 1.1

    def __len__(self) -> int:
        return len(self.reader)

    @functools.cached_property
    def _ids(self) -> list[str]:
        if self.kind == "sa1b":
            return self.reader.image_ids()
        return self.reader.video_ids()

    def clip(self, rng: np.random.Generator, index: int, reverse_prob: float) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``(T, H, W, 3)`` uint8 and masks ``(T, K, H, W)`` bool of a clip of item ``index`` (K >= 1
        objects, each visible on frame 0); DataError when the item cannot give one."""
        if self.kind == "synthetic":
            v = self.reader[index]
            present = v.masks.reshape(*v.masks.shape[:2], -1).any(-1)  # (T, O)
            rows = _sample_rows(rng, present, self.num_frames, reverse_prob, v.video_id)
            objs = _sample_objects(rng, np.flatnonzero(present[rows[0]]), self.max_num_objects)
            return v.frames[rows], v.masks[rows][:, objs]
        if self.kind == "sa1b":
            return self._image_clip(rng, index)
        if self.kind == "sav_train":
            return self._sav_train_clip(rng, index, reverse_prob)
        video = _load_video(self.reader, self._ids[index])
        present = video.packed_masks.any(-1) & video.annotated  # (A, O)
        rows = _sample_rows(rng, present, self.num_frames, reverse_prob, video.video_id)
        objs = _sample_objects(rng, np.flatnonzero(present[rows[0]]), self.max_num_objects)
        masks = unpack_masks(video.packed_masks[rows][:, objs], video.height, video.width)
        masks &= video.annotated[rows][:, objs, None, None]
        frames = _read_frames(video.frames, video.mask_frames[rows], video.video_id)
        return frames, masks

    def _sav_train_clip(self, rng: np.random.Generator, index: int, reverse_prob: float):
        # Only the clip's masks are decoded: an SA-V train video holds hundreds of 1080p RLE masks.
        video_id = self._ids[index]
        ann, present = _load_sav_json(self.reader.root, video_id, self.reader.annotation)
        rows = _sample_rows(rng, present, self.num_frames, reverse_prob, video_id)
        objs = _sample_objects(rng, np.flatnonzero(present[rows[0]]), self.max_num_objects)
        h, w = int(ann["video_height"]), int(ann["video_width"])
        masks = np.stack(
            [decode_rles([ann["masklet"][r][o] for o in objs], h, w, f"video {video_id} frame {r}") for r in rows]
        )
        mp4 = os.path.join(self.reader.root, f"{video_id}.mp4")
        if not os.path.isfile(mp4):
            raise DataError(f"video {video_id}: video file {mp4} not found")
        return _read_frames(mp4, rows * SAV_TRAIN_STRIDE, video_id), masks

    def _image_clip(self, rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
        from pycocotools import mask as mask_utils

        rec = _load_image(self.reader, self._ids[index])
        area = np.asarray(mask_utils.area(rec.rles), np.float64) if rec.rles else np.zeros(0)
        keep = area > 0
        if self.mask_area_frac_thresh <= 1.0:
            keep &= area / (rec.height * rec.width) < self.mask_area_frac_thresh
        objs = _sample_objects(rng, np.flatnonzero(keep), self.max_num_objects)
        if objs.size == 0:
            raise DataError(f"image {rec.image_id}: no mask of nonzero area")
        masks = rec.masks(objs.tolist())
        image = rec.load_image()
        T = self.num_frames
        return np.broadcast_to(image, (T, *image.shape)).copy(), np.broadcast_to(masks, (T, *masks.shape)).copy()


# Loaded videos keep their masks bit-packed; a few are cached so that consecutive clips of a video are cheap.
@functools.lru_cache(maxsize=4)
def _load_video(reader, video_id: str):
    return reader.load(video_id)


@functools.lru_cache(maxsize=64)
def _load_sav_json(root: str, video_id: str, annotation: str) -> tuple[dict, np.ndarray]:
    """An SA-V train JSON and ``(A, O)`` whether each masklet is nonempty on each annotated frame (RLE areas)."""
    from pycocotools import mask as mask_utils

    ann = read_sav_json(os.path.join(root, f"{video_id}_{annotation}.json"), video_id)
    present = np.array([[a > 0 for a in mask_utils.area(objs)] if objs else [] for objs in ann["masklet"]], bool)
    return ann, present.reshape(len(ann["masklet"]), len(ann["masklet_id"]))


@functools.lru_cache(maxsize=16)
def _load_image(reader, image_id: str):
    return reader.load(image_id)


def _read_frames(video: Any, indices: np.ndarray, video_id: str) -> np.ndarray:
    """Frames ``indices`` of a ``VideoSource`` input (folder, video file, array) at video size, ``(T, H, W, 3)``."""
    from sam2_jax.video.video_io import VideoSource

    if isinstance(video, np.ndarray):
        return video[indices]
    try:
        with VideoSource(video, image_size=16, cache_size=2) as src:
            return np.stack([src.original_frame(int(i)) for i in indices])
    except ValueError as e:
        raise DataError(f"video {video_id}: {e}") from e


def _sample_rows(
    rng: np.random.Generator, present: np.ndarray, num_frames: int, reverse_prob: float, name: str
) -> np.ndarray:
    """``RandomUniformSampler``: ``num_frames`` consecutive rows of ``present (A, O)`` from a random start, reversed
    with ``reverse_prob``, redrawn until some object is present on the first."""
    A = present.shape[0]
    if A < num_frames:
        raise DataError(f"video {name}: {A} annotated frames, fewer than num_frames={num_frames}")
    for _ in range(MAX_START_RETRIES):
        start = int(rng.integers(A - num_frames + 1))
        rows = np.arange(start, start + num_frames)
        if rng.random() < reverse_prob:
            rows = rows[::-1]
        if present[rows[0]].any():
            return rows
    raise DataError(f"video {name}: no object visible on the first frame of {MAX_START_RETRIES} sampled clips")


def _sample_objects(rng: np.random.Generator, visible: np.ndarray, max_num_objects: int) -> np.ndarray:
    """Up to ``max_num_objects`` of ``visible`` without replacement, in random order (``random.sample``)."""
    k = min(len(visible), max_num_objects)
    return rng.choice(visible, size=k, replace=False) if k else visible[:0]


# ---------------------------------------------------------------------------------------------------------------
# Config -> sources


def augment_config(config: ml_collections.ConfigDict) -> transforms.AugmentConfig:
    """``transforms.AugmentConfig`` from ``config.train.data``."""
    d = config.train.data
    opt = lambda v: tuple(v) if v is not None else None  # noqa: E731
    return transforms.AugmentConfig(
        hflip_prob=d.hflip_prob,
        degrees=d.degrees,
        shear=d.shear,
        translate=opt(d.get("translate")),
        scale=opt(d.get("scale")),
        affine_tentatives=d.affine_tentatives,
        affine_interpolation=d.affine_interpolation,
        jitter=tuple(d.jitter),
        grayscale_prob=d.grayscale_prob,
        frame_jitter=tuple(d.frame_jitter),
        mosaic_prob=d.mosaic_prob,
        mosaic_grid=tuple(d.mosaic_grid),
        mosaic_hflip=d.mosaic_hflip,
    )


def synthetic_source(
    config: ml_collections.ConfigDict,
    num_objects: int | None = None,
    num_videos: int | None = None,
    seed: int | None = None,
    num_frames: int | None = None,
) -> SyntheticVideoDataset:
    """The synthetic videos of ``config.train.data``, rendered at the model's input size; the arguments replace the
    config's ``train.max_num_objects``, ``data.num_videos``, ``data.seed`` and ``data.video_frames``."""
    d = config.train.data
    S = config.model.image_size
    return SyntheticVideoDataset(
        num_videos=d.num_videos if num_videos is None else num_videos,
        seed=d.seed if seed is None else seed,
        num_frames=d.video_frames if num_frames is None else num_frames,
        height=S,
        width=S,
        num_objects=config.train.max_num_objects if num_objects is None else num_objects,
        hide_prob=d.hide_prob,
        late_start_prob=d.late_start_prob,
    )


def _make_source(config: ml_collections.ConfigDict, name: str, sc: ml_collections.ConfigDict) -> Source:
    t = config.train
    kind = sc.kind
    bs = sc.get("batch_size", 0) or t.batch_size
    T = sc.get("num_frames", 0) or (1 if kind == "sa1b" else t.num_frames)
    O = sc.get("max_num_objects", 0) or t.max_num_objects
    root = sc.get("root", "")
    if kind == "synthetic":
        reader = synthetic_source(config, num_objects=O)
    elif kind == "vos_folder":
        reader = DavisFolder(root, split=sc.get("split", "train") or None, resolution=sc.get("resolution") or None)
    elif kind == "sav":
        reader = SAVFolder(root, split=sc.get("split") or None)
    elif kind == "sav_train":
        reader = SAVTrainFolder(root, annotation=sc.get("annotation", "manual"))
    elif kind == "sa1b":
        reader = SA1BFolder(root)
    else:
        raise ValueError(f"source {name!r}: kind {kind!r} is not one of {SOURCE_KINDS}")
    if len(reader) == 0:
        raise ValueError(f"source {name!r} ({kind}, root {root!r}) has no videos or images")
    if bs < 1 or T < 1 or O < 1:
        raise ValueError(f"source {name!r}: batch_size {bs}, num_frames {T}, max_num_objects {O} must be >= 1")
    prob = sc.get("prob", 0.0)
    weight = prob if prob else float(len(reader) * sc.get("multiplier", 1) // bs)
    return Source(name, kind, reader, bs, T, O, weight, sc.get("mask_area_frac_thresh", 1.1))


@dataclasses.dataclass(frozen=True)
class MixedSource:
    """The sources of ``config.train.data.sources`` (sorted by name) and their mixing probabilities."""

    sources: tuple[Source, ...]
    probs: np.ndarray

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)


def training_source(config: ml_collections.ConfigDict) -> MixedSource:
    """The training sources of ``config.train.data.sources`` with their mixing probabilities.

    Probabilities are the configured ``prob`` of every source (all or none set; normalised), else proportional
    to each source's number of batches ``floor(len * multiplier / batch_size)`` (``TorchTrainMixedDataset``).
    """
    items = sorted(config.train.data.sources.items())
    if not items:
        raise ValueError("config.train.data.sources is empty")
    sources = tuple(_make_source(config, name, sc) for name, sc in items)
    probs = {name: sc.get("prob", 0.0) for name, sc in items}
    if any(probs.values()) and not all(probs.values()):
        raise ValueError(f"set prob for all sources or none, got {probs}")
    w = np.array([s.weight for s in sources], np.float64)
    if w.sum() <= 0:
        raise ValueError(f"no source has a full batch: weights {[(s.name, s.weight) for s in sources]}")
    return MixedSource(sources, w / w.sum())


def _as_mixed(source, config: ml_collections.ConfigDict) -> MixedSource:
    if isinstance(source, MixedSource):
        return source
    if isinstance(source, Source):
        return MixedSource((source,), np.ones(1))
    if isinstance(source, SyntheticVideoDataset):  # the trainer's synthetic_source
        t = config.train
        src = Source("synthetic", "synthetic", source, t.batch_size, t.num_frames, t.max_num_objects, 1.0)
        return MixedSource((src,), np.ones(1))
    raise TypeError(f"unknown training source {type(source).__name__}")


def step_source(source, config: ml_collections.ConfigDict, step: int) -> Source:
    """The source that batch ``step`` comes from (its ``batch_size`` is that batch's number of clips)."""
    mixed = _as_mixed(source, config)
    if len(mixed.sources) == 1:
        return mixed.sources[0]
    j = np.random.default_rng([config.train.data.seed, step]).choice(len(mixed.sources), p=mixed.probs)
    return mixed.sources[int(j)]


# ---------------------------------------------------------------------------------------------------------------
# Batches


def image_prompt_plan(rng: np.random.Generator, p: ml_collections.ConfigDict) -> PromptPlan:
    """``prepare_prompt_inputs`` for a single image (its ``num_frames == 1`` case): points always (a box with
    ``prob_to_use_box_input``), one conditioning frame, corrections on it only; same shapes as a video plan."""
    I, E = p.num_init_cond_frames, max(p.num_frames_to_correct - 1, 0)
    types = [BOX if rng.random() < p.prob_to_use_box_input else CLICK] + [MASK] * (I - 1)
    return PromptPlan(
        init_frames=np.zeros(I, np.int32),
        init_valid=np.arange(I) < 1,
        prompt_type=np.array(types, np.int32),
        track_frames=np.zeros(0, np.int32),
        track_valid=np.zeros(0, bool),
        extra_correct_frames=np.full(E, -1, np.int32),
        sample_from_gt=rng.random((I + E, p.num_correction_pt_per_frame)) < p.prob_to_sample_from_gt,
    )


def make_clip(
    source: Source, config: ml_collections.ConfigDict, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, PromptPlan]:
    """One augmented clip: ``frames (T, S, S, 3)``, ``masks (T, O, S, S)``, ``obj_valid (O,)``, its plan."""
    t = config.train
    for attempt in range(MAX_VIDEO_RETRIES):
        index = int(rng.integers(len(source)))
        try:
            frames, masks = source.clip(rng, index, t.prompts.reverse_time_prob)
            break
        except DataError as e:
            log.warning("source %s: item %d failed (retry %d): %s", source.name, index, attempt, e)
    else:
        raise DataError(f"source {source.name}: {MAX_VIDEO_RETRIES} items in a row failed to give a clip")
    S = config.model.image_size
    frames, masks = transforms.augment_clip(rng, frames, masks, S, augment_config(config))
    T, K = masks.shape[:2]
    O = source.max_num_objects
    padded = np.zeros((T, O, S, S), bool)
    padded[:, :K] = masks
    plan = sample_prompt_plan(rng, T, t.prompts) if T > 1 else image_prompt_plan(rng, t.prompts)
    return frames, padded, np.arange(O) < K, plan


def make_batch(source, config: ml_collections.ConfigDict, step: int, clip_slice: slice | None = None) -> Batch:
    """The batch of training step ``step`` (a pure function of the data seed and the step).

    Clip ``i`` is drawn with its own generator ``np.random.default_rng([seed, step, i])``, so a host of a multi-host
    run can make only its clips (``clip_slice``) and the hosts' parts concatenate to the full batch.

    Args:
        source: ``training_source(config)``, one ``Source``, or ``synthetic_source(config)`` (then the batch
            geometry is ``train.batch_size``, ``train.num_frames``, ``train.max_num_objects``).
        config: full config (``train.data``, ``train.prompts``, ``model.image_size``).
        step: the step index.
        clip_slice: which of the step's ``step_source(...).batch_size`` clips to make; ``None``: all.

    Returns:
        A ``Batch`` of numpy arrays.
    """
    src = step_source(source, config, step)
    clips = range(src.batch_size)[clip_slice or slice(None)]
    if not clips:
        raise ValueError(f"clip_slice {clip_slice} selects none of the {src.batch_size} clips")
    made = [make_clip(src, config, np.random.default_rng([config.train.data.seed, step, i])) for i in clips]
    frames, masks, valid, plans = zip(*made, strict=True)
    plan = PromptPlan(*(np.stack(x) for x in zip(*plans, strict=True)))
    return Batch(frames=np.stack(frames), masks=np.stack(masks), obj_valid=np.stack(valid), plan=plan)


# Steps of the batch dataset: it never runs out (every clip draws its video independently), the trainer stops it.
NUM_STEPS = 2**31 - 1


def batch_dataset(
    source, config: ml_collections.ConfigDict, clip_slice_of: Callable[[int], slice] | None = None
) -> grain.MapDataset:
    """The training batches as a grain ``MapDataset``: element ``s`` is ``(s, make_batch(source, config, s))``.

    Args:
        source: as for ``make_batch``.
        config: full config.
        clip_slice_of: step -> the clips this process makes (a multi-process run); ``None``: all.
    """

    def make(step: int) -> tuple[int, Batch]:
        clips = None if clip_slice_of is None else clip_slice_of(step)
        return step, make_batch(source, config, step, clip_slice=clips)

    return grain.MapDataset.range(0, NUM_STEPS).map(make)


def batch_iterator(
    source,
    config: ml_collections.ConfigDict,
    start_step: int = 0,
    clip_slice_of: Callable[[int], slice] | None = None,
    prefetch: int | None = None,
    workers: int | None = None,
    processes: int | None = None,
) -> grain.DatasetIterator:
    """``(step, batch)`` from ``start_step`` on, in order, made ahead by grain (``batch_dataset``'s iterator).

    Args:
        source, config, clip_slice_of: as for ``batch_dataset``.
        start_step: the first step (``set_state``; a resumed run restores the checkpointed state instead).
        prefetch: batches made ahead (at least ``workers``); default ``train.data.prefetch``.
        workers: threads making batches (PIL and numpy release the GIL for most of the work); default
            ``train.data.workers``.
        processes: worker processes (grain ``mp_prefetch``), each running ``workers`` threads; default
            ``train.data.processes`` (0: threads only).

    Returns:
        A grain ``DatasetIterator`` (``get_state`` / ``set_state``, ``close``); an error making a batch is raised by
        ``next``, at its step.
    """
    d = config.train.data
    workers = max(1, workers or d.get("workers", 1))
    prefetch = max(prefetch or d.get("prefetch", 2), workers)
    processes = d.get("processes", 0) if processes is None else processes
    ds = batch_dataset(source, config, clip_slice_of).to_iter_dataset(
        grain.ReadOptions(num_threads=workers, prefetch_buffer_size=prefetch)
    )
    if processes:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's workers read its absl flags (train.py parses them; a library may not)
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=processes))
    it = iter(ds)
    if start_step:
        if processes:
            raise ValueError("start_step with worker processes: restore a checkpointed iterator state instead")
        it.set_state({"next_index": int(start_step)})
    return it


def held_out_batch(config: ml_collections.ConfigDict, num_videos: int, seed: int) -> Batch:
    """Held-out clips for evaluation: the first ``num_frames`` frames of videos of another seed, prompted with the
    ground-truth mask on frame 0 only and tracked through the rest (semi-supervised VOS), no corrections."""
    t = config.train
    ds = synthetic_source(config, num_videos=num_videos, seed=seed, num_frames=max(t.data.video_frames, t.num_frames))
    T = t.num_frames
    I, E = t.prompts.num_init_cond_frames, max(t.prompts.num_frames_to_correct - 1, 0)
    plan = PromptPlan(
        init_frames=np.zeros(I, np.int32),
        init_valid=np.arange(I) < 1,
        prompt_type=np.zeros(I, np.int32),
        track_frames=np.arange(1, T, dtype=np.int32),
        track_valid=np.ones(T - 1, bool),
        extra_correct_frames=np.full(E, -1, np.int32),
        sample_from_gt=np.zeros((I + E, t.prompts.num_correction_pt_per_frame), bool),
    )
    videos = [ds[i] for i in range(num_videos)]
    return Batch(
        frames=np.stack([v.frames[:T] for v in videos]),
        masks=np.stack([v.masks[:T] for v in videos]),
        obj_valid=np.ones((num_videos, t.max_num_objects), bool),
        plan=jax.tree.map(lambda x: np.stack([x] * num_videos), plan),
    )
