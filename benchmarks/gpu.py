"""GPU benchmark: our JAX ``SAM2VideoPredictor`` against the official PyTorch one, at equal precision, on one GPU.

Same random weights (``sam2_jax.reference``), the same bedroom frames, the same clicks (one per object on frame 0,
``benchmarks/video.py``'s points), ``fill_hole_area`` 0 on both sides (the official hole filling needs its CUDA
extension, which the PyPI package does not build). Every row of the table is one fresh child process, one
(implementation, dtype, object count), run one after the other in this one invocation:
- ``official``: ``build_sam2_video_predictor(..., device="cuda")`` as shipped; float32 as is, bfloat16 under
  ``torch.autocast("cuda", dtype=torch.bfloat16)`` (as the official notebooks and ``tools/vos_inference.py``);
- ``official_vos``: the same with ``vos_optimized=True`` (``SAM2VideoPredictorVOS``: ``torch.compile``
  max-autotune of the memory attention, memory encoder, prompt encoder and mask decoder, and of the image encoder
  through ``compile_image_encoder``), bfloat16 autocast by default, as the official ``sam2/benchmark.py``. It needs
  a working compiler (Triton, a C++ compiler); a failure or a timeout is written into its row and the run goes on;
- ``ours``: ``dtype="float32"`` or ``"bfloat16"`` (bfloat16 compute, float32 accumulation, float32 params).

Matmul precision, the same on both sides and in every row (``--f32-matmul``): ``highest`` (default) = strict
float32: torch ``backends.cuda.matmul.allow_tf32 = False`` and ``backends.cudnn.allow_tf32 = False``, JAX
``jax_default_matmul_precision = "highest"``; ``tf32`` = TensorFloat-32 allowed on both (torch ``allow_tf32 =
True`` for both, JAX ``"tensorfloat32"``). In bfloat16 rows this governs the float32 operations that stay float32.
Each child reports the settings it read back, and the table prints them.

Measured per row: ``init_state`` seconds (the official decodes every frame and uploads it there; ours reads frames
lazily, during propagation), the first ``--warmup`` frames' seconds (compiles land there: our XLA programs, the
official ``torch.compile``; also the official memory bank filling up) and their excess over steady frames, steady
seconds per frame over frames ``--warmup``.. (mean, and the min-max over windows of ``--chunk`` frames), our XLA
compile seconds apart (``jax.monitoring`` backend-compile events; the persistent compilation cache is off, so
every program is compiled in the row's process), whole-video seconds (init + clicks + propagation, compiles
included), device memory: each side's own allocator over the whole process, read after the propagation: torch
``cuda.max_memory_allocated()`` / ``memory_allocated()`` (caching allocator, peak reset at the process start) and
JAX ``device.memory_stats()["peak_bytes_in_use"]`` / ``["bytes_in_use"]`` (BFC allocator, preallocation off:
``XLA_PYTHON_CLIENT_PREALLOCATE=false``); allocator scratch of autotuning counts where it goes through the
allocator, on both sides. Masks (logits > 0, every frame and object) against the official row of the same dtype
and object count: min and mean IoU.

On the GPU machine (no network; see benchmarks/README.md, "Running gpu.py on a lent GPU"):

    python benchmarks/gpu.py --pack .gpu_pack        # here: sam2, hydra, ... and the frames into one folder
    PYTHONPATH=.gpu_pack/site python3 benchmarks/gpu.py --frames-dir .gpu_pack/bedroom --out $OUT/gpu.md

``--budget-s`` (default 540) bounds the whole run so that it fits one 600 s call: rows that no longer fit are
written as not run, and the table is rewritten after every row, so a killed run still leaves its rows. Dry run on
CPU (same code paths, tiny sizes): ``--device cpu --frames 4 --warmup 2 --chunk 2 --image-size 256 --objects 1``.
"""

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # its children import video.py's builders
sys.path.insert(1, str(REPO))  # sam2_jax, configs, convert_weights when run as `python benchmarks/gpu.py`

import common  # noqa: E402
from video import add_clicks  # noqa: E402  (video.py's clicks; its module imports neither JAX nor torch)

