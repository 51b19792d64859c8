"""Frames through the device and back: dispatch a chunk, copy its outputs to the host, collect them into each video's
store. The loop of the official ``propagate_in_video`` (``sam2/sam2_video_predictor.py``), compiled per chunk.

One video and a batch of videos (``scheduler.py``) share every host step: a chunk holds one ``Slot`` per video, a
single video being a chunk of one slot. Only the device program differs: ``compiled.propagate_chunk`` for one video,
``compiled.propagate_videos_chunk`` (a leading video axis) for several, so a single video keeps its own compiled
program and its numbers. Streaming (``streaming.py``) dispatches and collects a chunk of one frame.

A chunk is dispatched before the previous one is collected (``pipelined``): the device computes chunk k+1 while the
host stores chunk k's outputs and reads chunk k+2's frames, so the device never waits on the host.
"""

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.tracker import compiled, engine
from sam2_jax.tracker.state import TrackerState, object_bucket
from sam2_jax.utils.arrays import tensor_like
from sam2_jax.utils.interpolate import interpolate
from sam2_jax.utils.validation import check_frame_idx
from sam2_jax.video import tracker_state
from sam2_jax.video.tracking import Tracking
from sam2_jax.video.video_state import FrameOutput, InferenceState

# (frame_idx, obj_ids, video-resolution logits (O, 1, H, W)): what propagate_in_video yields per frame
Frame = tuple[int, list, np.ndarray]


@dataclasses.dataclass
class Pass:
    """A propagation pass over one video: what ``propagate_in_video`` tracks after its checks."""

    state: InferenceState
    order: range  # the frames, in tracking order
    objs: list[int]  # object indices tracked: every object of the state when the pass began
    obj_ids: list  # their ids, as yielded
    pos: int = 0  # frames of ``order`` dispatched so far


class Slot(NamedTuple):
    """One video's row of a chunk."""

    state: InferenceState
    frames: list[int]  # (T,) the frames the step tracks
    run: Pass | None = None  # whose outputs are kept; None: an idle slot repeating a frame, outputs dropped
    kept: int = 0  # the first ``kept`` frames are the pass's own; the rest repeat its last, outputs dropped
    last: bool = False  # the pass's last frame is in this chunk
    video: int = 0  # the caller's index of the video (propagate_in_videos' video_index)


class Chunk(NamedTuple):
    """A chunk dispatched to the device, not yet fetched."""

    slots: list[Slot]
    out: engine.StepOutput  # (T, O_bucket, ...); (V, T, O_bucket, ...) when batched
    video: dict[int, jax.Array]  # slot -> (T, O_bucket, 1, H, W) video-resolution logits, for the slots with a pass
    batched: bool


def propagation_order(
    s: InferenceState, start_frame_idx: int | None, max_frame_num_to_track: int | None, reverse: bool
) -> range:
    """The frames ``propagate_in_video`` tracks, in order (the official defaults: from the first prompted frame, to
    the end of the video in the direction)."""
    if start_frame_idx is None:
        start_frame_idx = min(t for o in range(s.num_objects) for t in s.store.cond(o))
    start_frame_idx = check_frame_idx(start_frame_idx, s.num_frames)
    if max_frame_num_to_track is None:
        max_frame_num_to_track = s.frame_limit
    elif isinstance(max_frame_num_to_track, bool) or not isinstance(max_frame_num_to_track, int | np.integer):
        raise ValueError(f"max_frame_num_to_track must be an int or None, got {max_frame_num_to_track!r}")
    elif max_frame_num_to_track < 0:
        raise ValueError(f"max_frame_num_to_track must be >= 0, got {max_frame_num_to_track}")
    if reverse:
        end = max(start_frame_idx - max_frame_num_to_track, 0)
        return range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
    end = min(start_frame_idx + max_frame_num_to_track, s.frame_limit - 1)
    return range(start_frame_idx, end + 1)


