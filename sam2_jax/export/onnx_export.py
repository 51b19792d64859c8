"""Export SAM 2 to ONNX with ``jax2onnx``: the image encoder, the prompt steps and the single-frame tracking step.

No official counterpart (upstream #702, #186: the official tracker does not convert). The four graphs are engine
functions (``sam2_jax/tracker/engine.py``) with the params baked in as initializers (what ONNX runtimes expect), on
flat arrays (ONNX has no pytrees):

- ``image_encoder.onnx``: ``image (1, S, S, 3)`` -> ``vision_feat, vision_pos, high_res_0, high_res_1``
  (``calls.frame_features``).
- ``prompt.onnx``: the features, ``point_coords (1, N, 2)``, ``point_labels (1, N)`` on an object's first prompted
  frame -> ``pred_masks, object_score_logits, obj_ptr, maskmem`` (``engine.interact``, then
  ``engine.encode_prompt_memory``).
- ``prompt_tracked.onnx``: the features, ``frame_idx``, ``reverse``, the ``TrackerState`` fields (as
  ``track_step.onnx``), ``point_coords``, ``point_labels`` and ``prev_mask_logits (1, 1, 4h, 4w)`` (the frame's
  current logits) on a tracked frame: a correction, attending to the object's memory -> the outputs of
  ``prompt.onnx``.
- ``track_step.onnx``: the frame's features (``image_encoder.onnx`` on the frame), ``frame_idx``, ``reverse`` and the
  ``TrackerState`` fields (one object, ``K`` conditioning slots) -> the new state fields, ``pred_masks,
  object_score_logits`` (``engine.track_features``: ``engine.track_step`` after the encoder, so the encoder's
  weights are stored once).

Memories are bfloat16 in the tracker; ONNX Runtime's CPU kernels barely take bfloat16, so they cross the graph
boundary as float32 and are cast inside: a bfloat16 value is exact in float32, the numbers do not change.
``sam2_jax.export.onnx_runtime`` tracks a video with these graphs, numpy and ``onnxruntime`` alone.
"""

import json
import os
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp

from sam2_jax.export import names
from sam2_jax.export.names import ONNX_MANIFEST as MANIFEST
from sam2_jax.export.stablehlo import export_module, state_to_dict
from sam2_jax.modeling.sam2_base import ImageFeatures
from sam2_jax.modeling.sam2_model import SAM2Model
from sam2_jax.tracker import calls, engine
from sam2_jax.tracker.state import TrackerState, empty_state
from sam2_jax.tracker.step_config import StepConfig


def _state(module, num_cond: int, num_frames: int = 1) -> TrackerState:
    c, h = module.config, module.config.image_size // module.config.backbone_stride
    return empty_state(
        1,
        num_cond,
        c.num_maskmem,
        c.max_obj_ptrs_in_encoder,
        h * h,
        module.mem_dim,
        module.hidden_dim,
        (4 * h, 4 * h),
        num_frames,
    )


