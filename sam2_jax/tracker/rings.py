"""The fixed slots of ``TrackerState``: which ring entries a frame may read, and the writes after a frame.

Every function here is pure and policy-free: a tracking policy (``policies/``) picks which of these rules its rings
follow (the recent-memory ring by frame index or by admission, the pointer ring likewise), and the engine calls
the policy. Shapes: O objects (rows), K conditioning slots, R recent slots, P pointer slots.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sam2_jax.tracker.state import TrackerState


def rel(frames: jax.Array, t: jax.Array, reverse: jax.Array) -> jax.Array:
    """How many frames before t each frame lies in the tracking direction (t - f forward, f - t in reverse)."""
    return (t - frames) * jnp.where(reverse, -1, 1)


def recency_rank(frames: jax.Array, t: jax.Array, reverse: jax.Array) -> jax.Array:
    """(O, N) ring frames -> how many written slots (frame >= 0) hold a more recent frame (0: the newest)."""
    r = rel(frames, t, reverse)
    written = frames >= 0
    newer = written[:, None, :] & (r[:, None, :] < r[:, :, None])  # (O, i, j): slot j newer than slot i
    return newer.sum(-1)


# --- reads --------------------------------------------------------------------------------------------------------
def recent_by_index(
    state: TrackerState, t: jax.Array, reverse: jax.Array, num_maskmem: int
) -> tuple[jax.Array, jax.Array]:
    """SAM 2's recent-memory rule: frames t-1 … t-R by index attend (O, R), ``maskmem_tpos_enc`` index
    ``t_rel - 1`` (O, R)."""
    R = state.recent_frame.shape[1]
    r = rel(state.recent_frame, t, reverse)
    return state.recent_valid & (r >= 1) & (r <= R), jnp.clip(r - 1, 0, num_maskmem - 1)


def recent_by_rank(
    state: TrackerState, t: jax.Array, reverse: jax.Array, num_maskmem: int
) -> tuple[jax.Array, jax.Array]:
    """The ring of admitted frames: every written slot attends (the ring holds the list the references build), its
    ``maskmem_tpos_enc`` index its rank in recency (their ``valid_indices[-t_rel]``)."""
    r = rel(state.recent_frame, t, reverse)
    rank = recency_rank(state.recent_frame, t, reverse)
    return state.recent_valid & (r >= 1), jnp.clip(rank, 0, num_maskmem - 1)


def pointers_by_index(
    state: TrackerState, t: jax.Array, reverse: jax.Array, max_ptrs: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """SAM 2's pointer rule (O, P): frames t-1 … t-(max_ptrs-1) by index, temporal offset ``t_rel``."""
    r = rel(state.ptr_frame, t, reverse)
    in_video = (state.ptr_frame >= 0) & (state.ptr_frame < state.num_frames)
    return state.ptr_valid & (r >= 1) & (r <= max_ptrs - 1) & in_video, r