def dispatch(
    tracking: Tracking, tstate: TrackerState, slots: list[Slot], reverse: bool, batched: bool
) -> tuple[TrackerState, Chunk]:
    """Queue one chunk on the device (nothing waits): the scan over each slot's frames, then the video-resolution
    masks of each slot with a pass (sizes differ per video); the outputs start copying to the host when ready.

    Args:
      tstate: ``(O_bucket, ...)``, or ``(V, O_bucket, ...)`` when ``batched``.
      slots: one for one video (``batched=False``: ``compiled.propagate_chunk``), else one per video of the batch,
        every slot with the same number of frames (``compiled.propagate_videos_chunk``).
    """
    images = [np.stack([slot.state.images[t] for t in slot.frames]) for slot in slots]  # V x (T, S, S, 3)
    frame_idxs = np.asarray([slot.frames for slot in slots], np.int32)  # (V, T)
    step = tracking.module, tracking.params, tstate
    if batched:
        args = jax.device_put((np.stack(images), frame_idxs, np.full(len(slots), reverse)))
        tstate, out = compiled.propagate_videos_chunk(*step, *args, tracking.step_config)
        masks = [out.pred_masks[i] for i in range(len(slots))]  # V x (T, O_bucket, 1, h, w)
    else:
        # device_put, not jnp.asarray: the latter compiles a copy program per new shape
        batch, idxs = jax.device_put((images[0], frame_idxs[0]))
        tstate, out = compiled.propagate_chunk(*step, batch, idxs, jnp.bool_(reverse), tracking.step_config)
        masks = [out.pred_masks]
    # Every object of the bucket (a padded copy of object 0 never wins a pixel over it): shapes, and so the compiled
    # programs, depend on the bucket only; the host keeps the first ``len(objs)``.
    non_overlap = tracking.non_overlap_masks
    video = {
        i: video_res_chunk(masks[i], (slot.state.video_height, slot.state.video_width), non_overlap=non_overlap)
        for i, slot in enumerate(slots)
        if slot.run is not None
    }
    for x in (*jax.tree.leaves(out), *video.values()):
        x.copy_to_host_async()
    return tstate, Chunk(slots, out, video, batched)


def collect(chunk: Chunk, reverse: bool) -> Iterator[tuple[Slot, Iterator[Frame]]]:
    """Fetch a dispatched chunk; for each slot with a pass, the slot and its frames (``store_frames``). Read each
    slot's frames before the next slot: a caller that ends a pass after its last frame sees the store as the pass
    left it."""
    host = jax.tree.map(np.asarray, chunk.out)
    for i, slot in enumerate(chunk.slots):
        if slot.run is None:
            continue
        mine = jax.tree.map(lambda x, i=i: x[i], host) if chunk.batched else host  # (T, O_bucket, ...)
        yield slot, store_frames(slot.run, slot.frames[: slot.kept], mine, chunk.video[i], reverse)


def store_frames(
    run: Pass, frames: list[int], host: engine.StepOutput, video: jax.Array, reverse: bool
) -> Iterator[Frame]:
    """Keep the per-frame outputs of ``frames`` (rows of ``host``, ``(T, O_bucket, ...)``) in the video's store and
    yield each frame's ``(frame_idx, obj_ids, video-resolution logits (O, 1, H, W))``; then let the store's budget
    drop the frames farthest from the last one."""
    s, objs = run.state, run.objs
    video = np.asarray(video)  # (T, O_bucket, 1, H, W)
    for j, t in enumerate(frames):
        for o in objs:
            s.frames_tracked_per_obj[o][t] = {"reverse": reverse}
            if host.is_cond[j, o]:
                continue
            out = FrameOutput(
                host.pred_masks[j, o][None],
                host.obj_ptr[j, o][None],
                host.object_score_logits[j, o][None],
                host.maskmem[j, o],
                bool(host.admitted[j, o]),
                float(host.best_iou[j, o]),
                host.kf_box[j, o],
                float(host.kf_score[j, o]),
            )
            s.store.put(o, t, out)
        if host.path_parent is not None:  # SAM2Long: every pathway's parent, score and mask, for the lineage
            n = len(objs)  # the padded objects of the bucket are left out
            s.record_pathways(t, host.path_parent[j, :n], host.path_score[j, :n], host.path_masks[j, :n])
        yield t, run.obj_ids, tensor_like(video[j, : len(objs)])
    s.store.evict(frames[-1])
    s.drop_evicted_pathway_masks()


