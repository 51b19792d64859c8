"""The tracker's fixed-size memory state: what the official ``output_dict`` holds, as slots with validity masks.

The official ``SAM2VideoPredictor`` keeps every frame's output in dicts keyed by frame index and picks, per frame,
the conditioning frames, the non-conditioning memories of frames t-1 … t-(num_maskmem-1) and the object pointers of
frames t-1 … t-(max_obj_ptrs-1). Attention over a set of keys does not depend on their order, and every positional
signal travels with its slot, so the same selection is a boolean mask over fixed slots (``docs/architecture.md``,
"The fixed-slot memory"):

- conditioning slots ``K`` (the prompted frames; the host chooses which ones when there are more than ``K``);
- a ring of ``R = num_maskmem - 1`` recent non-conditioning memories, slot ``frame % R``;
- a ring of ``P = max_obj_ptrs_in_encoder - 1`` recent non-conditioning object pointers, slot ``frame % P``;
- for the SAMURAI / SAM 3 policies (``policies/``): the count of admitted frames that places writes in the rings,
  and SAMURAI's per-object Kalman filter.

A slot counts at frame t only if its frame index lies in the official window (t-1 … t-R forward, t+1 … t+R in
reverse); a frame missing from the window (e.g. a conditioning frame) is skipped, as the official code skips it.
Memories are stored in bfloat16 exactly as the official predictor stores ``maskmem_features``; their position
encoding is the same for every frame and is not stored. Every array has a leading object axis ``O``.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.sam.prompt_encoder import ABSENT_LABEL
from sam2_jax.tracker import host_state


@flax.struct.dataclass
class TrackerState:
    cond_mem: jax.Array  # (O, K, HW, mem_dim) bfloat16
    cond_ptr: jax.Array  # (O, K, C) float32
    cond_frame: jax.Array  # (O, K) int32
    cond_valid: jax.Array  # (O, K) bool
    cond_pred_masks: jax.Array  # (O, K, 4h, 4w) float32: output of the conditioning frame, reused when reached
    cond_obj_score: jax.Array  # (O, K) float32
    recent_mem: jax.Array  # (O, R, HW, mem_dim) bfloat16
    recent_frame: jax.Array  # (O, R) int32
    recent_valid: jax.Array  # (O, R) bool
    ptr: jax.Array  # (O, P, C) float32
    ptr_frame: jax.Array  # (O, P) int32
    ptr_valid: jax.Array  # (O, P) bool
    num_frames: jax.Array  # () int32: video length (a large number for a live stream)
    # Tracking policies (policies/) other than sam2: the rings then hold admitted frames, written at slot
    # ``admit_count % size``; a frame that is not admitted is written at the next slot and overwritten by the next.
    admit_count: jax.Array  # (O,) int32: frames admitted so far in this pass
    last_admitted: jax.Array  # (O,) bool: the last written frame was admitted
    kf_mean: jax.Array  # (O, 8) float32: SAMURAI's Kalman state (x, y, a, h and velocities) per object
    kf_cov: jax.Array  # (O, 8, 8) float32
    kf_stable: jax.Array  # (O,) int32: SAMURAI's stable_frames (0: the filter restarts on the next frame)
    # SAM2Long (a row per object and pathway, ``policies/sam2long.py``): the object score of each ring entry (its
    # key weight in the memory attention) and the pathway's cumulative score (sum of log(IoU + 1e-5)).
    recent_obj_score: jax.Array  # (O, R) float32
    ptr_obj_score: jax.Array  # (O, P) float32
    path_score: jax.Array  # (O,) float32

    @property
    def num_objects(self) -> int:
        return self.cond_frame.shape[0]

    @property
    def num_cond_slots(self) -> int:
        return self.cond_frame.shape[1]


def empty_state(
    num_objects: int,
    num_cond_slots: int,
    num_maskmem: int,
    max_obj_ptrs: int,
    hw: int,
    mem_dim: int,
    hidden_dim: int,
    mask_hw: tuple[int, int],
    num_frames: int,
    xp=jnp,
) -> TrackerState:
    """A state with every slot invalid; ``xp=np`` builds it on the host (no device op, nothing compiled)."""
    O, K, R, P = num_objects, num_cond_slots, num_maskmem - 1, max_obj_ptrs - 1
    return TrackerState(
        cond_mem=xp.zeros((O, K, hw, mem_dim), jnp.bfloat16),
        cond_ptr=xp.zeros((O, K, hidden_dim), jnp.float32),
        cond_frame=xp.full((O, K), -1, jnp.int32),
        cond_valid=xp.zeros((O, K), bool),
        cond_pred_masks=xp.zeros((O, K, *mask_hw), jnp.float32),
        cond_obj_score=xp.zeros((O, K), jnp.float32),
        recent_mem=xp.zeros((O, R, hw, mem_dim), jnp.bfloat16),
        recent_frame=xp.full((O, R), -1, jnp.int32),
        recent_valid=xp.zeros((O, R), bool),
        ptr=xp.zeros((O, P, hidden_dim), jnp.float32),
        ptr_frame=xp.full((O, P), -1, jnp.int32),
        ptr_valid=xp.zeros((O, P), bool),
        num_frames=xp.asarray(num_frames, np.int32),
        admit_count=xp.zeros((O,), jnp.int32),
        last_admitted=xp.zeros((O,), bool),
        kf_mean=xp.zeros((O, 8), jnp.float32),
        kf_cov=xp.zeros((O, 8, 8), jnp.float32),
        kf_stable=xp.zeros((O,), jnp.int32),
        recent_obj_score=xp.zeros((O, R), jnp.float32),
        ptr_obj_score=xp.zeros((O, P), jnp.float32),
        path_score=xp.zeros((O,), jnp.float32),
    )


def state_nbytes(state: TrackerState) -> int:
    """Device bytes of a state (independent of the video's length)."""
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state)))


