"""The README's main job: convert an official checkpoint and segment a photo with a click.

  python -m sam2_jax.demo [--image examples/truck.jpg] [--point 500,375[,1] ...] [--box x0,y0,x1,y1]
                          [--model sam2.1_hiera_t] [--checkpoint PATH.pt] [--out out/demo]

Looks for the official checkpoint in the cache (``$SAM2_JAX_CACHE`` or ``~/.cache/sam2_jax``), downloading it from
Meta's URL when missing. Where neither works (no network), it says so and, unless ``--no-random-fallback``, goes on
with a random-weight checkpoint in the official format so that every step (conversion, encoding, decoding, the
written files) still runs: its masks are meaningless. Writes ``mask_<i>.png``, ``overlay.png`` and ``scores.json``
(with ``sam2_jax.cli.image.segment_image``, as ``sam2-jax image`` does).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from sam2_jax.utils.prompts import parse_box, parse_point

# The shipped photo, in a checkout of the repository (an installed package has no examples/: pass --image).
EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "examples" / "truck.jpg"


def find_checkpoint(config_name: str, random_fallback: bool = True) -> tuple[Path, bool] | None:
    """The official checkpoint (cache, else download), else a random-weight one in the official format.

    Args:
      config_name: model config name.
      random_fallback: write and use a random-weight checkpoint when the official one is unavailable.
    Returns:
      ``(path, random_weights)``, or None when there is no official checkpoint and no fallback.
    """
    from sam2_jax.checkpoints import CheckpointUnavailable, cache_dir, get_checkpoint, random_checkpoint

    try:
        return get_checkpoint(config_name), False
    except CheckpointUnavailable as e:
        print(f"NOTE: no official checkpoint here: {e}", file=sys.stderr)
    if not random_fallback:
        return None
    ckpt = cache_dir() / f"random_{config_name}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    if not ckpt.exists():
        random_checkpoint(config_name, ckpt)
    print(
        f"NOTE: continuing with RANDOM weights written in the official format to {ckpt}: every step runs "
        "as with the real checkpoint, but the masks are meaningless.",
        file=sys.stderr,
    )
    return ckpt, True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sam2_jax.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--image", default=str(EXAMPLE_IMAGE), help="photo (default: the repository's examples/truck.jpg)")
    p.add_argument("--point", type=parse_point, action="append", help="x,y[,label] in image pixels (repeatable)")
    p.add_argument("--box", type=parse_box)
    p.add_argument("--model", default="sam2.1_hiera_t", help="config name, e.g. sam2.1_hiera_l")
    p.add_argument("--checkpoint", help="official .pt (default: cache, else download)")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--no-random-fallback", action="store_true", help="fail instead of using random weights")
    p.add_argument("--multimask", action="store_true", help="write the three candidate masks")
    args = p.parse_args(argv)

    from PIL import Image

    from sam2_jax.build_sam import build_sam2
    from sam2_jax.checkpoints import convert_checkpoint
    from sam2_jax.cli.common import CliError
    from sam2_jax.cli.image import segment_image
    from sam2_jax.configs import get_config

    try:
        config = get_config(args.model)
        image = np.asarray(Image.open(args.image).convert("RGB"))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fallback = not args.no_random_fallback
    found = (Path(args.checkpoint), False) if args.checkpoint else find_checkpoint(config.name, fallback)
    if found is None:
        return 3
    ckpt, random_weights = found
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        # Converted once into the cache, keyed by the file's content; later runs load the orbax params.
        conversion = convert_checkpoint(ckpt, config=config)
        model = build_sam2(config, conversion.path)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{ckpt}: {'cached conversion' if conversion.cached else 'converted to'} {conversion.path}", file=sys.stderr)
    t1 = time.perf_counter()
    h, w = image.shape[:2]
    points = args.point or ([] if args.box else [(w * 0.5, h * 0.6, 1)])
    meta = {
        "model": config.name,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": conversion.sha256,
        "loaded_from": str(conversion.path),
        "random_weights": random_weights,
    }
    try:
        res = segment_image(model, image, points, args.box, args.multimask, out, meta)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{config.name}: load {t1 - t0:.1f}s, set_image {res['seconds']['set_image']:.1f}s (incl. compile), predict "
        f"{res['seconds']['predict']:.2f}s; wrote {len(res['masks'])} mask(s), overlay.png, scores.json to {out}"
        + (" [RANDOM WEIGHTS]" if random_weights else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
