"""Port of ``sam2/sam2_video_predictor.py``: ``SAM2VideoPredictor`` with the official API, numpy in and out.

The official class subclasses the model and keeps a 20-key ``inference_state`` dict. Here the predictor holds a
``SAM2Model`` and keeps the official bookkeeping (object ids, prompts per frame, per-frame outputs, which frames
were tracked and in which direction) on the host in a typed ``InferenceState`` (``sam2_jax/video/video_state.py``,
which also answers the official ``inference_state["..."]`` keys); the device work is ``sam2_jax.tracker``'s
compiled steps (``compiled.py``): ``jit_interact`` for a prompted frame and ``propagate_chunk`` (a ``lax.scan`` with a
fixed-size ``TrackerState``) for propagation.

This file is the official API and reads top to bottom as the official one does; what it does not share with the
official predictor lives in ``sam2_jax/video/``: the chunk pipeline (``pipeline.py``), continuous batching
(``scheduler.py``), streaming (``streaming.py``), the tracker state built from the host store and re-tracking of
dropped outputs (``tracker_state.py``) and prompt checks (``prompts.py``); the policies' host-side memory lives in
their own files (``sam2_jax/tracker/policies/``).

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
  selection or SAM2Long's pathways on the same weights (``sam2_jax/tracker/policies/``, one file per policy, which
  say how they meet corrections, streams and reverse tracking).
"""

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sam2_jax.modeling.build import build_sam2_hf
from sam2_jax.modeling.sam2_base import NO_OBJ_SCORE
from sam2_jax.modeling.sam2_model import SAM2Model, make_module
from sam2_jax.tracker import compiled
from sam2_jax.tracker.policies import get_policy
from sam2_jax.tracker.state import TrackerState, pad_clicks
from sam2_jax.tracker.step_config import StepConfig
from sam2_jax.utils.arrays import tensor_like
from sam2_jax.utils.progress import with_progress
from sam2_jax.utils.validation import check_frame_idx, check_obj_id
from sam2_jax.video import options, pipeline, prompts, streaming, tracker_state
from sam2_jax.video.scheduler import SlotScheduler, VideoPass, video_passes
from sam2_jax.video.tracking import Tracking
from sam2_jax.video.video_io import VideoSource
from sam2_jax.video.video_state import COND, NON_COND, FrameOutput, InferenceState, OutputStore

logger = logging.getLogger(__name__)


