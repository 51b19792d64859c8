"""The export (``sam2_jax.export.stablehlo``) against the live predictors, in one process on the same CPU: artifact
sizes, export and load seconds, first-call compile seconds, and per-frame / per-image seconds of the exported runtime
(``sam2_jax.export.runtime``) and of the live ``SAM2VideoPredictor`` / ``SAM2ImagePredictor`` (tiny, random weights,
bedroom frames). Steady-state times are the median of repeated, already compiled calls.

    .venv/bin/python benchmarks/export.py [--image-size 1024] [--frames 8] [--out /tmp/sam2_export]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--frames", type=int, default=8, help="frames per propagation (a multiple of the chunk, 4)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--platforms", default="cpu,cuda,tpu")
    p.add_argument("--out", default=None, help="export folder (default: a temporary one)")
    return p.parse_args(argv)


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    """(first call seconds, later calls' seconds)."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], times[1:]


def video(n: int) -> np.ndarray:
    from PIL import Image

    from sam2_jax.reference import DATA

    files = sorted((DATA / "videos" / "bedroom").glob("*.jpg"))[:n]
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def run_video(pred, state, n: int):
    """Re-prompt frame 0 and propagate ``n`` frames (what is timed per frame)."""
    pred.add_new_points_or_box(state, 0, 1, points=np.array([[210, 350]], np.float32), labels=np.array([1], np.int32))
    for _ in pred.propagate_in_video(state, max_frame_num_to_track=n - 1):
        pass


def main(argv=None) -> dict:
    import jax
    import jax.numpy as jnp

    from sam2_jax.build_sam import SAM2Model
    from sam2_jax.checkpoints import random_params
    from sam2_jax.configs import get_config
    from sam2_jax.export import runtime as exported
    from sam2_jax.export.stablehlo import export_model
    from sam2_jax.modeling.sam2_model import make_module
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor
    from sam2_jax.video.video_io import preprocess_frame

    args = parse_args(argv)
    cfg = get_config(args.model)
    cfg.model.image_size = S = args.image_size

    module = make_module(cfg.model)
    model = SAM2Model(module, jax.tree.map(jnp.asarray, random_params(cfg, module, 0)), cfg)
    folder = Path(args.out or tempfile.mkdtemp(prefix="sam2_export_"))
    res = {"model": args.model, "image_size": S, "frames": args.frames, "platforms": args.platforms}
    t0 = time.perf_counter()
    export_model(model, folder, platforms=args.platforms.split(","))
    res["export_s"] = time.perf_counter() - t0
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    res["jax_export_mb"] = sum(v for k, v in files.items() if k.endswith(".jax_export")) / 2**20
    res["largest_jax_export_mb"] = max(v for k, v in files.items() if k.endswith(".jax_export")) / 2**20
    res["params_mb"] = files["params.npz"] / 2**20
    t0 = time.perf_counter()
    em = exported.ExportedModel(folder)
    res["load_s"] = time.perf_counter() - t0
    frames_raw = video(args.frames)
    frames = np.stack([preprocess_frame(f, S) for f in frames_raw])
    hw = frames_raw.shape[1:3]
    image_calls = {
        "exported": exported.ExportedImagePredictor(em),
        "live": SAM2ImagePredictor(model),
    }
    for name, pred in image_calls.items():
        first, rest = timed(
            lambda p=pred: p.set_image(frames_raw[0]) or p.predict(np.array([[210, 350]]), [1]), args.repeats
        )
        res[f"{name}_image_first_s"], res[f"{name}_image_s"] = first, statistics.median(rest)
    preds = {"exported": exported.ExportedVideoPredictor(em), "live": SAM2VideoPredictor(model)}
    for name, pred in preds.items():
        state = pred.init_state(frames, hw) if name == "exported" else pred.init_state(frames_raw)
        first, rest = timed(lambda p=pred, s=state: run_video(p, s, args.frames), args.repeats)
        res[f"{name}_video_first_s"] = first
        res[f"{name}_video_per_frame_s"] = statistics.median(rest) / args.frames
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
