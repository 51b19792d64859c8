"""Continuous batching: the slot scheduler of ``propagate_in_videos`` (not in the official API, upstream #399).

One compiled step tracks a chunk of frames of every video in the batch (``compiled.propagate_videos_chunk``); the
batch is refilled as videos end: the slot of a pass whose last frame has been dispatched takes the next pass at once
(a new video, or a video's next pass once its previous one has been yielded), so videos of different lengths waste
no frames beyond the chunk each ends in. A slot with nothing to do repeats its last frame, whose outputs are dropped.
The engine knows nothing of slots (``state.put_video`` refills one); dispatching and collecting are the one-video
path's (``pipeline.py``).
"""

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import jax
import numpy as np

from sam2_jax.tracker.state import TrackerState, object_bucket, pad_cond_slots, pad_objects, put_video, stack_states
from sam2_jax.video import pipeline, tracker_state
from sam2_jax.video.tracking import Tracking
from sam2_jax.video.video_state import InferenceState


class VideoPass(NamedTuple):
    """One pass of ``propagate_in_videos``: a video's state and the frames to track, as ``propagate_in_video``'s
    arguments (the defaults: from the first prompted frame to the end of the video)."""

    inference_state: InferenceState
    start_frame_idx: int | None = None
    max_frame_num_to_track: int | None = None


def video_passes(
    inference_states: Iterable,
    start_frame_idx: int | list | None,
    max_frame_num_to_track: int | list | None,
    videos_per_step: int | None,
) -> tuple[Iterator[tuple[int, VideoPass]], int]:
    """``propagate_in_videos``' arguments checked: the ``(video index, VideoPass)`` of each item, read lazily, and
    the batch width (by default every video of a list)."""
    sized = isinstance(inference_states, list | tuple)
    if videos_per_step is None:
        if not sized:
            raise ValueError("propagate_in_videos over an iterable of states needs videos_per_step")
        videos_per_step = max(len(inference_states), 1)
    is_int = isinstance(videos_per_step, int | np.integer) and not isinstance(videos_per_step, bool)
    if not is_int or videos_per_step < 1:
        raise ValueError(f"videos_per_step must be a positive int, got {videos_per_step!r}")
    if sized:
        V = len(inference_states)
        starts = per_video(start_frame_idx, V, "start_frame_idx")
        maxes = per_video(max_frame_num_to_track, V, "max_frame_num_to_track")
    elif any(isinstance(x, list | tuple | np.ndarray) for x in (start_frame_idx, max_frame_num_to_track)):
        raise ValueError("per-video start_frame_idx / max_frame_num_to_track need a list of states (or VideoPass)")
    else:
        starts, maxes = itertools.repeat(start_frame_idx), itertools.repeat(max_frame_num_to_track)
    passes = (
        (v, VideoPass(*x) if isinstance(x, tuple) else VideoPass(x, a, m))
        for v, (x, a, m) in enumerate(zip(inference_states, starts, maxes, strict=False))  # starts: repeat
    )
    return passes, videos_per_step


def per_video(value, num_videos: int, name: str) -> list:
    """One value per video from a scalar (or None) or a sequence of ``num_videos``."""
    if isinstance(value, list | tuple | np.ndarray):
        if len(value) != num_videos:
            raise ValueError(f"{name}: {len(value)} values for {num_videos} videos")
        return list(value)
    return [value] * num_videos