IMPLS = ("official", "ours", "official_vos")
# What --pack copies from this environment: the official package and its pure-Python needs that the GPU image
# lacks (ml_collections is ours'); torch, JAX, flax, numpy, PIL, tqdm, yaml, portalocker are there.
PACKAGES = ("sam2", "hydra", "omegaconf", "antlr4", "iopath", "ml_collections")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames-dir", default=str(REPO.parent / "shared" / "data" / "videos" / "bedroom"))
    p.add_argument("--frames", type=int, default=32, help="frames tracked (the first N of the folder)")
    p.add_argument("--warmup", type=int, default=8, help="frames before the steady state (a multiple of --chunk)")
    p.add_argument("--chunk", type=int, default=8, help="our chunk_size, and the window of the s/frame spread")
    p.add_argument("--objects", default="1,8")
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--impls", default=",".join(IMPLS), help="implementations to run")
    p.add_argument("--vos-dtypes", default="bfloat16", help="dtypes of the official_vos rows")
    p.add_argument("--f32-matmul", choices=("highest", "tf32"), default="highest", help="both sides, every row")
    p.add_argument("--image-size", type=int, default=1024, help="model input side (both implementations adapt)")
    p.add_argument("--device", default="cuda", help="'cuda', or 'cpu' for a dry run of this script")
    p.add_argument("--timeout", type=int, default=300, help="seconds per child process at most")
    p.add_argument("--budget-s", type=float, default=540, help="seconds for the whole run")
    p.add_argument("--out", default="gpu.md", help="the markdown table (a .json of every figure beside it)")
    p.add_argument("--work", default="", help="folder for frame links and masks (default: a temporary one)")
    p.add_argument("--pack", default="", help="copy the packages and frames the GPU machine lacks into this folder")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup % args.chunk or args.frames - args.warmup < args.chunk:
        p.error(f"--warmup ({args.warmup}) must be a multiple of --chunk ({args.chunk}) and leave a whole chunk")
    return args


# --- one row, in its own process ------------------------------------------------------------------------------
def steady(start: float, stamps: list[float], warmup: int, chunk: int) -> dict:
    """Seconds of frames ``0..warmup-1`` and per frame after them (mean, and per window of ``chunk`` frames).

    ``stamps[i]`` is when frame i was yielded; ours yields a chunk's frames together, so windows are whole chunks.
    """
    marks = [start, *stamps]  # marks[i]: frames 0..i-1 are out
    n = len(stamps)
    spf = (marks[n] - marks[warmup]) / (n - warmup)
    windows = [(marks[s + chunk] - marks[s]) / chunk for s in range(warmup, n - chunk + 1, chunk)]
    warm = marks[warmup] - marks[0]
    return dict(s_per_frame=spf, window_min=min(windows), window_max=max(windows), warmup_s=warm)


def set_torch_precision(torch, f32_matmul: str) -> dict:
    tf32 = f32_matmul == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return {
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "torch.get_float32_matmul_precision()": torch.get_float32_matmul_precision(),
    }


