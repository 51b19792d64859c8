"""A correction click on one of the first frames of a propagation: seconds per ``add_new_points_or_box`` call, the
official predictor against ours (same random weights, same bedroom frames, same run), and ours with the memory
attention over every slot (``config.model.compact_memory="off"``) against ours compacted (the default on CPU).

Each predictor gets one click on frame 0 (object 1), propagates ``--frames`` frames, then takes a negative click
with ``clear_old_points=True`` on each frame of ``--correct`` (the same click every time, so nothing recompiles),
``--repeats`` times in a rotating order after one warm-up call per frame (our compile). The image features of the
clicked frame are cached after the first call in both implementations, so the time is the prompt step on the
memory (the memory attention over the slots in use, the heads) and the video-resolution output. The logits of
ours are compared with the official's (largest difference over the clicked frames).

    .venv/bin/python benchmarks/correction.py --malloc [--correct 2,3] [--repeats 5]

Needs the reference (torch 2.13.0 CPU + sam2 1.1.0, see ../shared/REFERENCE.md) and ../shared/data/videos.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (before JAX: --malloc re-execs the process)

CORRECTION = (520, 330)  # a negative click near object 1's positive one (video.CLICKS[0])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--frames", type=int, default=8, help="frames propagated before the corrections")
    p.add_argument("--correct", default="2,3", help="frames clicked (comma separated), each after --frames")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--malloc", action="store_true", help="re-exec with the glibc malloc setting (common.py)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    common.reexec_with_malloc(sys.argv if argv is None else [sys.argv[0], *argv])
    args = parse_args(argv)
    import jax.numpy as jnp
    import numpy as np
    import torch
    from video import add_clicks, clip_dir, official_predictor, our_params

    from sam2_jax.build_sam import SAM2Model
    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import make_module
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    torch.set_num_threads(args.torch_threads)
    print(common.environment_summary(), f"\n{common.malloc_status()}", flush=True)
    shapes = {"square 2048^2": common.MATMUL_SHAPES["square 2048^2"]}
    common.print_matmul_peaks(common.matmul_peaks(shapes))
    frames = [int(t) for t in args.correct.split(",")]
    params = our_params(args.model)
    preds = {"official": official_predictor(args.model)}
    for name, compact in (("ours", "auto"), ("ours, every slot", "off")):
        cfg = get_config(args.model)
        cfg.model.compact_memory = compact
        module = make_module(cfg.model, jnp.float32)
        preds[name] = SAM2VideoPredictor(SAM2Model(module, params, cfg), fill_hole_area=0)
        preds[name].progress = False
    clip = clip_dir(Path(tempfile.mkdtemp()), max(args.frames, max(frames) + 1))
    states = {}
    with torch.inference_mode():
        for name, pred in preds.items():
            states[name] = s = pred.init_state(str(clip))
            add_clicks(pred, s, 1)
            for _ in pred.propagate_in_video(s, max_frame_num_to_track=args.frames - 1):
                pass

    def click(name: str, t: int):
        pred, s = preds[name], states[name]
        t0 = time.perf_counter()
        with torch.inference_mode():
            _, _, logits = pred.add_new_points_or_box(
                s, t, 1, points=np.array([CORRECTION], np.float32), labels=np.array([0], np.int32)
            )
            logits = np.asarray(logits.float().cpu() if isinstance(logits, torch.Tensor) else logits)
        return time.perf_counter() - t0, logits

    rows = []
    for t in frames:
        first = {name: click(name, t)[0] for name in preds}  # our compile; the features of frame t cached
        times: dict = {name: [] for name in preds}
        out: dict = {}
        for r in range(args.repeats):
            for name in list(preds)[r % 3 :] + list(preds)[: r % 3]:
                dt, out[name] = click(name, t)
                times[name].append(dt)
        med = {name: statistics.median(v) for name, v in times.items()}
        diff = float(np.abs(out["ours"] - out["official"]).max())
        rows.append((t, first, med, diff))
    print(f"\n{args.model}, 1024 px, float32, 1 object, a correction click after propagating {args.frames} frames")
    print(
        f"{'frame':>6}{'official s':>12}{'ours s':>10}{'every slot s':>14}{'official/ours':>15}"
        f"{'every slot/ours':>17}{'ours first s':>14}{'max |logit diff|':>18}"
    )
    for t, first, med, diff in rows:
        print(
            f"{t:>6}{med['official']:>12.3f}{med['ours']:>10.3f}{med['ours, every slot']:>14.3f}"
            f"{med['official'] / med['ours']:>14.2f}x{med['ours, every slot'] / med['ours']:>16.2f}x"
            f"{first['ours']:>14.1f}{diff:>18.2e}"
        )
    print(common.load_status())


if __name__ == "__main__":
    main()
