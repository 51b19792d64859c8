"""Training clips from the synthetic video source, seeded per step so the iterator state is one integer.

No official counterpart for the source (the official trainer reads SA-V / MOSE folders through ``VOSDataset``);
the sampling follows the official ``RandomUniformSampler`` and ``VOSDataset``: T consecutive frames of a random
video, the temporal order reversed with probability ``reverse_time_prob``, the objects of the clip, and the
prompt decisions of ``SAM2Train.prepare_prompt_inputs`` drawn with the same generator (``sample_prompt_plan``).

Of the official transforms only the consistent horizontal flip is applied (the affine, colour jitter, grayscale
and mosaic augmentations are not ported). Batch ``s`` depends only on ``(seed, s)``, so resuming at step ``s``
reproduces the batches an uninterrupted run would have seen; a background thread prefetches.
"""

import queue
import threading
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np

from sam2_jax.datasets.synthetic import SyntheticVideoDataset
from sam2_jax.training.sam2_train import PromptPlan, sample_prompt_plan


class Batch(dict):
    """``frames (B, T, S, S, 3) uint8``, ``masks (B, T, O, S, S) bool``, ``plan`` (``PromptPlan`` of (B, ...))."""


def synthetic_source(config: ml_collections.ConfigDict) -> SyntheticVideoDataset:
    """The training videos (``config.train.data``), rendered at the model's input size."""
    d = config.train.data
    S = config.model.image_size
    return SyntheticVideoDataset(
        num_videos=d.num_videos,
        seed=d.seed,
        num_frames=d.video_frames,
        height=S,
        width=S,
        num_objects=config.train.max_num_objects,
        hide_prob=d.hide_prob,
        late_start_prob=d.late_start_prob,
    )


def make_batch(
    source: SyntheticVideoDataset, config: ml_collections.ConfigDict, step: int, clip_slice: slice | None = None
) -> Batch:
    """The batch of training step ``step`` (a pure function of the data seed and the step).

    Clip ``i`` is drawn with its own generator ``np.random.default_rng([seed, step, i])``, so a host of a multi-host
    run can make only its clips (``clip_slice``) and the hosts' parts concatenate to the full batch.

    Args:
        source: the video dataset.
        config: full config (``train.batch_size``, ``train.num_frames``, ``train.prompts``, ``train.data``).
        step: the step index.
        clip_slice: which of the ``train.batch_size`` clips to make; ``None``: all.

    Returns:
        A ``Batch`` of numpy arrays.
    """
    t = config.train
    frames, masks, plans = [], [], []
    for i in range(t.batch_size)[clip_slice or slice(None)]:
        rng = np.random.default_rng([t.data.seed, step, i])
        video = source[int(rng.integers(len(source)))]
        T = t.num_frames
        if video.frames.shape[0] < T:
            raise ValueError(f"videos have {video.frames.shape[0]} frames, fewer than num_frames={T}")
        start = int(rng.integers(video.frames.shape[0] - T + 1))
        f, m = video.frames[start : start + T], video.masks[start : start + T]
        if rng.random() < t.prompts.reverse_time_prob:
            f, m = f[::-1], m[::-1]
        if rng.random() < t.data.hflip_prob:
            f, m = f[:, :, ::-1], m[:, :, :, ::-1]
        frames.append(np.ascontiguousarray(f))
        masks.append(np.ascontiguousarray(m))
        plans.append(sample_prompt_plan(rng, T, t.prompts))
    if not frames:
        raise ValueError(f"clip_slice {clip_slice} selects none of the {t.batch_size} clips")
    plan = PromptPlan(*(np.stack(x) for x in zip(*plans, strict=True)))
    return Batch(frames=np.stack(frames), masks=np.stack(masks), plan=plan)


def batches(
    source: SyntheticVideoDataset, config: ml_collections.ConfigDict, start_step: int, prefetch: int = 2
) -> Iterator[tuple[int, Batch]]:
    """``(step, batch)`` from ``start_step`` on, made by a background thread ``prefetch`` batches ahead."""
    q: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
    stop = threading.Event()

    def work():
        s = start_step
        while not stop.is_set():
            item = (s, make_batch(source, config, s))
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            s += 1

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            yield q.get()
    finally:
        stop.set()


def held_out_batch(config: ml_collections.ConfigDict, num_videos: int, seed: int) -> Batch:
    """Held-out clips for evaluation: the first ``num_frames`` frames of videos of another seed, prompted with the
    ground-truth mask on frame 0 only and tracked through the rest (semi-supervised VOS), no corrections."""
    t = config.train
    d = t.data
    S = config.model.image_size
    ds = SyntheticVideoDataset(
        num_videos, seed, max(d.video_frames, t.num_frames), S, S, t.max_num_objects, d.hide_prob, d.late_start_prob
    )
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
        plan=jax.tree.map(lambda x: np.stack([x] * num_videos), plan),
    )
