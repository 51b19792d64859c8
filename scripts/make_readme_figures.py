"""Regenerate the README's figures with the ``sam2-jax`` command itself:

  docs/figures/image_overlay.png          sam2-jax image on truck.jpg (a box and a negative click)
  docs/figures/video_contact_sheet.png    sam2-jax video on the bedroom frames (two objects), 6 of 12 frames

  .venv/bin/python scripts/make_readme_figures.py [--checkpoint PATH] [--shared ../shared] [--out docs/figures]

The model is sam2.1_hiera_t with the official checkpoint when one is found (``--checkpoint`` or the cache that
``sam2-jax download`` fills); otherwise it uses random weights and stamps "RANDOM WEIGHTS" on each figure (the masks
then mean nothing; the figures still show what the commands write). Each PNG is downscaled and palette-quantised to
stay under 300 KB.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MAX_BYTES = 300_000


def _model_args(checkpoint: str | None) -> tuple[list[str], bool]:
    from sam2_jax.checkpoints import cache_dir
    from sam2_jax.configs import get_config

    if checkpoint:
        return ["--checkpoint", checkpoint], False
    cached = cache_dir() / get_config("sam2.1_hiera_t").checkpoint_name
    if cached.is_file():
        return ["--checkpoint", str(cached)], False
    return ["--random-weights"], True


def _save_small(img: Image.Image, path: Path, width: int, random_weights: bool) -> None:
    """Downscale to ``width``, stamp the weights' origin, quantise to 256 colours; shrink until under MAX_BYTES."""
    while True:
        h = round(img.height * width / img.width)
        small = img.convert("RGB").resize((width, h), Image.LANCZOS)
        if random_weights:
            d = ImageDraw.Draw(small)
            text = "RANDOM WEIGHTS (no checkpoint): masks are meaningless"
            d.rectangle([0, h - 16, 7 * len(text) + 8, h], fill=(0, 0, 0))
            d.text((4, h - 14), text, fill=(255, 255, 0))
        small.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size < MAX_BYTES or width <= 320:
            return
        width = int(width * 0.85)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="official sam2.1_hiera_tiny.pt (default: the cache, else random weights)")
    p.add_argument("--shared", default=os.environ.get("SAM2_JAX_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--out", default=str(REPO / "docs" / "figures"))
    args = p.parse_args(argv)

    from sam2_jax import cli

    data = Path(args.shared) / "data"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, random_weights = _model_args(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image_cmd = ["image", str(data / "images" / "truck.jpg"), "--box", "425,600,700,875", "--point", "575,750,0"]
        if cli.main(image_cmd + ["--out", str(tmp / "image"), "--quiet"] + model) != 0:
            return 1
        _save_small(Image.open(tmp / "image" / "overlay.png"), out / "image_overlay.png", 720, random_weights)

        video_cmd = [
            "video",
            str(data / "videos" / "bedroom"),
            "--obj",
            "1",
            "--frame",
            "0",
            "--point",
            "390,165",
            "--obj",
            "2",
            "--point",
            "255,285",
            "--point",
            "255,420,0",
            "--max-frames",
            "12",
            "--sheet-frames",
            "6",
        ]
        if cli.main(video_cmd + ["--out", str(tmp / "video"), "--overlay", str(tmp / "video" / "o.gif")] + model):
            return 1
        _save_small(
            Image.open(tmp / "video" / "contact_sheet.png"), out / "video_contact_sheet.png", 960, random_weights
        )
    for f in ("image_overlay.png", "video_contact_sheet.png"):
        print(f"{out / f}: {(out / f).stat().st_size // 1000} KB" + (" [random weights]" if random_weights else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
