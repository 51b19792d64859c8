"""Image benchmark: our JAX SAM 2 against the official PyTorch code (same random weights, same photo).

Prints, in one process: (1) this machine's matmul GFLOP/s in JAX (float32; bf16 inputs with float32
accumulation) and torch (float32); (2) the image encoder (``forward_image``) at each ``--batch``: ours in
float32 and with bfloat16 compute, the official in float32 (torch threads = 2), medians over ``--repeats``
after one warm-up, JAX compile time apart, and the achieved GFLOP/s as a fraction of the measured matmul peak
(matmul + conv FLOPs counted on the jaxpr; XLA's cost analysis is printed beside it, but it counts a loop
body once, so it misses most of the query-chunked global attention); (3) ``set_image`` + ``predict`` (1
point, multimask), ``predict`` alone, and ``set_image_batch`` + ``predict_batch`` on 4 images, through both
predictors; (4) whether bfloat16 masks agree with float32 ones; (5) whether the malloc setting was on.
``--profile`` (automatic when our float32 encoder is slower than the official) times the encoder's pieces
(patch embed, each Hiera block, neck, high-res projections) on both sides. Implementations alternate run by
run (see ``common.time_interleaved``).

    .venv/bin/python benchmarks/image.py [--model sam2.1_hiera_t] [--repeats 3] [--batch 1 4] [--malloc]

Needs the reference (torch 2.13.0 CPU + sam2 1.1.0, see ../shared/REFERENCE.md) for the official side.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (before JAX: --malloc re-execs the process)

BF16_MIN_IOU = 0.99
POINT = ((500, 375), 1)  # a click on the truck, as in tests/test_sam2_image_predictor.py


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sam2.1_hiera_t", help="config name: sam2.1_hiera_t, sam2_hiera_l, ...")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per line (after one warm-up)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="encoder batch sizes")
    p.add_argument("--batch-images", type=int, default=4, help="images for set_image_batch (0: skip)")
    p.add_argument("--image", default=None, help="photo (default ../shared/data/images/truck.jpg)")
    p.add_argument("--malloc", action="store_true", help="re-exec with GLIBC_TUNABLES (see REFERENCE.md)")
    p.add_argument("--profile", action="store_true", help="time the encoder's pieces (auto if ours is slower)")
    p.add_argument("--no-profile", action="store_true", help="never time the encoder's pieces")
    p.add_argument("--skip-peaks", action="store_true", help="skip the matmul peak measurement")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for the load average to fall below 1.5",
    )
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if any(b < 1 for b in args.batch):
        p.error(f"--batch sizes must be >= 1, got {args.batch}")
    return args


def load_photo(path: str | None):
    """The photo as a writable HWC uint8 array (the official ToTensor warns on read-only arrays)."""
    import numpy as np
    from PIL import Image

    from sam2_jax.reference import DATA

    if path:
        candidates = [Path(path)]
    else:
        candidates = [DATA / "images" / "truck.jpg", common.REPO / "examples" / "truck.jpg"]
    for c in candidates:
        if c.is_file():
            return np.array(Image.open(c).convert("RGB")), c
    raise ValueError(f"no photo found at {[str(c) for c in candidates]}")


def build_models(name: str):
    """Official SAM2Base and our module (float32 and bfloat16 compute) with the same deterministic weights."""
    import jax
    import jax.numpy as jnp

    from sam2_jax.build_sam import SAM2Model
    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import make_module
    from sam2_jax.reference import OFFICIAL_YAML
    from sam2_jax.reference.image import converted_params, official_model

    if name not in OFFICIAL_YAML:
        raise ValueError(f"--model must be one of {sorted(OFFICIAL_YAML)}, got {name!r}")
    official = official_model(name)
    config = get_config(name)
    params = jax.tree.map(jnp.asarray, converted_params(name))
    ours = {
        dt: SAM2Model(
            module=make_module(config.model, getattr(jnp, dt)),
            params=params,
            config=config,
        )
        for dt in ("float32", "bfloat16")
    }
    return official, ours


def bench_encoder(official, ours, image, batches, repeats, peaks, rows, results):
    """forward_image alone: ours float32 / bfloat16 (compiled ahead, timed apart) vs official float32."""
    import jax.numpy as jnp
    import numpy as np
    import torch

    from sam2_jax.modeling.sam2_base import SAM2Base
    from sam2_jax.utils.transforms import SAM2Transforms

    size = ours["float32"].image_size
    x1 = np.asarray(SAM2Transforms(resolution=size, mask_threshold=0.0)(image))  # (S, S, 3)
    peak_keys = {"float32": "jax f32", "bfloat16": "jax bf16->f32"}
    for b in batches:
        x = jnp.asarray(np.broadcast_to(x1, (b, *x1.shape)).copy())  # (B, S, S, 3)
        xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())  # (B, S, S, 3) -> (B, 3, S, S)
        fns, notes = {}, {}
        for dt, model in ours.items():
            fn = lambda p, x, m=model.module: m.apply({"params": p}, x, method=SAM2Base.forward_image)
            compiled, compile_s, xla_flops = common.jit_compile(fn, model.params, x)
            fns[dt] = lambda c=compiled, p=model.params, x=x: common.block(c(p, x))
            notes[dt] = (compile_s, xla_flops, common.jaxpr_flops(fn, model.params, x))
        with torch.inference_mode():
            fns["official"] = lambda xt=xt: official.forward_image(xt)
            times = common.time_interleaved(fns, repeats)
        off = times["official"].median
        print(f"  encoder b{b} official: {off:.3f} s ({times['official'].spread()})", flush=True)
        for dt in ours:
            t = times[dt]
            compile_s, xla_flops, (flops, inexact) = notes[dt]
            gflops = flops / t.median / 1e9
            note = f"compile {compile_s:.1f} s; {flops / 1e9:.0f}{'+' if inexact else ''} GFLOP, {gflops:.0f} GFLOP/s"
            if peaks:
                note += f" = {100 * gflops / peaks[peak_keys[dt]]:.0f}% of {peak_keys[dt]}"
            if xla_flops:
                note += f" (XLA cost analysis: {xla_flops / 1e9:.0f} GFLOP)"
            rows.append(common.Row(f"forward_image b{b} ours {dt}", t.median, off, note))
            results[("encoder", b, dt)] = (t.median, off)
            print(f"  encoder b{b} ours {dt}: {t.median:.3f} s ({t.spread()}), {note}", flush=True)


def bench_predictors(official, ours, image, repeats, n_batch, rows):
    """set_image + predict (1 point, multimask) at batch 1; set_image_batch + predict_batch on n_batch images."""
    import numpy as np
    from sam2.sam2_image_predictor import SAM2ImagePredictor as RefPredictor

    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

    ref = RefPredictor(official)
    preds = {dt: SAM2ImagePredictor(m) for dt, m in ours.items()}
    pt, lbl = np.array([POINT[0]]), np.array([POINT[1]])

    def one(p):
        p.set_image(image)
        return p.predict(point_coords=pt, point_labels=lbl, multimask_output=True)

    times = common.time_interleaved(
        {"official": lambda: one(ref), **{dt: lambda p=p: one(p) for dt, p in preds.items()}}, repeats
    )
    off = times["official"].median
    print(f"  set_image+predict official: {off:.3f} s ({times['official'].spread()})", flush=True)
    for dt in preds:
        t = times[dt]
        note = f"first call {t.first:.1f} s (compile ~{t.first_minus_steady:.1f} s)"
        rows.append(common.Row(f"set_image+predict b1 ours {dt}", t.median, off, note))
        print(f"  set_image+predict ours {dt}: {t.median:.3f} s ({t.spread()}), {note}", flush=True)

    # predict alone on the image set above: the cost of each further click
    p32 = preds["float32"]
    times = common.time_interleaved(
        {
            "official": lambda: ref.predict(point_coords=pt, point_labels=lbl),
            "ours": lambda: p32.predict(point_coords=pt, point_labels=lbl),
        },
        max(repeats, 5),
    )
    rows.append(
        common.Row(
            "predict only (1 point) ours float32",
            times["ours"].median,
            times["official"].median,
            f"after set_image; {times['ours'].spread()}",
        )
    )

    if n_batch > 0:
        images = [image] * n_batch
        pts, lbls = [pt] * n_batch, [lbl] * n_batch

        def batch(p):
            p.set_image_batch(images)
            return p.predict_batch(pts, lbls, multimask_output=True)

        times = common.time_interleaved({"official": lambda: batch(ref), "ours": lambda: batch(p32)}, repeats)
        t, off = times["ours"], times["official"].median
        note = f"first call {t.first:.1f} s (compile ~{t.first_minus_steady:.1f} s)"
        what = f"set_image_batch({n_batch})+predict_batch ours float32"
        rows.append(common.Row(what, t.median, off, note))
        print(f"  {what}: {t.median:.3f} s, official {off:.3f} s, {note}", flush=True)
    return ref, preds


def check_bf16(ref, preds, image) -> tuple[bool, list[str]]:
    """bf16 vs float32 masks (IoU of logits > 0) and embeddings; float32 vs official as a sanity check."""
    import numpy as np

    pt, lbl = np.array([POINT[0]]), np.array([POINT[1]])
    out = {}
    for name, p in (("official", ref), *preds.items()):
        p.set_image(image)
        logits, iou, _ = p.predict(point_coords=pt, point_labels=lbl, multimask_output=True, return_logits=True)
        emb = p.get_image_embedding()
        emb = emb.numpy() if hasattr(emb, "numpy") else np.asarray(emb)
        out[name] = (np.asarray(logits, np.float32), np.asarray(iou, np.float32), emb)
    l32, s32, e32 = out["float32"]
    l16, s16, e16 = out["bfloat16"]
    lo, so, eo = out["official"]
    m32, m16 = l32 > 0, l16 > 0
    ious = []
    for k in range(m32.shape[0]):
        union = np.logical_or(m32[k], m16[k]).sum()
        ious.append(1.0 if union == 0 else np.logical_and(m32[k], m16[k]).sum() / union)
    ok = min(ious) >= BF16_MIN_IOU
    fg = ", ".join(f"{v:.3f}" for v in m32.mean(axis=(1, 2)))
    lines = [
        f"bf16 vs float32, truck photo, 1 point, 3 masks: mask IoU (logits > 0) = "
        f"{', '.join(f'{v:.4f}' for v in ious)} -> min {min(ious):.4f} "
        f"{'>=' if ok else '<'} {BF16_MIN_IOU}: {'PASS' if ok else 'FAIL'}",
        f"  foreground fraction per mask (float32): {fg}",
        f"  image embedding max |bf16 - f32| = {np.abs(e16 - e32).max():.4g} "
        f"(max |f32| = {np.abs(e32).max():.4g}, mean |diff| = {np.abs(e16 - e32).mean():.3g})",
        f"  mask logits max |bf16 - f32| = {np.abs(l16 - l32).max():.4g} (max |logit| {np.abs(l32).max():.3g}); "
        f"IoU predictions max |diff| = {np.abs(s16 - s32).max():.3g}",
        f"float32 vs official (sanity): embedding max |diff| = {np.abs(e32 - eo).max():.3g}, "
        f"mask logits {np.abs(l32 - lo).max():.3g}, IoU predictions {np.abs(s32 - so).max():.3g}",
    ]
    return ok, lines


def profile_encoder(official, ours, image, repeats) -> None:
    """Times each piece of the encoder alone at batch 1 (jitted piece by piece), ours f32 / bf16 vs official.

    Each piece gets the previous piece's float32 output, so both sides see the same activations.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from sam2_jax.utils.transforms import SAM2Transforms

    m32 = ours["float32"]
    x = jnp.asarray(SAM2Transforms(resolution=m32.image_size, mask_threshold=0.0)(image))[None]  # (1, S, S, 3)
    trunk_t = official.image_encoder.trunk
    totals = np.zeros(3)

    def run(what, method, args, torch_fn):
        """Times ``method(module, *args)`` (ours, both dtypes) and ``torch_fn()``; returns our f32 output."""
        fns = {}
        for dt, m in ours.items():
            f = jax.jit(lambda p, *a, m=m.module: m.apply({"params": p}, *a, method=method))
            fns[dt] = lambda f=f, p=m.params: common.block(f(p, *args))
        with torch.inference_mode():
            fns["official"] = torch_fn
            t = common.time_interleaved(fns, repeats)
        ms = np.array([t[k].median for k in ("float32", "bfloat16", "official")])
        totals[:] += ms
        print(f"{what:<46}" + "".join(f"{v * 1e3:>10.1f}" for v in ms) + f"{ms[2] / ms[0]:>9.2f}x", flush=True)
        return fns["float32"]()

    print(f"{'piece (batch 1)':<46}{'f32 ms':>10}{'bf16 ms':>10}{'off ms':>10}{'off/f32':>10}")
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())  # (1, S, S, 3) -> (1, 3, S, S)

    def embed(m, x):
        trunk = m.image_encoder.trunk
        h = trunk.patch_embed(x)
        return h + trunk.get_pos_embed(h.shape[1:3])

    def embed_t():
        h = trunk_t.patch_embed(xt)
        return h + trunk_t._get_pos_embed(h.shape[1:3])

    h = run("patch_embed + pos_embed", embed, (x,), embed_t)
    specs = m32.module.bind({"params": m32.params}).image_encoder.trunk.block_specs()
    stage_ends = [int(e) for e in np.cumsum(m32.config.model.image_encoder.trunk.stages) - 1]
    outputs = []
    for i, s in enumerate(specs):
        ht = torch.from_numpy(np.array(h))  # the official blocks take NHWC too
        what = (
            f"block {i:2d} {s['dim']}->{s['dim_out']} h{s['num_heads']} win{s['window_size']}"
            f"{' pool' if s['q_stride'] else ''} {h.shape[1] * h.shape[2]} tok"
        )
        h = run(
            what,
            lambda m, x, i=i: m.image_encoder.trunk.blocks[i](x),
            (h,),
            lambda ht=ht, i=i: trunk_t.blocks[i](ht),
        )
        if i in stage_ends:
            outputs.append(h)
    outs_t = [torch.from_numpy(np.asarray(o).transpose(0, 3, 1, 2).copy()) for o in outputs]  # NHWC -> NCHW
    feats, _ = run(
        "neck (FPN + position encodings)",
        lambda m, *xs: m.image_encoder.neck(list(xs)),
        tuple(outputs),
        lambda: official.image_encoder.neck(outs_t),
    )
    if m32.config.model.use_high_res_features_in_sam:
        f0t, f1t = (torch.from_numpy(np.asarray(f).transpose(0, 3, 1, 2).copy()) for f in feats[:2])  # NCHW
        dec = official.sam_mask_decoder
        run(
            "conv_s0 + conv_s1",
            lambda m, a, b: m.sam_mask_decoder.project_high_res_features(a, b),
            (feats[0], feats[1]),
            lambda: (dec.conv_s0(f0t), dec.conv_s1(f1t)),
        )
    print(f"{'sum of pieces':<46}" + "".join(f"{v * 1e3:>10.1f}" for v in totals) + f"{totals[2] / totals[0]:>9.2f}x")