def pipelined(chunks: Iterator[Chunk | None], collect_chunk: Callable[[Chunk], Iterator], in_flight: int) -> Iterator:
    """Collect each chunk of ``chunks`` after the next one is dispatched (``in_flight=1``), or at once (0: each chunk
    finishes before it is yielded, which a benchmark that interleaves implementations needs). A ``None`` from
    ``chunks`` means nothing to dispatch now: the chunk in flight is collected (it may free work for the producer)."""
    pending = None
    for chunk in chunks:
        if chunk is None:
            if pending is not None:
                yield from collect_chunk(pending)
                pending = None
            continue
        if pending is not None:
            yield from collect_chunk(pending)
        pending = chunk
        if not in_flight:
            yield from collect_chunk(pending)
            pending = None
    if pending is not None:
        yield from collect_chunk(pending)


def propagate(
    tracking: Tracking, run: Pass, reverse: bool, chunk_size: int, live: bool, in_flight: int
) -> Iterator[Frame]:
    """The frames of one pass tracked chunk by chunk (``propagate_in_video`` after its checks): whole chunks while
    one is left, then single frames. On a live source (``live``, frames one at a time) the pass ends when the
    source does, and the state learns the video's length."""
    s = run.state
    if len(run.order) == 0:
        return

    def chunks() -> Iterator[Chunk]:
        tstate = tracker_state.propagation_state(tracking, s, run.objs, run.order[0], reverse)
        order = run.order
        while run.pos < len(order):
            n = chunk_size if len(order) - run.pos >= chunk_size else 1
            frames = list(order[run.pos : run.pos + n])
            if not live and hasattr(s.images, "prefetch"):
                s.images.prefetch(list(order[run.pos + n : run.pos + 2 * n + chunk_size]))
            try:
                tstate, chunk = dispatch(tracking, tstate, [Slot(s, frames, run, n)], reverse, batched=False)
            except IndexError:
                if not live:
                    raise
                s.num_frames = s.images.num_frames  # the live source ended
                return
            run.pos += n
            yield chunk

    def frames_of(chunk: Chunk) -> Iterator[Frame]:
        for _, frames in collect(chunk, reverse):
            yield from frames

    yield from pipelined(chunks(), frames_of, in_flight)


def objects_at_video_res(masks: np.ndarray, hw: tuple[int, int], non_overlap: bool = False) -> np.ndarray:
    """``video_res`` of one frame's objects on the host: (O, 1, h, w) -> (O, 1, H, W); padded to the object bucket so
    that it compiles per bucket, not per object count."""
    n = len(masks)
    if n == 0:
        return np.zeros((0, 1, *hw), np.float32)
    padded = np.concatenate([masks, np.repeat(masks[:1], object_bucket(n) - n, axis=0)])
    return np.asarray(video_res(jax.device_put(padded), hw, non_overlap=non_overlap))[:n]


@functools.partial(jax.jit, static_argnums=1, static_argnames="non_overlap")
def video_res_chunk(masks: jax.Array, hw: tuple[int, int], non_overlap: bool = False) -> jax.Array:
    """``video_res`` of every frame of a chunk: (T, O, 1, h, w) -> (T, O, 1, H, W)."""
    return jax.vmap(lambda m: video_res(m, hw, non_overlap=non_overlap))(masks)


@functools.partial(jax.jit, static_argnums=1, static_argnames="non_overlap")
def video_res(masks: jax.Array, hw: tuple[int, int], non_overlap: bool = False) -> jax.Array:
    """Low-res logits (O, 1, h, w) -> video resolution (O, 1, H, W), bilinear as the official."""
    # (O, 1, h, w) -> (O, h, w, 1) -> (O, H, W, 1) -> (O, 1, H, W)
    out = interpolate(masks.transpose(0, 2, 3, 1), hw, "bilinear").transpose(0, 3, 1, 2)
    return apply_non_overlapping_constraints(out) if non_overlap else out


def apply_non_overlapping_constraints(pred_masks: jax.Array) -> jax.Array:
    """Keep only the highest-scoring object at each pixel; others are clamped to at most -10 (O, 1, H, W)."""
    if pred_masks.shape[0] == 1:
        return pred_masks
    max_obj = jnp.argmax(pred_masks, axis=0, keepdims=True)
    keep = max_obj == jnp.arange(pred_masks.shape[0])[:, None, None, None]
    return jnp.where(keep, pred_masks, jnp.minimum(pred_masks, -10.0))
