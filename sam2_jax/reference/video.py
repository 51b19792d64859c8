"""The official ``SAM2VideoPredictor`` on CPU (sam2==1.1.0,
``sam2/sam2_video_predictor.py``).

``official_video_predictor(name)`` builds the official video predictor with our deterministic random weights,
set up as ../shared/REFERENCE.md ("Behaviours to know") prescribes for parity:
- ``++model.add_all_frames_to_correct_as_cond=true``: with the shipped configs a correction click on an
  already tracked frame is recomputed away by the next ``propagate_in_video`` (upstream issues #719, #731);
  our predictor never drops a correction, so the reference must keep it too.
- ``fill_hole_area = 0``: the builder forces 8, which needs the CUDA extension ``sam2._C`` and is skipped with
  a warning on CPU anyway; setting 0 makes the CPU behaviour explicit (our hole filling is tested on its own).
- memory-attention input cast to float32: the predictor stores memories as bfloat16 and relies on the
  concatenation with float32 object pointers to promote them. When no pointer joins the memory (propagation
  that starts on a frame with no prompted frame on its past side, e.g. reverse from the last frame after a
  click on frame 0) the official code fails on CPU with "mat1 and mat2 must have the same dtype" (CUDA
  autocast hides it). The cast is exactly what the concatenation does in every other case, so it changes no
  number where the official code runs.

``VideoRecorder`` captures the official per-frame, per-object outputs before any threshold: for every call of
``_run_single_frame_inference`` (clicks, masks, propagated frames) the low-res mask logits, object-score
logits, object pointer and (when encoded) the bfloat16 memory features, plus the memories that
``propagate_in_video_preflight`` encodes for prompted frames (``_run_memory_encoder``).
"""

import contextlib
import dataclasses
import functools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from sam2_jax.reference import DATA, OFFICIAL_YAML
from sam2_jax.reference.image import reference_state_dict

BEDROOM = DATA / "videos" / "bedroom"

# Attributes set on the predictor's memory attention: the float32 cast applies while the flag is True; the
# counter says how many calls it changed (none where the official code runs as shipped).
_CAST_FLAG = "_sam2_jax_cast_memory_to_float32"
_CAST_COUNT = "_sam2_jax_memory_casts"


def install_memory_cast(memory_attention) -> None:
    """Wrap ``memory_attention.forward`` (an instance attribute, so ``nn.Module.__call__`` picks it up)."""
    original = memory_attention.forward

    def forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        ref = curr[0] if isinstance(curr, list) else curr
        if getattr(memory_attention, _CAST_FLAG) and memory.dtype != ref.dtype:
            memory = memory.to(ref.dtype)
            setattr(memory_attention, _CAST_COUNT, getattr(memory_attention, _CAST_COUNT) + 1)
        return original(curr, memory, curr_pos=curr_pos, memory_pos=memory_pos, num_obj_ptr_tokens=num_obj_ptr_tokens)

    memory_attention.forward = forward
    setattr(memory_attention, _CAST_FLAG, True)
    setattr(memory_attention, _CAST_COUNT, 0)


def memory_casts(predictor) -> int:
    """How many memory-attention calls the float32 cast has changed so far."""
    return getattr(predictor.memory_attention, _CAST_COUNT)


@functools.lru_cache(maxsize=2)
def official_video_predictor(name: str = "sam2.1_hiera_t", seed: int = 0, image_size: int | None = None):
    """The official ``SAM2VideoPredictor`` (eval, CPU, float32) with our random weights, set up for parity.

    ``image_size`` overrides the model's input side (``++model.image_size``; the official RoPE and Hiera position
    embeddings adapt to the feature size), for long runs at a fraction of the 1024 cost.
    Cached: recorders and ``without_memory_cast`` patch it only for the duration of a ``with`` block.
    """
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(seed)
    overrides = ["++model.add_all_frames_to_correct_as_cond=true"]
    if image_size is not None:
        overrides.append(f"++model.image_size={image_size}")
    predictor = build_sam2_video_predictor(OFFICIAL_YAML[name], None, device="cpu", hydra_overrides_extra=overrides)
    sd = reference_state_dict(name, seed)
    predictor.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    predictor.fill_hole_area = 0
    install_memory_cast(predictor.memory_attention)
    return predictor


@contextlib.contextmanager
def without_memory_cast(predictor) -> Iterator[None]:
    """Run the official predictor exactly as shipped (to show the float32 cast is needed)."""
    setattr(predictor.memory_attention, _CAST_FLAG, False)
    try:
        yield
    finally:
        setattr(predictor.memory_attention, _CAST_FLAG, True)


@dataclasses.dataclass
class FrameRecord:
    """One official per-object output, as numpy float32 (NCHW, as the official code holds it).

    ``kind``: ``"points"`` (``add_new_points_or_box``), ``"mask"`` (``add_new_mask``), ``"propagate"`` (a
    frame run by ``propagate_in_video``) or ``"memory"`` (the memory encoded for a prompted frame at the start
    of propagation; only ``maskmem_features`` is set then).
    """

    call: int
    kind: str
    frame_idx: int
    obj_idx: int
    reverse: bool | None
    is_init_cond_frame: bool | None
    pred_masks: np.ndarray | None  # (1, 1, 256, 256) low-res mask logits, before thresholds
    object_score_logits: np.ndarray | None  # (1, 1)
    obj_ptr: np.ndarray | None  # (1, 256)
    maskmem_features: np.ndarray | None  # (1, 64, 64, 64): the stored bfloat16 values, widened to float32


