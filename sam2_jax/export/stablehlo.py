"""Export SAM 2 as serialized StableHLO (``jax.export``): a folder that runs without the model code.

No official counterpart (the official predictors cannot be exported: upstream #702, #186). Every exported function
is an engine function (``sam2_jax/tracker/engine.py``) closed over the module, so the artifact computes exactly
what the live predictors compute; nothing here is a second copy of a per-frame computation.

The folder (``export_model``):
- ``<name>.jax_export``: one serialized ``jax.export.Exported`` per function of ``image_functions`` and
  ``video_functions``, lowered for every platform asked for (``cpu``, ``cuda``, ``tpu`` in one artifact:
  ``jax.export`` puts the per-platform lowerings in one module), and ``<name>.mlirbc``: the same function's bare
  StableHLO (MLIR bytecode), for a PJRT client in C++/Rust that does not read ``jax.export``'s flatbuffer.
- ``params.npz``: the params once, float32, keys ``a/b/c`` of the nested dict (numpy reads them, no Flax). The
  functions take the params as their first argument rather than baking them in: five functions sharing the tiny
  model's 39 M parameters would otherwise store 156 MB five times (the large model: 900 MB each), and a server keeps
  one copy on the device for all of them.
- ``manifest.json``: the model config, compute dtype, platforms, versions, the ``TrackerState`` layout, and per
  function its file, inputs and outputs (names, shapes with symbolic dimensions, dtypes) and static choices.

Symbolic dimensions: the image batch ``b`` of the encoders, the number of prompt points ``n``, and the tracker
state's object count ``o`` and conditioning-slot count ``k`` (one artifact serves every object count, where the live
predictor compiles one program per object bucket). The prompt step's multimask rule depends on the point count, so
it is exported twice: one point, and ``n >= 2`` points. The propagation chunk's length is static (``lax.scan``):
one chunk of ``chunk_size`` frames and a single-frame step, as the live predictor runs them.

Attention: a CPU-only export keeps the model's ``attention_impl`` (``"auto"`` resolves to the CPU path, the live
predictor's numbers); an export for several platforms names ``"xla"`` (``backend.py``: the same semantics, fused on
GPU/TPU), since ``"auto"`` would resolve with the CPU that traces.
"""

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sam2_jax.export import names
from sam2_jax.export.names import FORMAT, FORMAT_VERSION, MANIFEST, PARAMS, PLATFORMS, SUFFIX
from sam2_jax.modeling.sam2_base import ImageFeatures, SAM2Base
from sam2_jax.modeling.sam2_model import SAM2Model, make_module
from sam2_jax.tracker import calls, compiled, engine
from sam2_jax.tracker.state import TrackerState, empty_state
from sam2_jax.tracker.step_config import StepConfig


class ExportFn(NamedTuple):
    """One function to export: the callable and its abstract arguments (``jax.ShapeDtypeStruct`` pytrees)."""

    fn: Callable
    args: tuple  # abstract arguments, params first
    arg_names: tuple[str, ...]
    doc: str
    static: dict  # static choices baked in (multimask, is_init_cond_frame, ...)


# --- pytrees the artifact uses: plain dicts (``jax.export`` serializes dicts, not Flax dataclasses) -------------
def feats_to_dict(feats: ImageFeatures) -> dict[str, jax.Array]:
    """``ImageFeatures`` -> ``{"vision_feat", "vision_pos", "high_res_0", ...}``."""
    return {names.VISION_FEAT: feats.vision_feat, names.VISION_POS: feats.vision_pos} | {
        names.high_res(i): x for i, x in enumerate(feats.high_res)
    }


def feats_from_dict(d: dict[str, jax.Array]) -> ImageFeatures:
    n = names.num_high_res(d)
    return ImageFeatures(d[names.VISION_FEAT], d[names.VISION_POS], tuple(d[names.high_res(i)] for i in range(n)))


def _embed_dict(e) -> dict[str, jax.Array]:
    """The image predictor's embeddings (``calls.image_embeddings``) -> ``{"image_embed", "high_res_0", ...}``."""
    return {names.IMAGE_EMBED: e.image_embed} | {names.high_res(i): x for i, x in enumerate(e.high_res_feats)}


def state_to_dict(state: TrackerState) -> dict[str, jax.Array]:
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def _outputs(x: NamedTuple) -> dict[str, jax.Array]:
    return {k: v for k, v in x._asdict().items()}


