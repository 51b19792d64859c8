"""The ``TrackerState`` a propagation starts from, filled on the host from the stored per-frame outputs.

One copy for the three drivers that keep outputs on the host: ``SAM2VideoPredictor.tracker_state``, the StableHLO
runtime (``sam2_jax.export.runtime``) and the ONNX runtime (``sam2_jax.export.onnx_runtime``). numpy only: the
runtimes load no Flax. A state is a dict of field name -> numpy array (``TrackerState`` fields; the predictor passes
``vars(state)`` of a host state, so the writes land in its arrays), filled in place; a stored output is read
through ``read(out) -> Stored`` since the drivers store them differently.

The rules are the official memory selection (``sam2_jax/tracker/state.py``, ``docs/architecture.md``):
- conditioning slots: the ``K`` prompted frames temporally closest to the frame (ties to the earlier one), in frame
  order;
- the recent rings: the stored outputs of frames t-1 … t-P (pointers, ``P = max_obj_ptrs_in_encoder - 1``) and
  t-1 … t-R (memories, ``R = num_maskmem - 1``) in the tracking direction, at slot ``frame % size``.
"""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np


class Stored(NamedTuple):
    """What the state needs of one stored frame output."""

    maskmem: np.ndarray  # (hw, mem_dim)
    obj_ptr: np.ndarray  # (C,)
    pred_masks: np.ndarray  # (4h, 4w) low-res logits
    object_score: Any  # () logit


def cond_slots(num_cond: int, max_cond_slots: int) -> int:
    """Conditioning slots for ``num_cond`` prompted frames: a power of two (unused slots are masked out), so a
    correction that adds a conditioning frame recompiles the step only when the count crosses one."""
    return min(1 << max(num_cond - 1, 0).bit_length(), max_cond_slots)


def closest_cond_frames(frames, frame_idx: int, k: int) -> list[int]:
    """The ``k`` frames of ``frames`` closest to ``frame_idx`` (ties: the earlier), in frame order."""
    return sorted(sorted(frames, key=lambda f: (abs(f - frame_idx), f))[:k])


def pad_clicks_to(coords: np.ndarray, labels: np.ndarray, count: int, absent_label: int):
    """``coords (B, N, 2)``, ``labels (B, N)`` padded on the click axis to ``count`` slots with ``absent_label`` at
    (0, 0) (the prompt encoder's ``ABSENT_LABEL``, masked out of the decoder's attention)."""
    extra = count - labels.shape[1]
    if extra <= 0:
        return coords, labels
    coords = np.concatenate([coords, np.zeros((coords.shape[0], extra, 2), coords.dtype)], axis=1)
    labels = np.concatenate([labels, np.full((labels.shape[0], extra), absent_label, labels.dtype)], axis=1)
    return coords, labels


def pad_object_axis(x: Any, num_objects: int) -> Any:
    """``x (O, ...)`` with its object axis grown to ``num_objects`` rows by copies of row 0 (a scalar unchanged).

    Objects never interact in the model, so a copy computes exactly what object 0 computes: its outputs are finite
    and are dropped (an empty padded object would attend to no key at all)."""
    if np.ndim(x) == 0 or len(x) == num_objects:
        return x
    if len(x) > num_objects:
        raise ValueError(f"cannot pad {len(x)} objects down to {num_objects}")
    return np.concatenate([x, np.repeat(x[:1], num_objects - len(x), axis=0)], axis=0)


def write_cond(st: dict[str, np.ndarray], i: int, conds: Mapping[int, Any], frame_idx: int, read: Callable) -> None:
    """Row ``i``'s conditioning slots: the prompted frames ``conds`` (frame -> stored output) closest to
    ``frame_idx``, as many as the state has slots."""
    for k, f in enumerate(closest_cond_frames(conds, frame_idx, st["cond_frame"].shape[1])):
        out = read(conds[f])
        st["cond_mem"][i, k] = out.maskmem
        st["cond_ptr"][i, k] = out.obj_ptr
        st["cond_frame"][i, k] = f
        st["cond_valid"][i, k] = True
        st["cond_pred_masks"][i, k] = out.pred_masks
        st["cond_obj_score"][i, k] = out.object_score


def write_recent(
    st: dict[str, np.ndarray],
    i: int,
    frame_idx: int,
    reverse: bool,
    lookup: Callable[[int], Any],
    read: Callable,
    memories: bool = True,
    pointers: bool = True,
) -> None:
    """Row ``i``'s recent rings as the official selection sees them from ``frame_idx``: ``lookup(frame)`` is the
    stored output of a tracked frame before it (None: not tracked or a conditioning frame, skipped). A policy that
    selects its memories (or pointers) by admission fills those rings itself: ``memories`` / ``pointers`` False."""
    R, P = st["recent_frame"].shape[1], st["ptr_frame"].shape[1]
    sign = -1 if reverse else 1
    reach = P if pointers else (R if memories else 0)
    for d in range(1, reach + 1):
        f = frame_idx - sign * d
        out = lookup(f)
        if out is None:
            continue
        out = read(out)
        if pointers:
            st["ptr"][i, f % P] = out.obj_ptr
            st["ptr_frame"][i, f % P] = f
            st["ptr_valid"][i, f % P] = True
        if memories and d <= R:
            st["recent_mem"][i, f % R] = out.maskmem
            st["recent_frame"][i, f % R] = f
            st["recent_valid"][i, f % R] = True


def read_dict(out: Mapping[str, np.ndarray]) -> Stored:
    """A runtime's stored output (``pred_masks`` (1, 1, 4h, 4w), ``object_score_logits`` (1, 1), ``obj_ptr``
    (1, C), ``maskmem`` (hw, mem_dim))."""
    return Stored(out["maskmem"], out["obj_ptr"][0], out["pred_masks"][0, 0], out["object_score_logits"][0, 0])
