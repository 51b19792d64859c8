"""``sam2-jax export``: the model as portable StableHLO with its params, or ``--check`` an export."""

import sys
from pathlib import Path

import numpy as np

from sam2_jax.cli.common import CliError, add_model_args, add_output_args, load_model, wrap

EPILOGS_EXPORT = (
    "examples:\n  sam2-jax export --model sam2.1_hiera_t --out export/tiny            # cpu,cuda,tpu, float32\n"
    "  sam2-jax export --random-weights --image-size 256 --platforms cpu --dtype bfloat16 --out /tmp/e\n"
    "  sam2-jax export --check export/tiny --model sam2.1_hiera_t   # load it without the model code\n"
    "run it with sam2_jax.export.runtime (ExportedImagePredictor, ExportedVideoPredictor); see README, Deploy"
)


def cmd_export(args) -> int:
    """``export``: the model as StableHLO + params + manifest (``sam2_jax.export.stablehlo``), or ``--check`` an
    export."""
    from sam2_jax.export.names import MANIFEST
    from sam2_jax.export.stablehlo import check_platforms, export_model

    try:
        platforms = check_platforms(p.strip() for p in args.platforms.split(",") if p.strip())
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.check:
        return check_export(args.check, args.model)
    static_dims = parse_dims(args.static_dims) if args.static_dims else None
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise CliError(f"--out {str(out)!r} is a non-empty folder that is not an export: choose an empty one")
    args.model = args.model or "sam2.1_hiera_t"
    model, meta = load_model(args)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    try:
        m = export_model(
            model, out, platforms, args.chunk_size, only=args.only, source=meta, log=log, static_dims=static_dims
        )
    except ValueError as e:
        raise CliError(str(e)) from None
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"{out}: {len(m['functions'])} functions for {','.join(platforms)}, {m['dtype']}, {size:.0f} MB")
    return 0


def parse_dims(text: str) -> dict[str, int]:
    """``b=1,n=1,o=2,k=2`` -> ``{"b": 1, ...}``; CliError for anything else."""
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in ("b", "n", "o", "k") or not value.strip().isdigit() or int(value) < 1:
            raise CliError(f"--static-dims takes b=N,n=N,o=N,k=N (positive sizes), got {text!r}")
        out[name.strip()] = int(value)
    return out


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
        help="export the model as portable StableHLO (jax.export) with its params",
        description=wrap(
            "Write the image encoder, the prompt steps, a prompted frame's memory and the propagation step and "
            "chunk as serialized StableHLO (jax.export), the params (params.npz) and manifest.json to --out. "
            "sam2_jax.export.runtime runs them with jax and numpy only."
        ),
        epilog=EPILOGS_EXPORT,
        formatter_class=fmt,
    )
    sp.add_argument("--platforms", default="cpu,cuda,tpu", help="comma-separated: cpu, cuda, tpu (default %(default)s)")
    sp.add_argument("--chunk-size", type=int, default=4, help="frames of the propagation chunk (default %(default)s)")
    sp.add_argument("--only", action="append", metavar="NAME", help="export only this function (repeatable)")
    sp.add_argument("--check", metavar="FOLDER", help="load an export with the runtime instead of writing one")
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