def pointers_by_admission(
    state: TrackerState, t: jax.Array, reverse: jax.Array, max_ptrs: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """SAM 3's pointer rule (O, P): the pointers of ``valid_indices[-1]``, …, ``valid_indices[-(L-1)]`` at offsets
    1 … L-1, where the list holds the last ``min(admitted, max_ptrs - 1)`` admitted frames, then t-1 when it was
    not admitted."""
    r = rel(state.ptr_frame, t, reverse)
    rank = recency_rank(state.ptr_frame, t, reverse)
    n_list = jnp.minimum(state.admit_count, max_ptrs - 1) + (~state.last_admitted).astype(jnp.int32)
    return state.ptr_valid & (r >= 1) & (rank < n_list[:, None] - 1), rank + 1


def conditioning_slot(state: TrackerState, t: jax.Array) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """Which objects frame t conditions (O,) bool, and ``take``: a conditioning field (O, K, ...) -> (O, ...) at each
    object's slot of frame t (an arbitrary slot for an object that frame t does not condition)."""
    at_cond = state.cond_valid & (state.cond_frame == t)  # (O, K)
    k = jnp.argmax(at_cond, axis=1)
    O = at_cond.shape[0]
    return at_cond.any(1), lambda x: jnp.take_along_axis(x, k.reshape((O,) + (1,) * (x.ndim - 1)), axis=1)[:, 0]


# --- writes -------------------------------------------------------------------------------------------------------
def write_recent(state: TrackerState, t: jax.Array, maskmem: jax.Array, obj_ptr: jax.Array, valid: jax.Array):
    """Write frame t's non-conditioning memory (O, hw, m) and pointer (O, C) into the rings (slot t mod size)."""
    R, P = state.recent_frame.shape[1], state.ptr_frame.shape[1]
    r, p = jnp.mod(t, R), jnp.mod(t, P)
    return state.replace(
        recent_mem=state.recent_mem.at[:, r].set(maskmem.astype(state.recent_mem.dtype)),
        recent_frame=state.recent_frame.at[:, r].set(t),
        recent_valid=state.recent_valid.at[:, r].set(valid),
        ptr=state.ptr.at[:, p].set(obj_ptr),
        ptr_frame=state.ptr_frame.at[:, p].set(t),
        ptr_valid=state.ptr_valid.at[:, p].set(valid),
    )


def write_admitted(
    state: TrackerState,
    t: jax.Array,
    maskmem: jax.Array,
    obj_ptr: jax.Array,
    valid: jax.Array,
    admitted: jax.Array,
    pointers_by_admission: bool,
    obj_score: jax.Array | None = None,
) -> TrackerState:
    """The rings of admitted frames: frame t's memory (O, hw, m) and pointer (O, C) go to slot ``admit_count % size``
    of each object; the count advances where ``admitted`` (O,), so a frame that is not admitted stays only until the
    next write: the ring holds the last admitted frames, then t-1 (the references' ``valid_indices``). With
    ``pointers_by_admission`` False (SAMURAI) the pointer ring keeps the SAM 2 rule (slot ``t % P``). ``obj_score``
    (O,), when given (SAM2Long), is stored beside each entry (its key weight)."""
    O = state.num_objects
    R, P = state.recent_frame.shape[1], state.ptr_frame.shape[1]
    o = jnp.arange(O)
    r = jnp.mod(state.admit_count, R)
    p = jnp.mod(state.admit_count, P) if pointers_by_admission else jnp.full((O,), jnp.mod(t, P))
    if obj_score is not None:
        state = state.replace(
            recent_obj_score=state.recent_obj_score.at[o, r].set(obj_score),
            ptr_obj_score=state.ptr_obj_score.at[o, p].set(obj_score),
        )
    return state.replace(
        recent_mem=state.recent_mem.at[o, r].set(maskmem.astype(state.recent_mem.dtype)),
        recent_frame=state.recent_frame.at[o, r].set(t),
        recent_valid=state.recent_valid.at[o, r].set(valid),
        ptr=state.ptr.at[o, p].set(obj_ptr),
        ptr_frame=state.ptr_frame.at[o, p].set(t),
        ptr_valid=state.ptr_valid.at[o, p].set(valid),
        admit_count=state.admit_count + admitted.astype(jnp.int32),
        last_admitted=admitted,
    )


def write_cond(
    state: TrackerState,
    k: jax.Array,
    t: jax.Array,
    maskmem: jax.Array,
    obj_ptr: jax.Array,
    low_res: jax.Array,
    obj_score: jax.Array,
    valid: jax.Array | bool = True,
) -> TrackerState:
    """Store frame t as conditioning slot k of every object (where ``valid``): memory (O, hw, m), pointer (O, C),
    low-res logits (O, 1, 4h, 4w) and object score (O, 1)."""
    new = state.replace(
        cond_mem=state.cond_mem.at[:, k].set(maskmem.astype(state.cond_mem.dtype)),
        cond_ptr=state.cond_ptr.at[:, k].set(obj_ptr),
        cond_frame=state.cond_frame.at[:, k].set(t),
        cond_valid=state.cond_valid.at[:, k].set(True),
        cond_pred_masks=state.cond_pred_masks.at[:, k].set(low_res[:, 0]),
        cond_obj_score=state.cond_obj_score.at[:, k].set(obj_score[:, 0]),
    )
    return select_state(valid, new, state)


def select_state(pred: jax.Array | bool, a: Any, b: Any) -> Any:
    """``a`` where ``pred`` else ``b``, leaf by leaf (a traced branch without Python control flow)."""
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)
