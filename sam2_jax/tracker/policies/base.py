"""What a tracking policy is: the hooks the engine calls, with SAM 2's rules as their defaults.

A policy is a frozen dataclass (hashable: it travels inside the static ``StepConfig`` of every compiled step, so
each policy compiles its own step and nothing branches on data or on a policy's name). The engine calls, per
tracked frame:

- ``check(module)``: refuse a model the policy cannot run (at trace time);
- ``recent_selection`` / ``pointer_selection``: which recent memories and object pointers a frame attends to, with
  their temporal positions (``rings.py`` holds the rules);
- ``key_scale``: optional weights on the memory-attention keys (SAM2Long);
- ``choose``: which multimask candidate a tracked frame keeps (default: the best predicted IoU);
- ``admit``: whether the frame enters the memory (``Admission``), and ``write_memory`` / ``after_frame``: the
  state writes that follow;
- ``step``: a policy with ``own_step`` replaces the whole tracking step (SAM2Long's pathways).

The predictor asks ``rows_per_object`` / ``prepare_state`` (a policy that tracks several rows per object) and
``final_lineage`` (the masks along the pathway that was best at the end of a pass).
"""

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from sam2_jax.tracker import kalman, rings
from sam2_jax.tracker.state import TrackerState

if TYPE_CHECKING:  # types only: the engine imports this module, not the other way round
    from sam2_jax.modeling.sam2_base import SAM2Base, SamHeadsOutput
    from sam2_jax.video.video_state import InferenceState


class Admission(NamedTuple):
    """A policy's verdict on a tracked frame (``TrackerPolicy.admit``)."""

    admitted: jax.Array  # (O,) bool
    best_iou: jax.Array  # (O,) predicted IoU of the kept candidate
    kalman: kalman.KalmanState  # SAMURAI's filter after the frame (unchanged for other policies)
    kf_score: jax.Array  # (O,) Kalman IoU of the kept mask; NaN where the filter did not score (the reference's None)