def main(argv: list[str] | None = None) -> int:
    common.reexec_with_malloc(sys.argv if argv is None else [sys.argv[0], *argv])
    args = parse_args(argv)
    if args.wait_quiet > 0:
        common.wait_for_quiet(1.5, args.wait_quiet)
    t_start = time.perf_counter()

    import torch

    torch.set_num_threads(2)
    print(common.environment_summary(), flush=True)
    image, photo = load_photo(args.image)
    print(f"model {args.model}, photo {photo} {image.shape}, repeats {args.repeats}, batches {args.batch}\n")

    peaks = None
    if not args.skip_peaks:
        peaks = common.print_matmul_peaks(common.matmul_peaks(repeats=5))
        print()

    official, ours = build_models(args.model)
    rows: list[common.Row] = []
    results: dict = {}
    print("timing the image encoder ...", flush=True)
    bench_encoder(official, ours, image, args.batch, args.repeats, peaks, rows, results)
    print("timing the predictors ...", flush=True)
    ref, preds = bench_predictors(official, ours, image, args.repeats, args.batch_images, rows)
    ok, check = check_bf16(ref, preds, image)

    print()
    common.print_table(
        rows,
        f"{args.model}, medians of {args.repeats} runs after 1 warm-up, official/ours > 1: ours is faster; "
        "bfloat16 lines compare with the official float32",
    )
    print()
    print("\n".join(check))
    print(common.malloc_status())
    print(f"at the end: {common.load_status()}")

    slower = [
        b
        for (what, b, dt), (ours_s, off_s) in results.items()
        if what == "encoder" and dt == "float32" and ours_s > off_s
    ]
    if not args.no_profile and (args.profile or slower):
        why = "requested" if args.profile else f"ours float32 is slower at batch {slower}"
        print(f"\nencoder pieces, medians of {args.repeats} ({why}):")
        profile_encoder(official, ours, image, args.repeats)
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