def video_predictor_from(build, hydra_overrides_extra, apply_postprocessing: bool, vos_optimized: bool, kwargs: dict):
    """Split the video predictor's options out of ``kwargs`` and the overrides (``options.split_options``), build the
    model with ``build(**rest)`` and wrap it."""
    model_overrides, predictor_args = options.split_options(
        hydra_overrides_extra, apply_postprocessing, vos_optimized, kwargs
    )
    model = build(hydra_overrides_extra=model_overrides, **kwargs)
    return SAM2VideoPredictor(model, apply_postprocessing=apply_postprocessing, **predictor_args)


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
            ``TrackerPolicy`` (``sam2_jax/tracker/policies/``; ``policies.POLICIES`` lists them); thresholds from
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
        self.fill_hole_area, self.non_overlap_masks, self.clear_non_cond_mem_around_input = options.video_options(
            video, fill_hole_area, non_overlap_masks, clear_non_cond_mem_around_input, apply_postprocessing
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
        self._features_fn = functools.partial(compiled.jit_frame_features, self.module)
        self._interact_fn = functools.partial(compiled.jit_interact, self.module, cfg=self.step_config)
        self._encode_fn = functools.partial(compiled.jit_encode_prompt_memory, self.module)
        self._max_pt = int(self.module.config.multimask_max_pt_num)

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
    def step_config(self) -> StepConfig:
        """The static choices of every tracking step: the policy, hole filling, only the memory slots in use."""
        return StepConfig(self.policy, self.fill_hole_area, compact=True)

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
        hw = (s.video_height, s.video_width)
        pts, lab = prompts.point_inputs(points, labels, box, clear_old_points, normalize_coords, hw, self.image_size)
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

    def add_new_mask(self, inference_state: InferenceState, frame_idx, obj_id, mask):
        """A binary mask (H, W) for ``obj_id`` on ``frame_idx``; returns (frame_idx, obj_ids, masks)."""
        s = inference_state
        frame_idx = self._check_frame(s, frame_idx)
        check_obj_id(obj_id)
        m = prompts.mask_input(mask, (s.video_height, s.video_width), self.image_size)  # (1, S, S, 1)
        obj_idx = self._obj_id_to_idx(s, obj_id)
        s.mask_inputs_per_obj[obj_idx][frame_idx] = m
        s.point_inputs_per_obj[obj_idx].pop(frame_idx, None)
        return self._run_prompt(s, frame_idx, obj_idx, mask=m)

    def _run_prompt(self, s: InferenceState, frame_idx: int, obj_idx: int, points=None, mask=None):
        """The official ``_run_single_frame_inference`` of a prompted frame: decoded on the memory around it."""
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
                        # the official _clear_non_cond_mem_around_input
                        r = self.config.memory_temporal_stride_for_eval
                        s.clear_non_cond_mem_around(frame_idx, r * self.config.num_maskmem)
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
        run = self._begin_pass(s, start_frame_idx, max_frame_num_to_track, reverse)
        live = s.num_frames is None
        chunk = 1 if live else self.chunk_size
        frames = pipeline.propagate(self._tracking(), run, reverse, chunk, live, self.chunks_in_flight)
        yield from with_progress(frames, None if live else len(run.order), "propagate in video", self.progress)
        self._end_pass(run)

    def propagate_in_videos(
        self,
        inference_states: Iterable[InferenceState | VideoPass | tuple],
        start_frame_idx: int | list | None = None,
        max_frame_num_to_track: int | list | None = None,
        reverse: bool = False,
        videos_per_step: int | None = None,
        next_pass: Callable[[int], tuple | None] | None = None,
    ) -> Iterator[tuple[int, int, list, np.ndarray]]:
        """``propagate_in_video`` of several videos at once: one compiled step tracks a chunk of frames of every
        video in the batch (``compiled.propagate_videos_chunk``), so a small model fills an accelerator. Not in the
        official API (upstream #399).

        With ``videos_per_step`` below the number of videos the batch is refilled as videos end (continuous
        batching, ``sam2_jax/video/scheduler.py``): the slot of a video whose last frame has been dispatched takes
        the next video at once, so videos of different lengths waste no frames beyond the chunk each ends in.

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
        passes, width = video_passes(inference_states, start_frame_idx, max_frame_num_to_track, videos_per_step)
        scheduler = SlotScheduler(
            self._tracking(), passes, width, reverse, self.chunk_size, self._begin_pass, self._end_pass, next_pass
        )
        yield from with_progress(scheduler.run(), None, "propagate in videos", self.progress)

    def _begin_pass(
        self, s: InferenceState, start_frame_idx: int | None, max_frame_num_to_track: int | None, reverse: bool
    ) -> pipeline.Pass:
        """A video's pass, checked and ready to track: new prompts encoded into the store (the preflight), the
        frames in order, and the last pass's SAM2Long pathways forgotten."""
        s.stream_tstate = None
        self.propagate_in_video_preflight(s)
        if s.num_frames is None and reverse:
            raise ValueError("reverse propagation needs a video of known length, not a live source")
        order = pipeline.propagation_order(s, start_frame_idx, max_frame_num_to_track, reverse)
        s.clear_pathways()
        return pipeline.Pass(s, order, list(range(s.num_objects)), list(s.obj_ids))

    def _end_pass(self, run: pipeline.Pass) -> None:
        """After a pass's last frame was yielded: the policy's ``end_pass`` over the frames tracked (a live
        source's order runs to ``frame_limit``; its pass ends with the source, after ``run.pos`` frames)."""
        self.policy.end_pass(run.state, list(run.order[: run.pos]))

    def final_lineage_masks(self, inference_state: InferenceState, frames=None) -> dict[int, np.ndarray]:
        """SAM2Long: the video-resolution logits (O, 1, H, W) of every frame of the last ``propagate_in_video``
        (or of those of ``frames`` it tracked), along the lineage of the pathway that was best at its end (the
        reference's returned masks), from the stored outputs (the policy's ``end_pass``); conditioning
        frames give their prompt output. Empty under other policies."""
        s = inference_state
        keep = sorted(s.final_lineage if frames is None else set(frames) & set(s.final_lineage))
        return {t: self._consolidated_video_res(s, t) for t in keep}

    # --- streaming (sam2_jax/video/streaming.py) ----------------------------------------------------------------
    def init_stream(self, first_frame: np.ndarray, **source_kwargs) -> InferenceState:
        """A state for a live stream (a camera) fed one frame at a time; ``first_frame`` is frame 0.

        Prompt any object on the latest frame with ``add_new_points_or_box`` / ``add_new_mask`` (new objects and
        corrections may come at any time), and feed each new frame to ``track_frame``. Frames are held only in the
        source's window (``cache_size``, default 16) and per-frame outputs within ``store_budget_mb``, so memory
        stays flat however long the stream runs.
        """
        return streaming.open_stream(self.init_state, first_frame, **source_kwargs)

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
        return streaming.track_frame(self._tracking(), inference_state, frame, self.propagate_in_video_preflight)

    # --- the tracker state (sam2_jax/video/tracker_state.py) ----------------------------------------------------
    def _tracking(self) -> Tracking:
        """This predictor's device side as the package reads it: its attributes of ``Tracking``'s names, read now
        (an option set after construction counts)."""
        return Tracking._make(getattr(self, name) for name in Tracking._fields)

    def tracker_state(
        self, s: InferenceState, objs: list[int], frame_idx: int, reverse: bool, **options
    ) -> TrackerState:
        """The tracker state of object indices ``objs`` of ``s`` as seen from ``frame_idx`` (public for benchmarks and
        tools). ``options``: ``pad_to``, ``on_device``, ``pathways`` of ``tracker_state.tracker_state``, which says
        which memories it holds."""
        return tracker_state.tracker_state(self._tracking(), s, objs, frame_idx, reverse, **options)

    def empty_tracker_state(self, num_objects: int, num_cond: int, num_frames: int, xp=jnp) -> TrackerState:
        """A ``TrackerState`` of this model's shapes with every slot invalid (``xp=np``: on the host)."""
        return tracker_state.empty_tracker_state(self.config, num_objects, num_cond, num_frames, xp=xp)

    def _dummy_state(self) -> TrackerState:
        return self.empty_tracker_state(1, 1, 1)

    # --- helpers ----------------------------------------------------------------------------------------------
    def _consolidated_video_res(self, s: InferenceState, frame_idx: int) -> np.ndarray:
        """Every object's mask on ``frame_idx`` at video resolution (O, 1, H, W), prompt outputs first."""
        masks = s.low_res_masks(frame_idx, self.image_size // 4, missing=NO_OBJ_SCORE)
        return pipeline.objects_at_video_res(masks, (s.video_height, s.video_width), self.non_overlap_masks)