@dataclasses.dataclass(frozen=True)
class TrackerPolicy:
    """The official SAM 2.1 rules; a policy overrides the hooks where its reference differs.

    Class attributes:
      name: the registry name (the policy's module under ``tracker/policies/``).
      selects_memory: the recent-memory ring holds admitted frames (by rank) instead of the last frames (by index).
      selects_pointers: the pointer ring holds admitted frames too.
      own_step: ``step`` replaces the engine's tracking step.
    """

    name: ClassVar[str] = ""
    selects_memory: ClassVar[bool] = False
    selects_pointers: ClassVar[bool] = False
    own_step: ClassVar[bool] = False

    @property
    def obj_score_threshold(self) -> float:
        """The object-score logit above which a mask counts as present in the heads (SAM 2: 0)."""
        return 0.0

    def check(self, module: "SAM2Base") -> None:
        """Raise ``ValueError`` for a model this policy cannot track with (called while tracing)."""

    # --- the memory a frame attends to --------------------------------------------------------------------------
    def recent_selection(
        self, state: TrackerState, t: jax.Array, reverse: jax.Array, num_maskmem: int
    ) -> tuple[jax.Array, jax.Array]:
        """Which recent-ring slots frame t attends to (O, R) and their ``maskmem_tpos_enc`` index (O, R)."""
        return rings.recent_by_index(state, t, reverse, num_maskmem)

    def pointer_selection(
        self, state: TrackerState, t: jax.Array, reverse: jax.Array, max_ptrs: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Which pointer-ring slots frame t attends to (O, P) and their temporal offsets (O, P)."""
        return rings.pointers_by_index(state, t, reverse, max_ptrs)

    def key_scale(
        self,
        state: TrackerState,
        t: jax.Array,
        reverse: jax.Array,
        frame_ok: jax.Array,
        recent_tpos_idx: jax.Array,
        ptr_ok: jax.Array,
        max_ptrs: jax.Array,
        hw: int,
    ) -> jax.Array | None:
        """Weights (O, Nm) on the memory-attention keys, or None (unweighted). ``frame_ok`` (O, K+R): the attended
        memory frames; ``recent_tpos_idx`` (O, R); ``ptr_ok`` (O, (K+P) * split): the attended pointer tokens."""
        return None

    # --- the tracked frame's outcome ----------------------------------------------------------------------------
    def choose(self, module: "SAM2Base", state: TrackerState) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
        """The heads' candidate choice ``(ious (O, M), high_res_multimasks (O, M, S, S)) -> (O,)``; None keeps the
        best predicted IoU."""
        return None

    def admit(
        self, state: TrackerState, heads: "SamHeadsOutput", t: jax.Array, reverse: jax.Array, is_cond: jax.Array
    ) -> Admission:
        """Whether each object's tracked frame enters the memory: SAM 2 admits every tracked (non-conditioning)
        frame."""
        kf = kalman.KalmanState(state.kf_mean, state.kf_cov, state.kf_stable)
        nan = jnp.full(is_cond.shape, jnp.nan, jnp.float32)
        return Admission(~is_cond, heads.ious.max(-1), kf, nan)

    def write_memory(
        self,
        state: TrackerState,
        t: jax.Array,
        maskmem: jax.Array,
        obj_ptr: jax.Array,
        valid: jax.Array,
        admitted: jax.Array,
    ) -> TrackerState:
        """Write frame t's memory (O, hw, m) and pointer (O, C) into the rings (SAM 2: slot t mod size)."""
        return rings.write_recent(state, t, maskmem, obj_ptr, valid)

    def after_frame(self, state: TrackerState, adm: Admission) -> TrackerState:
        """State a policy keeps beyond the rings, after a tracked frame (SAMURAI's filter); SAM 2 keeps none."""
        return state

    def kf_box(self, state: TrackerState) -> jax.Array:
        """``StepOutput.kf_box`` (O, 4) xyxy: SAMURAI's Kalman box; zeros for the other policies."""
        return jnp.zeros((state.num_objects, 4), jnp.float32)

    def step(self, module: "SAM2Base", params, state: TrackerState, image, frame_idx, reverse, cfg) -> Any:
        """The whole tracking step of a policy with ``own_step`` (``engine.track_step``'s signature)."""
        raise NotImplementedError(f"the {self.name} policy has no own step")

    # --- the predictor's host side ------------------------------------------------------------------------------
    @property
    def rows_per_object(self) -> int:
        """How many rows of ``TrackerState`` one object takes (SAM2Long: its pathways)."""
        return 1

    def prepare_state(self, state: TrackerState, xp=jnp) -> TrackerState:
        """A state of O objects -> the rows this policy tracks (``rows_per_object`` per object)."""
        return state

    def fill_host_rings(
        self, s: "InferenceState", st: TrackerState, i: int, o: int, frame_idx: int, reverse: bool
    ) -> None:
        """Fill row ``i`` of the host (numpy) state ``st`` with the ring entries of object ``o`` this policy keeps
        apart from the last frames (``host_state.write_recent`` writes those): none for SAM 2."""

    def end_pass(self, s: "InferenceState", order: list[int]) -> None:
        """After a propagation's last frame was yielded (``order``: its frames as tracked): SAM 2 keeps the stored
        outputs as they are."""


class AdmittedMemory(TrackerPolicy):
    """A policy whose recent-memory ring holds the admitted frames (+ t-1), temporal encodings by rank."""

    selects_memory: ClassVar[bool] = True

    def recent_selection(self, state, t, reverse, num_maskmem):
        return rings.recent_by_rank(state, t, reverse, num_maskmem)

    def write_memory(self, state, t, maskmem, obj_ptr, valid, admitted):
        return rings.write_admitted(state, t, maskmem, obj_ptr, valid, admitted, self.selects_pointers)

    def fill_host_rings(self, s, st, i, o, frame_idx, reverse):
        admitted_rings(self, s, st, i, o, frame_idx, reverse)


class AdmittedMemoryAndPointers(AdmittedMemory):
    """A policy whose pointer ring holds the admitted frames too (SAM 3, SAM2Long)."""

    selects_pointers: ClassVar[bool] = True

    def pointer_selection(self, state, t, reverse, max_ptrs):
        return rings.pointers_by_admission(state, t, reverse, max_ptrs)


def admitted_rings(
    policy: TrackerPolicy, s: "InferenceState", st: TrackerState, i: int, o: int, frame_idx: int, reverse: bool
) -> None:
    """Fill row ``i`` of host state ``st`` as a memory-selecting policy's scan would have left it before
    ``frame_idx``: the stored frames the policy admitted (newest first, up to the pointer ring's size), then the
    previous frame when it was not admitted (``rings.write_admitted``). Dropped outputs are skipped and the
    Kalman filter restarts (``policies/__init__.py``).

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