def run_official(args, dtype: str, n: int, masks_out: Path, vos: bool) -> dict:
    import contextlib

    import numpy as np
    import torch

    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    settings = set_torch_precision(torch, args.f32_matmul)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    from sam2.build_sam import build_sam2_video_predictor

    from sam2_jax.reference import OFFICIAL_YAML
    from sam2_jax.reference.image import reference_state_dict

    t0 = time.perf_counter()
    torch.manual_seed(0)
    pred = build_sam2_video_predictor(
        OFFICIAL_YAML[args.model],
        None,
        device=args.device,
        hydra_overrides_extra=[f"++model.image_size={args.image_size}"],
        vos_optimized=vos,
    )
    sd = reference_state_dict(args.model, 0)
    pred.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    pred.fill_hole_area = 0
    setup = time.perf_counter() - t0
    autocast = dtype == "bfloat16"
    ctx = torch.autocast(args.device, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    masks = []
    with torch.inference_mode(), ctx:
        t0 = time.perf_counter()
        state = pred.init_state(str(args.frames_dir))
        sync()
        t_init = time.perf_counter() - t0
        add_clicks(pred, state, n)
        sync()
        t_prop = time.perf_counter()
        stamps = []
        for _, _, logits in pred.propagate_in_video(state):
            m = (logits > 0).cpu().numpy()  # waits for the frame
            stamps.append(time.perf_counter())
            masks.append(np.packbits(m.reshape(n, -1), axis=-1))
    np.save(masks_out, np.stack(masks))
    res = dict(
        setup_s=setup,
        init_s=t_init,
        clicks_s=t_prop - t0 - t_init,
        total_s=stamps[-1] - t0,
        **steady(t_prop, stamps, args.warmup, args.chunk),
        peak_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan"),
        in_use_mb=torch.cuda.memory_allocated() / 2**20 if cuda else float("nan"),
        device_name=torch.cuda.get_device_name(0) if cuda else "cpu",
        versions=f"torch {torch.__version__}",
        settings={**settings, "autocast": "torch.autocast(bfloat16)" if autocast else "off"},
    )
    del state
    return res


def run_ours(args, dtype: str, n: int, masks_out: Path) -> dict:
    import flax
    import jax
    import jaxlib
    import numpy as np

    jax.config.update("jax_default_matmul_precision", {"highest": "highest", "tf32": "tensorfloat32"}[args.f32_matmul])
    from video import our_params, our_predictor

    from sam2_jax.utils.compile_cache import CompileCounter

    counter = CompileCounter().start()
    t0 = time.perf_counter()
    params = our_params(args.model)
    pred = our_predictor(args.model, params, dtype, image_size=args.image_size, chunk=args.chunk, chunks_in_flight=1)
    pred.progress = False
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = pred.init_state(str(args.frames_dir))
    t_init = time.perf_counter() - t0
    add_clicks(pred, state, n)
    t_prop = time.perf_counter()
    compile_before = counter.compile_seconds
    stamps, masks = [], []
    for _, _, logits in pred.propagate_in_video(state):
        m = np.asarray(logits > 0)  # on the host already: the predictor fetches each chunk's outputs
        stamps.append(time.perf_counter())
        masks.append(np.packbits(m.reshape(n, -1), axis=-1))
    counter.stop()
    np.save(masks_out, np.stack(masks))
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() or {}
    res = dict(
        setup_s=setup,
        init_s=t_init,
        clicks_s=t_prop - t0 - t_init,
        total_s=stamps[-1] - t0,
        **steady(t_prop, stamps, args.warmup, args.chunk),
        compile_s=counter.compile_seconds,
        compile_s_propagation=counter.compile_seconds - compile_before,
        compiles=counter.compiles,
        peak_mb=stats.get("peak_bytes_in_use", float("nan")) / 2**20,
        in_use_mb=stats.get("bytes_in_use", float("nan")) / 2**20,
        device_name=getattr(dev, "device_kind", str(dev)),
        versions=f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax {flax.__version__}",
        settings={"jax_default_matmul_precision": jax.config.jax_default_matmul_precision, "dtype": dtype},
    )
    del state
    return res


def child(args) -> None:
    impl, dtype, n = args.child.split(":")
    masks_out = Path(args.work) / f"masks_{impl}_{dtype}_{n}.npy"
    if impl == "ours":
        res = run_ours(args, dtype, int(n), masks_out)
    else:
        res = run_official(args, dtype, int(n), masks_out, vos=impl == "official_vos")
    res["status"] = "ok"
    print("RESULT " + json.dumps(res))


# --- the parent: rows in order, within the budget -------------------------------------------------------------
def plan(args) -> list[tuple[str, str, int]]:
    """Rows in the order they run: each (dtype, objects) pair official then ours; the official_vos rows last
    (their compile is the longest and the likeliest to fail or run out of budget)."""
    impls = args.impls.split(",")
    unknown = set(impls) - set(IMPLS)
    if unknown:
        raise SystemExit(f"--impls: unknown {sorted(unknown)}, expected some of {IMPLS}")
    objects = sorted(int(x) for x in args.objects.split(","))
    rows = [(i, d, n) for n in objects for d in args.dtypes.split(",") for i in ("official", "ours") if i in impls]
    if "official_vos" in impls:
        rows += [("official_vos", d, n) for n in objects for d in args.vos_dtypes.split(",")]
    return rows


def jpeg_names(folder: str) -> list[str]:
    """The folder's frames ``<number>.jpg`` in frame order."""
    names = [p for p in os.listdir(folder) if os.path.splitext(p)[1].lower() in (".jpg", ".jpeg")]
    return sorted(names, key=lambda p: int(os.path.splitext(p)[0]))


def frames_folder(src: str, n: int, root: Path) -> Path:
    names = jpeg_names(src)
    if len(names) < n:
        raise SystemExit(f"{src} has {len(names)} frames, {n} asked")
    dst = root / f"frames{n}"
    dst.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names[:n]):
        link = dst / f"{i:05d}.jpg"
        if not link.exists():
            link.symlink_to(Path(src).resolve() / name)
    return dst


