"""A scripted interactive session, counted: compilations per step, cold and in a second process, and the host's share
of the propagation's wall time.

The session (issue 13's): one object clicked on frame 0 and propagated; a second object; a correction click on the
first object at a later frame; a third object; propagate again. Each step runs under a ``CompileCounter``: the
programs it compiled, how many of them the persistent cache answered, XLA's compile seconds and the step's wall
seconds. The whole session runs twice, each time in a fresh process, with one persistent cache folder (empty before
the first): the second process is what a user's next session pays, and it should compile nothing.

Then, in the second process (everything compiled), the host's share of the wall time per propagated frame:
``propagate_in_video`` over the clip (default ``chunks_in_flight=1``: chunk k+1 is queued before chunk k's outputs
are read), against the same device programs alone (the propagation chunk and the video-resolution resize, back to
back on the same tracker state, one block at the end). ``1 - device / wall`` is the part of the wall time the device
had nothing queued: host work on the critical path (Python bookkeeping, reading frames, fetching outputs). On a CPU
"the device" is the same two cores, so this share is an upper bound of what an accelerator would wait.

    .venv/bin/python benchmarks/session.py                      # tiny, 1024 px, 12 bedroom frames, float32
    .venv/bin/python benchmarks/session.py --image-size 512 --dtype bfloat16

Random weights (no checkpoint can be downloaded here): compile counts and times do not depend on them.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import environment_summary  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--frames", type=int, default=12, help="bedroom frames in the clip")
    p.add_argument("--chunk", type=int, default=4, help="the predictor's chunk_size")
    p.add_argument("--correction-frame", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=3, help="timed passes of the host-share measurement")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--clip", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.frames < 2 * args.chunk or not 0 < args.correction_frame < args.frames:
        p.error("need --frames >= 2 * --chunk and 0 < --correction-frame < --frames")
    return args


def session_steps(pred, state, correction_frame: int) -> list:
    """(label, callable) of the scripted session; clicks in video pixels of the bedroom frames (960x540)."""

    def click(frame, obj_id, points, labels):
        return lambda: pred.add_new_points_or_box(state, frame, obj_id, points=points, labels=labels)

    def propagate():
        for _ in pred.propagate_in_video(state):
            pass

    return [
        ("object 1: click on frame 0", click(0, 1, [[420, 270]], [1])),
        ("propagate", propagate),
        ("object 2: click on frame 0", click(0, 2, [[200, 150]], [1])),
        (f"object 1: correction click on frame {correction_frame}", click(correction_frame, 1, [[430, 280]], [0])),
        ("object 3: click on frame 0", click(0, 3, [[700, 400]], [1])),
        ("propagate", propagate),
    ]


def run_session(pred, state, correction_frame: int) -> list[dict]:
    from sam2_jax.utils.compile_cache import CompileCounter

    rows = []
    for label, step in session_steps(pred, state, correction_frame):
        with CompileCounter() as c:
            t0 = time.perf_counter()
            step()
            wall = time.perf_counter() - t0
        rows.append(
            dict(
                step=label,
                compiles=c.compiles,
                cache_hits=c.cache_hits,
                fresh=c.fresh,
                compile_s=c.compile_seconds,
                wall_s=wall,
            )
        )
    return rows


def device_only(pred, state, chunk: int):
    """A callable running the propagation's device programs over the clip with no host work between them: the
    chunk scan and the video-resolution resize, frames already on the device; blocks once at the end."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sam2_jax.tracker import compiled
    from sam2_jax.tracker.state import object_bucket
    from sam2_jax.video.pipeline import video_res_chunk

    objs = list(range(state.num_objects))
    # host copy: the chunk donates its state, so each pass puts a fresh one on the device (as the predictor does)
    start = pred.tracker_state(state, objs, 0, False, pad_to=object_bucket(len(objs)), on_device=False)
    n = (state.num_frames // chunk) * chunk
    frames = [jax.device_put(np.stack([state.images[t] for t in range(i, i + chunk)])) for i in range(0, n, chunk)]
    idxs = [jax.device_put(np.arange(i, i + chunk, dtype=np.int32)) for i in range(0, n, chunk)]
    hw = (state.video_height, state.video_width)

    def run():
        st, outs = jax.device_put(start), []
        for batch, fi in zip(frames, idxs, strict=True):
            st, out = compiled.propagate_chunk(
                pred.module, pred.params, st, batch, fi, jnp.bool_(False), pred.step_config
            )
            outs.append(video_res_chunk(out.pred_masks, hw, non_overlap=pred.non_overlap_masks))
        return jax.block_until_ready((st, outs))

    return run, n


def host_share(pred, state, chunk: int, repeats: int) -> dict:
    """Wall seconds per frame of ``propagate_in_video`` against its device programs alone, interleaved."""
    run_device, n = device_only(pred, state, chunk)
    run_device()  # compiles nothing new (the session did), warms the device copies

    def run_predictor():
        for _ in pred.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=n - 1):
            pass

    wall, dev = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_predictor()
        wall.append((time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        run_device()
        dev.append((time.perf_counter() - t0) / n)
    w, d = statistics.median(wall), statistics.median(dev)
    return dict(
        frames=n,
        wall_s_per_frame=w,
        device_s_per_frame=d,
        host_share=max(0.0, 1 - d / w),
        wall_all=wall,
        device_all=dev,
    )


def child(args) -> dict:
    import jax.numpy as jnp

    from sam2_jax.build_sam import build_sam2
    from sam2_jax.configs import get_config
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor
    from sam2_jax.utils.compile_cache import CompileCounter, enable_compilation_cache

    enable_compilation_cache()
    t0 = time.perf_counter()
    cfg = get_config(args.model)
    cfg.model.image_size = args.image_size
    with CompileCounter() as c:
        pred = SAM2VideoPredictor(build_sam2(cfg, None, seed=0, dtype=jnp.dtype(args.dtype)), chunk_size=args.chunk)
        pred.progress = False
        state = pred.init_state(args.clip)
    setup = dict(
        step="build and init_state",
        compiles=c.compiles,
        cache_hits=c.cache_hits,
        fresh=c.fresh,
        compile_s=c.compile_seconds,
        wall_s=time.perf_counter() - t0,
    )
    rows = [setup] + run_session(pred, state, args.correction_frame)
    share = host_share(pred, state, args.chunk, args.repeats) if args.child == "warm" else None
    return dict(rows=rows, host=share)


def print_report(args, cold: dict, warm: dict) -> None:
    print(f"\n{args.model}, {args.image_size} px, {args.dtype}, {args.frames} bedroom frames, chunk {args.chunk}")
    print("| step | cold: compiles (s) | cold wall s | second process: compiles, of them cache hits | wall s |")
    print("| --- | --- | --- | --- | --- |")
    for a, b in zip(cold["rows"], warm["rows"], strict=True):
        print(
            f"| {a['step']} | {a['compiles']} ({a['compile_s']:.1f}) | {a['wall_s']:.1f} | "
            f"{b['compiles']}, {b['cache_hits']} | {b['wall_s']:.1f} |"
        )
    tot = {k: sum(r[k] for r in cold["rows"]) for k in ("compiles", "compile_s", "wall_s")}
    fresh = sum(r["fresh"] for r in warm["rows"])
    print(f"cold session: {tot['compiles']} compiles, {tot['compile_s']:.1f} s of XLA compile in {tot['wall_s']:.1f} s")
    print(f"second process: {fresh} programs compiled by XLA (the rest answered by the persistent cache)")
    after_first = cold["rows"][3:]
    print(
        f"cold, after the first propagation: {sum(r['compiles'] for r in after_first)} compiles over "
        f"{len(after_first)} steps"
    )
    h = warm["host"]
    print(
        f"\nhost share ({h['frames']} frames, {args.repeats} interleaved passes): propagate_in_video "
        f"{h['wall_s_per_frame']:.3f} s/frame, its device programs alone {h['device_s_per_frame']:.3f} s/frame, "
        f"host share of the wall time {100 * h['host_share']:.1f}%"
    )
    print("  passes (wall, device):", [f"{w:.3f}/{d:.3f}" for w, d in zip(h["wall_all"], h["device_all"], strict=True)])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return
    from benchmarks.video import clip_dir

    print(environment_summary())
    tmp = Path(tempfile.mkdtemp(prefix="sam2_jax_session_"))
    clip = clip_dir(tmp, args.frames)
    env = dict(os.environ, SAM2_JAX_COMPILATION_CACHE=str(tmp / "xla"))
    results = {}
    for run in ("cold", "warm"):
        argv = [sys.executable, __file__, "--child", run, "--clip", str(clip), "--model", args.model]
        argv += ["--image-size", str(args.image_size), "--frames", str(args.frames), "--chunk", str(args.chunk)]
        argv += ["--correction-frame", str(args.correction_frame), "--dtype", args.dtype]
        argv += ["--repeats", str(args.repeats)]
        p = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1])
        if p.returncode:
            sys.exit(f"{run} process failed:\n{p.stderr[-4000:]}")
        results[run] = json.loads(next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))[7:])
    print_report(args, results["cold"], results["warm"])


if __name__ == "__main__":
    main()
