"""``sam2-jax download`` and ``sam2-jax convert``: official checkpoints into the cache, and to orbax params."""

from pathlib import Path

from sam2_jax.cli.common import CliError

EPILOGS_DOWNLOAD = (
    "examples:\n  sam2-jax download --model sam2.1_hiera_t --model sam2.1_hiera_l --convert\n"
    "  sam2-jax download --model facebook/sam2.1-hiera-large   # via huggingface_hub (HF_HUB_OFFLINE, HF_TOKEN)"
)
EPILOGS_CONVERT = "example:\n  sam2-jax convert ~/.cache/sam2_jax/sam2.1_hiera_tiny.pt"


def download_checkpoint(name: str, timeout: float, quiet: bool) -> Path:
    """``checkpoints.get_checkpoint`` with a progress bar and a line saying what happened."""
    from sam2_jax.checkpoints import CheckpointUnavailable, get_checkpoint, official_checkpoint_path

    path = official_checkpoint_path(name)
    if path.is_file():
        print(f"{name}: already in the cache: {path}")
        return path
    try:
        path = get_checkpoint(name, timeout=timeout, progress=not quiet)
    except CheckpointUnavailable as e:
        raise CliError(str(e)) from None
    print(f"{name}: downloaded {path}")
    return path


def convert_checkpoint(ckpt: Path, out: Path | None, config_name: str | None) -> Path:
    """``checkpoints.convert_checkpoint`` (default output: the cache, keyed by the file's content, which the model
    commands use) with one-line errors."""
    from sam2_jax.checkpoints import convert_checkpoint as convert

    if not ckpt.is_file():
        raise CliError(f"checkpoint {str(ckpt)!r} does not exist")
    try:
        c = convert(ckpt, out, config_name)
    except ImportError as e:
        raise CliError(f"reading {str(ckpt)!r} needs PyTorch: {e}") from None
    except ValueError as e:
        raise CliError(f"checkpoint {str(ckpt)!r} does not convert: {e}") from None
    except Exception as e:  # a file that is not a checkpoint
        raise CliError(f"cannot read checkpoint {str(ckpt)!r}: {type(e).__name__}: {e}") from None
    done = "already converted (same sha256)" if c.cached else f"converted ({c.config_name}, {c.num_tensors} tensors)"
    print(f"{ckpt}: {done} -> {c.path}")
    return c.path


def cmd_download(args) -> int:
    from sam2_jax.checkpoints import HF_MODEL_IDS
    from sam2_jax.configs import NAMES

    names = NAMES if args.all else (args.model or ["sam2.1_hiera_t"])
    for name in names:
        if name not in NAMES and name not in HF_MODEL_IDS:
            raise CliError(f"unknown model {name!r}; expected one of {NAMES} or {sorted(HF_MODEL_IDS)}")
    for name in names:
        if name in HF_MODEL_IDS:  # through huggingface_hub (its cache, HF_HUB_OFFLINE, HF_TOKEN)
            path = download_from_hub(name, args.revision)
            name = HF_MODEL_IDS[name]
        else:
            path = download_checkpoint(name, args.timeout, args.quiet)
        if args.convert:
            convert_checkpoint(path, None, name)
    return 0


def download_from_hub(model_id: str, revision: str | None) -> Path:
    """``checkpoints.hub_checkpoint`` with a line saying which file it got."""
    from sam2_jax.checkpoints import CheckpointUnavailable, hub_checkpoint

    try:
        path = hub_checkpoint(model_id, revision=revision)
    except CheckpointUnavailable as e:
        raise CliError(str(e)) from None
    print(f"{model_id}: {path}")
    return path


def cmd_convert(args) -> int:
    out = convert_checkpoint(Path(args.checkpoint), Path(args.out) if args.out else None, args.config)
    # Only a conversion in the cache is found from the .pt; one written elsewhere is passed by its own path.
    given = args.out or args.checkpoint
    print(f"`sam2-jax image/auto/video --checkpoint {given}` now loads {out}")
    return 0


def add_parsers(sub, fmt) -> None:
    """``download`` and ``convert``."""
    sp = sub.add_parser(
        "download", help="download official checkpoints into the cache", epilog=EPILOGS_DOWNLOAD, formatter_class=fmt
    )
    sp.add_argument(
        "--model",
        action="append",
        help="config name or hub id facebook/sam2.1-hiera-tiny (repeatable; default sam2.1_hiera_t)",
    )
    sp.add_argument("--all", action="store_true", help="all 8 official checkpoints")
    sp.add_argument("--revision", help="hub branch, tag or commit for Hugging Face ids (default main)")
    sp.add_argument("--timeout", type=float, default=15.0, help="network timeout in seconds (default %(default)s)")
    sp.add_argument("--convert", action="store_true", help="also convert each to orbax params in the cache")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sp.set_defaults(func=cmd_download)

    sp = sub.add_parser(
        "convert", help="convert an official .pt to orbax params", epilog=EPILOGS_CONVERT, formatter_class=fmt
    )
    sp.add_argument("checkpoint", help="official .pt")
    sp.add_argument(
        "--out",
        help="orbax directory (default: in the cache, keyed by the sha256 of the file; the other commands use it)",
    )
    sp.add_argument("--config", help="model config (default: inferred from the keys)")
    sp.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sp.set_defaults(func=cmd_convert)