def _np(x) -> np.ndarray | None:
    return None if x is None else x.detach().float().cpu().numpy()


class VideoRecorder:
    """Records the official per-frame outputs while active (``with VideoRecorder(predictor) as rec: ...``).

    The wrappers are instance attributes on the predictor and are removed on exit, so the cached predictor is
    left as it was. ``records`` is in call order; ``by_key()`` keys them by ``(frame_idx, obj_idx, call)``.
    """

    def __init__(self, predictor):
        self.predictor = predictor
        self.records: list[FrameRecord] = []

    def _obj_idx(self, inference_state, output_dict) -> int:
        # The official code passes the object's output dict, not its index: find it by identity.
        for obj_idx, d in inference_state["output_dict_per_obj"].items():
            if d is output_dict:
                return obj_idx
        raise AssertionError("output_dict is not one of the inference state's per-object dicts")

    def __enter__(self) -> "VideoRecorder":
        p = self.predictor
        if "_run_single_frame_inference" in vars(p):
            raise RuntimeError("a VideoRecorder is already active on this predictor (they do not nest)")
        run_frame, run_memory = p._run_single_frame_inference, p._run_memory_encoder

        def run_single_frame_inference(**kw):
            compact, pred_masks_gpu = run_frame(**kw)
            kind = "points" if kw["point_inputs"] is not None else "mask" if kw["mask_inputs"] is not None else None
            rec = FrameRecord(
                call=len(self.records),
                kind=kind or "propagate",
                frame_idx=kw["frame_idx"],
                obj_idx=self._obj_idx(kw["inference_state"], kw["output_dict"]),
                reverse=kw["reverse"],
                is_init_cond_frame=kw["is_init_cond_frame"],
                pred_masks=_np(compact["pred_masks"]),
                object_score_logits=_np(compact["object_score_logits"]),
                obj_ptr=_np(compact["obj_ptr"]),
                maskmem_features=_np(compact["maskmem_features"]),
            )
            self.records.append(rec)
            return compact, pred_masks_gpu

        def run_memory_encoder(**kw):
            feats, pos = run_memory(**kw)
            # Called once per prompted frame and object in propagate_in_video_preflight, in object order.
            state = kw["inference_state"]
            temp = state["temp_output_dict_per_obj"]
            obj_idx = next((i for i, d in temp.items() if self._holds(d, kw["frame_idx"], kw)), None)
            if obj_idx is None:
                raise AssertionError(f"memory encoded for frame {kw['frame_idx']} matches no temporary output")
            self.records.append(
                FrameRecord(
                    len(self.records),
                    "memory",
                    kw["frame_idx"],
                    obj_idx,
                    None,
                    None,
                    None,
                    None,
                    None,
                    _np(feats),
                )
            )
            return feats, pos

        p._run_single_frame_inference = run_single_frame_inference
        p._run_memory_encoder = run_memory_encoder
        return self

    @staticmethod
    def _holds(temp_dict, frame_idx, kw) -> bool:
        # The preflight passes the temporary output's own object_score_logits tensor: match it by identity.
        return any(
            out is not None and out["object_score_logits"] is kw["object_score_logits"]
            for d in temp_dict.values()
            for t, out in d.items()
            if t == frame_idx
        )

    def __exit__(self, *exc) -> None:
        del self.predictor._run_single_frame_inference
        del self.predictor._run_memory_encoder

    def by_key(self) -> dict[tuple[int, int, int], FrameRecord]:
        return {(r.frame_idx, r.obj_idx, r.call): r for r in self.records}

    def of_kind(self, kind: str) -> list[FrameRecord]:
        return [r for r in self.records if r.kind == kind]


def propagate(predictor, inference_state, **kwargs) -> list[tuple[int, list, np.ndarray]]:
    """Run ``propagate_in_video`` to its end: ``[(frame_idx, obj_ids, video-res logits (O, 1, H, W))]``."""
    return [
        (t, list(obj_ids), masks.float().numpy())
        for t, obj_ids, masks in predictor.propagate_in_video(inference_state, **kwargs)
    ]


def link_frames(dst: Path, indices: Iterable[int], src: Path = BEDROOM) -> Path:
    """A folder of symlinks ``00000.jpg ...`` to the chosen frames of ``src`` (a clip without copying)."""
    names = [p for p in os.listdir(src) if os.path.splitext(p)[1].lower() in (".jpg", ".jpeg")]
    names.sort(key=lambda p: int(os.path.splitext(p)[0]))
    dst.mkdir(parents=True, exist_ok=True)
    for new, old in enumerate(indices):
        (dst / f"{new:05d}.jpg").symlink_to(src / names[old])
    return dst
