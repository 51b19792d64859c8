"""Export SAM 2's video tracker to ONNX with ``jax2onnx``: the StableHLO export's functions, as ONNX graphs.

No official counterpart (upstream #702, #186, #284: the official tracker does not convert). Each graph is the
function of ``sam2_jax.export.stablehlo`` of the same name (an engine function of ``sam2_jax/tracker/engine.py``),
with the params baked in as initializers (what ONNX runtimes expect) and its pytree arguments flattened (ONNX has no
pytrees): an input or output is named by its path, ``features.vision_feat``, ``state.cond_frame`` ...; the
manifest keeps the order. So ``sam2_jax.export.onnx_runtime`` drives them with the StableHLO runtime's video
predictor (``sam2_jax.export.video_driver``): several objects, reverse tracking, clicks and boxes, corrections.

- ``frame_features``: frames ``(b, S, S, 3)`` -> the tracker's image features;
- ``prompt_first_{one,many}``, ``prompt_first_refine_{one,many}``, ``prompt_tracked_{one,many}``: clicks and/or a box
  (``n`` points: one, or ``n >= 2``; the multimask rule depends on it) on an object's first prompted frame, with the
  frame's previous logits, or on a tracked frame (a correction, attending to the object's memory);
- ``encode_prompt_memory``: a prompted frame's memory;
- ``prompt_mask``: a binary mask (model size) as a prompt;
- ``track_step_<O>``: one frame for the ``O`` objects of the state (``engine.track_features``: the frame's features in,
  so the image encoder's weights are stored once, in ``frame_features``) -> the new state and the frame's outputs.

What differs from StableHLO: every dimension is concrete (jax2onnx 0.17 mis-shapes a concatenation along a symbolic
dimension). The conditioning slots are ``num_cond`` (the runtime masks the ones it does not use, as the StableHLO
runtime does); the ``_many`` prompt graphs take ``num_points`` clicks (the runtime pads fewer with ``ABSENT_LABEL``,
which the decoder masks out, as the live predictor pads clicks to its buckets); the tracking step is exported once
per object count of ``objects`` (``track_step_<O>``; the runtime pads a count between two with copies of an object,
as the live predictor pads objects to its buckets). The tracking step attends to every slot, masking the empty ones
(ONNX has no ``lax.switch``; the live predictor compiles the slot count away): the same numbers to float32 rounding.
bfloat16 values (the memories) cross the graph boundary as float32 and are cast inside, since ONNX Runtime's CPU
kernels barely take bfloat16 (a bfloat16 value is exact in float32).
"""

import json
import logging
import os
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp

from sam2_jax.export import names
from sam2_jax.export.names import ONNX_MANIFEST as MANIFEST
from sam2_jax.export.stablehlo import (
    ExportFn,
    concrete_args,
    describe,
    export_module,
    feats_from_dict,
    state_spec,
    state_to_dict,
    video_functions,
)
from sam2_jax.modeling.sam2_model import SAM2Model
from sam2_jax.tracker import engine
from sam2_jax.tracker.state import TrackerState
from sam2_jax.tracker.step_config import StepConfig


def onnx_functions(
    model: SAM2Model, num_cond: int = 2, num_points: int = 8, objects: tuple[int, ...] = (1, 2, 4)
) -> dict[str, ExportFn]:
    """name -> the function to convert (params first, as ``stablehlo.video_functions``), every dimension concrete
    (jax2onnx 0.17 mis-shapes concatenations along symbolic dimensions): ``num_cond`` conditioning slots,
    ``num_points`` click slots in the ``_many`` prompt graphs (fewer clicks are padded with ``ABSENT_LABEL``, which
    the decoder masks out), one tracking step per object count of ``objects``."""
    module = export_module(model, ("cpu",))
    params_spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), model.params)
    fill = int(model.config.video.fill_hole_area)
    fns = video_functions(module, params_spec, fill, chunk_size=1)
    dims = {"b": 1, "k": num_cond, "n": num_points}
    out = {}
    for name, f in fns.items():
        if name.startswith(("prompt_", "encode_")) or name == names.FRAME_FEATURES:
            out[name] = f._replace(args=concrete_args(f.args, dims, name)[0])
    feats = fns[names.ENCODE_PROMPT_MEMORY].args[1]
    cfg = StepConfig(fill_hole_area=fill)  # every slot: ONNX has no lax.switch

    def track(p, st, f, t, rev):
        st, step = engine.track_features(module, p, TrackerState(**st), feats_from_dict(f), t, rev, cfg)
        keys = ("pred_masks", "object_score_logits", "obj_ptr", "maskmem", "is_cond")
        return state_to_dict(st), {key: getattr(step, key) for key in keys}

    for num_objects in objects:
        out[names.track_step(num_objects)] = ExportFn(
            track,
            (params_spec, state_spec(module, num_objects, num_cond), feats, _scalar(jnp.int32), _scalar(jnp.bool_)),
            ("params", "state", "features", "frame_idx", "reverse"),
            f"one frame's features (frame_features) for the {num_objects} objects of the state (no new prompt): the "
            "new state and the frame's outputs",
            {"num_objects": num_objects},
        )
    return out


def _scalar(dtype) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((), dtype)


