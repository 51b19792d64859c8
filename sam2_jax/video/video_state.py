"""The video predictor's host-side state: ``InferenceState`` (the official ``inference_state`` dict, typed) and
``OutputStore`` (per-frame outputs within a memory budget).

Ports the bookkeeping half of ``sam2/sam2_video_predictor.py`` (``init_state`` builds a 20-key dict there). Deviations:
- ``InferenceState`` is a dataclass with one typed field per entry the predictor keeps; it also answers
  ``state["key"]``, ``key in state``, ``state.get(key)`` and ``state.keys()`` for the official keys our predictor
  keeps (``num_frames``, ``video_height``, ``obj_ids``, ``output_dict_per_obj``, ...), so official scripts run
  unchanged. ``device`` is the JAX device of the model's params. Official entries with no use here (``constants``,
  ``tracking_has_started``, ...) are absent.
- ``output_dict_per_obj`` lives in an ``OutputStore``, which counts the bytes of the stored outputs and drops the
  non-conditioning outputs farthest from the current frame beyond its budget; a dropped output that a later frame
  needs as memory is recomputed through a callback (the predictor re-tracks it). The official keeps every output.
- Streaming entries (not in the official API): the ``FrameQueue`` a stream is fed through, the next frame to track
  and the ``TrackerState`` carried on the device between ``track_frame`` calls.
"""

import collections
import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Container, Iterator
from typing import Any

import jax
import numpy as np

from sam2_jax.tracker.state import TrackerState
from sam2_jax.video.video_io import FrameQueue, VideoSource

COND, NON_COND = "cond_frame_outputs", "non_cond_frame_outputs"


@dataclasses.dataclass
class FrameOutput:
    """One frame's output for one object, as the official ``compact_current_out`` (numpy, batch 1)."""

    pred_masks: np.ndarray  # (1, 1, 4h, 4w) float32
    obj_ptr: np.ndarray  # (1, C) float32
    object_score_logits: np.ndarray  # (1, 1) float32
    maskmem_features: np.ndarray | None = None  # (hw, mem_dim) bfloat16 once encoded
    admitted: bool = True  # the tracking policy admitted the frame into the memory (tracker/policies/)
    # a tracked frame's policy scores (as SAMURAI's compact output keeps best_iou_score / kf_score): predicted IoU of
    # the kept mask, SAMURAI's Kalman box (xyxy, model-input pixels) and Kalman IoU (NaN outside its stable phase)
    best_iou: float | None = None
    kf_box: np.ndarray | None = None
    kf_score: float | None = None

    def nbytes(self) -> int:
        n = self.pred_masks.nbytes + self.obj_ptr.nbytes + self.object_score_logits.nbytes
        return n + (0 if self.maskmem_features is None else self.maskmem_features.nbytes)


# The official per-object output dict: {"cond_frame_outputs": {frame: out}, "non_cond_frame_outputs": {frame: out}}.
OutputDict = dict[str, dict[int, FrameOutput]]


def empty_output_dict() -> OutputDict:
    return {COND: {}, NON_COND: {}}