def object_bucket(num_objects: int) -> int:
    """The padded object count the tracker compiles for: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, … (powers of two and
    their halfway points), so adding objects recompiles the step only when the count crosses a bucket, and padding
    adds at most a third of the work (on a CPU, where every object costs its share of the FLOPs, padding 3 to 4
    would cost a third more)."""
    if num_objects <= 2:
        return max(num_objects, 1)
    p = 1 << (num_objects - 1).bit_length()  # the next power of two
    return p * 3 // 4 if num_objects <= p * 3 // 4 else p


def click_bucket(num_clicks: int, multimask_max_pt_num: int = 1) -> int:
    """The padded click count a prompt step compiles for: the count itself up to ``multimask_max_pt_num`` (the
    decoder switches multimask output on the count, so those counts stay apart), then powers of two (2, 4, 8, 16,
    …). The extra slots carry ``ABSENT_LABEL`` and are masked out of the decoder's attention."""
    if num_clicks <= max(multimask_max_pt_num, 1):
        return num_clicks
    return max(1 << (num_clicks - 1).bit_length(), multimask_max_pt_num + 1)


def pad_clicks(coords: np.ndarray, labels: np.ndarray, multimask_max_pt_num: int = 1):
    """``coords (B, N, 2)``, ``labels (B, N)`` padded on the click axis to ``click_bucket(N)`` with
    ``ABSENT_LABEL`` slots at (0, 0)."""
    count = click_bucket(labels.shape[1], multimask_max_pt_num)
    return host_state.pad_clicks_to(coords, labels, count, ABSENT_LABEL)


def pad_objects(state: TrackerState, num_objects: int) -> TrackerState:
    """``state`` (host numpy arrays) with its object axis padded to ``num_objects`` by copies of object 0
    (``host_state.pad_object_axis``). Padding on the host keeps the device program's shapes those of the bucket (no
    per-count concatenation is compiled)."""
    if num_objects < state.num_objects:
        raise ValueError(f"cannot pad {state.num_objects} objects down to {num_objects}")
    if num_objects == state.num_objects:
        return state
    return jax.tree.map(lambda x: host_state.pad_object_axis(x, num_objects), state)


def pad_cond_slots(state: TrackerState, num_cond_slots: int) -> TrackerState:
    """``state`` (host numpy arrays) with ``num_cond_slots`` conditioning slots, the added ones invalid (a slot that
    is not valid is masked out of the attention, so the outputs do not change)."""
    pad = num_cond_slots - state.num_cond_slots
    if pad < 0:
        raise ValueError(f"cannot pad {state.num_cond_slots} conditioning slots down to {num_cond_slots}")
    if not pad:
        return state
    grow = lambda x, fill: np.concatenate([x, np.full((x.shape[0], pad, *x.shape[2:]), fill, x.dtype)], axis=1)
    return state.replace(
        cond_mem=grow(state.cond_mem, 0),
        cond_ptr=grow(state.cond_ptr, 0),
        cond_frame=grow(state.cond_frame, -1),
        cond_valid=grow(state.cond_valid, False),
        cond_pred_masks=grow(state.cond_pred_masks, 0),
        cond_obj_score=grow(state.cond_obj_score, 0),
    )


def stack_states(states: list[TrackerState]) -> TrackerState:
    """Host states of several videos -> one state with a leading video axis (V, O, …), every video padded to the
    largest object bucket (``pad_objects``) and conditioning-slot count (``pad_cond_slots``) among them."""
    num_objects = max(s.num_objects for s in states)
    num_cond = max(s.num_cond_slots for s in states)
    states = [pad_cond_slots(pad_objects(s, num_objects), num_cond) for s in states]
    return jax.tree.map(lambda *xs: np.stack(xs), *states)


@jax.jit
def put_video(states: TrackerState, index: jax.Array, state: TrackerState) -> TrackerState:
    """``states`` (V, O, …) with video ``index`` replaced by ``state`` (O, …) of the same counts: one compile per
    shape, whichever slot (a slot of ``propagate_in_videos`` refilled with the next video)."""
    return jax.tree.map(lambda xs, x: xs.at[index].set(x), states, state)
