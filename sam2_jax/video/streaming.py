"""Streaming (not in the official API, upstream #90, #134, #388): a frame in, the masks of every object out, the
``TrackerState`` kept on the device between calls.

A stream is an ``InferenceState`` fed through a ``FrameQueue``; ``track_frame`` on a video's state tracks the frame
after the last one tracked or prompted. Each frame is a chunk of one frame through ``pipeline``'s dispatch and collect,
so its outputs equal those of ``propagate_in_video`` over the same frames. A prompt or a new object drops the carried
state (``stream_tstate``), and the next frame rebuilds it from the store.
"""

from collections.abc import Callable

import numpy as np

from sam2_jax.utils.arrays import tensor_like
from sam2_jax.utils.validation import check_frame_idx
from sam2_jax.video import pipeline, tracker_state
from sam2_jax.video.tracking import Tracking
from sam2_jax.video.video_io import FrameQueue
from sam2_jax.video.video_state import InferenceState


def open_stream(init_state: Callable[..., InferenceState], first_frame: np.ndarray, **source_kwargs) -> InferenceState:
    """A state for a live stream whose frame 0 is ``first_frame``, made by the predictor's ``init_state`` over a
    ``FrameQueue``."""
    if source_kwargs.get("async_loading_frames"):
        raise ValueError("async_loading_frames cannot read ahead of a stream fed by track_frame")
    queue = FrameQueue()
    queue.push(first_frame)
    state = init_state(queue, **source_kwargs)
    state.frame_queue = queue
    state.stream_next = 1
    return state


def next_frame(s: InferenceState, frame: np.ndarray | None) -> int:
    """The index of the frame ``track_frame`` tracks: ``frame`` pushed onto a stream, or a video's next frame."""
    if s.frame_queue is not None:
        if frame is None:
            raise ValueError("track_frame on a stream needs the new frame")
        return s.frame_queue.push(frame)  # a bad frame raises here and is not counted
    if frame is not None:
        raise ValueError("track_frame(frame=...) needs a state from init_stream; this one reads its video")
    t = s.stream_next if s.stream_next is not None else s.last_touched_frame() + 1
    check_frame_idx(t, s.num_frames)
    return t


def track_frame(
    tracking: Tracking, s: InferenceState, frame: np.ndarray | None, preflight: Callable[[InferenceState], None]
) -> pipeline.Frame:
    """Track every object of ``s`` on its next frame (``SAM2VideoPredictor.track_frame``).

    Args:
      preflight: the predictor's ``propagate_in_video_preflight``, run when the carried state is rebuilt.
    Returns:
      ``(frame_idx, obj_ids, masks (O, 1, H, W) logits)``; ``(0, 1, H, W)`` masks while no object is prompted.
    """
    t = next_frame(s, frame)
    # read now, also with no object yet: a pushed frame enters the source's window, where a click can reach it
    _ = s.images[t]
    s.stream_next = t + 1
    objs = list(range(s.num_objects))
    if not objs:
        return t, [], tensor_like(np.zeros((0, 1, s.video_height, s.video_width), np.float32))
    tstate = s.stream_tstate
    if tstate is None:  # first call, or prompts/objects changed since the last one
        preflight(s)
        tstate = tracker_state.propagation_state(tracking, s, objs, t, False)
    run = pipeline.Pass(s, range(t, t + 1), objs, list(s.obj_ids))
    s.stream_tstate, chunk = pipeline.dispatch(tracking, tstate, [pipeline.Slot(s, [t], run, 1)], False, batched=False)
    ((_, frames),) = pipeline.collect(chunk, False)
    ((_, obj_ids, masks),) = frames
    return t, obj_ids, masks