def iou_stats(a, b) -> tuple[float, float]:
    """Min and mean IoU of two (frames, objects, packed bits) mask stacks, per frame and object."""
    import numpy as np

    a, b = np.unpackbits(a, axis=-1).astype(bool), np.unpackbits(b, axis=-1).astype(bool)
    inter = (a & b).sum(-1)
    union = (a | b).sum(-1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(iou.min()), float(iou.mean())


def run_row(args, key: str, folder: Path, work: Path, timeout: float) -> dict:
    argv = [sys.executable, __file__, "--child", key, "--frames-dir", str(folder), "--work", str(work)]
    argv += ["--model", args.model, "--image-size", str(args.image_size), "--device", args.device]
    argv += ["--warmup", str(args.warmup), "--chunk", str(args.chunk), "--frames", str(args.frames)]
    argv += ["--f32-matmul", args.f32_matmul]
    env = dict(
        os.environ,
        XLA_PYTHON_CLIENT_PREALLOCATE="false",  # JAX's peak is then what it used, as torch's allocator reports
        SAM2_JAX_COMPILATION_CACHE="0",  # every program compiled in this process: compile time is measured
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(x for x in (str(REPO), os.environ.get("PYTHONPATH", "")) if x),
    )
    # Named, so that JAX fails in the row instead of falling back to the CPU when its CUDA plugin does not load.
    env["JAX_PLATFORMS"] = "cpu" if args.device == "cpu" else "cuda"
    t0 = time.perf_counter()
    # A session of its own, so that a timeout also ends the child's own workers (torch.compile's compile pool).
    p = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, stderr = p.communicate()
        return dict(status=f"timed out after {timeout:.0f} s", log=stderr[-3000:], wall_s=time.perf_counter() - t0)
    lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not lines:
        last = [x for x in stderr.strip().splitlines() if x.strip()][-1:] or [f"rc {p.returncode}"]
        return dict(status=f"failed: {last[0][:160]}", log=stderr[-3000:], wall_s=time.perf_counter() - t0)
    res = json.loads(lines[-1][7:])
    res["wall_s"] = time.perf_counter() - t0
    return res


def gpu_summary() -> str:
    try:
        q = "--query-gpu=name,driver_version,memory.total"
        out = subprocess.run(["nvidia-smi", q, "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        return "; ".join(x.strip() for x in out.stdout.splitlines() if x.strip()) or "nvidia-smi printed nothing"
    except (OSError, subprocess.SubprocessError) as e:
        return f"no nvidia-smi ({type(e).__name__})"


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.pack:
        return pack(Path(args.pack), args.frames_dir, max(args.frames, 64))
    if args.child:
        return child(args)
    t_start = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    folder = frames_folder(args.frames_dir, args.frames, work)
    meta = dict(
        started=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command="python " + " ".join([os.path.relpath(__file__, Path.cwd()), *(argv or sys.argv[1:])]),
        gpu=gpu_summary() if args.device == "cuda" else "none (dry run on the CPU)",
        cpu=common.cpu_summary(),
        python=sys.version.split()[0],
    )
    rows = plan(args)
    results: dict[str, dict] = {}
    for impl, dtype, n in rows:
        key = f"{impl}:{dtype}:{n}"
        left = args.budget_s - (time.perf_counter() - t_start)
        if left < 30:
            results[key] = dict(status=f"not run: {left:.0f} s of --budget-s left")
        else:
            results[key] = run_row(args, key, folder, work, min(args.timeout, left - 10))
        r = results[key]
        print(f"{key}: {r['status']} ({r.get('wall_s', 0):.0f} s)", flush=True)
        if r["status"] != "ok" and r.get("log"):
            print(r["log"][-1500:], flush=True)
        add_ious(results, rows, work)
        meta["ended"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        out.write_text(markdown(args, meta, rows, results))
        out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    print(out.read_text())


def add_ious(results: dict, rows: list, work: Path) -> None:
    import numpy as np

    for impl, dtype, n in rows:
        ref, this = work / f"masks_official_{dtype}_{n}.npy", work / f"masks_{impl}_{dtype}_{n}.npy"
        r = results.get(f"{impl}:{dtype}:{n}", {})
        if impl != "official" and r.get("status") == "ok" and ref.exists() and this.exists():
            r["iou_min"], r["iou_mean"] = iou_stats(np.load(ref), np.load(this))


# --- the table ------------------------------------------------------------------------------------------------
def _fmt(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown(args, meta: dict, rows: list, results: dict) -> str:
    tf32, dry = args.f32_matmul == "tf32", args.device == "cpu"
    precision = (
        "TensorFloat-32 allowed on both sides: torch `allow_tf32 = True` (cuBLAS and cuDNN), JAX "
        "`jax_default_matmul_precision = 'tensorfloat32'`"
        if tf32
        else "strict float32 on both sides: torch `allow_tf32 = False` (cuBLAS and cuDNN), JAX "
        "`jax_default_matmul_precision = 'highest'`"
    )
    read_back = {}
    for r in results.values():
        for k, v in (r.get("settings") or {}).items():
            read_back.setdefault(k, set()).add(str(v))
    versions = sorted({r["versions"] for r in results.values() if r.get("versions")})
    devices = sorted({f"{r['device_name']}" for r in results.values() if r.get("device_name")})
    lines = [
        f"## Video predictor, ours against the official, {meta['started']} (`benchmarks/gpu.py`)",
        "",
        f"    {meta['command']}",
        "",
        f"- GPU: {meta['gpu']}; devices as each side names them: {', '.join(devices) or '-'}.",
        f"- CPU: {meta['cpu']}.",
        f"- Software: Python {meta['python']}; {'; '.join(versions) or '-'}.",
        f"- Matmul precision (float32 rows, and what stays float32 in bfloat16 rows): {precision}. Read back: "
        + "; ".join(f"`{k}` {'/'.join(sorted(v))}" for k, v in sorted(read_back.items()))
        + ". bfloat16 rows: the official under `torch.autocast(bfloat16)`, ours `dtype=bfloat16` (bf16 compute, "
        "f32 accumulation); `official_vos` = `vos_optimized=True` (torch.compile max-autotune).",
        f"- Same run: every row from this one invocation ({meta['started']} to {meta.get('ended', '?')}), one row "
        "per fresh process, run one after another on one machine.",
        f"- {args.model}, {args.image_size} px, {args.frames} bedroom frames, one click per object on frame 0, "
        f"`fill_hole_area` 0 on both sides. s/frame: frames {args.warmup}..{args.frames - 1}, mean (min-max over "
        f"windows of {args.chunk} frames); this/ours > 1: ours faster (range from the windows). First "
        f"{args.warmup} frames: seconds (excess over steady frames: compiles, the memory bank filling).",
        "- Device memory: each side's own allocator over its whole process, read after the propagation: torch "
        "`max_memory_allocated()` / `memory_allocated()`, JAX `memory_stats()['peak_bytes_in_use']` / "
        "`['bytes_in_use']` (preallocation off). Our compile: XLA backend-compile seconds (persistent cache off), "
        "all programs / during the propagation.",
        "",
        *(["**Dry run on the CPU** (tiny sizes, to exercise the script): no benchmark.", ""] if dry else []),
        "| dtype | objects | implementation | s/frame (min-max) | this / ours | first frames s (excess) | "
        "our compile s (programs) | init_state s | whole video s | peak MB | in use after MB | "
        "masks vs official IoU min / mean | status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for impl, dtype, n in sorted(rows, key=lambda r: (r[1] != "float32", r[2], IMPLS.index(r[0]))):
        r = results.get(f"{impl}:{dtype}:{n}")
        if r is None:
            lines.append(f"| {dtype} | {n} | {impl} | - | - | - | - | - | - | - | - | - | not run yet |")
            continue
        u = results.get(f"ours:{dtype}:{n}", {})
        ok, u_ok = r.get("status") == "ok", u.get("status") == "ok"
        spf = f"{r['s_per_frame']:.4f} ({r['window_min']:.4f}-{r['window_max']:.4f})" if ok else "-"
        if ok and u_ok and impl != "ours":
            lo, hi = r["window_min"] / u["window_max"], r["window_max"] / u["window_min"]
            ratio = f"**{r['s_per_frame'] / u['s_per_frame']:.2f}x** ({lo:.2f}-{hi:.2f})"
        else:
            ratio = "1" if impl == "ours" and ok else "-"
        warm = f"{r['warmup_s']:.1f} ({r['warmup_s'] - args.warmup * r['s_per_frame']:.1f})" if ok else "-"
        comp = f"{r['compile_s']:.1f} / {r['compile_s_propagation']:.1f} ({r['compiles']})" if "compile_s" in r else "-"
        iou = f"{r['iou_min']:.4f} / {r['iou_mean']:.4f}" if "iou_min" in r else "-"
        status = r["status"].replace("|", "/")
        seconds = [_fmt(r.get("init_s"), ".1f"), _fmt(r.get("total_s"), ".1f")]
        memory = [_fmt(r.get("peak_mb"), ".0f"), _fmt(r.get("in_use_mb"), ".0f")]
        cells = [dtype, str(n), impl, spf, ratio, warm, comp, *seconds, *memory, iou, status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- packing for a machine without network --------------------------------------------------------------------
def pack(dest: Path, frames_src: str, n_frames: int) -> None:
    """Copies the pure-Python packages of ``PACKAGES`` from this environment and the first ``n_frames`` frames
    into ``dest`` (``dest/site`` for PYTHONPATH, ``dest/bedroom``), and ignores ``dest`` in this checkout's git."""
    import importlib.util

    site, frames = dest / "site", dest / "bedroom"
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SystemExit(f"--pack: {name} is not importable here (install the reference: scripts/setup_env.sh)")
        src = Path(spec.origin).parent
        skip = shutil.ignore_patterns("__pycache__", "*.so")
        shutil.copytree(src, site / name, ignore=skip, dirs_exist_ok=True)
    frames.mkdir(parents=True, exist_ok=True)
    names = jpeg_names(frames_src)
    for name in names[:n_frames]:
        shutil.copyfile(Path(frames_src) / name, frames / name)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) / 2**20
    try:
        rel = dest.resolve().relative_to(REPO)
        exclude = REPO / ".git" / "info" / "exclude"
        line = f"/{rel.as_posix()}/"
        if exclude.parent.is_dir() and line not in (exclude.read_text().split() if exclude.exists() else []):
            with exclude.open("a") as f:
                f.write(line + "\n")
            print(f"added {line} to {exclude}")
    except ValueError:
        rel = dest
    print(f"packed {', '.join(PACKAGES)} and {min(n_frames, len(names))} frames into {dest} ({size:.1f} MB)")
    print(
        f"on the GPU machine (carry {rel}): PYTHONPATH={rel}/site python3 benchmarks/gpu.py "
        f"--frames-dir {rel}/bedroom --out $OUT/gpu.md"
    )


if __name__ == "__main__":
    main()