# --- the functions ----------------------------------------------------------------------------------------------
def _abstract(x) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype)


def state_spec(module: SAM2Base, num_objects, num_cond) -> dict[str, jax.ShapeDtypeStruct]:
    """The abstract ``TrackerState`` (as a dict) with ``num_objects`` / ``num_cond`` (ints or symbolic dims)."""
    c, h = module.config, module.config.image_size // module.config.backbone_stride
    st = jax.eval_shape(
        lambda: empty_state(
            1, 1, c.num_maskmem, c.max_obj_ptrs_in_encoder, h * h, module.mem_dim, module.hidden_dim, (4 * h, 4 * h), 1
        )
    )
    out = {}
    for name, x in state_to_dict(st).items():
        shape = list(x.shape)
        if shape:
            shape[0] = num_objects
        if name.startswith("cond_"):
            shape[1] = num_cond
        out[name] = jax.ShapeDtypeStruct(tuple(shape), x.dtype)
    return out


def _dummy_state(module: SAM2Base) -> TrackerState:
    """The one-object state an initial conditioning frame's prompt step ignores (it has no memory yet)."""
    c, h = module.config, module.config.image_size // module.config.backbone_stride
    return empty_state(
        1, 1, c.num_maskmem, c.max_obj_ptrs_in_encoder, h * h, module.mem_dim, module.hidden_dim, (4 * h, 4 * h), 1
    )


def image_functions(module: SAM2Base, params_spec) -> dict[str, ExportFn]:
    """The image predictor's functions: the encoder (symbolic batch) and the prompt decoder (symbolic points)."""
    S = module.config.image_size
    (b,) = jax.export.symbolic_shape("b")
    (n,) = jax.export.symbolic_shape("n")
    images = jax.ShapeDtypeStruct((b, S, S, 3), jnp.float32)
    emb_spec = jax.eval_shape(lambda p, x: calls.image_embeddings(module, p, x), params_spec, _one(images))

    def encoder(params, images):
        e = calls.image_embeddings(module, params, images)
        return _embed_dict(e)

    embed = _embed_dict(emb_spec)
    pts = (jax.ShapeDtypeStruct((1, n, 2), jnp.float32), jax.ShapeDtypeStruct((1, n), jnp.int32))
    out = {
        names.IMAGE_ENCODER: ExportFn(
            encoder,
            (params_spec, images),
            ("params", "images"),
            "images (b, S, S, 3) normalised -> the image predictor's embeddings of each image",
            {},
        )
    }
    for multimask in (True, False):

        def decode(params, embed, coords, labels, multimask=multimask):
            hr = [embed[names.high_res(i)] for i in range(names.num_high_res(embed))]
            o = calls.decode_prompts(module, params, embed[names.IMAGE_EMBED], hr, coords, labels, None, multimask)
            return {"low_res_masks": o.low_res_masks, "iou_predictions": o.iou_predictions}

        out[names.image_decode(multimask)] = ExportFn(
            decode,
            (params_spec, embed, *pts),
            ("params", "embeddings", "point_coords", "point_labels"),
            "one image's embeddings (batch 1) and clicks/box corners in model-input pixels -> low-res mask logits "
            "and IoU predictions (the image predictor's decoder, before post-processing)",
            {"multimask_output": multimask},
        )
    return out


