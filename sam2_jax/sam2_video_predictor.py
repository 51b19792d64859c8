"""Port of ``sam2/sam2_video_predictor.py``: ``SAM2VideoPredictor`` with the official API, numpy in and out.

The official class subclasses the model and keeps a 20-key ``inference_state`` dict. Here the predictor holds a
``SAM2Model`` and keeps the official bookkeeping (object ids, prompts per frame, per-frame outputs, which frames
were tracked and in which direction) on the host in a typed ``InferenceState`` (``sam2_jax/video/video_state.py``, which
also answers the official ``inference_state["..."]`` keys); the device work is ``sam2_jax.tracker.engine``:
``jit_interact`` for a prompted frame and ``propagate_chunk`` (a ``lax.scan`` with a fixed-size ``TrackerState``) for
propagation.

Deviations from the official predictor:
- A correction click on an already tracked frame makes it a conditioning frame (the official
  ``add_all_frames_to_correct_as_cond=true``), so the next propagation never drops it (upstream #719, #731).
- ``fill_hole_area`` works on CPU (our connected components); the official needs its CUDA extension.
- Per-frame outputs (memories in bfloat16, pointers, low-res masks) live in host memory within
  ``store_budget_mb`` (an ``OutputStore``); beyond it the frames farthest from the last tracked frame are dropped
  and, when a later correction or propagation needs one, recomputed by re-tracking from the nearest earlier
  conditioning frame.
- Objects are tracked together in one batched step sharing each frame's image features (the official loops over
  objects); new objects can be added at any time, as in sam2 1.1.0.
- Bad input raises ``ValueError`` naming it and leaves the state unchanged (``sam2_jax.utils.validation``, shared
  with the image predictor and the CLI: NaN/inf clicks, boxes and masks, unknown labels, empty or swapped boxes,
  non-int ``obj_id`` (the official takes any hashable id), non-int frame indices). ``init_state`` checks every
  frame's header, size and file ending (or a video file's packet index) and names a bad frame at once.
- Mask outputs are ``TensorLikeArray`` (numpy with ``.cpu()``, ``.numpy()``, ``.float()``, ``.detach()``), so the
  official notebook's ``(out_mask_logits[i] > 0.0).cpu().numpy()`` runs; ``propagate_in_video`` shows a tqdm bar
  (``progress = False`` hides it).
- ``propagate_in_video`` also runs on a live source (an iterator of frames): it tracks each frame as it arrives
  (not in the official API). Its length is unknown, so object pointers are encoded as in a video of at least
  ``max_obj_ptrs_in_encoder`` frames (the official scales them by ``min(num_frames, 16) - 1``).
- Streaming (not in the official API): ``init_stream(first_frame)`` + ``track_frame(state, frame)``: a frame in, the
  masks of every object out, the ``TrackerState`` kept on the device between calls; prompts and new objects may
  come on the latest frame at any time.
- With several devices the object axis of the tracker state is sharded over a ``Mesh`` (``NamedSharding``).
- ``tracker_policy`` (not in the official API): SAMURAI's Kalman choice and memory admission or SAM 3's memory
  selection on the same weights (``sam2_jax/tracker/policies.py``, which lists how they meet corrections, streams
  and reverse tracking).
"""

import collections
import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sam2_jax.modeling.build import build_sam2_hf
from sam2_jax.modeling.sam2_base import NO_OBJ_SCORE
from sam2_jax.modeling.sam2_model import SAM2Model, make_module
from sam2_jax.tracker import engine, host_state
from sam2_jax.tracker.policies import get_policy
from sam2_jax.tracker.state import (
    TrackerState,
    empty_state,
    object_bucket,
    pad_clicks,
    pad_cond_slots,
    pad_objects,
    put_video,
    stack_states,
)
from sam2_jax.utils.arrays import tensor_like
from sam2_jax.utils.interpolate import interpolate
from sam2_jax.utils.overrides import parse_overrides, split_video_overrides
from sam2_jax.utils.progress import with_progress
from sam2_jax.utils.validation import check_boxes, check_frame_idx, check_labels, check_mask, check_obj_id, check_points
from sam2_jax.video.video_io import FrameQueue, VideoSource
from sam2_jax.video.video_state import COND, NON_COND, FrameOutput, InferenceState, OutputStore

logger = logging.getLogger(__name__)


def video_predictor_from(build, hydra_overrides_extra, apply_postprocessing: bool, vos_optimized: bool, kwargs: dict):
    """Split the video predictor's options out of ``kwargs`` and the overrides, build the model with ``build(**rest)``
    and wrap it, with the official precedence (``apply_postprocessing`` overrides come after the user's)."""
    if vos_optimized:
        logger.info(
            "vos_optimized=True: propagation here is always the compiled path (a jitted lax.scan), the counterpart "
            "of the official SAM2VideoPredictorVOS; nothing else changes"
        )
    model_overrides, video = split_video_overrides(parse_overrides(hydra_overrides_extra))
    if video.pop("add_all_frames_to_correct_as_cond", True) is not True:
        raise ValueError(
            "add_all_frames_to_correct_as_cond=false is not supported: this predictor always keeps a correction "
            "click as a conditioning frame, so the next propagation never drops it (upstream #719, #731)"
        )
    if apply_postprocessing:
        video.pop("fill_hole_area", None)  # the official appends its own fill_hole_area=8 after the user's
    predictor_args = {k: kwargs.pop(k) for k in _PREDICTOR_ARGS if k in kwargs}
    for k, v in video.items():
        predictor_args.setdefault(k, v)
    model = build(hydra_overrides_extra=[f"++model.{k}={v}" for k, v in model_overrides], **kwargs)
    return SAM2VideoPredictor(model, apply_postprocessing=apply_postprocessing, **predictor_args)


def _read_output(out: FrameOutput) -> host_state.Stored:
    """A stored ``FrameOutput`` as the host state reads it."""
    return host_state.Stored(out.maskmem_features, out.obj_ptr[0], out.pred_masks[0, 0], out.object_score_logits[0, 0])


_PREDICTOR_ARGS = (
    "fill_hole_area",
    "non_overlap_masks",
    "clear_non_cond_mem_around_input",
    "chunk_size",
    "store_budget_mb",
    "max_cond_slots",
    "mesh",
    "chunks_in_flight",
)


class SAM2VideoPredictor:
    """Prompts (clicks, boxes, masks) on any frames, propagation through the video, corrections, several objects."""

    # tqdm bars on stderr in init_state (frame check) and propagate_in_video, as the official; False: none.
    progress: bool = True

    def __init__(
        self,
        sam_model: SAM2Model,
        fill_hole_area: int | None = None,
        non_overlap_masks: bool | None = None,
        clear_non_cond_mem_around_input: bool | None = None,
        apply_postprocessing: bool = True,
        chunk_size: int = 4,
        store_budget_mb: float = 2048.0,
        max_cond_slots: int = 16,
        mesh: jax.sharding.Mesh | None = None,
        chunks_in_flight: int = 1,
        tracker_policy: Any = None,
    ) -> None:
        """
        Args:
          sam_model: from ``sam2_jax.build_sam2``.
          fill_hole_area, non_overlap_masks, clear_non_cond_mem_around_input: the official predictor options
            (defaults from the config's ``video`` section: 8, False, False).
          apply_postprocessing: the official video overrides (binarize click masks for memory, fill holes).
          chunk_size: frames per ``lax.scan`` call during propagation.
          store_budget_mb: host memory for per-frame outputs (about 0.8 MB per frame and object at 1024 px).
          max_cond_slots: most conditioning frames attended to per object (the temporally closest are kept).
          mesh: a ``Mesh`` with an ``"obj"`` axis to spread objects over devices; default all local devices
            when there are several. Results do not depend on it.
          chunks_in_flight: chunks ``propagate_in_video`` dispatches ahead of the one it yields (1: the device
            computes chunk k+1 while the caller handles chunk k; 0: each chunk finishes before it is yielded, which a
            benchmark that interleaves implementations needs). Results do not depend on it.
          tracker_policy: ``"sam2"`` (default), ``"samurai"``, ``"sam3_selection"`` or ``"sam2long"``, or a
            ``TrackerPolicy`` (``sam2_jax/tracker/policies.py``; ``policies.POLICIES`` lists them); thresholds from
            the config's ``tracker`` section.
        """
        video = sam_model.config.video
        cfg = ml_collections.ConfigDict(sam_model.config.model)
        if apply_postprocessing:
            cfg.binarize_mask_from_pts_for_mem_enc = video.binarize_mask_from_pts_for_mem_enc
        if cfg.memory_temporal_stride_for_eval != 1:
            raise ValueError("memory_temporal_stride_for_eval must be 1 for the tracker")
        self.module = make_module(cfg, sam_model.module.dtype)
        self.policy = get_policy(tracker_policy, sam_model.config.get("tracker"))
        self.params = sam_model.params
        self.model = sam_model
        self.config = cfg
        self.image_size = cfg.image_size
        self.fill_hole_area = int(video.fill_hole_area if fill_hole_area is None else fill_hole_area)
        if not apply_postprocessing and fill_hole_area is None:
            self.fill_hole_area = 0
        self.non_overlap_masks = bool(video.non_overlap_masks if non_overlap_masks is None else non_overlap_masks)
        self.clear_non_cond_mem_around_input = bool(
            video.clear_non_cond_mem_around_input
            if clear_non_cond_mem_around_input is None
            else clear_non_cond_mem_around_input
        )
        self.add_all_frames_to_correct_as_cond = True
        self.chunk_size = int(chunk_size)
        self.store_budget_bytes = int(store_budget_mb * 2**20)
        self.max_cond_slots = int(max_cond_slots)
        if chunks_in_flight not in (0, 1):
            raise ValueError(f"chunks_in_flight must be 0 or 1, got {chunks_in_flight!r}")
        self.chunks_in_flight = int(chunks_in_flight)
        if mesh is None and jax.device_count() > 1:
            mesh = jax.sharding.Mesh(np.array(jax.devices()), ("obj",))
        self.mesh = mesh
        # Jitted with the module as a static argument, so every predictor of the same model shares the compiles.
        self._features_fn = functools.partial(engine.jit_frame_features, self.module)
        self._interact_fn = functools.partial(
            engine.jit_interact, self.module, fill_hole_area=self.fill_hole_area, policy=self.policy, compact=True
        )
        self._encode_fn = functools.partial(engine.jit_encode_prompt_memory, self.module)
        self._max_pt = int(self.module.config.multimask_max_pt_num)
        self._video_res_fn = functools.partial(_video_res, non_overlap=self.non_overlap_masks)

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs) -> "SAM2VideoPredictor":
        """Official ``from_pretrained``: ``build_sam2_video_predictor_hf(model_id, **kwargs)`` (a Hugging Face id such
        as ``facebook/sam2.1-hiera-tiny``; the weights come from ``sam2_jax.checkpoints``)."""
        overrides = kwargs.pop("hydra_overrides_extra", ())
        post = kwargs.pop("apply_postprocessing", True)
        vos = kwargs.pop("vos_optimized", False)

        def build(**rest):
            return build_sam2_hf(model_id, apply_postprocessing=post, **rest)

        return video_predictor_from(build, overrides, post, vos, kwargs)

    @property
    def device(self) -> jax.Device:
        """The device holding the model's params (the official ``predictor.device``)."""
        return self.model.device

    # --- state ------------------------------------------------------------------------------------------------
    def init_state(
        self,
        video_path: Any,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
        **source_kwargs,
    ) -> InferenceState:
        """A new inference state for a video: a folder of JPEG/PNG frames, a video file, a (T, H, W, 3) uint8
        array, or an iterator of frames."""
        images = VideoSource(
            video_path,
            image_size=self.image_size,
            offload_video_to_cpu=offload_video_to_cpu,
            async_loading_frames=async_loading_frames,
            **source_kwargs,
        )
        if images.num_frames is not None and images.num_frames == 0:
            raise ValueError(f"video {video_path!r} has no frames")
        try:
            unchecked = images.check_frames(progress=self.progress)
        except ValueError:
            images.close()
            raise
        logger.info("init_state: %s frames checked; not checked before tracking: %s", images.num_frames, unchecked)
        state = InferenceState(
            images=images,
            num_frames=images.num_frames,
            video_height=images.video_height,
            video_width=images.video_width,
            store=OutputStore(self.store_budget_bytes),
            offload_video_to_cpu=offload_video_to_cpu,
            offload_state_to_cpu=offload_state_to_cpu,
            device=self.device,
        )
        self._get_image_feature(state, 0)
        return state

    def reset_state(self, inference_state: InferenceState) -> None:
        """Remove every prompt, output and object."""
        s = inference_state
        s.clear_objects()
        s.stream_tstate = None
        if s.frame_queue is None:  # a stream goes on at its next frame; a video restarts after its last prompt
            s.stream_next = None

    def _num_frames(self, s: InferenceState) -> int:
        return s.num_frames if s.num_frames is not None else 2**31 - 1

    def _check_frame(self, s: InferenceState, frame_idx) -> int:
        return check_frame_idx(frame_idx, s.num_frames)

    def _obj_id_to_idx(self, s: InferenceState, obj_id, create: bool = True) -> int:
        idx = s.obj_id_to_idx.get(obj_id)
        if idx is not None:
            return idx
        if not create:
            raise ValueError(f"unknown obj_id {obj_id!r}; existing object ids: {s.obj_ids}")
        return s.add_object(obj_id)

    def _get_image_feature(self, s: InferenceState, frame_idx: int):
        cached = s.cached_features.get(frame_idx)
        if cached is None:
            image = jax.device_put(np.asarray(s.images[frame_idx])[None])
            cached = self._features_fn(self.params, image)
            s.cached_features = {frame_idx: cached}  # one frame, as the official
        return cached

    # --- prompts ----------------------------------------------------------------------------------------------
    def add_new_points_or_box(
        self,
        inference_state: InferenceState,
        frame_idx,
        obj_id,
        points=None,
        labels=None,
        clear_old_points=True,
        normalize_coords=True,
        box=None,
    ):
        """Add clicks (and/or a box) for ``obj_id`` on ``frame_idx``; returns (frame_idx, obj_ids, masks) with the
        masks of every object on that frame as logits (O, 1, H, W) at video resolution."""
        s = inference_state
        frame_idx = self._check_frame(s, frame_idx)
        check_obj_id(obj_id)
        pts, lab = self._prompt_points(s, points, labels, box, clear_old_points, normalize_coords)
        obj_idx = self._obj_id_to_idx(s, obj_id)
        point_inputs_per_frame = s.point_inputs_per_obj[obj_idx]
        if not clear_old_points and frame_idx in point_inputs_per_frame:
            old_pts, old_lab = point_inputs_per_frame[frame_idx]
            pts = np.concatenate([old_pts, pts], axis=1)
            lab = np.concatenate([old_lab, lab], axis=1)
        point_inputs_per_frame[frame_idx] = (pts, lab.astype(np.int32))
        s.mask_inputs_per_obj[obj_idx].pop(frame_idx, None)
        return self._run_prompt(s, frame_idx, obj_idx, points=(pts, lab.astype(np.int32)))

    add_new_points = add_new_points_or_box

    def _prompt_points(
        self, s: InferenceState, points, labels, box, clear_old_points: bool, normalize_coords: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Checked clicks and box as the official point inputs: coords (1, N, 2) float32 in model-input pixels (a
        box first, as corners labelled 2 and 3) and labels (1, N)."""
        if (points is not None) != (labels is not None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        pts = np.zeros((0, 2), np.float32) if points is None else check_points(points, "points")
        lab = np.zeros((0,), np.int32) if labels is None else check_labels(labels, "labels")
        if pts.ndim == 2:
            pts = pts[None]
        if lab.ndim == 1:
            lab = lab[None]
        if pts.ndim != 3 or pts.shape[0] != 1 or pts.shape[-1] != 2:
            raise ValueError(f"points must be (N, 2), got shape {np.shape(points)}")
        if lab.shape != pts.shape[:2]:
            raise ValueError(f"labels shape {np.shape(labels)} does not match {pts.shape[1]} points")
        H, W = s.video_height, s.video_width
        if box is not None:
            if not clear_old_points:
                raise ValueError(
                    "cannot add box without clearing old points, since box prompt must be provided "
                    "before any point prompt (please use clear_old_points=True instead)"
                )
            b = check_boxes(box, "box")
            if b.size != 4:
                raise ValueError(f"box must be [x0, y0, x1, y1], got shape {b.shape}")
            pts = np.concatenate([b.reshape(1, 2, 2), pts], axis=1)
            lab = np.concatenate([np.array([[2, 3]], np.int32), lab], axis=1)
        if normalize_coords:
            if pts.size and (
                pts[..., 0].min() < 0 or pts[..., 1].min() < 0 or pts[..., 0].max() > W or pts[..., 1].max() > H
            ):
                raise ValueError(f"points/box {pts.reshape(-1, 2).tolist()} lie outside the {W}x{H} video frame")
            pts = pts / np.array([W, H], np.float32)
        elif pts.size and (pts.min() < 0 or pts.max() > 1):
            raise ValueError(f"normalize_coords=False expects coordinates in [0, 1], got {pts.reshape(-1, 2).tolist()}")
        return (pts * self.image_size).astype(np.float32), lab

    def add_new_mask(self, inference_state: InferenceState, frame_idx, obj_id, mask):
        """A binary mask (H, W) for ``obj_id`` on ``frame_idx``; returns (frame_idx, obj_ids, masks)."""
        s = inference_state
        frame_idx = self._check_frame(s, frame_idx)
        check_obj_id(obj_id)
        m = np.asarray(mask)
        if m.dtype != bool:
            check_mask(m, "mask")
        if m.ndim != 2:
            raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
        if m.shape != (s.video_height, s.video_width) and m.shape != (self.image_size, self.image_size):
            raise ValueError(
                f"mask shape {m.shape} is neither the video's {(s.video_height, s.video_width)} "
                f"nor the model's {(self.image_size, self.image_size)}"
            )
        m = jnp.asarray(m.astype(bool).astype(np.float32))[None, :, :, None]  # (1, H, W, 1)
        if m.shape[1:3] != (self.image_size, self.image_size):
            m = interpolate(m, (self.image_size, self.image_size), "bilinear", antialias=True)
            m = (m >= 0.5).astype(jnp.float32)
        obj_idx = self._obj_id_to_idx(s, obj_id)
        s.mask_inputs_per_obj[obj_idx][frame_idx] = m
        s.point_inputs_per_obj[obj_idx].pop(frame_idx, None)
        return self._run_prompt(s, frame_idx, obj_idx, mask=m)

    def _run_prompt(self, s: InferenceState, frame_idx: int, obj_idx: int, points=None, mask=None):
        s.stream_tstate = None  # the memory a stream carries must take the new prompt in
        tracked = s.frames_tracked_per_obj[obj_idx]
        is_init = frame_idx not in tracked
        reverse = False if is_init else tracked[frame_idx]["reverse"]
        # every prompted frame is a conditioning frame (see module docstring)
        temp = s.temp_output_dict_per_obj[obj_idx][COND]
        prev = None
        if points is not None:
            prev_out = temp.get(frame_idx) or s.store.get(obj_idx, frame_idx)
            if prev_out is not None:
                prev = jax.device_put(np.clip(prev_out.pred_masks, -32.0, 32.0))
        feats = self._get_image_feature(s, frame_idx)
        # a prompt is decoded on one memory (SAM2Long: the best pathway's, as the stored outputs hold it)
        tstate = self.tracker_state(s, [obj_idx], frame_idx, reverse, pathways=False) if not is_init else None
        tstate = self._dummy_state() if tstate is None else tstate
        pc = pl = None
        if points is not None:
            # Clicks pad to a bucket (masked slots), so the next click on this frame reuses the compiled step.
            pc, pl = jax.device_put(pad_clicks(np.asarray(points[0]), np.asarray(points[1]), self._max_pt))
        out = self._interact_fn(
            self.params,
            tstate,
            feats,
            jnp.int32(frame_idx),
            jnp.bool_(reverse),
            pc,
            pl,
            mask,
            prev,
            is_init_cond_frame=bool(is_init),
        )
        temp[frame_idx] = FrameOutput(
            np.asarray(out.pred_masks), np.asarray(out.obj_ptr), np.asarray(out.object_score_logits)
        )
        return frame_idx, list(s.obj_ids), tensor_like(self._consolidated_video_res(s, frame_idx))

    def clear_all_prompts_in_frame(self, inference_state: InferenceState, frame_idx, obj_id, need_output=True):
        """Remove the prompts of ``obj_id`` on ``frame_idx`` (its output there becomes a tracked one)."""
        s = inference_state
        frame_idx = self._check_frame(s, frame_idx)
        obj_idx = self._obj_id_to_idx(s, obj_id, create=False)
        s.stream_tstate = None
        s.point_inputs_per_obj[obj_idx].pop(frame_idx, None)
        s.mask_inputs_per_obj[obj_idx].pop(frame_idx, None)
        temp = s.temp_output_dict_per_obj[obj_idx]
        temp[COND].pop(frame_idx, None)
        temp[NON_COND].pop(frame_idx, None)
        out = s.store.pop(obj_idx, frame_idx, cond=True)
        if out is not None:
            s.store.put(obj_idx, frame_idx, out)
            s.frames_tracked_per_obj[obj_idx].pop(frame_idx, None)
        if not need_output:
            return None
        return frame_idx, list(s.obj_ids), tensor_like(self._consolidated_video_res(s, frame_idx))

    def remove_object(self, inference_state: InferenceState, obj_id, strict=False, need_output=True):
        """Remove ``obj_id`` (a ``ValueError`` for an unknown id when ``strict``); returns (obj_ids, updated
        frames as (frame_idx, masks))."""
        s = inference_state
        old = s.obj_id_to_idx.get(obj_id)
        if old is None:
            if strict:
                raise ValueError(f"cannot remove object id {obj_id!r}: existing object ids are {s.obj_ids}")
            return list(s.obj_ids), []
        if len(s.obj_id_to_idx) == 1:
            self.reset_state(s)
            return list(s.obj_ids), []
        s.stream_tstate = None
        frames = set(s.point_inputs_per_obj[old]) | set(s.mask_inputs_per_obj[old])
        for f in frames:
            self.clear_all_prompts_in_frame(s, f, obj_id, need_output=False)
        s.keep_objects([i for i in range(s.num_objects) if i != old])
        updated = [(f, tensor_like(self._consolidated_video_res(s, f))) for f in sorted(frames)] if need_output else []
        return list(s.obj_ids), updated

    # --- propagation ------------------------------------------------------------------------------------------
    def propagate_in_video_preflight(self, inference_state: InferenceState) -> None:
        """Encode the memories of the new prompted frames and move them into the per-object outputs."""
        s = inference_state
        if s.num_objects == 0:
            raise ValueError("No input points or masks are provided for any object; please add inputs first.")
        for obj_idx in range(s.num_objects):
            temp = s.temp_output_dict_per_obj[obj_idx]
            for key in (NON_COND, COND):
                for frame_idx, out in temp[key].items():
                    if out.maskmem_features is None:
                        feats = self._get_image_feature(s, frame_idx)
                        mem = self._encode_fn(
                            self.params, feats, *jax.device_put((out.pred_masks, out.object_score_logits))
                        )
                        out.maskmem_features = np.asarray(mem[0])
                    s.store.put(obj_idx, frame_idx, out, cond=key == COND)
                    if self.clear_non_cond_mem_around_input:
                        self._clear_non_cond_mem_around_input(s, frame_idx)
                temp[key].clear()
            if not s.store.cond(obj_idx):
                raise ValueError(
                    f"No input points or masks are provided for object id {s.obj_ids[obj_idx]}; "
                    "please add inputs first."
                )
            for frame_idx in s.store.cond(obj_idx):
                s.store.pop(obj_idx, frame_idx)

    def propagate_in_video(
        self, inference_state: InferenceState, start_frame_idx=None, max_frame_num_to_track=None, reverse=False
    ) -> Iterator[tuple[int, list, np.ndarray]]:
        """Track every object through the video; yields (frame_idx, obj_ids, masks (O, 1, H, W) logits), each frame
        as soon as its chunk is computed, with a tqdm bar as the official (``progress = False`` turns it off).

        On a live source (an iterator of frames, ``num_frames`` unknown) it tracks forward frame by frame as the
        frames arrive, until the source ends: a frame in, the masks of every object out.
        """
        s = inference_state
        if s.frame_queue is not None:
            raise ValueError("this state is a stream fed frame by frame: call track_frame, not propagate_in_video")
        s.stream_tstate = None
        self.propagate_in_video_preflight(s)
        live = s.num_frames is None
        if live and reverse:
            raise ValueError("reverse propagation needs a video of known length, not a live source")
        order = self._propagation_order(s, start_frame_idx, max_frame_num_to_track, reverse)
        s.pathways.clear()
        s.pathway_masks_held.clear()
        s.final_lineage.clear()
        frames = self._propagate(s, order, reverse, live)
        yield from with_progress(frames, None if live else len(order), "propagate in video", self.progress)
        if self.policy.name == "sam2long" and len(order):
            self._keep_final_lineage(s, list(order))

    def _keep_final_lineage(self, s: InferenceState, order: list[int]) -> None:
        """SAM2Long: re-select each stored non-conditioning output's masks along the lineage of the pathway that is
        best at the end of the pass, as the reference's ``propagate_in_video`` returns them. The per-frame masks
        already yielded were the causal best pathway's; memories, pointers and scores stay the causal best's (the
        memory the next pass rebuilds from). Kept in ``s.final_lineage``: {frame: pathway index per object}; the
        pass's per-frame pathways stay in ``s.pathways`` until the next pass, their masks only while the store holds
        the frame's outputs (a frame the budget dropped, recomputed later, gives the causal best's masks)."""
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

    def final_lineage_masks(self, inference_state: InferenceState, frames=None) -> dict[int, np.ndarray]:
        """SAM2Long: the video-resolution logits (O, 1, H, W) of every frame of the last ``propagate_in_video``
        (or of those of ``frames`` it tracked), along the lineage of the pathway that was best at its end (the
        reference's returned masks), from the stored outputs (``_keep_final_lineage``); conditioning frames give
        their prompt output. Empty under other policies."""
        s = inference_state
        keep = sorted(s.final_lineage if frames is None else set(frames) & set(s.final_lineage))
        return {t: self._consolidated_video_res(s, t) for t in keep}

    def _propagate(self, s: InferenceState, order: range, reverse: bool, live: bool):
        """The frames of ``order`` tracked chunk by chunk (``propagate_in_video`` after its checks)."""
        obj_ids = list(s.obj_ids)
        objs = list(range(len(obj_ids)))
        if len(order) == 0:
            return
        tstate = self._tracking_state(s, objs, order[0], reverse)
        chunk = 1 if live else self.chunk_size
        # One chunk in flight: chunk k+1 is dispatched before chunk k's outputs are fetched, and the host reads
        # chunk k+2's frames while the device computes, so the device never waits on the host.
        pending = None
        pos = 0
        while pos < len(order):
            n = chunk if len(order) - pos >= chunk else 1
            idxs = list(order[pos : pos + n])
            if not live and hasattr(s.images, "prefetch"):
                s.images.prefetch(list(order[pos + n : pos + 2 * n + chunk]))
            try:
                tstate, dispatched = self._dispatch(s, tstate, idxs, reverse)
            except IndexError:
                if not live:
                    raise
                s.num_frames = s.images.num_frames  # the live source ended
                break
            if pending is not None:
                yield from self._collect(s, objs, pending, reverse, obj_ids)
            pending = dispatched
            pos += n
            if not self.chunks_in_flight:
                yield from self._collect(s, objs, pending, reverse, obj_ids)
                pending = None
        if pending is not None:
            yield from self._collect(s, objs, pending, reverse, obj_ids)

    def propagate_in_videos(
        self,
        inference_states: Iterable,
        start_frame_idx: int | list | None = None,
        max_frame_num_to_track: int | list | None = None,
        reverse: bool = False,
        videos_per_step: int | None = None,
        next_pass: Callable[[int], tuple | None] | None = None,
    ) -> Iterator[tuple[int, int, list, np.ndarray]]:
        """``propagate_in_video`` of several videos at once: one compiled step tracks a chunk of frames of every
        video in the batch (``engine.propagate_videos_chunk``), so a small model fills an accelerator. Not in the
        official API (upstream #399).

        With ``videos_per_step`` below the number of videos the batch is refilled as videos end (continuous
        batching): the slot of a video whose last frame has been dispatched takes the next video at once, so videos
        of different lengths waste no frames beyond the chunk each ends in.

        Args:
          inference_states: states from ``init_state`` (videos of known length, prompted as for
            ``propagate_in_video``), or ``VideoPass``es / ``(state, start, max)`` tuples (a state with its own
            range); a list, or with ``videos_per_step`` any iterable, read one video at a time as slots free up.
            Each state's outputs and bookkeeping are updated exactly as ``propagate_in_video`` updates them, so
            corrections and later propagations work per video as usual.
          start_frame_idx, max_frame_num_to_track: as ``propagate_in_video``, one value for every video or (with
            a list of states) a list with one per video; a ``VideoPass`` brings its own.
          reverse: the direction, for every video.
          videos_per_step: the batch width; by default every video of the list at once.
          next_pass: called with a video's index once its pass has been yielded in full; returning
            ``(start_frame_idx, max_frame_num_to_track)`` tracks the same video again from there (e.g. after
            prompting objects that appear later) in the next free slot, ``None`` ends the video.
        Yields:
          ``(video_index, frame_idx, obj_ids, masks (O, 1, H, W) logits)``: a video's frames in order, videos
          interleaved chunk by chunk; ``video_index`` counts the items of ``inference_states``. A tqdm bar over
          the frames (``progress = False`` turns it off).
        """
        sized = isinstance(inference_states, list | tuple)
        if videos_per_step is None:
            if not sized:
                raise ValueError("propagate_in_videos over an iterable of states needs videos_per_step")
            videos_per_step = max(len(inference_states), 1)
        is_int = isinstance(videos_per_step, int | np.integer) and not isinstance(videos_per_step, bool)
        if not is_int or videos_per_step < 1:
            raise ValueError(f"videos_per_step must be a positive int, got {videos_per_step!r}")
        if sized:
            V = len(inference_states)
            starts = _per_video(start_frame_idx, V, "start_frame_idx")
            maxes = _per_video(max_frame_num_to_track, V, "max_frame_num_to_track")
        elif any(isinstance(x, list | tuple | np.ndarray) for x in (start_frame_idx, max_frame_num_to_track)):
            raise ValueError("per-video start_frame_idx / max_frame_num_to_track need a list of states (or VideoPass)")
        else:
            starts, maxes = itertools.repeat(start_frame_idx), itertools.repeat(max_frame_num_to_track)
        passes = (
            (v, VideoPass(*x) if isinstance(x, tuple) else VideoPass(x, a, m))
            for v, (x, a, m) in enumerate(zip(inference_states, starts, maxes, strict=False))  # starts: repeat
        )
        frames = self._propagate_videos(passes, videos_per_step, reverse, next_pass)
        yield from with_progress(frames, None, "propagate in videos", self.progress)

    def _start_pass(self, p: "VideoPass", reverse: bool) -> "_Pass":
        """A video's pass, checked and ready to track (``propagate_in_video``'s checks and preflight)."""
        s = p.inference_state
        if not isinstance(s, InferenceState):
            raise TypeError(f"propagate_in_videos takes states from init_state or VideoPass, got {type(s).__name__}")
        if s.num_frames is None or s.frame_queue is not None:
            raise ValueError("propagate_in_videos needs videos of known length; track a live source alone")
        s.stream_tstate = None
        self.propagate_in_video_preflight(s)
        order = self._propagation_order(s, p.start_frame_idx, p.max_frame_num_to_track, reverse)
        s.pathways.clear()
        s.pathway_masks_held.clear()
        s.final_lineage.clear()
        return _Pass(s, order, list(range(s.num_objects)), list(s.obj_ids))

    def _end_pass(self, v: int, p: "_Pass", next_pass) -> "VideoPass | None":
        """After a pass's last frame was yielded: SAM2Long's final lineage, then the video's next pass, if any."""
        if self.policy.name == "sam2long" and len(p.order):
            self._keep_final_lineage(p.s, list(p.order))
        nxt = None if next_pass is None else next_pass(v)
        if nxt is None:
            return None
        start, most = nxt
        return VideoPass(p.s, start, most)

    def _propagate_videos(self, passes: Iterator, width: int, reverse: bool, next_pass):
        """The passes tracked ``width`` at a time, chunk by chunk (``propagate_in_videos`` after its checks).

        Each slot of the batched state holds one video's pass. A slot whose pass has dispatched its last frame
        takes the next pass at once (a new video, or a video's next pass once its previous one has been yielded);
        a slot with nothing to do repeats its last frame, whose outputs are dropped. One chunk is in flight, as in
        ``propagate_in_video``.
        """
        ready: collections.deque = collections.deque()  # (video index, VideoPass) of next_pass, waiting for a slot
        slots: list = [None] * width  # (video index, _Pass) running in each slot
        idle: list = [None] * width  # (state, frame) a free slot repeats
        tstate, pending = None, None

        def take():
            while True:
                if ready:
                    v, p = ready.popleft()
                else:
                    v, p = next(passes, (None, None))
                    if p is None:
                        return None
                run = self._start_pass(p, reverse)
                if len(run.order):
                    return v, run
                nxt = self._end_pass(v, run, next_pass)  # nothing to track: the pass ends at once
                if nxt is not None:
                    ready.append((v, nxt))

        while True:
            placed = {}
            for i in range(width):
                if slots[i] is None and (taken := take()) is not None:
                    slots[i] = taken
                    v, run = taken
                    placed[i] = self.tracker_state(
                        run.s, run.objs, run.order[0], reverse, object_bucket(len(run.objs)), False
                    )
            if tstate is None and placed:  # the first round: as many slots as there were passes
                width = len(placed)
                slots, idle = slots[:width], idle[:width]
                tstate = self._shard(jax.device_put(stack_states([placed[i] for i in range(width)])))
            else:
                for i, st in placed.items():
                    tstate = self._place(tstate, i, st)
            active = [i for i in range(width) if slots[i] is not None]
            if not active:
                if pending is None:
                    return
                yield from self._collect_videos(*pending, reverse, next_pass, ready)
                pending = None
                continue
            # whole chunks while the longest pass has one left, then single frames (as propagate_in_video)
            left = max(len(slots[i][1].order) - slots[i][1].pos for i in active)
            T = self.chunk_size if left >= self.chunk_size else 1
            states, frames, chunk = [], [], []
            for i in range(width):
                if slots[i] is None:
                    s, last = idle[i]
                    states.append(s)
                    frames.append([last] * T)
                    chunk.append(None)
                    continue
                v, run = slots[i]
                ix = list(run.order[run.pos : run.pos + T])
                run.pos += len(ix)
                # a pass with fewer frames left repeats its last frame: the outputs are dropped
                states.append(run.s)
                frames.append(ix + [ix[-1]] * (T - len(ix)))
                ends = run.pos == len(run.order)
                chunk.append((v, run, ix, ends))
                if ends:
                    slots[i], idle[i] = None, (run.s, ix[-1])
                elif hasattr(run.s.images, "prefetch"):
                    run.s.images.prefetch(list(run.order[run.pos : run.pos + T]))
            tstate, dispatched = self._dispatch_videos(states, tstate, frames, reverse, [c is not None for c in chunk])
            if pending is not None:
                yield from self._collect_videos(*pending, reverse, next_pass, ready)
            pending = (chunk, *dispatched)

    def _place(self, tstate: TrackerState, i: int, st: TrackerState) -> TrackerState:
        """``tstate`` (V, …) with video slot ``i`` replaced by host state ``st`` (O, …) on the device. ``st`` is
        padded to the batch's object and conditioning-slot counts; if it has more, every slot is padded to its
        (one more compile of the step)."""
        rows, cond = tstate.cond_valid.shape[1:]
        if st.num_objects <= rows and st.num_cond_slots <= cond:
            return put_video(tstate, np.int32(i), jax.device_put(pad_cond_slots(pad_objects(st, rows), cond)))
        host = jax.tree.map(np.asarray, tstate)
        videos = [jax.tree.map(lambda x, j=j: x[j], host) for j in range(host.cond_valid.shape[0])]
        videos[i] = st
        return self._shard(jax.device_put(stack_states(videos)))

    def _dispatch_videos(
        self, states: list[InferenceState], tstate: TrackerState, frames: list[list[int]], reverse, active: list[bool]
    ):
        """Queue one chunk (V, T) of frames on the device, then each active slot's video-resolution masks (sizes
        differ per video), so nothing waits on the host; the outputs start copying to the host when ready."""
        images = np.stack([np.stack([s.images[t] for t in f]) for s, f in zip(states, frames, strict=True)])
        args = jax.device_put((images, np.asarray(frames, np.int32), np.full(len(states), reverse)))
        tstate, out = engine.propagate_videos_chunk(
            self.module, self.params, tstate, *args, self.fill_hole_area, self.policy
        )
        videos = {
            i: video_res_chunk(out.pred_masks[i], (s.video_height, s.video_width), non_overlap=self.non_overlap_masks)
            for i, s in enumerate(states)
            if active[i]
        }
        for x in (*jax.tree.leaves(out), *videos.values()):
            x.copy_to_host_async()
        return tstate, (out, videos)

    def _collect_videos(self, chunk: list, out: engine.StepOutput, videos: dict, reverse: bool, next_pass, ready):
        """Fetch a dispatched chunk, hand each slot's frames to ``_collect``, and end the passes it finished (their
        next passes join ``ready``)."""
        host = jax.tree.map(np.asarray, out)  # (V, T, O, ...)
        for i, entry in enumerate(chunk):
            if entry is None:
                continue
            v, run, ix, ends = entry
            mine = jax.tree.map(lambda x, i=i: x[i], host)
            for t, obj_ids, masks in self._collect(run.s, run.objs, _Chunk(ix, mine, videos[i]), reverse, run.obj_ids):
                yield v, t, obj_ids, masks
            if ends and (nxt := self._end_pass(v, run, next_pass)) is not None:
                ready.append((v, nxt))

    def _propagation_order(
        self, s: InferenceState, start_frame_idx: int | None, max_frame_num_to_track: int | None, reverse: bool
    ) -> range:
        """The frames ``propagate_in_video`` tracks, in order (the official defaults: from the first prompted
        frame, to the end of the video in the direction)."""
        if start_frame_idx is None:
            start_frame_idx = min(t for o in range(s.num_objects) for t in s.store.cond(o))
        start_frame_idx = self._check_frame(s, start_frame_idx)
        if max_frame_num_to_track is None:
            max_frame_num_to_track = self._num_frames(s)
        elif isinstance(max_frame_num_to_track, bool) or not isinstance(max_frame_num_to_track, int | np.integer):
            raise ValueError(f"max_frame_num_to_track must be an int or None, got {max_frame_num_to_track!r}")
        elif max_frame_num_to_track < 0:
            raise ValueError(f"max_frame_num_to_track must be >= 0, got {max_frame_num_to_track}")
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            return range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        end = min(start_frame_idx + max_frame_num_to_track, self._num_frames(s) - 1)
        return range(start_frame_idx, end + 1)

    def _tracking_state(self, s: InferenceState, objs: list[int], frame_idx: int, reverse: bool) -> TrackerState:
        """The tracker state of ``objs`` seen from ``frame_idx``, its object axis padded to ``object_bucket``
        (compiled shapes depend on the bucket, not on the exact count) and spread over ``self.mesh``."""
        st = self.tracker_state(s, objs, frame_idx, reverse, pad_to=object_bucket(len(objs)))
        return self._shard(st)

    def _dispatch(
        self, s: InferenceState, tstate: TrackerState, idxs: list[int], reverse: bool
    ) -> tuple[TrackerState, "_Chunk"]:
        """Queue a chunk on the device (nothing waits): the scan over its frames, then the video-resolution masks
        of the real objects; the outputs start copying to the host as soon as they are ready."""
        # device_put, not jnp.asarray: the latter compiles a copy program per new shape
        batch, frame_idxs = jax.device_put((np.stack([s.images[t] for t in idxs]), np.asarray(idxs, np.int32)))
        tstate, out = engine.propagate_chunk(
            self.module, self.params, tstate, batch, frame_idxs, jnp.bool_(reverse), self.fill_hole_area, self.policy
        )
        # Every object of the bucket (a padded copy of object 0 never wins a pixel over it): shapes, and so the
        # compiled programs, depend on the bucket only; the host keeps the first ``num_objects``.
        video = video_res_chunk(out.pred_masks, (s.video_height, s.video_width), non_overlap=self.non_overlap_masks)
        for x in (*jax.tree.leaves(out), video):
            x.copy_to_host_async()
        return tstate, _Chunk(idxs, out, video)

    def _collect(self, s: InferenceState, objs: list[int], chunk: "_Chunk", reverse: bool, obj_ids: list):
        """Fetch a dispatched chunk, keep its per-frame outputs in the store and yield each frame's
        ``(frame_idx, obj_ids, video-resolution logits (O, 1, H, W))``."""
        host = jax.tree.map(np.asarray, chunk.out)
        video = np.asarray(chunk.video)
        for j, t in enumerate(chunk.idxs):
            for o in objs:
                s.frames_tracked_per_obj[o][t] = {"reverse": reverse}
                if host.is_cond[j, o]:
                    continue
                out = FrameOutput(
                    host.pred_masks[j, o][None],
                    host.obj_ptr[j, o][None],
                    host.object_score_logits[j, o][None],
                    host.maskmem[j, o],
                    bool(host.admitted[j, o]),
                    float(host.best_iou[j, o]),
                    host.kf_box[j, o],
                    float(host.kf_score[j, o]),
                )
                s.store.put(o, t, out)
            if host.path_parent is not None:  # SAM2Long: every pathway's parent, score and mask, for the lineage
                s.pathways[t] = (
                    host.path_parent[j, : len(objs)],
                    host.path_score[j, : len(objs)],
                    host.path_masks[j, : len(objs)],
                )
                s.pathway_masks_held.add(t)
            yield t, obj_ids, tensor_like(video[j, : len(objs)])
        s.store.evict(chunk.idxs[-1])
        if s.pathway_masks_held:
            # SAM2Long: the pathways' masks go when the store's budget drops the frame's outputs (the parents, a few
            # bytes a frame, stay for the lineage), so host memory stays within the budget however long the video;
            # only the frames that still hold masks are looked at (as many as the store holds, not the video's length).
            held = {f for o in s.store.per_obj for f in s.store.non_cond(o)}
            for f in s.pathway_masks_held - held:
                parent, score, _ = s.pathways[f]
                s.pathways[f] = (parent, score, None)
            s.pathway_masks_held &= held

    # --- streaming --------------------------------------------------------------------------------------------
    def init_stream(self, first_frame: np.ndarray, **source_kwargs) -> InferenceState:
        """A state for a live stream (a camera) fed one frame at a time; ``first_frame`` is frame 0.

        Prompt any object on the latest frame with ``add_new_points_or_box`` / ``add_new_mask`` (new objects and
        corrections may come at any time), and feed each new frame to ``track_frame``. Frames are held only in the
        source's window (``cache_size``, default 16) and per-frame outputs within ``store_budget_mb``, so memory
        stays flat however long the stream runs.
        """
        if source_kwargs.get("async_loading_frames"):
            raise ValueError("async_loading_frames cannot read ahead of a stream fed by track_frame")
        queue = FrameQueue()
        queue.push(first_frame)
        state = self.init_state(queue, **source_kwargs)
        state.frame_queue = queue
        state.stream_next = 1
        return state

    def track_frame(
        self, inference_state: InferenceState, frame: np.ndarray | None = None
    ) -> tuple[int, list, np.ndarray]:
        """Track every object on the next frame, keeping the memory state on the device between calls.

        A frame in, the masks of every tracked object out: the streaming call the official predictor lacks
        (upstream #90, #134, #388). Outputs equal those of ``propagate_in_video`` over the same frames.

        Args:
          inference_state: from ``init_stream`` (then ``frame`` is the new ``(H, W, 3)`` uint8 frame), or from
            ``init_state`` (then ``frame`` must be None and the video's next frame is tracked: the frame after
            the last one tracked or prompted).
        Returns:
          ``(frame_idx, obj_ids, masks)``: masks ``(num_objects, 1, H, W)`` logits at video resolution;
          ``(0, 1, H, W)`` while no object is prompted yet.
        """
        s = inference_state
        if s.frame_queue is not None:
            if frame is None:
                raise ValueError("track_frame on a stream needs the new frame")
            t = s.frame_queue.push(frame)  # a bad frame raises here and is not counted
        else:
            if frame is not None:
                raise ValueError("track_frame(frame=...) needs a state from init_stream; this one reads its video")
            t = s.stream_next if s.stream_next is not None else s.last_touched_frame() + 1
            self._check_frame(s, t)
        # read now, also with no object yet: a pushed frame enters the source's window, where a click can reach it
        _ = s.images[t]
        s.stream_next = t + 1
        objs = list(range(s.num_objects))
        if not objs:
            return t, [], tensor_like(np.zeros((0, 1, s.video_height, s.video_width), np.float32))
        tstate = s.stream_tstate
        if tstate is None:  # first call, or prompts/objects changed since the last one
            self.propagate_in_video_preflight(s)
            tstate = self._tracking_state(s, objs, t, False)
        s.stream_tstate, chunk = self._dispatch(s, tstate, [t], False)
        ((_, obj_ids, masks),) = self._collect(s, objs, chunk, False, list(s.obj_ids))
        return t, obj_ids, masks

    def _shard(self, tstate: TrackerState) -> TrackerState:
        """Spread the object axis of the state over ``self.mesh`` (params and frames stay replicated)."""
        if self.mesh is None:
            return tstate
        n = self.mesh.devices.size
        spec = jax.sharding.PartitionSpec("obj") if tstate.num_objects % n == 0 else jax.sharding.PartitionSpec()
        sharded = jax.sharding.NamedSharding(self.mesh, spec)
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        return jax.tree.map(lambda x: jax.device_put(x, sharded if x.ndim else replicated), tstate)

    # --- helpers ----------------------------------------------------------------------------------------------
    def _consolidated_video_res(self, s: InferenceState, frame_idx: int) -> np.ndarray:
        masks = []
        for obj_idx in range(s.num_objects):
            temp = s.temp_output_dict_per_obj[obj_idx]
            out = temp[COND].get(frame_idx) or temp[NON_COND].get(frame_idx) or s.store.get(obj_idx, frame_idx)
            masks.append(
                np.full((1, 1, self.image_size // 4, self.image_size // 4), NO_OBJ_SCORE, np.float32)
                if out is None
                else out.pred_masks
            )
        if not masks:
            return np.zeros((0, 1, s.video_height, s.video_width), np.float32)
        n = len(masks)
        masks += masks[:1] * (object_bucket(n) - n)  # compiled per bucket, not per object count
        hw = (s.video_height, s.video_width)
        return np.asarray(self._video_res_fn(jax.device_put(np.concatenate(masks)), hw))[:n]

    def _dummy_state(self) -> TrackerState:
        return self.empty_tracker_state(1, 1, 1)

    def empty_tracker_state(self, num_objects: int, num_cond: int, num_frames: int, xp=jnp) -> TrackerState:
        """A ``TrackerState`` of this model's shapes with every slot invalid (``xp=np``: on the host)."""
        c = self.config
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
        self,
        s: InferenceState,
        objs: list[int],
        frame_idx: int,
        reverse: bool,
        pad_to: int | None = None,
        on_device: bool = True,
        pathways: bool = True,
    ) -> TrackerState:
        """The tracker state of object indices ``objs`` of ``s`` as seen from ``frame_idx`` (public for benchmarks and
        tools): their conditioning frames (the temporally closest
        ``max_cond_slots``) and the stored non-conditioning outputs of the frames before it in the direction
        (re-tracked when the store's budget dropped them); the object axis padded to ``pad_to`` (``pad_objects``);
        host numpy arrays with ``on_device=False``. Under SAM2Long each object becomes ``num_pathways`` equal rows
        (``engine.repeat_pathways``) unless ``pathways=False``."""
        K = host_state.cond_slots(max(len(s.store.cond(o)) for o in objs), self.max_cond_slots)
        st = self.empty_tracker_state(len(objs), K, self._num_frames(s), xp=np)
        arrays = vars(st)  # the host state's numpy arrays, filled in place
        retrack = functools.partial(self._retrack, s)
        policy = self.policy
        for i, o in enumerate(objs):
            host_state.write_cond(arrays, i, s.store.cond(o), frame_idx, _read_output)
            if policy.selects_memory:
                self._admitted_rings(s, st, i, o, frame_idx, reverse)
            lookup = functools.partial(s.store.memory, o, tracked=s.frames_tracked_per_obj[o], recompute=retrack)
            memories, pointers = not policy.selects_memory, not policy.selects_pointers
            host_state.write_recent(arrays, i, frame_idx, reverse, lookup, _read_output, memories, pointers)
        if pad_to is not None:
            st = pad_objects(st, pad_to)
        if self.policy.name == "sam2long" and pathways:  # P equal pathways per object, scores 0 (sam2long_step)
            st = engine.repeat_pathways(st, self.policy.num_pathways, xp=np)
        return jax.device_put(st) if on_device else st

    def _admitted_rings(self, s: InferenceState, st: TrackerState, i: int, o: int, frame_idx: int, reverse: bool):
        """Fill row ``i`` of host state ``st`` as a memory-selecting policy's scan would have left it before
        ``frame_idx``: the stored frames the policy admitted (newest first, up to the pointer ring's size), then the
        previous frame when it was not admitted (``engine.write_admitted``). Dropped outputs are skipped and the
        Kalman filter restarts (``policies.py``)."""
        R, P = st.recent_frame.shape[1], st.ptr_frame.shape[1]
        sign = -1 if reverse else 1
        stored = s.store.non_cond(o)
        prev_f = frame_idx - sign
        prev = stored.get(prev_f)
        before = sorted(
            (f for f in stored if (frame_idx - f) * sign > 0 and stored[f].admitted), key=lambda f: -f * sign
        )
        admitted = [(f, stored[f]) for f in before[:P]]
        A = len(admitted)
        # the previous frame always takes the newest place, as an empty one when it is a conditioning frame
        is_prev_cond = prev_f in s.store.cond(o)
        last = (
            [] if (prev is None and not is_prev_cond) or (prev is not None and prev.admitted) else [(A, prev_f, prev)]
        )
        entries = [(A - 1 - q, f, out) for q, (f, out) in enumerate(admitted)] + last
        for pos, f, out in entries:
            rank = A - 1 - pos + len(last)  # 0: the newest entry
            if rank < R:
                st.recent_frame[i, pos % R] = f
                st.recent_valid[i, pos % R] = out is not None
                if out is not None:
                    st.recent_mem[i, pos % R] = out.maskmem_features
                    st.recent_obj_score[i, pos % R] = out.object_score_logits[0, 0]
            if self.policy.selects_pointers:
                st.ptr_frame[i, pos % P] = f
                st.ptr_valid[i, pos % P] = out is not None
                if out is not None:
                    st.ptr[i, pos % P] = out.obj_ptr[0]
                    st.ptr_obj_score[i, pos % P] = out.object_score_logits[0, 0]
        st.admit_count[i] = A
        st.last_admitted[i] = prev is not None and prev.admitted

    def _retrack(self, s: InferenceState, obj_idx: int, frame_idx: int) -> FrameOutput | None:
        """The output of ``obj_idx`` on ``frame_idx`` tracked again (in the direction it was tracked) from the
        nearest conditioning frame before it: the store's recompute hook for an output dropped by its budget.
        None when no conditioning frame precedes it."""
        reverse = s.frames_tracked_per_obj[obj_idx][frame_idx]["reverse"]
        before = [f for f in s.store.cond(obj_idx) if (f > frame_idx if reverse else f < frame_idx)]
        if not before:
            return None
        start = min(before) if reverse else max(before)
        order = list(range(start, frame_idx - 1, -1)) if reverse else list(range(start, frame_idx + 1))
        st = self.tracker_state(s, [obj_idx], start, reverse)
        for t in order:
            img, frame_idx = jax.device_put((np.asarray(s.images[t])[None], np.asarray([t], np.int32)))
            st, out = engine.propagate_chunk(
                self.module, self.params, st, img, frame_idx, jnp.bool_(reverse), self.fill_hole_area, self.policy
            )
        host = jax.tree.map(np.asarray, out)
        return FrameOutput(
            host.pred_masks[0, 0][None],
            host.obj_ptr[0, 0][None],
            host.object_score_logits[0, 0][None],
            host.maskmem[0, 0],
        )

    def _clear_non_cond_mem_around_input(self, s: InferenceState, frame_idx: int) -> None:
        r = self.config.memory_temporal_stride_for_eval
        lo, hi = frame_idx - r * self.config.num_maskmem, frame_idx + r * self.config.num_maskmem
        for o in range(s.num_objects):
            for t in range(lo, hi + 1):
                s.store.pop(o, t)


class VideoPass(NamedTuple):
    """One pass of ``propagate_in_videos``: a video's state and the frames to track, as ``propagate_in_video``'s
    arguments (the defaults: from the first prompted frame to the end of the video)."""

    inference_state: InferenceState
    start_frame_idx: int | None = None
    max_frame_num_to_track: int | None = None


@dataclasses.dataclass
class _Pass:
    """A pass in a slot of ``propagate_in_videos``: its state, frames in order, objects and the next position."""

    s: InferenceState
    order: range
    objs: list[int]
    obj_ids: list
    pos: int = 0


class _Chunk(NamedTuple):
    """A chunk dispatched to the device, not yet fetched."""

    idxs: list[int]
    out: engine.StepOutput  # (T, O_bucket, ...)
    video: jax.Array  # (T, O_bucket, 1, H, W) video-resolution logits


@functools.partial(jax.jit, static_argnums=1, static_argnames="non_overlap")
def video_res_chunk(masks: jax.Array, hw: tuple[int, int], non_overlap: bool = False) -> jax.Array:
    """``_video_res`` of every frame of a chunk: (T, O, 1, h, w) -> (T, O, 1, H, W)."""
    return jax.vmap(lambda m: _video_res(m, hw, non_overlap=non_overlap))(masks)


@functools.partial(jax.jit, static_argnums=1, static_argnames="non_overlap")
def _video_res(masks: jax.Array, hw: tuple[int, int], non_overlap: bool = False) -> jax.Array:
    """Low-res logits (O, 1, h, w) -> video resolution (O, 1, H, W), bilinear as the official."""
    # (O, 1, h, w) -> (O, h, w, 1) -> (O, H, W, 1) -> (O, 1, H, W)
    out = interpolate(masks.transpose(0, 2, 3, 1), hw, "bilinear").transpose(0, 3, 1, 2)
    return apply_non_overlapping_constraints(out) if non_overlap else out


def apply_non_overlapping_constraints(pred_masks: jax.Array) -> jax.Array:
    """Keep only the highest-scoring object at each pixel; others are clamped to at most -10 (O, 1, H, W)."""
    if pred_masks.shape[0] == 1:
        return pred_masks
    max_obj = jnp.argmax(pred_masks, axis=0, keepdims=True)
    keep = max_obj == jnp.arange(pred_masks.shape[0])[:, None, None, None]
    return jnp.where(keep, pred_masks, jnp.minimum(pred_masks, -10.0))


def _per_video(value, num_videos: int, name: str) -> list:
    """One value per video from a scalar (or None) or a sequence of ``num_videos``."""
    if isinstance(value, list | tuple | np.ndarray):
        if len(value) != num_videos:
            raise ValueError(f"{name}: {len(value)} values for {num_videos} videos")
        return list(value)
    return [value] * num_videos