class OutputStore:
    """The per-object outputs of a video (the official ``output_dict_per_obj``), non-conditioning ones within a byte
    budget.

    Conditioning outputs (prompted frames) are always kept. When the stored bytes exceed ``budget_bytes``,
    ``evict`` drops the non-conditioning outputs of the frames farthest from the current one; ``memory`` brings a
    dropped one back through a recompute callback when a frame needs it.
    """

    def __init__(self, budget_bytes: int) -> None:
        """
        Args:
          budget_bytes: most bytes of stored outputs kept after ``evict`` (conditioning outputs may exceed it alone).
        """
        self.budget_bytes = int(budget_bytes)
        self.per_obj: dict[int, OutputDict] = {}
        self.nbytes = 0  # bytes of every stored output, conditioning ones included
        self._recomputing: set[tuple[int, int]] = set()  # (obj_idx, frame_idx) being recomputed by ``memory``

    def add_object(self, obj_idx: int) -> None:
        self.per_obj[obj_idx] = empty_output_dict()

    def cond(self, obj_idx: int) -> dict[int, FrameOutput]:
        """Conditioning outputs of ``obj_idx`` by frame (read only: change them through the store)."""
        return self.per_obj[obj_idx][COND]

    def non_cond(self, obj_idx: int) -> dict[int, FrameOutput]:
        """Non-conditioning outputs of ``obj_idx`` by frame (read only: change them through the store)."""
        return self.per_obj[obj_idx][NON_COND]

    def get(self, obj_idx: int, frame_idx: int) -> FrameOutput | None:
        """The output of ``obj_idx`` on ``frame_idx``, conditioning first; None when there is none."""
        d = self.per_obj[obj_idx]
        return d[COND].get(frame_idx) or d[NON_COND].get(frame_idx)

    def put(self, obj_idx: int, frame_idx: int, out: FrameOutput, cond: bool = False) -> None:
        """Store (or replace) an output; the budget is enforced by ``evict``, not here."""
        d = self.per_obj[obj_idx][COND if cond else NON_COND]
        old = d.get(frame_idx)
        self.nbytes += out.nbytes() - (0 if old is None else old.nbytes())
        d[frame_idx] = out

    def pop(self, obj_idx: int, frame_idx: int, cond: bool = False) -> FrameOutput | None:
        """Remove and return an output (None when there is none)."""
        out = self.per_obj[obj_idx][COND if cond else NON_COND].pop(frame_idx, None)
        if out is not None:
            self.nbytes -= out.nbytes()
        return out

    def keep_objects(self, remain: list[int]) -> None:
        """Keep only the objects ``remain``, renumbered 0, 1, ... in that order."""
        self.per_obj = {n: self.per_obj[o] for n, o in enumerate(remain)}
        self.nbytes = sum(out.nbytes() for d in self.per_obj.values() for k in d for out in d[k].values())

    def clear(self) -> None:
        self.per_obj.clear()
        self.nbytes = 0

    def evict(self, current: int, keep: int | None = None) -> None:
        """Drop the non-conditioning outputs farthest from frame ``current`` (never frame ``keep``) until within
        the budget; ties go to the later frame, then the higher object index."""
        if self.nbytes <= self.budget_bytes:
            return
        entries = [(abs(f - current), o, f) for o, d in self.per_obj.items() for f in d[NON_COND]]
        for _, o, f in sorted(entries, reverse=True):
            if self.nbytes <= self.budget_bytes:
                break
            if f != keep:
                self.pop(o, f)

    def memory(
        self,
        obj_idx: int,
        frame_idx: int,
        tracked: Container[int],
        recompute: Callable[[int, int], FrameOutput | None],
    ) -> FrameOutput | None:
        """The non-conditioning output of ``obj_idx`` on ``frame_idx``, as memory for another frame.

        A frame in ``tracked`` (the object's tracked frames) that is no conditioning frame but has no stored output
        was dropped by ``evict``: ``recompute(obj_idx, frame_idx)`` makes it again, and it is stored while the
        budget is enforced around it. None when the frame has no output (untracked, or recompute gave none), and
        for a frame whose recomputation needs itself: frames tracked in both directions around a conditioning
        frame can each need the other's memory, which would otherwise recurse without end.
        """
        out = self.non_cond(obj_idx).get(frame_idx)
        key = (obj_idx, frame_idx)
        if (
            out is None
            and frame_idx in tracked
            and frame_idx not in self.cond(obj_idx)
            and key not in self._recomputing
        ):
            self._recomputing.add(key)
            try:
                out = recompute(obj_idx, frame_idx)
            finally:
                self._recomputing.discard(key)
            if out is not None:
                self.put(obj_idx, frame_idx, out)
                self.evict(frame_idx, keep=frame_idx)
        return out


# Keys of ``InferenceState`` that are views rather than fields.
_DERIVED_KEYS = {"output_dict_per_obj": lambda s: s.store.per_obj, "store_bytes": lambda s: s.store.nbytes}