def _one(spec: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((1, *spec.shape[1:]), spec.dtype)


def video_functions(module: SAM2Base, params_spec, fill_hole_area: int, chunk_size: int) -> dict[str, ExportFn]:
    """The video tracker's functions: frame features, the prompt steps, a prompted frame's memory, propagation."""
    S = module.config.image_size
    (b,) = jax.export.symbolic_shape("b")
    images = jax.ShapeDtypeStruct((b, S, S, 3), jnp.float32)
    feats = jax.eval_shape(lambda p, x: feats_to_dict(calls.frame_features(module, p, x)), params_spec, _one(images))
    b_ = jax.ShapeDtypeStruct((), jnp.bool_)
    h4 = feats[names.high_res(0)].shape[1] if names.high_res(0) in feats else 4 * feats[names.VISION_FEAT].shape[1]
    out = {
        names.FRAME_FEATURES: ExportFn(
            lambda p, x: feats_to_dict(calls.frame_features(module, p, x)),
            (params_spec, images),
            ("params", "images"),
            "frames (b, S, S, 3) normalised -> the tracker's image features",
            {},
        ),
        names.ENCODE_PROMPT_MEMORY: ExportFn(
            lambda p, f, m, s: engine.encode_prompt_memory(module, p, feats_from_dict(f), m, s),
            (
                params_spec,
                feats,
                jax.ShapeDtypeStruct((1, 1, h4, h4), jnp.float32),
                jax.ShapeDtypeStruct((1, 1), jnp.float32),
            ),
            ("params", "features", "pred_masks", "object_score_logits"),
            "a prompted frame's memory (1, hw, mem_dim) bfloat16 from its low-res logits",
            {},
        ),
        names.PROMPT_MASK: ExportFn(
            lambda p, f, m: _outputs(
                engine.interact(
                    module,
                    p,
                    _dummy_state(module),
                    feats_from_dict(f),
                    0,
                    False,
                    None,
                    None,
                    m,
                    None,
                    True,
                    StepConfig(fill_hole_area=fill_hole_area),
                )
            ),
            (params_spec, feats, jax.ShapeDtypeStruct((1, S, S, 1), jnp.float32)),
            ("params", "features", "mask"),
            "a binary mask (1, S, S, 1) as an object's prompt",
            {"is_init_cond_frame": True},
        ),
    }
    out |= prompt_functions(module, params_spec, feats, fill_hole_area)
    (o, k) = jax.export.symbolic_shape("o, k")
    state = state_spec(module, o, k)
    for T in sorted({1, chunk_size}):

        def propagate(p, st, imgs, idxs, rev):
            cfg = StepConfig(fill_hole_area=fill_hole_area, compact=True)  # the predictor's propagation step
            st, step = compiled.propagate_chunk(module, p, TrackerState(**st), imgs, idxs, rev, cfg)
            return state_to_dict(st), _outputs(step)

        frames = (jax.ShapeDtypeStruct((T, S, S, 3), jnp.float32), jax.ShapeDtypeStruct((T,), jnp.int32))
        out[names.propagate(T)] = ExportFn(
            propagate,
            (params_spec, state, *frames, b_),
            ("params", "state", "images", "frame_idxs", "reverse"),
            f"track every object of the state through {T} frame(s) (no new prompt): new state and per-frame outputs",
            {"num_frames": T},
        )
    return out


def prompt_functions(module: SAM2Base, params_spec, feats, fill_hole_area: int) -> dict[str, ExportFn]:
    """``interact`` for clicks / a box: on an initial conditioning frame (with or without the previous logits of a
    refinement) and on a tracked frame (a correction, with the object's memory). Names
    ``prompt_{first,first_refine,tracked}_{one,many}``: one point, or ``n >= 2`` (the multimask rule is static)."""
    h4 = feats[names.high_res(0)].shape[1] if names.high_res(0) in feats else 4 * feats[names.VISION_FEAT].shape[1]
    prev = jax.ShapeDtypeStruct((1, 1, h4, h4), jnp.float32)
    i32, b_ = jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.bool_)
    cfg = StepConfig(fill_hole_area=fill_hole_area)  # every slot: the slot count is symbolic here
    out = {}
    for count in ("one", "many"):
        if count == "one":
            (k,) = jax.export.symbolic_shape("k")
            n = 1
        else:
            k, n = jax.export.symbolic_shape("k, n", constraints=("n >= 2",))
        pts = (jax.ShapeDtypeStruct((1, n, 2), jnp.float32), jax.ShapeDtypeStruct((1, n), jnp.int32))
        arg_names = ("params", "features", "point_coords", "point_labels")

        def first(p, f, c, lab, pr=None):
            st = _dummy_state(module)
            res = engine.interact(module, p, st, feats_from_dict(f), 0, False, c, lab, None, pr, True, cfg)
            return _outputs(res)

        def tracked(p, st, f, t, rev, c, lab, pr):
            st, f = TrackerState(**st), feats_from_dict(f)
            return _outputs(engine.interact(module, p, st, f, t, rev, c, lab, None, pr, False, cfg))

        doc = "clicks/box corners (1, n, 2) in model-input pixels, labels (1, n)"
        out[names.prompt_first(count)] = ExportFn(
            first,
            (params_spec, feats, *pts),
            arg_names,
            f"{doc} on an object's first prompted frame",
            {"is_init_cond_frame": True, "prev_mask_logits": False},
        )
        out[names.prompt_first(count, refine=True)] = ExportFn(
            first,
            (params_spec, feats, *pts, prev),
            (*arg_names, "prev_mask_logits"),
            f"{doc} with the frame's previous low-res logits, before tracking",
            {"is_init_cond_frame": True, "prev_mask_logits": True},
        )
        out[names.prompt_tracked(count)] = ExportFn(
            tracked,
            (params_spec, state_spec(module, 1, k), feats, i32, b_, *pts, prev),
            ("params", "state", "features", "frame_idx", "reverse", "point_coords", "point_labels", "prev_mask_logits"),
            f"{doc} on a tracked frame (a correction), attending to the object's memory (state with o = 1)",
            {"is_init_cond_frame": False, "prev_mask_logits": True},
        )
    return out