def onnx_functions(model: SAM2Model, num_cond: int, num_points: int) -> dict[str, tuple[Callable, list, list, list]]:
    """name -> (flat function, abstract inputs, input names, output names)."""
    module = export_module(model, ("cpu",))
    params = model.params
    fill = int(model.config.video.fill_hole_area)
    cfg = StepConfig(fill_hole_area=fill)  # every slot: ONNX has no lax.switch
    S = module.config.image_size
    f32 = jnp.float32
    image = jax.ShapeDtypeStruct((1, S, S, 3), f32)
    feats = jax.eval_shape(lambda x: calls.frame_features(module, params, x), image)
    feat_specs = [feats.vision_feat, feats.vision_pos, *feats.high_res]
    feat_names = [names.VISION_FEAT, names.VISION_POS] + [names.high_res(i) for i in range(len(feats.high_res))]
    state = state_to_dict(_state(module, num_cond))
    st_specs = [jax.ShapeDtypeStruct(x.shape, f32 if x.dtype == jnp.bfloat16 else x.dtype) for x in state.values()]
    dtypes = {k: x.dtype for k, x in state.items()}

    def encoder(img):
        f = calls.frame_features(module, params, img)
        return (f.vision_feat, f.vision_pos, *f.high_res)

    def prompt(vf, vp, *rest):
        *hr, coords, labels = rest
        fe = ImageFeatures(vf, vp, tuple(hr))
        out = engine.interact(module, params, _state(module, 1), fe, 0, False, coords, labels, None, None, True, cfg)
        mem = engine.encode_prompt_memory(module, params, fe, out.pred_masks, out.object_score_logits)
        return out.pred_masks, out.object_score_logits, out.obj_ptr, mem.astype(f32)

    def unpack(vf, vp, rest):
        """(features, frame_idx, reverse, state, the inputs after the state) of a graph on a tracked frame."""
        nh = len(feat_specs) - 2  # the high-res maps, then frame_idx, reverse and the state's leaves
        hr, (frame_idx, reverse), leaves = rest[:nh], rest[nh : nh + 2], rest[nh + 2 :]
        st = TrackerState(**{k: x.astype(dtypes[k]) for k, x in zip(state, leaves, strict=False)})
        return ImageFeatures(vf, vp, tuple(hr)), frame_idx, reverse, st, leaves[len(state) :]

    def prompt_tracked(vf, vp, *rest):
        fe, frame_idx, reverse, st, (coords, labels, prev) = unpack(vf, vp, rest)
        out = engine.interact(module, params, st, fe, frame_idx, reverse, coords, labels, None, prev, False, cfg)
        mem = engine.encode_prompt_memory(module, params, fe, out.pred_masks, out.object_score_logits)
        return out.pred_masks, out.object_score_logits, out.obj_ptr, mem.astype(f32)

    def track(vf, vp, *rest):
        fe, frame_idx, reverse, st, _ = unpack(vf, vp, rest)
        st, out = engine.track_features(module, params, st, fe, frame_idx, reverse, cfg)
        new = [x.astype(f32) if x.dtype == jnp.bfloat16 else x for x in state_to_dict(st).values()]
        return (*new, out.pred_masks, out.object_score_logits)

    pts = [jax.ShapeDtypeStruct((1, num_points, 2), f32), jax.ShapeDtypeStruct((1, num_points), jnp.int32)]
    scalars = [jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.bool_)]
    h4 = feat_specs[2].shape[1] if len(feat_specs) > 2 else 4 * feats.vision_feat.shape[1]
    prev = jax.ShapeDtypeStruct((1, 1, h4, h4), f32)
    prompt_out = ["pred_masks", "object_score_logits", "obj_ptr", "maskmem"]
    tracked_in = [*feat_names, "frame_idx", "reverse", *state]
    return {
        names.ONNX_IMAGE_ENCODER: (encoder, [image], ["image"], feat_names),
        names.ONNX_PROMPT: (prompt, [*feat_specs, *pts], [*feat_names, "point_coords", "point_labels"], prompt_out),
        names.ONNX_PROMPT_TRACKED: (
            prompt_tracked,
            [*feat_specs, *scalars, *st_specs, *pts, prev],
            [*tracked_in, "point_coords", "point_labels", "prev_mask_logits"],
            prompt_out,
        ),
        names.ONNX_TRACK_STEP: (
            track,
            [*feat_specs, *scalars, *st_specs],
            tracked_in,
            [*(names.new_state(k) for k in state), "pred_masks", "object_score_logits"],
        ),
    }


def export_onnx(
    model: SAM2Model,
    out_dir: str | os.PathLike,
    num_cond: int = 2,
    num_points: int = 1,
    only: list[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Write ``image_encoder.onnx``, ``prompt.onnx``, ``prompt_tracked.onnx``, ``track_step.onnx`` and
    ``onnx_manifest.json`` to ``out_dir``.

    Args:
      model: float32 compute (``jax2onnx`` exports float32 graphs).
      num_cond: conditioning slots of the tracking graphs' state (unused slots are masked out): the most prompted
        frames an object can have.
      num_points: clicks of the prompt graphs (a box is 2 points: corners labelled 2 and 3).
    Returns:
      The manifest: per graph its file, input and output names, shapes and dtypes.
    """
    from jax2onnx import to_onnx

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    try:
        for name, (fn, specs, in_names, out_names) in onnx_functions(model, num_cond, num_points).items():
            if only is None or name in only:
                entries[name] = convert(to_onnx, fn, specs, in_names, out_names, out / f"{name}.onnx", log)
    finally:
        # jax2onnx patches jax.numpy while it traces; jitted helpers traced meanwhile (interpolation, hole filling)
        # would keep its primitives in their caches and fail in the live model afterwards.
        jax.clear_caches()
    c = model.config.model
    manifest = {
        "model": model.config.get("name", None),
        "image_size": c.image_size,
        "num_cond": num_cond,
        "num_points": num_points,
        "mask_size": c.image_size // 4,
        "graphs": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def convert(to_onnx, fn, specs, in_names, out_names, path: pathlib.Path, log) -> dict:
    """One graph to ``path``; returns its manifest entry."""
    # Unchanged state fields pass straight through, so output names would clash with input names: outputs are
    # named only where none is an input (the manifest lists them in order either way).
    named = None if set(out_names) & set(in_names) or path.stem == names.ONNX_TRACK_STEP else out_names
    proto = to_onnx(fn, specs, model_name=path.stem, input_names=in_names, output_names=named)
    data = proto.SerializeToString()
    path.write_bytes(data)
    if log:
        log(f"{path.name}: {len(data) / 2**20:.1f} MB")
    inputs = [{"name": n, "shape": list(x.shape), "dtype": str(x.dtype)} for n, x in zip(in_names, specs, strict=True)]
    return {"file": path.name, "bytes": len(data), "outputs": out_names, "inputs": inputs}
