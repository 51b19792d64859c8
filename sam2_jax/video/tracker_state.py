"""The device ``TrackerState`` a propagation starts from, built from a video's host store (``OutputStore``).

A propagation, a stream's first frame and a click on a tracked frame all start from the memory the latest pass left
around that frame: the conditioning frames and the stored outputs of the frames before it in the direction. The
rules are ``sam2_jax/tracker/host_state.py`` (shared with the Flax-free runtimes); this module feeds them this
predictor's store, re-tracks an output the store's budget dropped (``retrack``) and adds what the policies keep on
top (``TrackerPolicy.fill_host_rings`` / ``prepare_state``).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sam2_jax.tracker import compiled, host_state
from sam2_jax.tracker.state import TrackerState, empty_state, object_bucket, pad_objects
from sam2_jax.video.tracking import Tracking
from sam2_jax.video.video_state import FrameOutput, InferenceState


def read_output(out: FrameOutput) -> host_state.Stored:
    """A stored ``FrameOutput`` as the host state reads it."""
    return host_state.Stored(out.maskmem_features, out.obj_ptr[0], out.pred_masks[0, 0], out.object_score_logits[0, 0])


def empty_tracker_state(
    config: ml_collections.ConfigDict, num_objects: int, num_cond: int, num_frames: int, xp=jnp
) -> TrackerState:
    """A ``TrackerState`` of the model ``config``'s shapes with every slot invalid (``xp=np``: on the host)."""
    c = config
    s = c.image_size // c.backbone_stride
    return empty_state(
        num_objects,
        num_cond,
        c.num_maskmem,
        c.max_obj_ptrs_in_encoder,
        s * s,
        c.memory_encoder.out_dim,
        c.image_encoder.neck.d_model,
        (4 * s, 4 * s),
        num_frames,
        xp=xp,
    )


def tracker_state(
    tracking: Tracking,
    s: InferenceState,
    objs: list[int],
    frame_idx: int,
    reverse: bool,
    pad_to: int | None = None,
    on_device: bool = True,
    pathways: bool = True,
) -> TrackerState:
    """The tracker state of object indices ``objs`` of ``s`` as seen from ``frame_idx``.

    Their conditioning frames (the temporally closest ``max_cond_slots``) and the stored non-conditioning outputs of
    the frames before it in the direction (re-tracked when the store's budget dropped them).

    Args:
      pad_to: the object axis padded to this many rows (``pad_objects``).
      on_device: False: host numpy arrays.
      pathways: under SAM2Long each object becomes ``num_pathways`` equal rows unless False.
    """
    K = host_state.cond_slots(max(len(s.store.cond(o)) for o in objs), tracking.max_cond_slots)
    st = empty_tracker_state(tracking.config, len(objs), K, s.frame_limit, xp=np)
    arrays = vars(st)  # the host state's numpy arrays, filled in place
    recompute = functools.partial(retrack, tracking, s)
    policy = tracking.policy
    for i, o in enumerate(objs):
        host_state.write_cond(arrays, i, s.store.cond(o), frame_idx, read_output)
        policy.fill_host_rings(s, st, i, o, frame_idx, reverse)  # a memory-selecting policy's admitted frames
        lookup = functools.partial(s.store.memory, o, tracked=s.frames_tracked_per_obj[o], recompute=recompute)
        memories, pointers = not policy.selects_memory, not policy.selects_pointers
        host_state.write_recent(arrays, i, frame_idx, reverse, lookup, read_output, memories, pointers)
    if pad_to is not None:
        st = pad_objects(st, pad_to)
    if pathways:  # SAM2Long: P equal pathways per object, scores 0 (``rows_per_object``)
        st = policy.prepare_state(st, xp=np)
    return jax.device_put(st) if on_device else st


def propagation_state(
    tracking: Tracking, s: InferenceState, objs: list[int], frame_idx: int, reverse: bool
) -> TrackerState:
    """The tracker state of ``objs`` seen from ``frame_idx``, its object axis padded to ``object_bucket``
    (compiled shapes depend on the bucket, not on the exact count) and spread over the mesh."""
    st = tracker_state(tracking, s, objs, frame_idx, reverse, pad_to=object_bucket(len(objs)))
    return tracking.shard(st)


def retrack(tracking: Tracking, s: InferenceState, obj_idx: int, frame_idx: int) -> FrameOutput | None:
    """The output of ``obj_idx`` on ``frame_idx`` tracked again (in the direction it was tracked) from the nearest
    conditioning frame before it: the store's recompute hook for an output dropped by its budget. None when no
    conditioning frame precedes it."""
    reverse = s.frames_tracked_per_obj[obj_idx][frame_idx]["reverse"]
    before = [f for f in s.store.cond(obj_idx) if (f > frame_idx if reverse else f < frame_idx)]
    if not before:
        return None
    start = min(before) if reverse else max(before)
    order = list(range(start, frame_idx - 1, -1)) if reverse else list(range(start, frame_idx + 1))
    st = tracker_state(tracking, s, [obj_idx], start, reverse)
    for t in order:
        img, idx = jax.device_put((np.asarray(s.images[t])[None], np.asarray([t], np.int32)))
        st, out = compiled.propagate_chunk(
            tracking.module, tracking.params, st, img, idx, jnp.bool_(reverse), tracking.step_config
        )
    host = jax.tree.map(np.asarray, out)
    return FrameOutput(
        host.pred_masks[0, 0][None],
        host.obj_ptr[0, 0][None],
        host.object_score_logits[0, 0][None],
        host.maskmem[0, 0],
    )
