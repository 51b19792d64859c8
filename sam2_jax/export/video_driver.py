"""The video predictor of an export, for every runtime: ``SAM2VideoPredictor``'s bookkeeping in numpy.

``VideoDriver`` answers ``init_state`` / ``add_new_points_or_box`` / ``add_new_mask`` / ``propagate_in_video``
(forward and reverse, corrections, several objects) as ``SAM2VideoPredictor`` does, by calling an export's functions
by name: the StableHLO runtime (``sam2_jax.export.runtime.ExportedVideoPredictor``) and the ONNX runtime
(``sam2_jax.export.onnx_runtime.OnnxVideoPredictor``) subclass it. It keeps the conditioning frames and per-frame
outputs, and fills the ``TrackerState`` a propagation starts from with ``sam2_jax.tracker.host_state`` (the one copy
of that rule). numpy only: no JAX, no Flax.

Not here: the output store's memory budget (every frame's output is kept), streaming, ``remove_object``,
``non_overlap_masks`` and ``clear_non_cond_mem_around_input`` (both off by default in every official config).
"""

from collections.abc import Iterator
from typing import Any

import numpy as np

from sam2_jax.export import names
from sam2_jax.tracker import host_state

NO_OBJ_SCORE = -1024.0
IMG_MEAN, IMG_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def empty_state(layout: list[dict], dims: dict[str, int], num_frames: int, dtype=np.dtype) -> dict[str, np.ndarray]:
    """A ``TrackerState`` (the dict an export's functions take) with every slot invalid, from a manifest's
    ``state_layout``: symbolic dimensions sized by ``dims``, each leaf's dtype name through ``dtype``."""
    out = {}
    for leaf in layout:
        name = leaf["name"].strip("[]'")
        shape = tuple(dims[d] if d in dims else int(d) for d in leaf["shape"])
        out[name] = np.full(shape, -1 if name.endswith("_frame") else 0, dtype(leaf["dtype"]))
    out["num_frames"] = np.asarray(num_frames, np.int32)
    return out


class VideoState:
    """One video's bookkeeping (the official ``inference_state``, reduced): per object index, the prompts, the
    prompted frames' outputs not yet encoded (``temp``), the conditioning and tracked outputs, and which frames were
    tracked in which direction. An output is a dict: ``pred_masks`` (1, 1, 4h, 4w), ``obj_ptr`` (1, C),
    ``object_score_logits`` (1, 1) and ``maskmem`` (hw, mem_dim) once encoded."""

    def __init__(self, images: np.ndarray, video_hw: tuple[int, int]) -> None:
        self.images = images
        self.num_frames = len(images)
        self.video_height, self.video_width = video_hw
        self.obj_ids: list = []
        self.points: list[dict[int, tuple[np.ndarray, np.ndarray]]] = []
        self.temp: list[dict[int, dict]] = []
        self.cond: list[dict[int, dict]] = []
        self.non_cond: list[dict[int, dict]] = []
        self.tracked: list[dict[int, bool]] = []
        self.features: tuple[int, Any] | None = None  # (frame, features) of the latest frame encoded

    def obj_idx(self, obj_id) -> int:
        if obj_id not in self.obj_ids:
            self.obj_ids.append(obj_id)
            for d in (self.points, self.temp, self.cond, self.non_cond, self.tracked):
                d.append({})
        return self.obj_ids.index(obj_id)

    def output(self, o: int, t: int) -> dict | None:
        return self.temp[o].get(t) or self.cond[o].get(t) or self.non_cond[o].get(t)


