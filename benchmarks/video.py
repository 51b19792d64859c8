"""Video benchmark: our JAX ``SAM2VideoPredictor`` against the official PyTorch one (same random weights, same
bedroom frames, same run).

Prints, in one process: (1) this machine's float32 matmul GFLOP/s (a 2048x2048 matmul, JAX and torch; JAX with
bf16 inputs too); (2) for each ``--objects`` count (one click per object on frame 0, at distinct points), the
seconds per propagated frame of the official predictor (float32, torch threads = 2) and of ours in float32 and
with bfloat16 compute. The three propagations advance in lockstep, ``--chunk`` frames at a time, in a rotating
order, so each measurement of one implementation sits between measurements of the others under the same load.
The first ``--warmup-frames`` frames are excluded (our compile, and the official memory bank that only fills up
at frame ``num_maskmem``); medians over the remaining chunks. Our compile time is given apart (an ahead-of-time
``lower().compile()`` of the propagation chunk, and the first chunk minus a steady chunk); (3) the step's FLOPs
(matmuls and convolutions counted on the jaxpr, loop bodies times their length; XLA's cost analysis, also printed,
counts a loop body once: the scan over frames and the CPU attention's query blocks) over its measured time, as a
fraction of the matmul peak; the official at the same FLOPs (it attends to the same memories at steady state);
(4) bfloat16 masks against our float32 masks (IoU of logits > 0, every frame and object, min) and float32 against
the official (sanity); (5) peak RSS
(``ru_maxrss``) of a fresh process propagating ``--rss-frames`` frames with 1 object, for each implementation,
at ``--rss-image-size`` (both implementations take a model image-size override: ours ``cfg.model.image_size``,
the official the Hydra override ``++model.image_size``); (6) whether the malloc setting was on, the load average.
``--first-frames N`` then propagates frames 0..N-1 again from the clicks, everything compiled: what a
propagation's start costs each implementation. ``--profile`` (automatic when ours float32 is slower than the
official for some object count) times the step's pieces: ours as separately jitted functions, the official by
timing its methods during the measured frames.
``--policies samurai,sam3_selection,sam2long`` adds our float32 predictor under those tracker policies to the same
lockstep (a table of s/frame against our ``sam2`` policy, their compile in the first chunk) and to the peak-RSS part
(a fresh process per policy and frame count: memory flat in video length).

    .venv/bin/python benchmarks/video.py [--objects 1,3,8] [--frames 6] [--malloc] [--rss-image-size 512]

Needs the reference (torch 2.13.0 CPU + sam2 1.1.0, see ../shared/REFERENCE.md) and ../shared/data/videos.
"""

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (before JAX: --malloc re-execs the process)

BF16_MIN_IOU = 0.99
# One click per object on frame 0 of the bedroom video (960x540), at distinct points (x, y).
CLICKS = [(480, 300), (210, 380), (760, 160), (120, 120), (860, 420), (560, 470), (330, 190), (650, 300)]
IMPLS = ("official", "float32", "bfloat16")


