"""The video predictor's options as the official builders take them: keyword arguments mixed with the model's, and
hydra overrides mixed with the config's ``video`` section (``sam2/build_sam.py``, ``build_sam2_video_predictor``).

Split here, with the official precedence, so that ``build_sam2_video_predictor`` and
``SAM2VideoPredictor.from_pretrained`` take the same options the same way.
"""

import logging
from typing import Any

from sam2_jax.utils.overrides import parse_overrides, split_video_overrides

logger = logging.getLogger(__name__)

# keyword arguments of SAM2VideoPredictor.__init__ that the builders take beside the model's
PREDICTOR_ARGS = (
    "fill_hole_area",
    "non_overlap_masks",
    "clear_non_cond_mem_around_input",
    "chunk_size",
    "store_budget_mb",
    "max_cond_slots",
    "mesh",
    "chunks_in_flight",
)


def split_options(
    hydra_overrides_extra, apply_postprocessing: bool, vos_optimized: bool, kwargs: dict
) -> tuple[list[str], dict]:
    """The model's overrides and the predictor's arguments; the predictor's keyword arguments are popped from
    ``kwargs`` (the rest build the model).

    Returns:
      ``(["++model.k=v", ...], {predictor argument: value})``: the user's keyword arguments first, then the
      overrides of the config's ``video`` section; with ``apply_postprocessing`` the official appends its own
      ``fill_hole_area=8`` after the user's override, so that override is dropped.
    """
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
    predictor_args = {k: kwargs.pop(k) for k in PREDICTOR_ARGS if k in kwargs}
    for k, v in video.items():
        predictor_args.setdefault(k, v)
    return [f"++model.{k}={v}" for k, v in model_overrides], predictor_args


def video_options(
    video: Any,
    fill_hole_area: int | None,
    non_overlap_masks: bool | None,
    clear_non_cond_mem_around_input: bool | None,
    apply_postprocessing: bool,
) -> tuple[int, bool, bool]:
    """The official predictor options ``(fill_hole_area, non_overlap_masks, clear_non_cond_mem_around_input)``: the
    arguments given, else the config's ``video`` section; without ``apply_postprocessing`` no holes are filled unless
    ``fill_hole_area`` is given."""
    if fill_hole_area is None:
        fill_hole_area = video.fill_hole_area if apply_postprocessing else 0
    if non_overlap_masks is None:
        non_overlap_masks = video.non_overlap_masks
    if clear_non_cond_mem_around_input is None:
        clear_non_cond_mem_around_input = video.clear_non_cond_mem_around_input
    return int(fill_hole_area), bool(non_overlap_masks), bool(clear_non_cond_mem_around_input)