# --- the folder -------------------------------------------------------------------------------------------------
def export_module(model: SAM2Model, platforms: Sequence[str]) -> SAM2Base:
    """The module to export: the video predictor's (binarized click masks for memory, as
    ``build_sam2_video_predictor``), with ``attention_impl="xla"`` when exporting for more than the CPU."""
    platforms = check_platforms(platforms)
    cfg = ml_collections.ConfigDict(model.config.model)
    cfg.binarize_mask_from_pts_for_mem_enc = model.config.video.binarize_mask_from_pts_for_mem_enc
    if cfg.attention_impl in ("auto", "fused", "chunked"):
        cfg.attention_impl = "xla"
    return make_module(cfg, model.module.dtype)


def check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    """The platforms as a tuple; ``ValueError`` naming an unknown one."""
    platforms = tuple(platforms)
    bad = [p for p in platforms if p not in PLATFORMS]
    if bad or not platforms:
        raise ValueError(f"unknown platform(s) {bad or platforms}: choose among {list(PLATFORMS)}")
    return platforms


def flatten_params(params: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested params dict -> ``{"a/b/c": array}`` (the layout of ``params.npz``)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out |= flatten_params(v, f"{prefix}{k}/")
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def describe(tree) -> list[dict]:
    """Flattened ``{name, shape, dtype}`` of an abstract pytree (symbolic dimensions as their names)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [
        {"name": jax.tree_util.keystr(path), "shape": [str(d) for d in x.shape], "dtype": str(x.dtype)}
        for path, x in leaves
    ]


def export_model(
    model: SAM2Model,
    out_dir: str | os.PathLike,
    platforms: Sequence[str] = PLATFORMS,
    chunk_size: int = 4,
    fill_hole_area: int | None = None,
    only: Sequence[str] | None = None,
    source: dict | None = None,
    log: Callable[[str], None] | None = None,
    static_dims: dict[str, int] | None = None,
) -> dict:
    """Export ``model`` to ``out_dir`` (created; existing export files are replaced).

    Args:
      model: from ``build_sam2`` (its compute dtype is the artifact's: float32 or bfloat16).
      platforms: any of ``cpu``, ``cuda``, ``tpu``, lowered into each function.
      chunk_size: frames of the exported propagation chunk (a single-frame step is exported too).
      fill_hole_area: the video predictor's hole filling (default: the config's ``video.fill_hole_area``).
      only: names of the functions to export (default all of them).
      source: where the weights came from (checkpoint, its SHA-256), kept in the manifest.
      log: called with one line per exported function.
      static_dims: sizes for the symbolic dimensions (``{"b": 1, "n": 1, "o": 2, "k": 2}``): each function is
        also written as ``<name>.static.mlirbc``, the same function lowered with these sizes, for a compiler that
        takes no symbolic shapes (IREE: ``sam2_jax/export/iree_runtime.py``). The ``*_many`` prompt functions
        expect ``n >= 2``.
    Returns:
      The manifest (also written as ``manifest.json``).
    """
    platforms = check_platforms(platforms)
    module = export_module(model, platforms)
    fill = int(model.config.video.fill_hole_area if fill_hole_area is None else fill_hole_area)
    params_spec = jax.tree.map(_abstract, model.params)
    fns = image_functions(module, params_spec) | video_functions(module, params_spec, fill, chunk_size)
    if only is not None:
        unknown = sorted(set(only) - set(fns))
        if unknown:
            raise ValueError(f"unknown function(s) {unknown}: choose among {sorted(fns)}")
        fns = {k: v for k, v in fns.items() if k in only}
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, f in fns.items():
        t0 = time.perf_counter()
        exp = jax.export.export(jax.jit(f.fn), platforms=platforms)(*f.args)
        data = exp.serialize()
        (out / f"{name}{SUFFIX}").write_bytes(data)
        # the bare StableHLO (MLIR bytecode) for a PJRT client that does not read jax.export's flatbuffer
        (out / f"{name}{names.MLIR_SUFFIX}").write_bytes(exp.mlir_module_serialized)
        entries[name] = {
            "file": f"{name}{SUFFIX}",
            "stablehlo": f"{name}{names.MLIR_SUFFIX}",
            "bytes": len(data),
            "doc": f.doc,
            "static": f.static,
            "arguments": list(f.arg_names),
            "inputs": {n: describe(a) for n, a in zip(f.arg_names[1:], f.args[1:], strict=True)},
            "outputs": describe(exp.out_tree.unflatten(exp.out_avals)),
            # the flat arguments (params in ``params_order``, then the inputs' leaves) the module keeps: an unused
            # param is not an argument of the StableHLO function
            "kept_arguments": sorted(exp.module_kept_var_idx),
        }
        if static_dims is not None:
            entries[name]["stablehlo_static"] = _export_static(f, name, platforms, static_dims, out)
        if log:
            log(f"{name}: {len(data) / 2**20:.1f} MB, {time.perf_counter() - t0:.1f} s")
    flat = flatten_params(jax.device_get(model.params))
    np.savez(out / PARAMS, **flat)
    manifest = build_manifest(model, module, platforms, fill, chunk_size, flat, entries) | {"source": source}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def concrete_args(args, dims: dict[str, int], what: str) -> tuple[tuple, dict[str, int]]:
    """Abstract arguments with ``dims``' sizes for their symbolic dimensions: (arguments, the sizes used)."""
    used = {}

    def concrete(x: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
        shape = []
        for d in x.shape:
            if not isinstance(d, int):
                dim = str(d)
                if dim not in dims:
                    raise ValueError(f"{what}: no size for its symbolic dimension {dim!r} (static_dims {dims})")
                d = used[dim] = int(dims[dim])
            shape.append(d)
        return jax.ShapeDtypeStruct(tuple(shape), x.dtype)

    return jax.tree.map(concrete, args), used


def _export_static(f: ExportFn, name: str, platforms, dims: dict[str, int], out: pathlib.Path) -> dict:
    """``f`` lowered with concrete sizes for its symbolic dimensions: ``<name>.static.mlirbc`` and its entry."""
    args, used = concrete_args(f.args, dims, name)
    exp = jax.export.export(jax.jit(f.fn), platforms=platforms)(*args)
    file = f"{name}{names.STATIC_MLIR_SUFFIX}"
    (out / file).write_bytes(exp.mlir_module_serialized)
    return {"file": file, "dims": used, "kept_arguments": sorted(exp.module_kept_var_idx)}


def build_manifest(model: SAM2Model, module: SAM2Base, platforms, fill: int, chunk_size: int, flat, entries) -> dict:
    """What a runtime needs to call the functions (``export_model``'s ``manifest.json``)."""
    import importlib.metadata

    import jaxlib

    c = module.config
    h = c.image_size // c.backbone_stride
    try:
        version = importlib.metadata.version("sam2-jax")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.get("name", None),
        "dtype": jnp.dtype(module.dtype).name,
        "params_dtype": sorted({str(v.dtype) for v in flat.values()}),
        "platforms": list(platforms),
        "attention_impl": c.attention_impl,
        "versions": {"sam2_jax": version, "jax": jax.__version__, "jaxlib": jaxlib.__version__},
        "image_size": c.image_size,
        "feature_size": h,
        "mask_size": 4 * h,
        "mem_dim": module.mem_dim,
        "hidden_dim": module.hidden_dim,
        "num_maskmem": c.num_maskmem,
        "max_obj_ptrs_in_encoder": c.max_obj_ptrs_in_encoder,
        "use_mask_input_as_output_without_sam": c.use_mask_input_as_output_without_sam,
        "fill_hole_area": fill,
        "chunk_size": chunk_size,
        "params": {
            "file": PARAMS,
            "count": int(sum(v.size for v in flat.values())),
            "bytes": int(sum(v.nbytes for v in flat.values())),
        },
        # the order of the params' leaves in every function's flat arguments (jax flattens dicts by sorted key)
        "params_order": [
            "/".join(str(k.key) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(model.params)[0]
        ],
        "state_layout": describe(state_spec(module, *jax.export.symbolic_shape("o, k"))),
        "functions": entries,
        "config": json.loads(model.config.to_json_best_effort()),
    }