def add_clicks(pred, state, n: int) -> None:
    """One positive click per object on frame 0, object ids 1..n (the official API, which both predictors share)."""
    import numpy as np

    for i, (x, y) in enumerate(CLICKS[:n]):
        pred.add_new_points_or_box(
            state, frame_idx=0, obj_id=i + 1, points=np.array([[x, y]], np.float32), labels=np.array([1], np.int32)
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sam2.1_hiera_t", help="config name (sam2.1_hiera_t, ...)")
    p.add_argument("--objects", default="1,3,8", help="object counts, comma-separated (at most 8)")
    p.add_argument("--frames", type=int, default=6, help="measured frames per object count (after the warm-up)")
    p.add_argument(
        "--warmup-frames",
        type=int,
        default=8,
        help="frames excluded at the start: our compile, and the official memory bank filling up (num_maskmem=7)",
    )
    p.add_argument(
        "--first-frames",
        type=int,
        default=4,
        help="then frames 0..N-1 again with everything compiled (a propagation's start, warm; 0 skips it)",
    )
    p.add_argument("--chunk", type=int, default=2, help="our chunk_size (frames per lax.scan call) = timing unit")
    p.add_argument("--dtype", default="float32,bfloat16", help="our compute dtypes, comma-separated")
    p.add_argument("--image-size", type=int, default=None, help="model image size for the speed part (default 1024)")
    p.add_argument("--rss-frames", default="50,200", help="frame counts for the peak-RSS part ('' skips it)")
    p.add_argument(
        "--rss-image-size", type=int, default=512, help="model image size for the peak-RSS part (0: the model's)"
    )
    p.add_argument("--skip-speed", action="store_true", help="only the peak-RSS part")
    p.add_argument("--skip-peaks", action="store_true", help="skip the matmul peak")
    p.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads for the official")
    p.add_argument("--async-frames", action="store_true", help="ours: decode frames in a background thread")
    p.add_argument("--malloc", action="store_true", help="re-exec with GLIBC_TUNABLES (see REFERENCE.md)")
    p.add_argument(
        "--isa",
        choices=("native", "avx2"),
        default="native",
        help="avx2: re-exec with both sides' kernels limited to AVX2 (XLA, oneDNN, ATen), as on an AVX2 CPU",
    )
    p.add_argument("--profile", action="store_true", help="time the step's pieces (auto if ours f32 is slower)")
    p.add_argument("--no-profile", action="store_true", help="never time the step's pieces")
    p.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="S", help="first wait up to S s for load average < 1.5"
    )
    p.add_argument(
        "--policies",
        default="",
        help="also our float32 predictor under these tracker policies (samurai,sam3_selection,sam2long), timed in "
        "the same lockstep against our sam2 policy; with --rss-frames, their peak RSS too",
    )
    p.add_argument(
        "--attention-impl",
        default="auto",
        help="ours: the model's attention_impl (auto = fused on CPU; chunked = the path before it)",
    )
    p.add_argument(
        "--compare-attention",
        default="",
        help="ours float32 with this attention_impl too (e.g. chunked), in the same lockstep: a row per object count",
    )
    p.add_argument(
        "--xla-temp",
        default="",
        help="only compile our float32 chunk for each --objects count under these attention impls (comma-separated, "
        "e.g. fused,chunked) and print XLA's temp buffers and compile seconds; no timing",
    )
    p.add_argument("--rss-impls", default="official,ours", help="implementations of the peak-RSS part")
    p.add_argument("--rss-policy", default="sam2", help=argparse.SUPPRESS)
    p.add_argument("--rss-child", choices=("official", "ours"), help=argparse.SUPPRESS)
    p.add_argument("--rss-n", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.objects = [int(x) for x in args.objects.split(",") if x]
    args.dtypes = [x for x in args.dtype.split(",") if x]
    args.rss = [int(x) for x in args.rss_frames.split(",") if x]
    args.policies = [x for x in args.policies.split(",") if x and x != "sam2"]
    if not args.objects or min(args.objects) < 1 or max(args.objects) > len(CLICKS):
        p.error(f"--objects must be between 1 and {len(CLICKS)}, got {args.objects}")
    if any(d not in ("float32", "bfloat16") for d in args.dtypes) or "float32" not in args.dtypes:
        p.error(f"--dtype must list float32 and optionally bfloat16, got {args.dtype}")
    if args.chunk < 1 or args.frames < 1 or args.warmup_frames < 1:
        p.error("--chunk, --frames and --warmup-frames must be >= 1")
    if args.first_frames < 0 or args.first_frames % args.chunk:
        p.error("--first-frames must be a multiple of --chunk (0 skips it)")
    # whole chunks only: a shorter last chunk would compile another scan length inside the measurement
    args.frames = math.ceil(args.frames / args.chunk) * args.chunk
    args.warmup_frames = math.ceil(args.warmup_frames / args.chunk) * args.chunk
    return args


# --- builders ------------------------------------------------------------------------------------------------
def official_predictor(name: str, image_size: int | None = None):
    """The official predictor as the parity tests build it (``sam2_jax.reference.video``), optionally at another
    image size."""
    from sam2_jax.reference.video import official_video_predictor

    predictor = official_video_predictor(name, image_size=image_size)
    if image_size is not None and predictor.image_size != image_size:
        raise RuntimeError(f"the image_size override did not apply: {predictor.image_size} != {image_size}")
    return predictor


def our_params(name: str) -> dict:
    """The converted reference weights; without importing torch when the golden shape file exists (so the RSS
    child of ours carries no torch)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sam2_jax.reference import GOLDEN

    shapes_file = GOLDEN / f"shapes_{name}.npz"
    if shapes_file.is_file():
        from sam2_jax.configs import get_config
        from sam2_jax.convert_weights.convert import convert_state_dict
        from sam2_jax.convert_weights.mapping import param_table
        from sam2_jax.utils.random_weights import random_state_dict

        z = np.load(shapes_file)
        shapes = {k: tuple(int(d) for d in z[k]) for k in z.files}
        table = param_table(get_config(name))
        params = convert_state_dict(random_state_dict(shapes, table, 0), table)
    else:
        from sam2_jax.reference.image import converted_params

        params = converted_params(name)
    return jax.tree.map(jnp.asarray, params)


def our_predictor(
    name: str,
    params: dict,
    dtype: str = "float32",
    image_size: int | None = None,
    chunk: int = 4,
    chunks_in_flight: int = 0,
    policy: str = "sam2",
    attention_impl: str = "auto",
):
    """Our predictor with the same weights, as tests/test_sam2_video_predictor.py ``_ours()`` (fill_hole_area=0),
    under the tracker ``policy``, with the model's ``attention_impl`` (``"auto"``: ``"fused"`` on CPU)."""
    import jax.numpy as jnp

    from sam2_jax.build_sam import SAM2Model
    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import make_module
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    cfg = get_config(name)
    if image_size is not None:
        cfg.model.image_size = image_size
    cfg.model.attention_impl = attention_impl

    module = make_module(cfg.model, getattr(jnp, dtype))
    # chunks_in_flight=0: the lockstep timing below needs each chunk finished before the official's turn (with a
    # chunk in flight, ours would compute in the background of the official's measurement).
    return SAM2VideoPredictor(
        SAM2Model(module, params, cfg),
        fill_hole_area=0,
        chunk_size=chunk,
        chunks_in_flight=chunks_in_flight,
        tracker_policy=policy,
    )


def clip_dir(root: Path, n: int) -> Path:
    """A folder of links to the first ``n`` bedroom frames (as ``sam2_jax.reference.video.link_frames``, kept apart
    so that the RSS child of ours imports nothing of the reference)."""
    shared = Path(os.environ.get("SAM2_JAX_SHARED", common.REPO.parent / "shared"))
    src = shared / "data" / "videos" / "bedroom"
    names = sorted(
        (p for p in os.listdir(src) if p.lower().endswith((".jpg", ".jpeg"))), key=lambda p: int(Path(p).stem)
    )
    if n > len(names):
        raise ValueError(f"{n} frames asked, the bedroom video has {len(names)}")
    dst = root / f"clip{n}"
    if not dst.is_dir():
        dst.mkdir(parents=True)
        for i in range(n):
            (dst / f"{i:05d}.jpg").symlink_to(src / names[i])
    return dst


# --- the speed part ------------------------------------------------------------------------------------------
def official_piece_methods() -> tuple:
    """(label, official ``SAM2Base`` method) of each piece of the official step. The official predictor has no
    public per-piece methods, so its private ones are taken as functions of its class (never spelled as strings)."""
    from sam2.modeling.sam2_base import SAM2Base as Official

    return (
        ("image encoder", Official.forward_image),
        ("memory attention (+ memory prep)", Official._prepare_memory_conditioned_features),
        ("SAM heads", Official._forward_sam_heads),
        ("memory encoder", Official._encode_new_memory),
    )


class OfficialPieceTimer:
    """Wall time of the official step's pieces (the official code is synchronous on CPU), while ``on``."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.on = False
        self.methods = [(label, fn.__name__) for label, fn in official_piece_methods()]
        self.seconds = {label: 0.0 for label, _ in self.methods}
        self.frames = 0

    def __enter__(self):
        for label, method in self.methods:
            original = getattr(self.predictor, method)

            def wrapped(*a, _f=original, _label=label, **kw):
                t0 = time.perf_counter()
                out = _f(*a, **kw)
                if self.on:
                    self.seconds[_label] += time.perf_counter() - t0
                return out

            setattr(self.predictor, method, wrapped)
        return self

    def __exit__(self, *exc):
        for _, method in self.methods:
            delattr(self.predictor, method)


def masks_iou(a, b) -> float:
    """IoU of two boolean masks; 1 when both are empty."""
    import numpy as np

    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _ious(a: list, b: list) -> list[float]:
    """IoU per frame and object of two lists of (O, H, W) boolean masks."""
    return [masks_iou(x[o], y[o]) for x, y in zip(a, b, strict=True) for o in range(x.shape[0])]


_AOT_TEMP_BYTES: dict[int, int | None] = {}  # predictor id -> XLA temp bytes of its compiled chunk


def _step_jaxpr_flops(pred, n_obj: int, chunk: int, num_frames: int) -> tuple[float, bool]:
    """Matmul + conv FLOPs of our propagation chunk for ``n_obj`` objects, counted on its jaxpr, and whether
    inexact (``common.jaxpr_flops``)."""
    import jax.numpy as jnp

    from sam2_jax.tracker import compiled
    from sam2_jax.tracker.step_config import StepConfig

    cfg = StepConfig(compact=True)  # the predictor's propagation step (sam2 policy, no hole filling)
    st = pred.empty_tracker_state(n_obj, 1, num_frames)
    s = pred.image_size
    images = jnp.zeros((chunk, s, s, 3), jnp.float32)
    idxs = jnp.arange(chunk, dtype=jnp.int32)

    def fn(params, st, images, idxs):
        return compiled.propagate_chunk.__wrapped__(pred.module, params, st, images, idxs, jnp.bool_(False), cfg)

    return common.jaxpr_flops(fn, pred.params, st, images, idxs)


# Per object count: matmul + conv FLOPs per frame of the official's formulation of the step (official_step_flops).
_OFFICIAL_FLOPS: dict[int, float] = {}


def official_step_flops(pred, counts, chunk: int, num_frames: int) -> None:
    """Count, for each object count, our step's FLOPs per frame as the official computes it, into ``_OFFICIAL_FLOPS``.

    The official projects the memory attention's cross-attention values before attending (the second dot has 256
    columns), where we project after attending (64; ``RoPEAttention.projects_values_after``): the same memories and
    keys, more FLOPs. Traced with that switched off, before anything is timed; ``jax.clear_caches`` then drops those
    traces, so no later call reuses them.
    """
    import jax

    from sam2_jax.modeling.sam.transformer import Attention

    ours_after = Attention.projects_values_after
    Attention.projects_values_after = lambda self, kv_in_dim: False
    try:
        for n_obj in counts:
            _OFFICIAL_FLOPS[n_obj] = _step_jaxpr_flops(pred, n_obj, chunk, num_frames)[0] / chunk
    finally:
        Attention.projects_values_after = ours_after
        jax.clear_caches()


def aot_compile(pred, n_obj: int, chunk: int, num_frames: int):
    """Ahead-of-time compile of our propagation chunk for ``n_obj`` objects: (seconds, XLA flops, jaxpr flops)."""
    import jax.numpy as jnp

    from sam2_jax.tracker import compiled
    from sam2_jax.tracker.step_config import StepConfig

    cfg = StepConfig(compact=True)  # the predictor's propagation step (sam2 policy, no hole filling)
    st = pred.empty_tracker_state(n_obj, 1, num_frames)
    s = pred.image_size
    images = jnp.zeros((chunk, s, s, 3), jnp.float32)
    idxs = jnp.arange(chunk, dtype=jnp.int32)
    t0 = time.perf_counter()
    exe = compiled.propagate_chunk.lower(pred.module, pred.params, st, images, idxs, jnp.bool_(False), cfg).compile()
    seconds = time.perf_counter() - t0
    xla = common.compiled_flops(exe)
    try:
        temp = exe.memory_analysis().temp_size_in_bytes
    except Exception:  # optional per backend
        temp = None
    _AOT_TEMP_BYTES[id(pred)] = temp

    jaxpr, inexact = _step_jaxpr_flops(pred, n_obj, chunk, num_frames)
    del exe
    return seconds, xla, jaxpr / chunk, inexact


def _clicked_states(preds: dict, clip: Path, n_obj: int, async_frames: bool) -> tuple[dict, dict]:
    """Each predictor's ``init_state`` of the clip with one click per object on frame 0, and its seconds."""
    import torch

    states, setup = {}, {}
    with torch.inference_mode():
        for name, pred in preds.items():
            t0 = time.perf_counter()
            kw = {} if name == "official" else {"async_loading_frames": async_frames}
            s = pred.init_state(str(clip), **kw)
            add_clicks(pred, s, n_obj)
            setup[name] = time.perf_counter() - t0
            states[name] = s
    return states, setup


