"""Several videos in one step: throughput in videos per second of ``propagate_in_videos`` (V videos tracked by one
compiled program) against ``propagate_in_video`` one video at a time, same model, same videos, same run.

    python benchmarks/videos_per_step.py                       # tiny, 256 px, 4 videos x 16 frames, 1 object
    python benchmarks/videos_per_step.py --videos 8 --image_size 512 --dtype bfloat16
    python benchmarks/videos_per_step.py --total 8 --lengths 4,28,12,20   # videos of different lengths

Each video gets one mask prompt on frame 0 (the VOS setting), then is propagated to its end. The ways, timed
alternately (``time_interleaved``) after a warm-up pass that compiles (compile seconds reported apart):
- one at a time: ``propagate_in_video`` per video;
- lockstep (with ``--total`` above ``--videos``): ``propagate_in_videos`` on consecutive groups of V videos, each
  group running until its longest video ends (the shorter ones repeat their last frame);
- together: ``propagate_in_videos(..., videos_per_step=V)`` over all the videos, a slot refilled with the next
  video as soon as its video ends (continuous batching);
- longest first (with ``--total`` above ``--videos``): the same with the videos in decreasing length, as
  ``eval.py --videos_per_step`` feeds them (a short tail).
Masks of the ways are compared (largest logit difference). Random weights: the speed does not depend on them. The
official code has no batched-videos mode (upstream #399), so there is no official row.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import environment_summary, matmul_peaks, print_matmul_peaks, time_interleaved  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--videos", type=int, default=4, help="videos per step (V)")
    p.add_argument("--frames", type=int, default=16, help="frames per video")
    p.add_argument("--total", type=int, default=None, help="videos in all (default: --videos)")
    p.add_argument("--lengths", default=None, help="frames per video, cycled over the videos (default: --frames)")
    p.add_argument("--objects", type=int, default=1, help="objects per video")
    p.add_argument("--chunk", type=int, default=4, help="frames per compiled step")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=2)
    return p.parse_args(argv)


def make_videos(n: int, frames: int | list[int], objects: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` synthetic (frames (T, 240, 320, 3) uint8, first-frame masks (objects, 240, 320) bool) pairs; ``frames``:
    T, or a list of lengths cycled over the videos."""
    from sam2_jax.datasets.synthetic import SyntheticVideoDataset

    lengths = [frames] if isinstance(frames, int) else list(frames)
    longest = max(lengths)
    out = []
    for i, v in enumerate(
        SyntheticVideoDataset(n, seed=seed, num_frames=longest, height=240, width=320, num_objects=objects)
    ):
        masks = v.masks[0] if v.masks[0].any(axis=(1, 2)).all() else np.ones((objects, 240, 320), bool)
        out.append((v.frames[: lengths[i % len(lengths)]], masks))
    return out


def prompted(pred, videos) -> list:
    states = []
    for frames, masks in videos:
        s = pred.init_state(frames)
        for o, m in enumerate(masks):
            pred.add_new_mask(s, 0, o + 1, m)
        states.append(s)
    return states


def one_at_a_time(pred, videos) -> list[dict]:
    return [{t: m for t, _, m in pred.propagate_in_video(s)} for s in prompted(pred, videos)]


def lockstep(pred, videos, width: int) -> list[dict]:
    out = []
    for g in range(0, len(videos), width):
        group = [{} for _ in videos[g : g + width]]
        for v, t, _, m in pred.propagate_in_videos(prompted(pred, videos[g : g + width])):
            group[v][t] = m
        out += group
    return out


def together(pred, videos, width: int) -> list[dict]:
    out = [{} for _ in videos]
    for v, t, _, m in pred.propagate_in_videos(prompted(pred, videos), videos_per_step=width):
        out[v][t] = m
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    import jax.numpy as jnp

    from sam2_jax.build_sam import build_sam2
    from sam2_jax.configs import get_config
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor
    from sam2_jax.utils.compile_cache import CompileCounter

    print(environment_summary())
    print_matmul_peaks(matmul_peaks(torch_too=False))  # the CPU's same-run peaks, to read the seconds against
    cfg = get_config(args.model)
    cfg.model.image_size = args.image_size
    model = build_sam2(cfg, None, seed=0, dtype=jnp.dtype(args.dtype))
    pred = SAM2VideoPredictor(model, chunk_size=args.chunk, fill_hole_area=0)
    pred.progress = False
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else args.frames
    V, N = args.videos, args.total or args.videos
    videos = make_videos(N, lengths, args.objects)
    frames = sum(len(f) for f, _ in videos)
    ways = {"one at a time": one_at_a_time, "together": lambda p, vs: together(p, vs, V)}
    if N > V:
        ways["lockstep"] = lambda p, vs: lockstep(p, vs, V)
        longest = sorted(range(N), key=lambda k: -len(videos[k][0]))  # as eval's track_videos orders them

        def longest_first(p, vs):
            out = together(p, [vs[k] for k in longest], V)
            return [out[longest.index(k)] for k in range(N)]

        ways["longest first"] = longest_first
    first = {}
    for name, fn in ways.items():
        with CompileCounter() as cc:
            t0 = time.perf_counter()
            first[name] = fn(pred, videos)
            first[name + " s"] = time.perf_counter() - t0
        first[name + " compiles"] = cc.compiles
    ref = first["one at a time"]
    pairs = [(a, b) for name in ways for a, b in zip(ref, first[name], strict=True)]
    diff = max(float(np.abs(a[t] - b[t]).max()) for a, b in pairs for t in a)
    times = time_interleaved(
        {name: lambda fn=fn: fn(pred, videos) for name, fn in ways.items()}, repeats=args.repeats, warmup=0
    )
    print(
        f"\n{args.model} {args.dtype} {args.image_size} px, {N} videos ({frames} frames: lengths "
        f"{sorted({len(f) for f, _ in videos})}) x {args.objects} object(s), {V} videos per step, chunk {args.chunk}; "
        f"largest video-res logit difference to one at a time {diff:.2e}"
    )
    print(f"{'way':<16}{'first run s':>12}{'compiles':>10}{'steady s':>10}{'videos/s':>10}{'frames/s':>10}")
    for name, t in times.items():
        s = t.median
        print(
            f"{name:<16}{first[name + ' s']:>12.1f}{first[name + ' compiles']:>10}{s:>10.2f}"
            f"{N / s:>10.3f}{frames / s:>10.2f}"
        )
    for name in times:
        if name != "one at a time":
            ratio = times["one at a time"].median / times[name].median
            print(f"{name} / one at a time throughput: {ratio:.2f}x ({times[name].spread()})")
    if "lockstep" in times:
        for name in ("together", "longest first"):
            ratio = times["lockstep"].median / times[name].median
            print(f"{name} (slots refilled) / lockstep throughput: {ratio:.2f}x")


if __name__ == "__main__":
    main()
