"""``sam2-jax export``: the model as portable StableHLO with its params and/or as ONNX graphs, or ``--check`` an
export."""

import sys
from pathlib import Path

import numpy as np

from sam2_jax.cli.common import CliError, add_model_args, add_output_args, load_model, wrap

EPILOGS_EXPORT = (
    "examples:\n  sam2-jax export --model sam2.1_hiera_t --out export/tiny            # cpu,cuda,tpu, float32\n"
    "  sam2-jax export --random-weights --image-size 256 --platforms cpu --dtype bfloat16 --out /tmp/e\n"
    "  sam2-jax export --format onnx --random-weights --image-size 128 --out /tmp/o   # pip install 'sam2-jax[onnx]'\n"
    "  sam2-jax export --check export/tiny --model sam2.1_hiera_t   # load it without the model code\n"
    "  sam2-jax export --check /tmp/o        # ONNX: track examples/bedroom, two objects, forward and reverse\n"
    "run StableHLO with sam2_jax.export.runtime (ExportedImagePredictor, ExportedVideoPredictor), ONNX with\n"
    "sam2_jax.export.onnx_runtime (OnnxVideoPredictor); see README, Deploy"
)
FORMATS = ("stablehlo", "onnx", "both")
SAMPLE = "examples/bedroom"


def cmd_export(args) -> int:
    """``export``: the model as StableHLO + params + manifest (``sam2_jax.export.stablehlo``), or ``--check`` an
    export."""
    from sam2_jax.export.names import MANIFEST, ONNX_MANIFEST
    from sam2_jax.export.onnx_export import export_onnx
    from sam2_jax.export.stablehlo import check_platforms, export_model

    try:
        platforms = check_platforms(p.strip() for p in args.platforms.split(",") if p.strip())
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.check:
        return check_folder(args.check, args.model, args.check_frames)
    static_dims = parse_dims(args.static_dims) if args.static_dims else None
    objects = parse_counts(args.objects)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not ((out / MANIFEST).is_file() or (out / ONNX_MANIFEST).is_file()):
        raise CliError(f"--out {str(out)!r} is a non-empty folder that is not an export: choose an empty one")
    onnx = args.format in ("onnx", "both")
    if onnx:
        require_onnx_tools(("jax2onnx", "onnx", "onnxruntime"))
        if args.dtype not in (None, "float32"):
            raise CliError(f"--format onnx exports float32 graphs, not --dtype {args.dtype}")
    args.model = args.model or "sam2.1_hiera_t"
    model, meta = load_model(args)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    try:
        if args.format in ("stablehlo", "both"):
            m = export_model(
                model, out, platforms, args.chunk_size, only=args.only, source=meta, log=log, static_dims=static_dims
            )
            size = sum(f.stat().st_size for f in out.iterdir() if f.suffix != ".onnx") / 2**20
            print(f"{out}: {len(m['functions'])} functions for {','.join(platforms)}, {m['dtype']}, {size:.0f} MB")
        if onnx:
            m = export_onnx(model, out, args.cond_slots, args.num_points, objects, only=args.only, log=log)
            size = sum(g["bytes"] for g in m["graphs"].values()) / 2**20
            print(f"{out}: {len(m['graphs'])} ONNX graphs, float32, {size:.0f} MB")
    except ValueError as e:
        raise CliError(str(e)) from None
    return 0