class VideoDriver:
    """``SAM2VideoPredictor`` on an export's functions: prompts on any frame, propagation, corrections, several
    objects. ``model`` is the export (``ExportedModel`` or ``OnnxModel``): ``model(name, *args)`` calls the function
    of that name (dict outputs; ``propagate_<T>`` returns ``(state, outputs)``), ``model.has(name)``,
    ``model.empty_state(objects, slots, frames)``, ``model.image_size``, ``model.mask_size``. A runtime subclasses
    it with its resizing (``video_res``, ``mask_to_model``) and its conditioning-slot rule (``cond_slots``)."""

    def __init__(self, model, chunk_size: int) -> None:
        self.model = model
        self.image_size = int(model.image_size)
        self.chunk_size = int(chunk_size)
        if not model.has(names.propagate(self.chunk_size)):
            raise ValueError(f"the export has no propagation chunk of {self.chunk_size} frames")
        self.mask_size = int(model.mask_size)

    def cond_slots(self, num_cond: int) -> int:
        """Conditioning slots of a state for objects with at most ``num_cond`` prompted frames."""
        raise NotImplementedError

    def video_res(self, masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Low-res logits (O, 1, h, w) or (T, O, 1, h, w) -> the same at video resolution (H, W), bilinear."""
        raise NotImplementedError

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        """A binary mask (H, W) -> (1, S, S, 1) float32 at the model size, as the live predictor resizes it."""
        raise NotImplementedError

    def init_state(self, frames: np.ndarray, video_hw: tuple[int, int] | None = None) -> VideoState:
        """Frames (T, S, S, 3) at the model size: float32 normalised, or uint8 (normalised here); ``video_hw`` the
        original (H, W) that clicks are given in and masks returned at (default (S, S))."""
        frames = np.asarray(frames)
        S = self.image_size
        if frames.ndim != 4 or frames.shape[1:] != (S, S, 3):
            raise ValueError(f"frames must be (T, {S}, {S}, 3) at the model size, got {frames.shape}")
        if frames.dtype == np.uint8:
            frames = ((frames / np.float32(255.0) - np.float32(IMG_MEAN)) / np.float32(IMG_STD)).astype(np.float32)
        return VideoState(frames.astype(np.float32), tuple(video_hw or (S, S)))

    def _features(self, s: VideoState, t: int):
        if s.features is None or s.features[0] != t:
            s.features = (t, self.model(names.FRAME_FEATURES, s.images[t][None]))
        return s.features[1]

    def add_new_points_or_box(
        self,
        s: VideoState,
        frame_idx: int,
        obj_id,
        points=None,
        labels=None,
        clear_old_points=True,
        normalize_coords=True,
        box=None,
    ) -> tuple[int, list, np.ndarray]:
        """Clicks and/or a box for ``obj_id`` on ``frame_idx``; returns (frame_idx, obj_ids, masks (O, 1, H, W)
        logits at video resolution), as ``SAM2VideoPredictor.add_new_points_or_box``."""
        if not 0 <= frame_idx < s.num_frames:
            raise ValueError(f"frame_idx {frame_idx} is outside the video (num_frames={s.num_frames})")
        pts = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
        lab = np.zeros((0,), np.int32) if labels is None else np.asarray(labels, np.int32).reshape(-1)
        if box is not None:
            pts = np.concatenate([np.asarray(box, np.float32).reshape(2, 2), pts])
            lab = np.concatenate([np.array([2, 3], np.int32), lab])
        if len(pts) == 0 or len(pts) != len(lab):
            raise ValueError(f"need points with as many labels (got {len(pts)} points, {len(lab)} labels) or a box")
        if normalize_coords:
            pts = pts / np.array([s.video_width, s.video_height], np.float32)
        pts, lab = (pts * self.image_size).astype(np.float32)[None], lab[None]
        o = s.obj_idx(obj_id)
        if not clear_old_points and frame_idx in s.points[o]:
            old_pts, old_lab = s.points[o][frame_idx]
            pts, lab = np.concatenate([old_pts, pts], 1), np.concatenate([old_lab, lab], 1)
        s.points[o][frame_idx] = (pts, lab)
        prev = s.output(o, frame_idx)
        prev = None if prev is None else np.clip(prev["pred_masks"], -32.0, 32.0)
        feats = self._features(s, frame_idx)
        if frame_idx not in s.tracked[o]:  # an initial conditioning frame: no memory
            name = names.prompt_first(pts.shape[1], refine=prev is not None)
            out = self.model(name, feats, pts, lab, *([] if prev is None else [prev]))
        else:
            reverse = s.tracked[o][frame_idx]
            st = self.tracker_state(s, [o], frame_idx, reverse)
            args = (st, feats, np.int32(frame_idx), np.bool_(reverse), pts, lab, prev)
            out = self.model(names.prompt_tracked(pts.shape[1]), *args)
        s.temp[o][frame_idx] = {k: np.asarray(v) for k, v in out.items()} | {"maskmem": None}
        return frame_idx, list(s.obj_ids), self._frame_masks(s, frame_idx)

    def add_new_mask(self, s: VideoState, frame_idx: int, obj_id, mask: np.ndarray) -> tuple[int, list, np.ndarray]:
        """A binary mask (H, W) at the video's or the model's size for ``obj_id`` on ``frame_idx``."""
        if not self.model.use_mask_input_as_output_without_sam:
            raise ValueError("this export's model decodes mask prompts with SAM; the export has no such function")
        m = self.mask_to_model(mask)
        o = s.obj_idx(obj_id)
        s.points[o].pop(frame_idx, None)
        out = self.model(names.PROMPT_MASK, self._features(s, frame_idx), m)
        s.temp[o][frame_idx] = {k: np.asarray(v) for k, v in out.items()} | {"maskmem": None}
        return frame_idx, list(s.obj_ids), self._frame_masks(s, frame_idx)

    def _frame_masks(self, s: VideoState, t: int) -> np.ndarray:
        """Every object's latest logits on frame t at video resolution (O, 1, H, W)."""
        empty = np.full((1, 1, self.mask_size, self.mask_size), NO_OBJ_SCORE, np.float32)
        outs = [s.output(o, t) for o in range(len(s.obj_ids))]
        return self._video_res(s, np.concatenate([empty if x is None else x["pred_masks"] for x in outs]))

    def _video_res(self, s: VideoState, masks) -> np.ndarray:
        return self.video_res(np.asarray(masks), (s.video_height, s.video_width))

    # --- propagation ------------------------------------------------------------------------------------------
    def propagate_in_video_preflight(self, s: VideoState) -> None:
        """Encode the memories of the new prompted frames; they become conditioning frames."""
        if not s.obj_ids:
            raise ValueError("No input points or masks are provided for any object; please add inputs first.")
        for o in range(len(s.obj_ids)):
            for t, out in s.temp[o].items():
                if out["maskmem"] is None:
                    mem = self.model(
                        names.ENCODE_PROMPT_MEMORY, self._features(s, t), out["pred_masks"], out["object_score_logits"]
                    )
                    out["maskmem"] = np.asarray(mem[0])
                s.cond[o][t] = out
                s.non_cond[o].pop(t, None)
            s.temp[o].clear()
            if not s.cond[o]:
                raise ValueError(f"No input points or masks are provided for object id {s.obj_ids[o]}")

    def propagate_in_video(
        self,
        s: VideoState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list, np.ndarray]]:
        """Track every object through the video; yields (frame_idx, obj_ids, masks (O, 1, H, W) logits)."""
        self.propagate_in_video_preflight(s)
        if start_frame_idx is None:
            start_frame_idx = min(t for c in s.cond for t in c)
        n = s.num_frames if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:
            order = list(range(start_frame_idx, max(start_frame_idx - n, 0) - 1, -1)) if start_frame_idx > 0 else []
        else:
            order = list(range(start_frame_idx, min(start_frame_idx + n, s.num_frames - 1) + 1))
        if not order:
            return
        objs = list(range(len(s.obj_ids)))
        st = self.tracker_state(s, objs, order[0], reverse)
        pos = 0
        while pos < len(order):
            size = self.chunk_size if len(order) - pos >= self.chunk_size else 1
            idxs = order[pos : pos + size]
            st, out = self.model(
                names.propagate(size), st, s.images[idxs], np.asarray(idxs, np.int32), np.bool_(reverse)
            )
            host = {k: np.asarray(v) for k, v in out.items()}
            video = self._video_res(s, host["pred_masks"])
            for j, t in enumerate(idxs):
                for o in objs:
                    s.tracked[o][t] = reverse
                    if not host["is_cond"][j, o]:
                        s.non_cond[o][t] = {
                            "pred_masks": host["pred_masks"][j, o][None],
                            "obj_ptr": host["obj_ptr"][j, o][None],
                            "object_score_logits": host["object_score_logits"][j, o][None],
                            "maskmem": host["maskmem"][j, o],
                        }
                yield t, list(s.obj_ids), np.asarray(video[j])
            pos += size

    def tracker_state(self, s: VideoState, objs: list[int], frame_idx: int, reverse: bool) -> dict[str, np.ndarray]:
        """The tracker state of ``objs`` seen from ``frame_idx`` (``SAM2VideoPredictor.tracker_state``): the
        temporally closest conditioning frames (slots in powers of two, as the live predictor compiles them) and
        the outputs of the frames before it in the direction."""
        K = self.cond_slots(max(len(s.cond[o]) for o in objs))
        st = self.model.empty_state(len(objs), K, s.num_frames)
        for i, o in enumerate(objs):
            host_state.write_cond(st, i, s.cond[o], frame_idx, host_state.read_dict)
            host_state.write_recent(st, i, frame_idx, reverse, s.non_cond[o].get, host_state.read_dict)
        return st
