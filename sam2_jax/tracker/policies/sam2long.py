"""``sam2long``: SAM2Long's memory pathways (Ding et al., arXiv 2410.16268; github ``Mark12Ding/SAM2Long``,
CC-BY-NC: its code was run as a reference, not copied).

``num_pathways`` memory pathways per object (rows of the state, ``sam2long_step``); each frame keeps P of the P x 3
candidates by cumulative log-IoU, or SAM2Long's diverse rule when every pathway's |object score| <=
``sam2long_uncertainty`` (``sam2long_select``); a frame enters a pathway's rings when its IoU >
``sam2long_iou_threshold`` and its object score > 0 (the rings then hold the admitted frames + t-1, masks and
pointers, as SAM 3's); memory-attention keys weighted by the rank of each memory's object score
(``sam2long_key_weights``). Defaults from ``tools/vos_inference.py``: P = 3, IoU 0.1, uncertainty 2.

Deviations (the reference tracks one object from one conditioning frame, forward): objects are independent rows;
every conditioning frame weighs as its one conditioning frame (score 10); the frame after any conditioning frame
runs as a single pathway (pathway 0's best-IoU candidate, scores back to 0), as the reference's
``start_frame_idx + 1``; reverse mirrors the rules; a resumed pass starts from P equal pathways rebuilt from the
stored best outputs. Scores are float32 and ``round(iou, 2)`` is ``round(100 iou)`` in float32 (the reference:
Python floats).
"""

import dataclasses
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.tracker import rings
from sam2_jax.tracker.calls import broadcast_high_res, encode_memory, frame_features, postprocess_pred_masks, sam_heads
from sam2_jax.tracker.engine import StepOutput
from sam2_jax.tracker.memory import condition_on_memory
from sam2_jax.tracker.policies.base import AdmittedMemoryAndPointers
from sam2_jax.tracker.state import TrackerState
from sam2_jax.tracker.step_config import StepConfig

if TYPE_CHECKING:  # a type only: the video package sits above the tracker
    from sam2_jax.video.video_state import InferenceState


@dataclasses.dataclass(frozen=True)
class SAM2LongPolicy(AdmittedMemoryAndPointers):
    """Attributes:
    num_pathways, sam2long_iou_threshold, sam2long_uncertainty: SAM2Long's ``num_pathway``, ``iou_thre`` and
      ``uncertainty`` (defaults of its ``tools/vos_inference.py``: 3, 0.1, 2).
    """

    name: ClassVar[str] = "sam2long"
    own_step: ClassVar[bool] = True
    num_pathways: int = 3
    sam2long_iou_threshold: float = 0.1
    sam2long_uncertainty: float = 2.0

    def __post_init__(self):
        if self.num_pathways < 1:
            raise ValueError(f"num_pathways must be >= 1, got {self.num_pathways}")

    def check(self, module: SAM2Base) -> None:
        if not module.config.use_obj_ptrs_in_encoder:
            raise ValueError("the sam2long policy needs use_obj_ptrs_in_encoder (its key weighting covers pointers)")
        if not module.use_multimask(is_init_cond_frame=False, num_pts=0):
            raise ValueError("the sam2long policy needs multimask_output_for_tracking=True (its three candidates)")

    def key_scale(self, state, t, reverse, frame_ok, recent_tpos_idx, ptr_ok, max_ptrs, hw):
        """``sam2long_key_weights`` spread over the tokens: each memory frame's weight on its ``hw`` tokens, each
        pointer's on its ``split`` tokens."""
        O, K = state.cond_frame.shape
        ptr_sel, ptr_rel = self.pointer_selection(state, t, reverse, max_ptrs)
        cond_ptr_ok = ptr_ok.reshape(O, K + ptr_sel.shape[1], -1)[:, :K, 0]
        w_frame, w_ptr = sam2long_key_weights(
            state, frame_ok, recent_tpos_idx, jnp.concatenate([cond_ptr_ok, ptr_sel], 1), ptr_rel
        )
        split = ptr_ok.shape[1] // w_ptr.shape[1]
        return jnp.concatenate([jnp.repeat(w_frame, hw, axis=1), jnp.repeat(w_ptr, split, axis=1)], 1)

    def step(self, module, params, state, image, frame_idx, reverse, cfg):
        return sam2long_step(module, params, state, image, frame_idx, reverse, cfg)

    @property
    def rows_per_object(self) -> int:
        return self.num_pathways

    def prepare_state(self, state: TrackerState, xp=jnp) -> TrackerState:
        return repeat_pathways(state, self.num_pathways, xp)

    def end_pass(self, s: "InferenceState", order: list[int]) -> None:
        """The stored masks re-selected along the lineage of the pathway that is best at the end of the pass."""
        if len(order):
            keep_final_lineage(s, order)


