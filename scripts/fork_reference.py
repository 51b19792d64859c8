"""What the reference scripts of sam2 forks (``samurai_reference.py``, ``sam2long_reference.py``) share: our random
weights dumped in the official format, the bedroom object's box, and the two subcommands' common arguments.

Each fork installs a package named ``sam2``, so each runs in its own virtual environment; this module imports
nothing beyond the standard library at import time, so it loads in any of them.
"""

import argparse
from pathlib import Path

BOX = (190.0, 150.0, 330.0, 420.0)  # x0, y0, x1, y1 in the 960x540 bedroom frames
BEDROOM = Path(__file__).resolve().parents[2] / "shared/data/videos/bedroom"


def dump_weights(out: str) -> None:
    """Our deterministic random tiny weights as an official state dict (``.npz``; run in the project venv)."""
    import numpy as np

    from sam2_jax.reference.image import reference_state_dict

    np.savez(out, **reference_state_dict("sam2.1_hiera_t", 0))


def disk_frames(out: str, n: int) -> None:
    """n synthetic 256x256 JPEG frames (quality 95) of an orange disk on a dark background, moving right 3 px a frame,
    up and down on a sine (amplitude 40 px) and shrinking from radius 28 to 20: on our random weights one of the three
    candidate masks covers the disk alone, so SAMURAI's Kalman filter sees a partial mask move (on the bedroom frames
    every kept mask covers the whole frame). Run in the project venv: the tests write the same bytes."""
    import numpy as np
    from PIL import Image

    Path(out).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:256, :256]
    for t in range(n):
        img = np.full((256, 256, 3), 40, np.uint8)
        cx, cy, r = 60 + 3.0 * t, 128 + 40 * np.sin(t / 8), 28 - 8 * t / max(n - 1, 1)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = (220, 180, 90)
        Image.fromarray(img).save(Path(out) / f"{t:05d}.jpg", quality=95)


def parser(doc: str, frames: int) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.Action]:
    """``(parser, run subparser, subparsers)``: ``weights OUT`` and ``run WEIGHTS OUT [--frames --image-size --box
    --video]``; the caller adds its fork's own ``run`` options and subcommands."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("weights").add_argument("out")
    r = sub.add_parser("run")
    r.add_argument("weights")
    r.add_argument("out")
    r.add_argument("--frames", type=int, default=frames)
    r.add_argument("--image-size", type=int, default=256)
    r.add_argument("--box", type=lambda v: [float(x) for x in v.split(",")], default=list(BOX), help="x0,y0,x1,y1")
    r.add_argument("--video", default=str(BEDROOM), help="a folder of JPEG frames (default: the bedroom frames)")
    return p, r, sub
