"""The README's main job: convert an official checkpoint and segment a photo with a click.

  python -m sam2_jax.demo [--image examples/truck.jpg] [--point 500,375[,1] ...] [--box x0,y0,x1,y1]
                          [--model sam2.1_hiera_t] [--checkpoint PATH.pt] [--out out/demo]

Looks for the official checkpoint in the cache (``$SAM2_JAX_CACHE`` or ``~/.cache/sam2_jax``), downloading it from
Meta's URL when missing. Where neither works (no network), it says so and, unless ``--no-random-fallback``, goes on
with a random-weight checkpoint in the official format so that every step (conversion, encoding, decoding, the
written files) still runs: its masks are meaningless. Writes ``mask_<i>.png``, ``overlay.png`` and ``scores.json``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _parse_point(s: str) -> tuple[float, float, int]:
    parts = s.split(",")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--point wants x,y or x,y,label, got {s!r}")
    x, y = float(parts[0]), float(parts[1])
    lab = int(parts[2]) if len(parts) == 3 else 1
    if lab not in (0, 1):
        raise argparse.ArgumentTypeError(f"point label must be 1 (positive) or 0 (negative), got {lab}")
    return x, y, lab


def _parse_box(s: str) -> tuple[float, float, float, float]:
    parts = s.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"--box wants x0,y0,x1,y1, got {s!r}")
    return tuple(float(p) for p in parts)


def main(argv=None) -> int:
    here = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(
        prog="python -m sam2_jax.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--image", default=str(here / "examples" / "truck.jpg"))
    p.add_argument("--point", type=_parse_point, action="append", help="x,y[,label] in image pixels (repeatable)")
    p.add_argument("--box", type=_parse_box)
    p.add_argument("--model", default="sam2.1_hiera_t", help="config name, e.g. sam2.1_hiera_l")
    p.add_argument("--checkpoint", help="official .pt (default: cache, else download)")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--no-random-fallback", action="store_true", help="fail instead of using random weights")
    p.add_argument("--multimask", action="store_true", help="write the three candidate masks")
    args = p.parse_args(argv)

    from PIL import Image

    from configs import get_config
    from sam2_jax.build_sam import build_sam2
    from sam2_jax.checkpoints import CheckpointUnavailable, cache_dir, get_checkpoint, random_checkpoint
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
    from sam2_jax.utils.visualize import mask_png, overlay

    try:
        config = get_config(args.model)
        image = np.asarray(Image.open(args.image).convert("RGB"))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    random_weights = False
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        try:
            ckpt = get_checkpoint(config.name)
        except CheckpointUnavailable as e:
            print(f"NOTE: no official checkpoint here: {e}", file=sys.stderr)
            if args.no_random_fallback:
                return 3
            ckpt = cache_dir() / f"random_{config.name}.pt"
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            if not ckpt.exists():
                random_checkpoint(config.name, ckpt)
            random_weights = True
            print(
                f"NOTE: continuing with RANDOM weights written in the official format to {ckpt}: every step runs "
                "as with the real checkpoint, but the masks are meaningless.",
                file=sys.stderr,
            )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    orbax_dir = cache_dir() / f"orbax_{ckpt.stem}"
    t0 = time.perf_counter()
    if not orbax_dir.exists():
        from convert_weights.__main__ import main as convert

        if convert(["--checkpoint", str(ckpt), "--out", str(orbax_dir), "--config", config.name]) != 0:
            return 1
    try:
        model = build_sam2(config, orbax_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    t1 = time.perf_counter()
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(image)
    t2 = time.perf_counter()
    h, w = image.shape[:2]
    points = args.point or ([] if args.box else [(w * 0.5, h * 0.6, 1)])
    coords = np.array([pt[:2] for pt in points], np.float32) if points else None
    labels = np.array([pt[2] for pt in points], np.int32) if points else None
    box = np.array(args.box, np.float32) if args.box else None
    try:
        masks, scores, _ = predictor.predict(coords, labels, box=box, multimask_output=args.multimask)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t3 = time.perf_counter()
    order = np.argsort(-scores)
    for rank, i in enumerate(order):
        mask_png(masks[i]).save(out / f"mask_{rank}.png")
    overlay(image, [masks[order[0]]], coords, labels, box).save(out / "overlay.png")
    (out / "scores.json").write_text(
        json.dumps(
            {
                "model": config.name,
                "checkpoint": str(ckpt),
                "random_weights": random_weights,
                "points": coords.tolist() if coords is not None else None,
                "labels": labels.tolist() if labels is not None else None,
                "box": box.tolist() if box is not None else None,
                "iou_predictions": [float(scores[i]) for i in order],
                "mask_area": [int(masks[i].sum()) for i in order],
            },
            indent=2,
        )
    )
    print(
        f"{config.name}: load {t1 - t0:.1f}s, set_image {t2 - t1:.1f}s (incl. compile), predict {t3 - t2:.2f}s; "
        f"wrote {len(order)} mask(s), overlay.png, scores.json to {out}"
        + (" [RANDOM WEIGHTS]" if random_weights else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