POLICY = SAM2LongPolicy


def _torch_linspace(n: jax.Array, i: jax.Array, lo: float = 0.95, hi: float = 1.05) -> jax.Array:
    """``torch.linspace(lo, hi, n)[i]`` in float32, as torch's CPU kernel computes it (the first half from ``lo``,
    the second half back from ``hi``); ``lo`` where n == 1."""
    step = (jnp.float32(hi) - jnp.float32(lo)) / jnp.maximum(n - 1, 1).astype(jnp.float32)
    fwd = jnp.float32(lo) + step * i.astype(jnp.float32)
    bwd = jnp.float32(hi) - step * (n - i - 1).astype(jnp.float32)
    return jnp.where(n == 1, jnp.float32(lo), jnp.where(i < n // 2, fwd, bwd))


def _rank_weights(score: jax.Array, ok: jax.Array, pos: jax.Array) -> jax.Array:
    """(O, N) scores of the entries where ``ok`` -> the weight ``linspace(0.95, 1.05, n)[rank]`` of each entry, rank
    by ascending score among the ``ok`` entries (ties by list position ``pos``), 1 where not ``ok``."""
    lower = (score[:, None, :] < score[:, :, None]) | (
        (score[:, None, :] == score[:, :, None]) & (pos[:, None, :] < pos[:, :, None])
    )
    rank = (lower & ok[:, None, :]).sum(-1)
    n = ok.sum(1, keepdims=True)
    return jnp.where(ok, _torch_linspace(n, rank), 1.0)


def sam2long_key_weights(
    state: TrackerState, frame_ok: jax.Array, recent_rank: jax.Array, ptr_ok: jax.Array, ptr_rel: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """SAM2Long's memory-attention key weights (its ``MemoryAttentionLayer._forward_ca`` with
    ``object_frame_scores`` / ``object_ptr_scores`` from ``_prepare_memory_conditioned_features``).

    Each attended memory frame (K conditioning + R recent slots, ``frame_ok`` (O, K+R)) and each attended pointer
    (K + P, ``ptr_ok``) gets ``linspace(0.95, 1.05, n)[rank]``, rank by ascending object score among its kind
    (a conditioning entry scores 10, as the reference's constant; a ring entry its stored object score); ties keep
    the reference's list order (conditioning first, then memories oldest first, pointers newest first). With a
    single memory frame nothing is weighted (the reference's ``num_frame == 1``). Returns (O, K+R) and (O, K+P).
    """
    K, R = state.cond_frame.shape[1], state.recent_frame.shape[1]
    ten = jnp.full(state.cond_frame.shape, 10.0, jnp.float32)
    f_score = jnp.concatenate([ten, state.recent_obj_score], 1)
    f_pos = jnp.concatenate([jnp.broadcast_to(jnp.arange(K) - K - R - 1, state.cond_frame.shape), -recent_rank], 1)
    p_score = jnp.concatenate([ten, state.ptr_obj_score], 1)
    p_pos = jnp.concatenate([jnp.broadcast_to(jnp.arange(K) - K, state.cond_frame.shape), ptr_rel], 1)
    several = frame_ok.sum(1, keepdims=True) > 1
    w_frame = jnp.where(several, _rank_weights(f_score, frame_ok, f_pos), 1.0)
    w_ptr = jnp.where(several, _rank_weights(p_score, ptr_ok, p_pos), 1.0)
    return w_frame, w_ptr


class PathwayChoice(NamedTuple):
    """``sam2long_select``'s choice per object and new pathway (O, P)."""

    parent: jax.Array  # int32: the pathway the new pathway continues
    cand: jax.Array  # int32: which of the parent's multimask candidates it keeps
    score: jax.Array  # float32: its cumulative score


def sam2long_select(
    path_score: jax.Array, ious: jax.Array, obj_score: jax.Array, first: jax.Array, policy: "SAM2LongPolicy"
) -> PathwayChoice:
    """SAM2Long's constrained tree step (``SAM2VideoPredictor._run_single_frame_inference`` of
    github Mark12Ding/SAM2Long), per object, on the P pathways' M candidates.

    Args:
      path_score: (O, P) cumulative scores; ious: (O, P, M) predicted IoUs; obj_score: (O, P) object-score
        logits; first: (O,) bool, the first frame after the conditioning frame (a single pathway: every new
        pathway keeps pathway 0's best-IoU candidate, scores restart at 0).
    Otherwise each candidate scores ``path_score + log(iou + 1e-5)``, sorted descending (a stable sort, as
    Python's). When ``max |object score| > sam2long_uncertainty`` the top P are kept; else the diverse rule: in
    sorted order, candidates whose signed IoU (negative where the pathway's object score <= 0) rounded to 2
    decimals was not seen yet, up to P; then, pathway by pathway, the best candidate of each pathway not yet
    continued, until P. New pathway i is the i-th kept candidate (pathway 0 the best).
    """
    O, P, M = ious.shape
    total = (path_score[:, :, None] + jnp.log(ious + 1e-5)).reshape(O, P * M)
    order = jnp.argsort(-total, axis=1, stable=True)  # candidate index (p * M + j) in sorted position
    signed = jnp.where(obj_score[:, :, None] > 0, ious, -ious).reshape(O, P * M)
    key = jnp.take_along_axis(jnp.round(signed * 100), order, 1)  # Python's round(x, 2), as hundredths
    parent_sorted = order // M
    m = jnp.arange(P * M)
    seen = ((key[:, None, :] == key[:, :, None]) & (m[None, :] < m[:, None])[None]).any(-1)
    take_key = ~seen & (jnp.cumsum(~seen, axis=1) <= P)  # (O, PM) in sorted position
    used = ((parent_sorted[:, :, None] == jnp.arange(P)) & take_key[:, :, None]).any(1)  # (O, P) pathway continued
    best_pos = jnp.argmax(parent_sorted[:, :, None] == jnp.arange(P), axis=1)  # (O, P) each pathway's best position
    entry_pos = jnp.concatenate([jnp.broadcast_to(m, (O, P * M)), best_pos], 1)
    eligible = jnp.concatenate([take_key, ~used], 1)
    pick = jnp.argsort(~eligible, axis=1, stable=True)[:, :P]
    diverse = jnp.take_along_axis(entry_pos, pick, 1)
    certain = jnp.abs(obj_score).max(1, keepdims=True) > policy.sam2long_uncertainty
    pos = jnp.where(certain, jnp.arange(P), diverse)
    flat = jnp.take_along_axis(order, pos, 1)
    parent, cand, score = flat // M, flat % M, jnp.take_along_axis(total, flat, 1)
    f = first[:, None]
    best0 = jnp.argmax(ious[:, 0], axis=-1)[:, None]
    return PathwayChoice(
        jnp.where(f, 0, parent).astype(jnp.int32),
        jnp.where(f, best0, cand).astype(jnp.int32),
        jnp.where(f, 0.0, score).astype(jnp.float32),
    )


def sam2long_step(
    module: SAM2Base,
    params,
    state: TrackerState,
    image: jax.Array,
    frame_idx: jax.Array,
    reverse: jax.Array,
    cfg: StepConfig,
) -> tuple[TrackerState, StepOutput]:
    """``track_step`` under SAM2Long: ``state`` holds P = ``policy.num_pathways`` rows per object (row o * P + p,
    ``repeat_pathways``), each pathway with its own rings, admission history and cumulative score.

    All O * P rows are tracked at once (memory attention with SAM2Long's key weights, heads with all three
    candidates and their pointers), ``sam2long_select`` keeps P of the P * 3 candidates per object, each new
    pathway takes its parent's rows (a gather along P) and writes the kept candidate's memory, admitted when its
    IoU > ``sam2long_iou_threshold`` and its object score > 0 (the previous frame always attends). Returns the
    best pathway's outputs (O rows) and every pathway's parent, score and mask (``StepOutput.path_*``).
    """
    policy = cfg.policy
    P = policy.num_pathways
    N = state.num_objects
    if N % P:
        raise ValueError(f"the sam2long state has {N} rows, not a multiple of {P} pathways (repeat_pathways)")
    O = N // P
    policy.check(module)
    t = jnp.asarray(frame_idx, jnp.int32)
    feats = frame_features(module, params, image)
    pix = condition_on_memory(module, params, state, feats, t, reverse, cfg)
    hr = broadcast_high_res(feats, N)
    heads, cand_ptrs = sam_heads(module, params, pix, None, None, None, hr, True, all_obj_ptrs=True)
    M = heads.ious.shape[1]
    is_cond, take = rings.conditioning_slot(state, t)  # (N,); take reads the slot of the rows' shared prompts
    first = (state.cond_valid & (rings.rel(state.cond_frame, t, reverse) == 1)).any(1).reshape(O, P)[:, 0]
    choice = sam2long_select(
        state.path_score.reshape(O, P),
        heads.ious.reshape(O, P, M),
        heads.object_score_logits.reshape(O, P),
        first,
        policy,
    )
    # a conditioning frame outputs its stored result and leaves the pathways as they are
    cond_o = is_cond.reshape(O, P)[:, :1]
    parent = jnp.where(cond_o, jnp.arange(P), choice.parent)
    score = jnp.where(cond_o, state.path_score.reshape(O, P), choice.score)
    rows = (jnp.arange(O)[:, None] * P + parent).reshape(N)
    cand = choice.cand.reshape(N)
    state = jax.tree.map(lambda x: x[rows] if x.ndim else x, state)
    low = heads.low_res_multimasks[rows, cand][:, None]
    high = heads.high_res_multimasks[rows, cand][:, None]
    obj = heads.object_score_logits[rows]
    ptr = cand_ptrs[rows, cand]
    iou = heads.ious[rows, cand]
    maskmem = encode_memory(module, params, feats, high, obj, False).astype(jnp.bfloat16)
    low_res = postprocess_pred_masks(low, cfg.fill_hole_area)

    pred_masks = jnp.where(is_cond[:, None, None, None], take(state.cond_pred_masks)[:, None], low_res)
    obj_score = jnp.where(is_cond[:, None], take(state.cond_obj_score)[:, None], obj)
    obj_ptr = jnp.where(is_cond[:, None], take(state.cond_ptr), ptr)
    admitted = ~is_cond & (iou > policy.sam2long_iou_threshold) & (obj[:, 0] > 0)
    state = rings.write_admitted(state, t, maskmem, obj_ptr, ~is_cond, admitted, True, obj_score=obj[:, 0])
    state = state.replace(path_score=score.reshape(N))
    best = jnp.arange(O) * P
    out = StepOutput(
        pred_masks[best],
        obj_score[best],
        obj_ptr[best],
        maskmem[best],
        is_cond[best],
        admitted[best],
        iou[best],
        jnp.zeros((O, 4), jnp.float32),
        jnp.full((O,), jnp.nan, jnp.float32),
        parent.astype(jnp.int32),
        score,
        pred_masks.reshape(O, P, *pred_masks.shape[1:]),
    )
    return state, out


def repeat_pathways(state: TrackerState, num_pathways: int, xp=jnp) -> TrackerState:
    """A state of O objects -> the SAM2Long state of O * P rows (row o * P + p: object o's pathway p, all equal,
    scores 0). ``xp=np`` on the host."""
    grow = lambda x: x if np.ndim(x) == 0 else xp.repeat(x, num_pathways, axis=0)
    st = jax.tree.map(grow, state)
    return st.replace(path_score=xp.zeros_like(st.path_score))


def keep_final_lineage(s: "InferenceState", order: list[int]) -> None:
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
