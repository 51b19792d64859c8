"""Host code of the tracking policies that keep their own memory (``sam2_jax/tracker/policies.py``), apart from the
predictor so that it can later move into each policy's file.

- Memory-selecting policies (SAMURAI, SAM 3 selection, SAM2Long): the rings a propagation starts from hold the frames
  the policy admitted, not the last frames (``admitted_rings``).
- SAM2Long (Mark12Ding/SAM2Long ``sam2/sam2_video_predictor.py``): each object is P pathways; every tracked frame
  records each pathway's parent, cumulative score and mask (``record_pathways``), and at the end of a pass the masks
  of the stored outputs are re-selected along the lineage of the pathway that is best at the end
  (``keep_final_lineage``), as the reference's ``propagate_in_video`` returns them.
"""

import numpy as np

from sam2_jax.tracker import engine
from sam2_jax.tracker.policies import TrackerPolicy
from sam2_jax.tracker.state import TrackerState
from sam2_jax.video.video_state import InferenceState

# --- memory-selecting policies: the admitted rings ----------------------------------------------------------------


def admitted_rings(
    policy: TrackerPolicy, s: InferenceState, st: TrackerState, i: int, o: int, frame_idx: int, reverse: bool
) -> None:
    """Fill row ``i`` of host state ``st`` as a memory-selecting policy's scan would have left it before
    ``frame_idx``: the stored frames the policy admitted (newest first, up to the pointer ring's size), then the
    previous frame when it was not admitted (``engine.write_admitted``). Dropped outputs are skipped and the
    Kalman filter restarts (``policies.py``).

    Args:
      policy: the predictor's policy (``selects_pointers`` says whether the pointer ring is filled too).
      s: the video's state; ``o`` the object index in it, ``i`` its row in ``st``.
      st: a host (numpy) state, written in place.
    """
    R, P = st.recent_frame.shape[1], st.ptr_frame.shape[1]
    sign = -1 if reverse else 1
    stored = s.store.non_cond(o)
    prev_f = frame_idx - sign
    prev = stored.get(prev_f)
    before = sorted((f for f in stored if (frame_idx - f) * sign > 0 and stored[f].admitted), key=lambda f: -f * sign)
    admitted = [(f, stored[f]) for f in before[:P]]
    A = len(admitted)
    # the previous frame always takes the newest place, as an empty one when it is a conditioning frame
    is_prev_cond = prev_f in s.store.cond(o)
    last = [] if (prev is None and not is_prev_cond) or (prev is not None and prev.admitted) else [(A, prev_f, prev)]
    entries = [(A - 1 - q, f, out) for q, (f, out) in enumerate(admitted)] + last
    for pos, f, out in entries:
        rank = A - 1 - pos + len(last)  # 0: the newest entry
        if rank < R:
            st.recent_frame[i, pos % R] = f
            st.recent_valid[i, pos % R] = out is not None
            if out is not None:
                st.recent_mem[i, pos % R] = out.maskmem_features
                st.recent_obj_score[i, pos % R] = out.object_score_logits[0, 0]
        if policy.selects_pointers:
            st.ptr_frame[i, pos % P] = f
            st.ptr_valid[i, pos % P] = out is not None
            if out is not None:
                st.ptr[i, pos % P] = out.obj_ptr[0]
                st.ptr_obj_score[i, pos % P] = out.object_score_logits[0, 0]
    st.admit_count[i] = A
    st.last_admitted[i] = prev is not None and prev.admitted


# --- SAM2Long: pathways and the final lineage -------------------------------------------------------------------


def repeat_pathways(st: TrackerState, policy: TrackerPolicy) -> TrackerState:
    """Host state of O objects -> O * P equal pathway rows with scores 0, as ``sam2long_step`` starts from."""
    return engine.repeat_pathways(st, policy.num_pathways, xp=np)


def clear_pathways(s: InferenceState) -> None:
    """Forget the last pass's pathways and lineage: a new pass starts from one memory per object."""
    s.pathways.clear()
    s.pathway_masks_held.clear()
    s.final_lineage.clear()


def record_pathways(s: InferenceState, t: int, host: engine.StepOutput, j: int, num_objects: int) -> None:
    """Keep every pathway's parent, score and mask of frame ``t`` (row ``j`` of a fetched chunk, ``(T, O_bucket, P,
    ...)``) for the lineage; the padded objects of the bucket are left out."""
    s.pathways[t] = (
        host.path_parent[j, :num_objects],
        host.path_score[j, :num_objects],
        host.path_masks[j, :num_objects],
    )
    s.pathway_masks_held.add(t)


def drop_evicted_pathway_masks(s: InferenceState) -> None:
    """The pathways' masks go when the store's budget drops the frame's outputs (the parents, a few bytes a frame, stay
    for the lineage), so host memory stays within the budget however long the video; only the frames that still hold
    masks are looked at (as many as the store holds, not the video's length)."""
    if not s.pathway_masks_held:
        return
    held = {f for o in s.store.per_obj for f in s.store.non_cond(o)}
    for f in s.pathway_masks_held - held:
        parent, score, _ = s.pathways[f]
        s.pathways[f] = (parent, score, None)
    s.pathway_masks_held &= held


def keep_final_lineage(s: InferenceState, order: list[int]) -> None:
    """Re-select each stored non-conditioning output's masks along the lineage of the pathway that is best at the end
    of the pass, as the reference's ``propagate_in_video`` returns them.

    The per-frame masks already yielded were the causal best pathway's; memories, pointers and scores stay the causal
    best's (the memory the next pass rebuilds from). Kept in ``s.final_lineage``: {frame: pathway index per object};
    the pass's per-frame pathways stay in ``s.pathways`` until the next pass, their masks only while the store holds
    the frame's outputs (a frame the budget dropped, recomputed later, gives the causal best's masks).

    Args:
      s: the video's state after a pass.
      order: the frames of the pass, in the order they were tracked.
    """
    s.final_lineage.clear()
    path = np.zeros(s.num_objects, np.int64)  # pathway 0 is the best after every step
    for t in reversed(order):
        if t not in s.pathways:
            continue
        parent, _, masks = s.pathways[t]
        s.final_lineage[t] = path.copy()
        for o in range(s.num_objects):
            out = s.store.get(o, t)
            if out is not None and masks is not None and t not in s.store.cond(o):
                out.pred_masks = masks[o, path[o]][None]
        path = parent[np.arange(s.num_objects), path]