@dataclasses.dataclass(eq=False)
class InferenceState(collections.abc.Mapping):
    """What the video predictor keeps for one video (or stream): the official ``inference_state``, typed.

    Read fields as attributes (``state.num_frames``); ``state["num_frames"]`` also works for every field and for
    ``output_dict_per_obj`` / ``store_bytes`` (from the store), and ``state[key] = value`` sets a field. Per-object
    dicts are keyed by object index (``obj_id_to_idx``), in the official layouts.
    """

    images: VideoSource  # preprocessed (S, S, 3) float32 frames by index (a stream's is fed by its frame_queue)
    num_frames: int | None  # None for a live source until it ends
    video_height: int
    video_width: int
    store: OutputStore  # output_dict_per_obj within the budget
    offload_video_to_cpu: bool = False
    offload_state_to_cpu: bool = False
    device: Any = None  # the model's jax.Device (the official torch device)
    obj_id_to_idx: OrderedDict[Any, int] = dataclasses.field(default_factory=OrderedDict)
    obj_idx_to_id: OrderedDict[int, Any] = dataclasses.field(default_factory=OrderedDict)
    obj_ids: list = dataclasses.field(default_factory=list)
    # obj_idx -> frame -> (coords (1, N, 2) float32 in model pixels, labels (1, N) int32)
    point_inputs_per_obj: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = dataclasses.field(default_factory=dict)
    # obj_idx -> frame -> mask (1, S, S, 1) float32 in {0, 1}
    mask_inputs_per_obj: dict[int, dict[int, jax.Array]] = dataclasses.field(default_factory=dict)
    # obj_idx -> outputs of prompts not yet consolidated by propagate_in_video_preflight (memory not yet encoded)
    temp_output_dict_per_obj: dict[int, OutputDict] = dataclasses.field(default_factory=dict)
    # obj_idx -> frame -> {"reverse": bool}: frames tracked (or prompted after tracking) and in which direction
    frames_tracked_per_obj: dict[int, dict[int, dict[str, bool]]] = dataclasses.field(default_factory=dict)
    cached_features: dict[int, Any] = dataclasses.field(default_factory=dict)  # the latest frame's FrameFeatures
    frame_queue: FrameQueue | None = None  # a stream's source, fed by track_frame
    stream_next: int | None = None  # the next frame track_frame tracks (None: after the last one touched)
    stream_tstate: TrackerState | None = None  # the memory carried on the device between track_frame calls
    # A policy with pathways (``StepOutput.path_*``; SAM2Long, tracker/policies/sam2long.py): {frame: (parent (O, P),
    # score (O, P), masks (O, P, 1, 4h, 4w))} of the pass in progress, and {frame: pathway per object} of the final
    # best lineage of the last pass (the policy's ``end_pass``)
    pathways: dict[int, tuple] = dataclasses.field(default_factory=dict)
    pathway_masks_held: set[int] = dataclasses.field(default_factory=set)  # the frames of ``pathways`` with masks
    final_lineage: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def output_dict_per_obj(self) -> dict[int, OutputDict]:
        return self.store.per_obj

    @property
    def num_objects(self) -> int:
        return len(self.obj_ids)

    def add_object(self, obj_id: Any) -> int:
        """Register a new object id; returns its index (the next free one)."""
        idx = len(self.obj_id_to_idx)
        self.obj_id_to_idx[obj_id] = idx
        self.obj_idx_to_id[idx] = obj_id
        self.obj_ids = list(self.obj_id_to_idx)
        self.point_inputs_per_obj[idx] = {}
        self.mask_inputs_per_obj[idx] = {}
        self.temp_output_dict_per_obj[idx] = empty_output_dict()
        self.frames_tracked_per_obj[idx] = {}
        self.store.add_object(idx)
        return idx

    def keep_objects(self, remain: list[int]) -> None:
        """Keep only the objects of indices ``remain``, renumbered 0, 1, ... in that order."""
        new_ids = [self.obj_ids[i] for i in remain]
        for name in ("point_inputs_per_obj", "mask_inputs_per_obj", "temp_output_dict_per_obj"):
            per_obj = getattr(self, name)
            setattr(self, name, {n: per_obj[o] for n, o in enumerate(remain)})
        self.frames_tracked_per_obj = {n: self.frames_tracked_per_obj[o] for n, o in enumerate(remain)}
        self.store.keep_objects(remain)
        self.obj_id_to_idx = OrderedDict((i, n) for n, i in enumerate(new_ids))
        self.obj_idx_to_id = OrderedDict((n, i) for n, i in enumerate(new_ids))
        self.obj_ids = new_ids

    def clear_objects(self) -> None:
        """Remove every object with its prompts and outputs."""
        for d in (
            self.point_inputs_per_obj,
            self.mask_inputs_per_obj,
            self.temp_output_dict_per_obj,
            self.frames_tracked_per_obj,
            self.obj_id_to_idx,
            self.obj_idx_to_id,
            self.pathways,
            self.pathway_masks_held,
            self.final_lineage,
        ):
            d.clear()
        self.store.clear()
        self.obj_ids = []

    def clear_pathways(self) -> None:
        """Forget the last pass's pathways and lineage: a new pass starts from one memory per object."""
        self.pathways.clear()
        self.pathway_masks_held.clear()
        self.final_lineage.clear()

    def record_pathways(self, t: int, parent: np.ndarray, score: np.ndarray, masks: np.ndarray) -> None:
        """Keep every pathway's parent (O, P), score (O, P) and mask (O, P, 1, 4h, 4w) of frame ``t``, for the
        lineage."""
        self.pathways[t] = (parent, score, masks)
        self.pathway_masks_held.add(t)

    def drop_evicted_pathway_masks(self) -> None:
        """The pathways' masks go when the store's budget drops the frame's outputs (the parents, a few bytes a
        frame, stay for the lineage), so host memory stays within the budget however long the video; only the frames
        that still hold masks are looked at (as many as the store holds, not the video's length)."""
        if not self.pathway_masks_held:
            return
        held = {f for o in self.store.per_obj for f in self.store.non_cond(o)}
        for f in self.pathway_masks_held - held:
            parent, score, _ = self.pathways[f]
            self.pathways[f] = (parent, score, None)
        self.pathway_masks_held &= held

    def low_res_masks(self, frame_idx: int, size: int, missing: float) -> np.ndarray:
        """Every object's low-res mask logits on ``frame_idx`` (O, 1, size, size): this session's prompt output, else
        the stored one, else ``missing`` everywhere (the official "no object" score)."""
        masks = []
        for obj_idx in range(self.num_objects):
            temp = self.temp_output_dict_per_obj[obj_idx]
            out = temp[COND].get(frame_idx) or temp[NON_COND].get(frame_idx) or self.store.get(obj_idx, frame_idx)
            masks.append(np.full((1, 1, size, size), missing, np.float32) if out is None else out.pred_masks)
        return np.concatenate(masks) if masks else np.zeros((0, 1, size, size), np.float32)

    def clear_non_cond_mem_around(self, frame_idx: int, window: int) -> None:
        """Drop every object's stored outputs within ``window`` frames of ``frame_idx`` (the official
        ``_clear_non_cond_mem_around_input``), so that a correction is not followed by memories of the old mask."""
        for o in range(self.num_objects):
            for t in range(frame_idx - window, frame_idx + window + 1):
                self.store.pop(o, t)

    @property
    def frame_limit(self) -> int:
        """``num_frames``, or a bound no frame index reaches while a live source's length is unknown."""
        return self.num_frames if self.num_frames is not None else 2**31 - 1

    def last_touched_frame(self) -> int:
        """The latest frame tracked or prompted for any object; -1 when none."""
        per_obj = (self.frames_tracked_per_obj, self.point_inputs_per_obj, self.mask_inputs_per_obj)
        return max((f for d in per_obj for frames in d.values() for f in frames), default=-1)

    # --- the official dict interface ---------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in _DERIVED_KEYS:
            return _DERIVED_KEYS[key](self)
        if key in _FIELD_KEYS:
            return getattr(self, key)
        raise KeyError(f"{key!r} is not an inference-state entry; entries: {sorted(self)}")

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _FIELD_KEYS:
            raise KeyError(f"{key!r} cannot be set on an inference state; settable entries: {sorted(_FIELD_KEYS)}")
        setattr(self, key, value)

    def __iter__(self) -> Iterator[str]:
        return iter([*_FIELD_KEYS, *_DERIVED_KEYS])

    def __len__(self) -> int:
        return len(_FIELD_KEYS) + len(_DERIVED_KEYS)

    # a state is one video's bookkeeping, not a value: equal only to itself (Mapping would compare entries)
    __eq__ = object.__eq__
    __hash__ = object.__hash__


_FIELD_KEYS = tuple(f.name for f in dataclasses.fields(InferenceState) if f.name != "store")
