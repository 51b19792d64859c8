"""What every ``sam2-jax`` command shares: one-line errors, the model arguments and loading, output helpers."""

import argparse
import functools
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np

EXIT_ERROR = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and the same exit code as other bad input."""

    def error(self, message):
        raise CliError(f"{message} (see {self.prog} --help)")


def check_prompts_inside(points, box, hw: tuple[int, int], what: str) -> None:
    """``check_inside`` of the parsed ``--point`` (x, y, label) and ``--box`` arguments, as a ``CliError``."""
    from sam2_jax.utils.validation import check_inside

    try:
        check_inside([p[:2] for p in points or []], box, hw, what)
    except ValueError as e:
        raise CliError(str(e)) from None


def read_image(path: str) -> np.ndarray:
    """An image file as HWC uint8 RGB; CliError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if os.path.isdir(path):
        raise CliError(f"image {path!r} is a folder, not an image file (a folder of frames is for `sam2-jax video`)")
    if not os.path.isfile(path):
        raise CliError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise CliError(f"cannot read image {path!r}: {e}") from None


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", default="sam2.1_hiera_t", help="model config: sam2[.1]_hiera_{t,s,b+,l} (default %(default)s)"
    )
    g.add_argument("--checkpoint", help="official .pt or converted orbax directory (default: the cached official one)")
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="random weights instead of a checkpoint: every step runs, the masks are meaningless (for tests)",
    )
    g.add_argument("--image-size", type=int, help="model input size with --random-weights (e.g. 256, faster)")
    g.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="compute dtype (default float32)")
    g.add_argument("--seed", type=int, default=0, help="seed of --random-weights (default %(default)s)")


@functools.lru_cache(maxsize=2)
def random_model(name: str, image_size: int | None, dtype: str | None, seed: int):
    """The model with ``checkpoints.random_params`` (the weights of ``random_checkpoint``, of the parity tests and
    of the demo's offline fallback), at the config's or the given input size. Cached: tests run many commands."""
    import jax
    import jax.numpy as jnp

    from sam2_jax.checkpoints import random_params
    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import SAM2Model, make_module

    cfg = get_config(name)
    if image_size is not None:
        cfg.model.image_size = image_size
    module = make_module(cfg.model, dtype or "float32")
    params = random_params(cfg, module, seed)
    return SAM2Model(module=module, params=jax.tree.map(jnp.asarray, params), config=cfg)


def load_model(args) -> tuple[object, dict]:
    """The model the arguments ask for, and a description of where its weights came from (the checkpoint, the
    SHA-256 of its content, and what was read: the file or its cached conversion)."""
    from sam2_jax.build_sam import build_sam2
    from sam2_jax.checkpoints import official_checkpoint_path, resolve_checkpoint
    from sam2_jax.configs import get_config

    try:
        config = get_config(args.model)
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.image_size is not None:
        if not args.random_weights:
            raise CliError("--image-size only works with --random-weights (checkpoints are trained at 1024)")
        if args.image_size < 64 or args.image_size % 64:
            raise CliError(f"--image-size must be a positive multiple of 64, got {args.image_size}")
    if args.random_weights:
        if args.checkpoint:
            raise CliError("give either --checkpoint or --random-weights, not both")
        model = random_model(config.name, args.image_size, args.dtype, args.seed)
        return model, {
            "model": config.name,
            "checkpoint": None,
            "checkpoint_sha256": None,
            "loaded_from": None,
            "random_weights": True,
        }
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
        if not ckpt.exists():
            raise CliError(f"checkpoint {str(ckpt)!r} does not exist")
    else:
        ckpt = official_checkpoint_path(config.name)
        if not ckpt.is_file():
            raise CliError(
                f"no checkpoint for {config.name} at {ckpt}: run `sam2-jax download --model {config.name}` (or copy "
                "the official file there), pass --checkpoint PATH, or try the pipeline with --random-weights"
            )
    # A .pt converted before by `sam2-jax convert` (same content, by hash) loads from orbax: no torch, faster.
    source = resolve_checkpoint(ckpt)
    try:
        model = build_sam2(config, source.load_path, dtype=args.dtype)
    except ValueError as e:
        raise CliError(
            f"checkpoint {str(ckpt)!r} does not fit model {config.name}: {_short(e, ckpt, source)}"
        ) from e  # --debug shows the whole message as the cause
    except ImportError as e:
        raise CliError(
            f"reading {str(ckpt)!r} needs PyTorch ({e}); convert it elsewhere with `sam2-jax convert`"
        ) from None
    except Exception as e:  # a corrupt file: pickle / zip / orbax errors of many kinds
        raise CliError(f"cannot load checkpoint {str(ckpt)!r}: {type(e).__name__}: {e}") from None
    return model, {
        "model": config.name,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": source.sha256,
        "loaded_from": str(source.load_path),
        "random_weights": False,
    }


def _short(e: BaseException, ckpt: Path, source) -> str:
    """A load error about the file the user gave: the cache folder of its conversion is named as such, and a long
    list of parameter names is cut (``--debug`` shows the whole error)."""
    text = str(e)
    if source.load_path != ckpt:
        text = text.replace(repr(str(source.load_path)), "its cached conversion").replace(
            str(source.load_path), "its cached conversion"
        )
    limit = 300
    return text if len(text) <= limit else text[:limit].rstrip() + " ... (--debug shows the whole message)"


def progress(iterable, quiet: bool, **kwargs):
    if quiet:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, **kwargs)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1))


def random_weights_note(meta) -> str:
    return " [RANDOM WEIGHTS: masks are meaningless]" if meta.get("random_weights") else ""


def wrap(text: str) -> str:
    return textwrap.fill(text, 100)


def add_output_args(sp: argparse.ArgumentParser, out: str) -> None:
    sp.add_argument("--out", default=out, help="output directory (default %(default)s)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.add_argument("--debug", action="store_true", help="show the traceback of an error")


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
