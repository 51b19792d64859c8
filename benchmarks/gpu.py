"""GPU benchmark: our JAX ``SAM2VideoPredictor`` against the official PyTorch one on one CUDA GPU.

Same random weights (``sam2_jax.reference``), the same bedroom frames, the same clicks (one per object on frame 0,
``benchmarks/video.py``'s points), the same machine and the same run. Each (implementation, model, dtype) runs in
its own fresh child process, so that peak device memory is its own:
- official: ``build_sam2_video_predictor(..., device="cuda")`` as shipped (``fill_hole_area`` 0 on both sides,
  because the official hole filling needs its CUDA extension, which the PyPI package does not build);
  ``float32`` = torch defaults, ``bfloat16`` = ``torch.autocast("cuda", bfloat16)`` with TF32 matmuls, as the
  official notebooks and ``tools/vos_inference.py`` run it;
- official_vos: the same with ``vos_optimized=True`` (``SAM2VideoPredictorVOS``: ``torch.compile`` max-autotune of
  every component), bfloat16 autocast only, as the official ``tools/benchmark.py`` measures it;
- ours: ``float32`` = JAX's default matmul precision on GPU, ``bfloat16`` = ``dtype=jnp.bfloat16`` compute.

Reported per object count: ``init_state`` seconds (the official decodes and uploads every frame there; ours reads
frames lazily), propagation seconds per frame after ``--warmup`` frames (ours: including the host-side frame
decode, which runs during propagation; the official's decode was in ``init_state``), whole-video seconds
(init + propagate, our compile included, since a user pays it), our compile seconds apart, and peak device memory
(torch: ``max_memory_allocated`` reset per object count; JAX: the allocator's ``peak_bytes_in_use`` with
preallocation off, a running peak, so object counts run in increasing order). Float32 masks of ours and the
official are compared by IoU (every frame and object of the largest object count).

    python benchmarks/gpu.py --frames-dir ../shared/data/videos/bedroom --frames 64 --objects 1,3,8

Needs a CUDA GPU with torch, JAX (CUDA) and the official sam2 package. Batched videos (several per step) are
measured by ``benchmarks/videos_per_step.py``, which runs unchanged on a GPU: run it in the same device call.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # its children import video.py's builders

from video import add_clicks  # noqa: E402  (video.py's clicks; its module imports neither JAX nor torch)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames-dir", default=str(REPO.parent / "shared" / "data" / "videos" / "bedroom"))
    p.add_argument("--frames", type=int, default=64, help="frames tracked (the first N of the folder)")
    p.add_argument("--warmup", type=int, default=8, help="frames excluded from s/frame")
    p.add_argument("--objects", default="1,3,8")
    p.add_argument("--models", default="sam2.1_hiera_t")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--impls", default="official,official_vos,ours", help="implementations to run")
    p.add_argument("--chunk", type=int, default=8, help="our chunk_size")
    p.add_argument("--timeout", type=int, default=400, help="seconds per child process")
    p.add_argument("--out", default="", help="folder for the JSON results (default: a temporary folder)")
    p.add_argument("--image-size", type=int, default=1024, help="model input side (both implementations adapt)")
    p.add_argument("--device", default="cuda", help="the official's torch device ('cpu': a dry run of this script)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def frames_folder(src: str, n: int, root: Path) -> Path:
    names = sorted((p for p in os.listdir(src) if p.lower().endswith((".jpg", ".jpeg"))), key=lambda p: int(p[:-4]))
    if len(names) < n:
        raise SystemExit(f"{src} has {len(names)} frames, {n} asked")
    dst = root / f"frames{n}"
    dst.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names[:n]):
        link = dst / f"{i:05d}.jpg"
        if not link.exists():
            link.symlink_to(Path(src).resolve() / name)
    return dst


def _per_frame(stamps: list[float], warmup: int) -> float:
    """Seconds per frame from the yield times of frames ``warmup..``."""
    return (stamps[-1] - stamps[warmup - 1]) / (len(stamps) - warmup)


def run_official(
    model, dtype, objects, folder: Path, warmup: int, masks_out: Path, device: str, size: int, vos: bool = False
) -> dict:
    import contextlib

    import numpy as np
    import torch

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    from sam2.build_sam import build_sam2_video_predictor

    from sam2_jax.reference import OFFICIAL_YAML
    from sam2_jax.reference.image import reference_state_dict

    torch.manual_seed(0)
    # vos_optimized: the official SAM2VideoPredictorVOS (torch.compile max-autotune of the image encoder, memory
    # attention, memory encoder, prompt encoder and mask decoder), as its tools/benchmark.py measures it.
    pred = build_sam2_video_predictor(
        OFFICIAL_YAML[model],
        None,
        device=device,
        hydra_overrides_extra=[f"++model.image_size={size}"],
        vos_optimized=vos,
    )
    sd = reference_state_dict(model, 0)
    pred.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    pred.fill_hole_area = 0
    if dtype == "bfloat16":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        ctx = torch.autocast(device, dtype=torch.bfloat16)
    else:
        ctx = contextlib.nullcontext()
    res = {}
    for n in objects:
        sync()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with torch.inference_mode(), ctx:
            state = pred.init_state(str(folder))
            sync()
            t_init = time.perf_counter() - t0
            add_clicks(pred, state, n)
            stamps, masks = [], []
            for _, _, logits in pred.propagate_in_video(state):
                m = (logits > 0).cpu().numpy()
                stamps.append(time.perf_counter())
                if n == max(objects) and dtype == "float32":
                    masks.append(np.packbits(m))
        total = time.perf_counter() - t0
        res[n] = dict(
            init_s=t_init,
            s_per_frame=_per_frame(stamps, warmup),
            total_s=total,
            peak_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan"),
        )
        if masks:
            np.save(masks_out, np.stack(masks))
        del state
    return res


def run_ours(model, dtype, objects, folder: Path, warmup: int, chunk: int, masks_out: Path, size: int) -> dict:
    import jax
    import numpy as np
    from video import our_params, our_predictor

    t_start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    params = our_params(model)
    log("params ready")
    pred = our_predictor(model, params, dtype, image_size=size, chunk=chunk, chunks_in_flight=1)
    dev = jax.devices()[0]
    res = {}
    for n in objects:
        log(f"{n} objects")
        t0 = time.perf_counter()
        state = pred.init_state(str(folder))
        t_init = time.perf_counter() - t0
        add_clicks(pred, state, n)
        stamps, masks = [], []
        for _, _, logits in pred.propagate_in_video(state):
            m = logits > 0
            stamps.append(time.perf_counter())
            if len(stamps) % chunk == 0:
                log(f"frame {len(stamps)}")
            if n == max(objects) and dtype == "float32":
                masks.append(np.packbits(m))
        total = time.perf_counter() - t0
        # compile: the first chunk's time minus a steady chunk's (the first chunk compiles the scan)
        steady = _per_frame(stamps, warmup) * chunk
        first = stamps[chunk - 1] - (t0 + t_init) if len(stamps) >= chunk else float("nan")
        res[n] = dict(
            init_s=t_init,
            s_per_frame=_per_frame(stamps, warmup),
            total_s=total,
            compile_s=first - steady,
            peak_mb=(dev.memory_stats() or {}).get("peak_bytes_in_use", float("nan")) / 2**20,
        )
        if masks:
            np.save(masks_out, np.stack(masks))
        del state
    return res


def child(args) -> None:
    impl, model, dtype = args.child.split(":")
    objects = sorted(int(x) for x in args.objects.split(","))
    folder = Path(args.frames_dir)
    out = Path(args.out)
    masks_out = out / f"masks_{impl}_{model}.npy"
    if impl in ("official", "official_vos"):
        vos = impl == "official_vos"
        res = run_official(model, dtype, objects, folder, args.warmup, masks_out, args.device, args.image_size, vos)
    else:
        res = run_ours(model, dtype, objects, folder, args.warmup, args.chunk, masks_out, args.image_size)
    print("RESULT " + json.dumps(res))


def iou_stats(a, b) -> tuple[float, float]:
    import numpy as np

    a, b = np.unpackbits(a, axis=-1).astype(bool), np.unpackbits(b, axis=-1).astype(bool)
    inter = (a & b).sum(-1)
    union = (a | b).sum(-1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(iou.min()), float(iou.mean())


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return child(args)
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu_bench_"))
    out.mkdir(parents=True, exist_ok=True)
    folder = frames_folder(args.frames_dir, args.frames, out)
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
    results = {}
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for impl in args.impls.split(","):
                if impl == "official_vos" and dtype != "bfloat16":
                    continue  # the official measures vos_optimized with bfloat16 autocast only
                key = f"{impl}:{model}:{dtype}"
                argv = [sys.executable, __file__, "--child", key, "--frames-dir", str(folder), "--out", str(out)]
                argv += ["--objects", args.objects, "--warmup", str(args.warmup), "--chunk", str(args.chunk)]
                argv += ["--device", args.device, "--image-size", str(args.image_size)]
                t0 = time.perf_counter()
                try:
                    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired as e:
                    err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
                    print(f"{key}: timed out after {args.timeout} s; its log:\n{err[-2000:]}", flush=True)
                    continue
                lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
                if p.returncode or not lines:
                    print(f"{key}: failed (rc {p.returncode})\n{p.stderr[-3000:]}", flush=True)
                    continue
                results[key] = json.loads(lines[-1][7:])
                print(f"{key}: {time.perf_counter() - t0:.0f} s {results[key]}", flush=True)
        a, b = out / f"masks_official_{model}.npy", out / f"masks_ours_{model}.npy"
        if a.exists() and b.exists():
            import numpy as np

            mn, mean = iou_stats(np.load(a), np.load(b))
            results[f"iou:{model}"] = dict(min=mn, mean=mean)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print_table(results, args)


def print_table(results: dict, args) -> None:
    print(f"\n{args.frames} frames, warm-up {args.warmup}, our chunk {args.chunk}")
    print(
        "| model | dtype | objects | official s/frame | ours s/frame | off/ours | official vos_optimized s/frame | "
        "vos/ours | official total s | ours total s (compile) | official peak MB | ours peak MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            off = results.get(f"official:{model}:{dtype}", {})
            our = results.get(f"ours:{model}:{dtype}", {})
            vos = results.get(f"official_vos:{model}:{dtype}", {})
            for n in sorted(set(off) | set(our) | set(vos), key=int):
                o, u, v = off.get(n), our.get(n), vos.get(n)
                f = lambda d, k, fmt: format(d[k], fmt) if d else "-"  # noqa: E731
                ratio = lambda a, b: f"{a['s_per_frame'] / b['s_per_frame']:.2f}x" if a and b else "-"  # noqa: E731
                comp = f" ({u['compile_s']:.1f})" if u else ""
                print(
                    f"| {model} | {dtype} | {n} | {f(o, 's_per_frame', '.4f')} | {f(u, 's_per_frame', '.4f')} | "
                    f"{ratio(o, u)} | {f(v, 's_per_frame', '.4f')} | {ratio(v, u)} | {f(o, 'total_s', '.1f')} | "
                    f"{f(u, 'total_s', '.1f')}{comp} | {f(o, 'peak_mb', '.0f')} | {f(u, 'peak_mb', '.0f')} |"
                )
        if f"iou:{model}" in results:
            r = results[f"iou:{model}"]
            print(f"{model} float32 masks, ours vs official: IoU min {r['min']:.5f}, mean {r['mean']:.5f}")


if __name__ == "__main__":
    main()