def _lockstep(preds: dict, states: dict, n_frames: int, chunk: int, on_unit=None) -> tuple[dict, dict]:
    """Propagate every state from frame 0, ``chunk`` frames at a time per implementation in a rotating order.
    Returns per implementation the seconds of each chunk and each frame's masks (O, H, W) bool; ``on_unit(u)``
    is called before the round of chunk u."""
    import numpy as np

    names = list(states)
    gens = {n: preds[n].propagate_in_video(states[n], max_frame_num_to_track=n_frames) for n in names}
    times = {n: [] for n in names}
    masks = {n: [] for n in names}
    for u in range(n_frames // chunk):
        if on_unit is not None:
            on_unit(u)
        for n in names[u % len(names) :] + names[: u % len(names)]:
            t0 = time.perf_counter()
            for _ in range(chunk):
                t, ids, m = next(gens[n])
                m = m.numpy() if hasattr(m, "numpy") else np.asarray(m)
                masks[n].append(m[:, 0] > 0)
            times[n].append(time.perf_counter() - t0)
        line = ", ".join(f"{n} {times[n][-1] / chunk:.2f}" for n in names)
        print(f"    frames {u * chunk}-{u * chunk + chunk - 1}: s/frame {line}  ({common.load_status()})", flush=True)
    for g in gens.values():
        g.close()
    return times, masks


def bench_objects(args, n_obj, official, ours, tmp, peaks, report):
    """Propagate ``n_obj`` clicked objects with every implementation in lockstep; per-frame seconds per chunk."""
    import numpy as np
    import torch

    n_total = args.warmup_frames + args.frames
    clip = clip_dir(tmp, n_total)
    chunk = args.chunk
    r = {"objects": n_obj}

    # compile ahead (timed) and XLA's FLOP count of one step (the sam2 policy; other policies' compile is in their
    # first chunk)
    for dt, pred in ours.items():
        if dt.startswith("policy "):
            continue
        secs, xla, jaxpr_per_frame, inexact = aot_compile(pred, n_obj, chunk, n_total)
        r[f"compile {dt}"] = secs
        r[f"xla flops {dt}"] = xla
        r[f"jaxpr flops {dt}"] = jaxpr_per_frame
        r["jaxpr flops official"] = _OFFICIAL_FLOPS.get(n_obj)
        temp = _AOT_TEMP_BYTES.get(id(pred))
        print(
            f"  {n_obj} obj: ahead-of-time compile of our {dt} chunk ({chunk} frames): {secs:.1f} s; "
            f"XLA cost analysis {0 if xla is None else xla / 1e9:.0f} GFLOP per step; "
            f"matmul+conv on the jaxpr {jaxpr_per_frame / 1e9:.0f}{'+' if inexact else ''} GFLOP per frame "
            f"(the official's formulation {(_OFFICIAL_FLOPS.get(n_obj) or 0) / 1e9:.0f}); "
            f"XLA temp buffers {'?' if temp is None else f'{temp / 2**30:.2f} GiB'}",
            flush=True,
        )

    # setup: init_state + one click per object on frame 0
    preds = {"official": official, **ours}
    states, setup = _clicked_states(preds, clip, n_obj, args.async_frames)
    r["setup"] = setup
    names = list(states)
    units = n_total // chunk
    warm_units = args.warmup_frames // chunk
    with contextlib.ExitStack() as stack:
        timer = stack.enter_context(OfficialPieceTimer(official))
        stack.enter_context(torch.inference_mode())

        def on_unit(u):
            timer.on = u >= warm_units

        times, masks = _lockstep(preds, states, n_total, chunk, on_unit)
        timer.frames = (units - warm_units) * chunk
    r["official pieces"] = {k: v / max(timer.frames, 1) for k, v in timer.seconds.items()}
    if args.first_frames:
        # the first frames again, with everything compiled: what a propagation's start costs each implementation
        print(f"    again from frame 0, warm: frames 0-{args.first_frames - 1}", flush=True)
        states, _ = _clicked_states(preds, clip, n_obj, args.async_frames)
        with torch.inference_mode():
            first, _ = _lockstep(preds, states, args.first_frames, chunk)
        r["first frames warm"] = {n: [x / chunk for x in first[n]] for n in names}
    steady = {n: statistics.median(times[n][warm_units:]) / chunk for n in names}
    r["per frame"] = steady
    r["spread"] = {n: (min(times[n][warm_units:]) / chunk, max(times[n][warm_units:]) / chunk) for n in names}
    r["first chunk"] = {n: times[n][0] for n in names}
    r["warm-up per frame"] = {n: sum(times[n][:warm_units]) / (warm_units * chunk) for n in names}
    # mask agreement on every frame (warm-up included) and object
    ious_16 = _ious(masks["float32"], masks["bfloat16"]) if "bfloat16" in masks else []
    ious_off = _ious(masks["float32"], masks["official"])
    r["min iou bf16"] = min(ious_16) if ious_16 else None
    r["min iou official"] = min(ious_off)
    r["fg fraction"] = float(np.mean([m.mean() for m in masks["float32"]]))
    report.append(r)
    return r


def print_policy_table(report, args) -> None:
    """Our float32 predictor under each tracker policy against our sam2 policy (float32), same lockstep run."""
    print(
        f"\ntracker policies ({args.model}, {args.image_size or 1024} px, float32, bedroom frames; median s/frame of "
        f"{args.frames // args.chunk} chunks after {args.warmup_frames} warm-up frames; ratio = policy / sam2):"
    )
    print(f"{'objects':>8} {'policy':>16} {'s/frame':>9} {'sam2 s/frame':>13} {'ratio':>7} {'first chunk s':>14}")
    for r in report:
        base = r["per frame"]["float32"]
        for name, spf in r["per frame"].items():
            if name.startswith("policy "):
                print(
                    f"{r['objects']:>8} {name[7:]:>16} {spf:>9.3f} {base:>13.3f} {spf / base:>7.2f} "
                    f"{r['first chunk'][name]:>14.1f}"
                )


def print_speed_table(report, args, peaks) -> None:
    rows = []
    for r in report:
        n, pf = r["objects"], r["per frame"]
        off = pf["official"]
        variants = [k for k in pf if k != "official" and not k.startswith("policy ")]  # dtypes, --compare-attention
        for dt in variants:
            label = dt if dt in ("float32", "bfloat16") else f"float32, attention {dt}"
            lo, hi = r["spread"][dt]
            note = f"ours min {lo:.2f} max {hi:.2f}; compile {r[f'compile {dt}']:.1f} s AOT"
            note += f", first chunk {r['first chunk'][dt]:.1f} s"
            # the jaxpr's count: XLA's cost analysis counts a loop body once (the scan over frames, the CPU
            # attention's query blocks), so its figure undercounts the step several times
            flops = r[f"jaxpr flops {dt}"]
            if flops and peaks:
                rate = flops / pf[dt] / 1e9
                note += (
                    f"; {flops / 1e9:.0f} GFLOP/frame = {rate:.0f} GFLOP/s = {rate / peaks['jax f32']:.2f} of f32 peak"
                )
                if dt == "bfloat16":
                    note += f" ({rate / peaks['jax bf16->f32']:.2f} of bf16 peak)"
            if dt == "bfloat16" and r["min iou bf16"] is not None:
                ok = r["min iou bf16"] >= BF16_MIN_IOU
                note += f"; min IoU vs f32 {r['min iou bf16']:.4f} {'PASS' if ok else 'FAIL'}"
            rows.append(common.Row(f"{n} obj, s/frame, ours {label}", pf[dt], off, note))
        rows.append(
            common.Row(
                f"{n} obj, setup (init_state+clicks) ours f32",
                r["setup"]["float32"],
                r["setup"]["official"],
                "ours includes the first compiles at the first count",
            )
        )
        for u, off_first in enumerate(r.get("first frames warm", {}).get("official", [])):
            a = u * args.chunk
            for dt in variants:
                if dt in r["first frames warm"]:
                    ours_first = r["first frames warm"][dt][u]
                    rows.append(
                        common.Row(
                            f"{n} obj, frames {a}-{a + args.chunk - 1} warm, ours {dt}",
                            ours_first,
                            off_first,
                            "a second propagation from the clicked frame, everything compiled",
                        )
                    )
        rows.append(
            common.Row(
                f"{n} obj, warm-up frames avg, ours f32",
                r["warm-up per frame"]["float32"],
                r["warm-up per frame"]["official"],
                f"frames 0-{args.warmup_frames - 1}, incl. compile",
            )
        )
    common.print_table(
        rows,
        f"{args.model} at {args.image_size or 1024} px, bedroom frames, seconds per propagated frame: medians of "
        f"{args.frames // args.chunk} chunks of {args.chunk} frames after {args.warmup_frames} warm-up frames; "
        "official/ours > 1: ours is faster; bf16 lines compare with the official float32",
    )
    if peaks and "torch f32" in peaks:
        k = peaks["torch f32"] / peaks["jax f32"]
        pf = [(r["objects"], r["per frame"]) for r in report]
        adj = ", ".join(f"{n} obj {k * p['official'] / p['float32']:.2f}x" for n, p in pf)
        print(
            f"  same-run 2048^2 matmul: torch f32 {peaks['torch f32']:.0f} / jax f32 {peaks['jax f32']:.0f} GFLOP/s "
            f"= {k:.2f} (under load torch's OpenMP threads lose more than XLA's pool); off/ours f32 scaled by it: {adj}"
        )
    for r in report:
        lo, hi = r["spread"]["official"]
        s = f"  {r['objects']} obj: official s/frame min {lo:.2f} max {hi:.2f}"
        flops = r.get("jaxpr flops official")  # the same memories, its values projected first (official_step_flops)
        if flops and peaks and "torch f32" in peaks:
            g = flops / r["per frame"]["official"] / 1e9
            s += f"; at its step's FLOPs that is {g:.0f} GFLOP/s = {g / peaks['torch f32']:.2f} of the torch f32 peak"
        print(s)
    for r in report:
        s = f"  {r['objects']} obj: float32 vs official min mask IoU {r['min iou official']:.4f}"
        s += f" (foreground fraction {r['fg fraction']:.3f})"
        if r["min iou bf16"] is not None:
            s += f"; bfloat16 vs float32 min IoU {r['min iou bf16']:.4f} over every frame and object"
        print(s)


def _time_our_pieces(p, s: dict, n_obj: int, t_next: int) -> dict[str, float]:
    """Median seconds of each piece of our step, jitted alone, on the memory state seen from frame ``t_next``."""
    import jax
    import jax.numpy as jnp

    from sam2_jax.tracker import calls, engine, memory
    from sam2_jax.tracker.step_config import StepConfig

    st = p.tracker_state(s, list(range(n_obj)), t_next, False)
    image = jnp.asarray(s["images"][t_next])[None]
    t, rev = jnp.int32(t_next), jnp.bool_(False)
    mod, params = p.module, p.params
    multimask = mod.use_multimask(is_init_cond_frame=False, num_pts=0)  # a tracked frame, as engine.track_frame

    def heads_fn(prm, pix, fe):
        hr = calls.broadcast_high_res(fe, n_obj)
        return calls.sam_heads(mod, prm, pix, None, None, None, hr, multimask)

    def menc_fn(prm, fe, high_res_masks, object_score_logits):
        return calls.encode_memory(mod, prm, fe, high_res_masks, object_score_logits, False)

    f_feat = jax.jit(lambda prm, x: calls.frame_features(mod, prm, x))
    f_mem_in = jax.jit(lambda prm, st: memory.memory_inputs(mod, prm, st, t, rev)[:3])
    f_cond = jax.jit(lambda prm, st, fe: memory.condition_on_memory(mod, prm, st, fe, t, rev))
    f_heads, f_menc = jax.jit(heads_fn), jax.jit(menc_fn)
    f_step = jax.jit(lambda prm, st, x: engine.track_step(mod, prm, st, x, t, rev, StepConfig(compact=True)))
    fe = common.block(f_feat(params, image))
    pix = common.block(f_cond(params, st, fe))
    heads = common.block(f_heads(params, pix, fe))
    pieces = {
        "image encoder": (f_feat, (params, image)),
        "memory attention (+ memory prep)": (f_cond, (params, st, fe)),
        "  of which memory prep (concat, pos enc)": (f_mem_in, (params, st)),
        "SAM heads": (f_heads, (params, pix, fe)),
        "memory encoder": (f_menc, (params, fe, heads.high_res_masks, heads.object_score_logits)),
        "whole step (jitted alone)": (f_step, (params, st, image)),
    }
    out = {}
    for k, (fn, a) in pieces.items():
        seconds = common.time_fn(lambda fn=fn, a=a: common.block(fn(*a)), repeats=3, warmup=1).median
        out[k] = (seconds, common.jaxpr_flops(fn, *a)[0])
    return out


def profile_pieces(args, n_obj, ours, official_pieces, tmp) -> None:
    """Our step's pieces jitted separately on a full memory state (after a propagation), against the official
    methods timed during the measured frames."""

    pred = ours["float32"]
    n_total = args.warmup_frames + args.frames
    clip = clip_dir(tmp, n_total)
    s = pred.init_state(str(clip))
    add_clicks(pred, s, n_obj)
    tracked = [t for t, _, _ in pred.propagate_in_video(s, max_frame_num_to_track=args.warmup_frames - 1)]
    t_next = tracked[-1] + 1
    out = {dt: _time_our_pieces(p, s, n_obj, t_next) for dt, p in ours.items()}
    peak = common.jax_matmul_gflops(*common.MATMUL_SHAPES["square 2048^2"])
    print(
        f"\nstep pieces, {n_obj} objects, seconds per frame (ours: each piece jitted alone, median of 3; "
        "official: its methods timed during the measured frames); ours f32 matmul+conv GFLOP/s of each piece (its "
        f"jaxpr's dots and convs) against the same run's JAX float32 2048^2 matmul, {peak:.0f} GFLOP/s"
    )
    print(
        f"{'piece':<44}{'ours f32':>10}{'ours bf16':>11}{'official':>10}{'off/f32':>9}{'f32 GFLOP/s':>13}{'of peak':>9}"
    )
    for k, (sec, flops) in out["float32"].items():
        off = official_pieces.get(k.strip())
        vals = [sec, out.get("bfloat16", {}).get(k, (float("nan"), 0))[0], off]
        ratio = "-" if off is None else f"{off / sec:.2f}x"
        rate = flops / sec / 1e9
        print(
            f"{k:<44}"
            + "".join("         -" if v is None else f"{v:>10.3f}" for v in vals)
            + f"{ratio:>9}{rate:>13.0f}{rate / peak:>9.2f}"
        )


# --- the peak-RSS part ---------------------------------------------------------------------------------------
def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def vm_hwm_mb() -> float | None:
    """VmHWM of /proc/self/status: the peak RSS of this process image (reset by exec, unlike ru_maxrss, which
    keeps the peak of the image that exec replaced: a child forked from a big process inherits that peak; hence
    the RSS children are started before this script loads JAX or torch)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_child(args) -> int:
    """A fresh process: build one implementation, propagate ``--rss-n`` frames with 1 object; print JSON."""
    import numpy as np

    size = args.rss_image_size or None
    n = args.rss_n
    out = {"impl": args.rss_child, "frames": n, "image_size": size or 1024}
    with tempfile.TemporaryDirectory() as tmp:
        clip = clip_dir(Path(tmp), n)
        t0 = time.perf_counter()
        if args.rss_child == "official":
            import torch

            torch.set_num_threads(args.torch_threads)
            pred = official_predictor(args.model, size)
            ctx = torch.inference_mode()
        else:
            pred = our_predictor(
                args.model,
                our_params(args.model),
                "float32",
                size,
                chunk=4,
                policy=args.rss_policy,
                attention_impl=args.attention_impl,
            )
            ctx = contextlib.nullcontext()
            out["impl"] = "ours" if args.rss_policy == "sam2" else f"ours {args.rss_policy}"
        out["rss after build MB"] = rss_mb()
        with ctx:
            s = pred.init_state(str(clip))
            add_clicks(pred, s, 1)
            out["rss after init_state+click MB"] = rss_mb()
            t1 = time.perf_counter()
            count = 0
            fg = 0.0
            for _, _, m in pred.propagate_in_video(s):
                count += 1
                fg += float((np.asarray(m) > 0).mean())
        out["propagated"] = count
        out["propagate s"] = time.perf_counter() - t1
        out["total s"] = time.perf_counter() - t0
        out["fg fraction"] = fg / max(count, 1)
        out["peak rss MB"] = rss_mb()
        out["VmHWM MB"] = vm_hwm_mb()
        out["torch imported"] = "torch" in sys.modules
    print("RSS-JSON " + json.dumps(out), flush=True)
    return 0


def bench_rss(args) -> list[dict]:
    results = []
    impls = [(i, "sam2") for i in args.rss_impls.split(",")] + [("ours", pol) for pol in args.policies]
    for n in args.rss:
        for impl, policy in impls:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", impl, "--rss-n", str(n)]
            cmd += ["--rss-policy", policy]
            cmd += ["--model", args.model, "--rss-image-size", str(args.rss_image_size)]
            cmd += ["--torch-threads", str(args.torch_threads), "--attention-impl", args.attention_impl]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RSS-JSON ")]
            if proc.returncode or not lines:
                print(f"  RSS child {impl} ({policy}) {n} frames failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
                continue
            r = json.loads(lines[-1][len("RSS-JSON ") :])
            results.append(r)
            print(
                f"  {r['impl']:>8} {n:>4} frames at {r['image_size']} px: peak RSS {r['peak rss MB']:.0f} MB "
                f"(after build {r['rss after build MB']:.0f}, after init_state+click "
                f"{r['rss after init_state+click MB']:.0f}; VmHWM {r['VmHWM MB']:.0f}); "
                f"propagate {r['propagate s']:.0f} s "
                f"({r['propagate s'] / max(r['propagated'], 1):.2f} s/frame), "
                f"process {time.perf_counter() - t0:.0f} s; "
                f"torch imported: {r['torch imported']}; {common.load_status()}",
                flush=True,
            )
    return results


def print_rss_table(results: list[dict]) -> None:
    if not results:
        return
    by = {(r["impl"], r["frames"]): r for r in results}
    frames = sorted({r["frames"] for r in results})
    size = results[0]["image_size"]
    print(f"peak RSS (ru_maxrss, MB) of a fresh process propagating 1 object, {size} px, float32:")
    print(f"{'frames':>8}{'official':>12}{'ours':>12}{'off/ours':>10}{'official s/frame':>18}{'ours s/frame':>14}")
    for n in frames:
        o, u = by.get(("official", n)), by.get(("ours", n))
        cell = lambda r, k: f"{r[k]:.0f}" if r else "-"
        ratio = f"{o['peak rss MB'] / u['peak rss MB']:.2f}x" if o and u else "-"
        spf = lambda r: f"{r['propagate s'] / max(r['propagated'], 1):.2f}" if r else "-"
        print(f"{n:>8}{cell(o, 'peak rss MB'):>12}{cell(u, 'peak rss MB'):>12}{ratio:>10}{spf(o):>18}{spf(u):>14}")
    for impl in sorted({r["impl"] for r in results} - {"official", "ours"}):  # ours under other tracker policies
        cells = ", ".join(
            f"{n} frames {by[(impl, n)]['peak rss MB']:.0f} MB ({spf(by[(impl, n)])} s/frame)"
            for n in frames
            if (impl, n) in by
        )
        print(f"  {impl}: {cells}")
    if len(frames) >= 2:
        lo, hi = frames[0], frames[-1]
        for impl in sorted({r["impl"] for r in results}):
            a, b = by.get((impl, lo)), by.get((impl, hi))
            if a and b:
                d = b["peak rss MB"] - a["peak rss MB"]
                print(f"  {impl}: {hi} vs {lo} frames: {d:+.0f} MB ({d / (hi - lo):+.2f} MB per extra frame)")


def xla_temp(args) -> None:
    """``--xla-temp``: XLA's temp buffers (``memory_analysis``) of our float32 propagation chunk, per object count and
    attention implementation: the step's device-side peak besides its arguments and outputs."""
    params = our_params(args.model)
    n_total = args.warmup_frames + args.frames
    print("| objects | attention | XLA temp buffers GiB | compile s |\n| --- | --- | --- | --- |")
    for n_obj in args.objects:
        for impl in args.xla_temp.split(","):
            pred = our_predictor(args.model, params, "float32", args.image_size, args.chunk, attention_impl=impl)
            secs, _, _, _ = aot_compile(pred, n_obj, args.chunk, n_total)
            temp = _AOT_TEMP_BYTES.get(id(pred))
            print(f"| {n_obj} | {impl} | {'?' if temp is None else f'{temp / 2**30:.3f}'} | {secs:.0f} |", flush=True)


# --- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    common.reexec_with_malloc(sys.argv if argv is None else [sys.argv[0], *argv])
    common.reexec_with_isa(sys.argv if argv is None else [sys.argv[0], *argv])
    args = parse_args(argv)
    if args.rss_child:
        return rss_child(args)
    if args.wait_quiet > 0:
        common.wait_for_quiet(1.5, args.wait_quiet)
    t_start = time.perf_counter()
    loads = [os.getloadavg()[0]]
    rss = []
    if args.rss:
        # first, while this process is small: a child's ru_maxrss starts at its parent's peak (see vm_hwm_mb)
        print(f"{common.load_status()}\n{common.malloc_status()}\n{common.isa_status()}", flush=True)
        print(f"peak RSS: separate processes, {args.rss} frames at {args.rss_image_size or 1024} px ...", flush=True)
        rss = bench_rss(args)
        loads.append(os.getloadavg()[0])
        print()

    import torch

    torch.set_num_threads(args.torch_threads)
    print(common.environment_summary(), flush=True)
    print(
        f"model {args.model}, objects {args.objects}, {args.warmup_frames} warm-up + {args.frames} measured frames, "
        f"chunk {args.chunk}, dtypes {args.dtypes}, speed image size {args.image_size or 1024}, "
        f"RSS frames {args.rss} at {args.rss_image_size or 1024} px\n",
        flush=True,
    )
    peaks = None
    if not args.skip_peaks:
        shapes = {"square 2048^2": common.MATMUL_SHAPES["square 2048^2"]}
        peaks = common.print_matmul_peaks(common.matmul_peaks(shapes, repeats=5))
        print()

    if args.xla_temp:
        xla_temp(args)
        return 0
    ok = True
    report: list[dict] = []
    if not args.skip_speed:
        official = official_predictor(args.model, args.image_size)
        params = our_params(args.model)
        ours = {
            dt: our_predictor(args.model, params, dt, args.image_size, args.chunk, attention_impl=args.attention_impl)
            for dt in args.dtypes
        }
        if args.compare_attention:
            ours[args.compare_attention] = our_predictor(
                args.model, params, "float32", args.image_size, args.chunk, attention_impl=args.compare_attention
            )
        for pol in args.policies:
            ours[f"policy {pol}"] = our_predictor(
                args.model, params, "float32", args.image_size, args.chunk, policy=pol
            )
        official_step_flops(next(iter(ours.values())), args.objects, args.chunk, args.warmup_frames + args.frames)
        with tempfile.TemporaryDirectory() as tmp:
            for n_obj in args.objects:
                print(f"timing {n_obj} object(s) ...", flush=True)
                bench_objects(args, n_obj, official, ours, Path(tmp), peaks, report)
                loads.append(os.getloadavg()[0])
            print()
            print_speed_table(report, args, peaks)
            if args.policies:
                print_policy_table(report, args)
            ok = all(r["min iou bf16"] is None or r["min iou bf16"] >= BF16_MIN_IOU for r in report)
            slower = [r for r in report if r["per frame"]["float32"] > r["per frame"]["official"]]
            if not args.no_profile and (args.profile or slower):
                r = slower[-1] if slower else report[-1]
                why = "requested" if args.profile else f"ours float32 is slower at {[x['objects'] for x in slower]}"
                print(f"\nprofiling the step's pieces ({why})", flush=True)
                profile_pieces(args, r["objects"], ours, r["official pieces"], Path(tmp))
        del official, ours
    print()
    if rss:
        print_rss_table(rss)
        print()
    if peaks:
        print(
            f"matmul peak (2048^2): jax f32 {peaks['jax f32']:.0f}, jax bf16->f32 {peaks['jax bf16->f32']:.0f}, "
            f"torch f32 {peaks['torch f32']:.0f} GFLOP/s"
        )
    print(common.malloc_status())
    print(
        f"1-min load average during the run: {', '.join(f'{x:.2f}' for x in loads)} (start, after each part); "
        f"at the end: {common.load_status()}"
    )
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