def _onnx_dtype(x: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
    """bfloat16 crosses the graph boundary as float32."""
    return jax.ShapeDtypeStruct(x.shape, jnp.float32) if x.dtype == jnp.bfloat16 else x


def path_name(path) -> str:
    """A pytree path as a dotted name: ``state.cond_frame``, ``features.high_res_0``, ``1.pred_masks`` (the second
    output's)."""
    return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def flat_function(f: ExportFn, params) -> tuple[Callable, list, list[str], list[dict], list[str]]:
    """``f`` with ``params`` baked in, on flat arrays: (function, abstract inputs, input names, input descriptions,
    output names)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tuple(f.args[1:]))
    # (argument index, keys inside it) -> "state.cond_frame"
    in_names = [path_name((f.arg_names[1 + p[0].idx], *p[1:])) for p, _ in leaves]
    specs = [_onnx_dtype(x) for _, x in leaves]
    dtypes = [x.dtype for _, x in leaves]
    out_shape = jax.eval_shape(lambda *a: f.fn(params, *a), *f.args[1:])
    out_names = [path_name(p) or "output" for p, _ in jax.tree_util.tree_flatten_with_path(out_shape)[0]]

    def flat(*xs):
        xs = [x.astype(d) for x, d in zip(xs, dtypes, strict=True)]
        outs = jax.tree_util.tree_leaves(f.fn(params, *jax.tree_util.tree_unflatten(treedef, xs)))
        return tuple(x.astype(jnp.float32) if x.dtype == jnp.bfloat16 else x for x in outs)

    inputs = [
        {"name": n, "shape": [int(d) for d in x.shape], "dtype": str(x.dtype)}
        for n, x in zip(in_names, specs, strict=True)
    ]
    return flat, specs, in_names, inputs, out_names


def convert(to_onnx, name: str, f: ExportFn, params, out: pathlib.Path, log) -> dict:
    """Graph ``name`` to ``out/<name>.onnx``; returns its manifest entry."""
    flat, specs, in_names, inputs, out_names = flat_function(f, params)
    # Unchanged state fields pass straight through the tracking step, so an output would carry an input's name:
    # outputs are named only where none is an input (the manifest lists them in order either way).
    named = None if set(out_names) & set(in_names) or name.startswith("track_step") else out_names
    proto = to_onnx(flat, specs, model_name=name, input_names=in_names, output_names=named)
    data = proto.SerializeToString()
    (out / f"{name}.onnx").write_bytes(data)
    if log:
        log(f"{name}.onnx: {len(data) / 2**20:.1f} MB")
    return {
        "file": f"{name}.onnx",
        "bytes": len(data),
        "doc": f.doc,
        "static": f.static,
        "arg_names": list(f.arg_names[1:]),
        "inputs": inputs,
        "outputs": out_names,
    }


def export_onnx(
    model: SAM2Model,
    out_dir: str | os.PathLike,
    num_cond: int = 2,
    num_points: int = 8,
    objects: tuple[int, ...] = (1, 2, 4),
    only: list[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Write one ``<name>.onnx`` per function of ``onnx_functions`` (or of ``only``) and ``onnx_manifest.json`` to
    ``out_dir``.

    Args:
      model: float32 compute (``jax2onnx`` exports float32 graphs).
      num_cond: conditioning slots of the graphs' state (the empty ones are masked out): the most prompted frames
        an object can have (the official default attends to all of them).
      num_points: the most clicks (a box counts 2) of one prompt on one frame.
      objects: the object counts with a tracking graph; the runtime pads a count between two with copies of an
        object (objects never interact in the model, so a copy computes what the object does).
    Returns:
      The manifest: the model's sizes, the state layout, and per graph its file, inputs and outputs in order.
    """
    # jax2onnx logs a traceback for each of its example plugins whose library (equinox, dm_pix) is not installed:
    # none of them converts our graphs.
    # onnx_ir warns of every scalar whose type it does not record.
    for name in ("jax2onnx", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from jax2onnx import to_onnx

    if jnp.dtype(model.module.dtype) != jnp.float32:
        raise ValueError(f"ONNX export needs a float32 model, got {jnp.dtype(model.module.dtype).name}")
    fns = onnx_functions(model, num_cond, num_points, tuple(objects))
    if only:
        unknown = sorted(set(only) - set(fns))
        if unknown:
            raise ValueError(f"no ONNX graph {unknown}; the graphs are {sorted(fns)}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    try:
        for name, f in fns.items():
            if only and name not in only:
                continue
            entries[name] = convert(to_onnx, name, f, model.params, out, log)
    finally:
        # jax2onnx patches jax.numpy while it traces; jitted helpers traced meanwhile (interpolation, hole filling)
        # would keep its primitives in their caches and fail in the live model afterwards.
        jax.clear_caches()
    module = export_module(model, ("cpu",))
    c = module.config
    manifest = {
        "format": names.ONNX_FORMAT,
        "model": model.config.get("name", None),
        "image_size": c.image_size,
        "mask_size": c.image_size // c.backbone_stride * 4,
        "use_mask_input_as_output_without_sam": c.use_mask_input_as_output_without_sam,
        "fill_hole_area": int(model.config.video.fill_hole_area),
        "num_cond": num_cond,
        "num_points": num_points,
        "objects": sorted(objects),
        "state_layout": describe(state_spec(module, *jax.export.symbolic_shape("o"), num_cond)),
        "graphs": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest
