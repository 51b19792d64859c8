"""The official builders' ``hydra_overrides_extra`` (``["++model.fill_hole_area=0", ...]``) on our ml_collections
configs.

The official ``build_sam2`` / ``build_sam2_video_predictor`` hand these strings to Hydra, which sets keys of the
YAML's ``model:`` node. Here each one is parsed and set on the matching key of ``config.model`` (the names are the
official ones); the video predictor's own options (``fill_hole_area``, ``non_overlap_masks``,
``clear_non_cond_mem_around_input``, ``add_all_frames_to_correct_as_cond``) become keyword arguments of
``SAM2VideoPredictor``. A key with no counterpart here (``_target_`` classes, keys under ``model`` our config does not
have, deletions ``~key``) raises a ``ValueError`` that says so: an override is never dropped silently.
"""

from collections.abc import Iterable
from typing import Any

import ml_collections

# Keys of the official SAM2VideoPredictor's constructor, set by overrides on the video builder.
VIDEO_PREDICTOR_KEYS = (
    "fill_hole_area",
    "non_overlap_masks",
    "clear_non_cond_mem_around_input",
    "add_all_frames_to_correct_as_cond",
)


def _value(text: str) -> Any:
    """A Hydra override value: bool, null, int, float, or the string itself (quotes removed)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip().strip("'\"")


def parse_overrides(overrides: Iterable[str] | None) -> list[tuple[str, Any]]:
    """``["++model.a.b=1", ...]`` as ``[("a.b", 1), ...]`` (keys relative to ``model``), in order.

    Raises:
      ValueError: not a list of strings, not ``[+|++]model.<key>=<value>``, or a deletion (``~``).
    """
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise ValueError(f"hydra_overrides_extra must be a list of strings, got the string {overrides!r}")
    out = []
    for o in overrides:
        if isinstance(o, str) and o.startswith("~"):
            raise ValueError(f"hydra_overrides_extra: deleting a key ({o!r}) is not supported")
        if not isinstance(o, str) or "=" not in o:
            raise ValueError(f"hydra_overrides_extra entries must be 'key=value' strings, got {o!r}")
        key, value = o.split("=", 1)
        key = key.lstrip("+")
        if not key.startswith("model.") or key == "model.":
            raise ValueError(
                f"hydra_overrides_extra: only keys under 'model.' have a counterpart here (the model config), got {o!r}"
            )
        out.append((key[len("model.") :], _value(value)))
    return out


def split_video_overrides(parsed: list[tuple[str, Any]]) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Separate the video predictor's constructor options from the model's keys (later entries win)."""
    model, video = [], {}
    for key, value in parsed:
        if key in VIDEO_PREDICTOR_KEYS:
            video[key] = value
        else:
            model.append((key, value))
    return model, video


def apply_overrides(model_config: ml_collections.ConfigDict, parsed: list[tuple[str, Any]]) -> None:
    """Set each ``(key, value)`` on ``model_config`` (the config's ``model`` section), in place.

    Raises:
      ValueError: a key our config does not have (named, with what to use instead for the video predictor's
        options and the official ``_target_`` classes), or a value of the wrong type.
    """
    for key, value in parsed:
        if key in VIDEO_PREDICTOR_KEYS:
            raise ValueError(
                f"hydra_overrides_extra: model.{key} is an option of the video predictor, not of the model: pass it "
                "to build_sam2_video_predictor (or SAM2VideoPredictor(..., "
                f"{key}=...))"
            )
        *parents, leaf = key.split(".")
        node = model_config
        for p in parents:
            node = node.get(p) if isinstance(node, ml_collections.ConfigDict) else None
            if node is None:
                break
        if "_target_" in key or not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            raise ValueError(
                f"hydra_overrides_extra: model.{key} has no counterpart in this port's config (configs/common.py); "
                "the config's model keys are the official names, e.g. model.image_size, "
                "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability"
            )
        try:
            if isinstance(node[leaf], float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            node[leaf] = value
        except (TypeError, ValueError) as e:
            raise ValueError(f"hydra_overrides_extra: model.{key}={value!r}: {e}") from None