def require_onnx_tools(modules) -> None:
    """CliError naming the install commands when an ONNX tool is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        how = "pip install 'sam2-jax[onnx]'"
        if "jax2onnx" in missing:
            how += " && pip install --no-deps jax2onnx==0.17.1"
        raise CliError(f"{', '.join(missing)} not installed: {how}")


def parse_counts(text: str) -> tuple[int, ...]:
    """``1,2,4`` -> (1, 2, 4); CliError for anything else."""
    try:
        counts = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        counts = ()
    if not counts or counts[0] < 1:
        raise CliError(f"--objects takes positive object counts like 1,2,4, got {text!r}")
    return counts


def parse_dims(text: str) -> dict[str, int]:
    """``b=1,n=1,o=2,k=2`` -> ``{"b": 1, ...}``; CliError for anything else."""
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in ("b", "n", "o", "k") or not value.strip().isdigit() or int(value) < 1:
            raise CliError(f"--static-dims takes b=N,n=N,o=N,k=N (positive sizes), got {text!r}")
        out[name.strip()] = int(value)
    return out


def check_folder(folder: str, model: str | None, frames: str) -> int:
    """``--check``: the StableHLO export and/or the ONNX graphs a folder holds."""
    from sam2_jax.export.names import MANIFEST, ONNX_MANIFEST

    path = Path(folder)
    has_onnx = (path / ONNX_MANIFEST).is_file()
    if (path / MANIFEST).is_file() or not has_onnx:
        check_export(folder, model)
    if has_onnx:
        check_onnx(folder, model, frames)
    return 0


def check_onnx(folder: str, model: str | None, frames_dir: str) -> None:
    """Track ``frames_dir`` (the shipped sample) with the ONNX graphs and onnxruntime: two objects (a click on the
    first frame, a box on the second), forward from the first frame, then reverse from the last; prints each
    object's mask area per frame."""
    import time

    from PIL import Image

    from sam2_jax.export.onnx_runtime import OnnxModel, OnnxVideoPredictor
    from sam2_jax.video.video_io import preprocess_frame

    require_onnx_tools(("onnxruntime",))
    files = sorted(p for p in Path(frames_dir).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < 2:
        raise CliError(f"--check-frames {frames_dir!r} holds fewer than 2 frames (.jpg/.png)")
    try:
        pred = OnnxVideoPredictor(OnnxModel(folder, model=model))
    except ValueError as e:
        raise CliError(str(e)) from None
    raw = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    H, W = raw[0].shape[:2]
    images = np.stack([preprocess_frame(f, pred.image_size) for f in raw])
    start = time.perf_counter()
    s = pred.init_state(images, (H, W))
    pred.add_new_points_or_box(s, 0, 1, points=[[0.45 * W, 0.6 * H]], labels=[1])
    pred.add_new_points_or_box(s, 1, 2, box=[0.1 * W, 0.2 * H, 0.4 * W, 0.8 * H])
    for direction, kwargs in (("forward", {}), ("reverse", {"start_frame_idx": len(raw) - 1, "reverse": True})):
        areas = {}
        for t, obj_ids, masks in pred.propagate_in_video(s, **kwargs):
            if masks.shape != (len(obj_ids), 1, H, W) or not np.isfinite(masks).all():
                raise CliError(f"ONNX check: frame {t} gave masks {masks.shape} with non-finite values")
            areas[t] = [int((m > 0).sum()) for m in masks]
        print(f"{direction}: mask areas (objects {obj_ids}) per frame {dict(sorted(areas.items()))}")
    print(
        f"{folder}: ONNX graphs of {pred.model.manifest['model']} at {pred.image_size} px tracked {len(raw)} frames "
        f"of {frames_dir}, 2 objects, forward and reverse, in {time.perf_counter() - start:.1f} s"
    )


def check_export(folder: str, model: str | None) -> int:
    """Load an export with the runtime (no model code) and encode a blank image: prints what it holds."""
    from sam2_jax.export import names
    from sam2_jax.export.runtime import ExportedModel

    try:
        exp = ExportedModel(folder, model=model)
    except ValueError as e:
        raise CliError(str(e)) from None
    m = exp.manifest
    if names.FRAME_FEATURES in m["functions"]:
        S = exp.image_size
        exp(names.FRAME_FEATURES, np.zeros((1, S, S, 3), np.float32))
    print(
        f"{folder}: {m['model']} at {m['image_size']} px, {m['dtype']}, platforms {m['platforms']}, "
        f"functions {sorted(m['functions'])}"
    )
    return 0


def add_parsers(sub, fmt) -> None:
    """``export``."""
    sp = sub.add_parser(
        "export",
        help="export the model as portable StableHLO (jax.export) with its params, or as ONNX graphs",
        description=wrap(
            "Write the image encoder, the prompt steps, a prompted frame's memory and the propagation step and "
            "chunk as serialized StableHLO (jax.export), the params (params.npz) and manifest.json to --out. "
            "sam2_jax.export.runtime runs them with jax and numpy only. --format onnx writes the video tracker's "
            "graphs (params baked in) and onnx_manifest.json instead; sam2_jax.export.onnx_runtime runs them with "
            "onnxruntime and numpy only."
        ),
        epilog=EPILOGS_EXPORT,
        formatter_class=fmt,
    )
    sp.add_argument("--format", choices=FORMATS, default="stablehlo", help="what to write (default %(default)s)")
    sp.add_argument("--platforms", default="cpu,cuda,tpu", help="comma-separated: cpu, cuda, tpu (default %(default)s)")
    sp.add_argument("--chunk-size", type=int, default=4, help="frames of the propagation chunk (default %(default)s)")
    sp.add_argument("--only", action="append", metavar="NAME", help="export only this function (repeatable)")
    sp.add_argument(
        "--check",
        metavar="FOLDER",
        help="load an export with its runtime instead of writing one; ONNX graphs track --check-frames",
    )
    sp.add_argument(
        "--check-frames",
        default=SAMPLE,
        metavar="DIR",
        help="frames the ONNX check tracks (default %(default)s, the shipped sample)",
    )
    onnx = sp.add_argument_group("ONNX (--format onnx|both)")
    onnx.add_argument("--cond-slots", type=int, default=2, help="most prompted frames per object (default %(default)s)")
    onnx.add_argument(
        "--num-points", type=int, default=8, help="most clicks per prompt, a box counting 2 (default %(default)s)"
    )
    onnx.add_argument(
        "--objects",
        default="1,2,4",
        help="object counts with a tracking graph; a count between two is padded (default %(default)s)",
    )
    sp.add_argument(
        "--static-dims",
        metavar="b=1,n=1,o=2,k=2",
        help=(
            "also write each function with these sizes for its symbolic dimensions (<name>.static.mlirbc), for a "
            "compiler that takes no symbolic shapes, e.g. IREE (sam2_jax/export/iree_runtime.py)"
        ),
    )
    add_model_args(sp)
    sp.set_defaults(model=None)  # --check compares with --model only when given
    add_output_args(sp, "export")
    sp.set_defaults(func=cmd_export)