class SlotScheduler:
    """The passes tracked ``width`` at a time, chunk by chunk, one chunk in flight as in ``propagate_in_video``.

    The predictor lends what a pass means for it: ``begin(state, start, max, reverse) -> Pass`` (its checks and
    preflight) and ``end(pass)`` (after the pass's last frame was yielded: SAM2Long's final lineage); ``next_pass``
    is the user's (``propagate_in_videos``).
    """

    def __init__(
        self,
        tracking: Tracking,
        passes: Iterator[tuple[int, VideoPass]],
        width: int,
        reverse: bool,
        chunk_size: int,
        begin: Callable[..., pipeline.Pass],
        end: Callable[[pipeline.Pass], None],
        next_pass: Callable[[int], tuple | None] | None,
    ) -> None:
        self.tracking, self.passes, self.width, self.reverse = tracking, passes, width, reverse
        self.chunk_size, self.begin, self.end, self.next_pass = chunk_size, begin, end, next_pass
        self.ready: collections.deque = collections.deque()  # (video index, VideoPass) of next_pass, awaiting a slot
        self.slots: list = [None] * width  # (video index, Pass) running in each slot
        self.idle: list = [None] * width  # (state, frame) a free slot repeats
        self.tstate: TrackerState | None = None  # (V, O_bucket, ...) on the device

    def run(self) -> Iterator[tuple[int, int, list, np.ndarray]]:
        """``(video_index, frame_idx, obj_ids, masks (O, 1, H, W))``: a video's frames in order, videos interleaved
        chunk by chunk."""
        return pipeline.pipelined(self._chunks(), self._collect, in_flight=1)

    def _start(self, p: VideoPass) -> pipeline.Pass:
        s = p.inference_state
        if not isinstance(s, InferenceState):
            raise TypeError(f"propagate_in_videos takes states from init_state or VideoPass, got {type(s).__name__}")
        if s.num_frames is None or s.frame_queue is not None:
            raise ValueError("propagate_in_videos needs videos of known length; track a live source alone")
        return self.begin(s, p.start_frame_idx, p.max_frame_num_to_track, self.reverse)

    def _finish(self, v: int, run: pipeline.Pass) -> None:
        """A pass ended (its last frame yielded): the predictor's end, then the video's next pass joins the queue."""
        self.end(run)
        nxt = None if self.next_pass is None else self.next_pass(v)
        if nxt is not None:
            start, most = nxt
            self.ready.append((v, VideoPass(run.state, start, most)))

    def _take(self) -> tuple[int, pipeline.Pass] | None:
        """The next pass with frames to track (a pass with none ends at once), or None when there is none."""
        while True:
            if self.ready:
                v, p = self.ready.popleft()
            else:
                v, p = next(self.passes, (None, None))
                if p is None:
                    return None
            run = self._start(p)
            if len(run.order):
                return v, run
            self._finish(v, run)

    def _fill(self) -> None:
        """Free slots take the next passes; their states enter the batch on the device."""
        placed = {}
        for i in range(self.width):
            if self.slots[i] is None and (taken := self._take()) is not None:
                self.slots[i] = taken
                _, run = taken
                placed[i] = tracker_state.tracker_state(
                    self.tracking, run.state, run.objs, run.order[0], self.reverse, object_bucket(len(run.objs)), False
                )
        if self.tstate is None and placed:  # the first round: as many slots as there were passes
            self.width = len(placed)
            self.slots, self.idle = self.slots[: self.width], self.idle[: self.width]
            self.tstate = self.tracking.shard(jax.device_put(stack_states([placed[i] for i in range(self.width)])))
        else:
            for i, st in placed.items():
                self.tstate = place(self.tracking, self.tstate, i, st)

    def _chunks(self) -> Iterator[pipeline.Chunk | None]:
        """Dispatch chunks while any slot has a pass: whole chunks while the longest pass has one left, then single
        frames (as ``propagate_in_video``); None when every slot is free, so that the chunk in flight is collected
        (ending passes may bring next ones) before the scheduler looks again."""
        flushed = False
        while True:
            self._fill()
            active = [i for i in range(self.width) if self.slots[i] is not None]
            if not active:
                if flushed:
                    return
                flushed = True
                yield None
                continue
            flushed = False
            left = max(len(self.slots[i][1].order) - self.slots[i][1].pos for i in active)
            T = self.chunk_size if left >= self.chunk_size else 1
            batch = [self._advance(i, T) for i in range(self.width)]
            self.tstate, chunk = pipeline.dispatch(self.tracking, self.tstate, batch, self.reverse, batched=True)
            yield chunk

    def _advance(self, i: int, T: int) -> pipeline.Slot:
        """Slot ``i``'s next ``T`` frames; a pass with fewer left repeats its last frame (outputs dropped), and a pass
        whose last frame is dispatched frees its slot."""
        if self.slots[i] is None:
            s, last = self.idle[i]
            return pipeline.Slot(s, [last] * T)
        v, run = self.slots[i]
        ix = list(run.order[run.pos : run.pos + T])
        run.pos += len(ix)
        ends = run.pos == len(run.order)
        if ends:
            self.slots[i], self.idle[i] = None, (run.state, ix[-1])
        elif hasattr(run.state.images, "prefetch"):
            run.state.images.prefetch(list(run.order[run.pos : run.pos + T]))
        return pipeline.Slot(run.state, ix + [ix[-1]] * (T - len(ix)), run, len(ix), ends, v)

    def _collect(self, chunk: pipeline.Chunk) -> Iterator[tuple[int, int, list, np.ndarray]]:
        for slot, frames in pipeline.collect(chunk, self.reverse):
            for t, obj_ids, masks in frames:
                yield slot.video, t, obj_ids, masks
            if slot.last:
                self._finish(slot.video, slot.run)


def place(tracking: Tracking, tstate: TrackerState, i: int, st: TrackerState) -> TrackerState:
    """``tstate`` (V, …) with video slot ``i`` replaced by host state ``st`` (O, …) on the device. ``st`` is padded
    to the batch's object and conditioning-slot counts; if it has more, every slot is padded to its (one more compile
    of the step)."""
    rows, cond = tstate.cond_valid.shape[1:]
    if st.num_objects <= rows and st.num_cond_slots <= cond:
        return put_video(tstate, np.int32(i), jax.device_put(pad_cond_slots(pad_objects(st, rows), cond)))
    host = jax.tree.map(np.asarray, tstate)
    videos = [jax.tree.map(lambda x, j=j: x[j], host) for j in range(host.cond_valid.shape[0])]
    videos[i] = st
    return tracking.shard(jax.device_put(stack_states(videos)))
