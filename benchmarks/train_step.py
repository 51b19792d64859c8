"""One training step, ours against the official ``SAM2Train``, on the same clip, weights and prompts.

    python benchmarks/train_step.py                       # tiny, 256 px, 3 frames, 2 objects, 2 corrections
    python benchmarks/train_step.py --image-size 512 --frames 8 --objects 3 --corrections 7 --repeats 2
    python benchmarks/train_step.py --rss --remat frames  # peak memory with the per-frame remat policy

A step is the forward of the clip (the initial prompt, corrective clicks, tracking through the memory), the loss
(``MultiStepMultiMasksAndIous``, MOSE weights), the backward and an AdamW update, in float32 on CPU:
- ours: the jitted update of ``sam2_jax.training`` (``sam2_train.clip_losses`` under ``value_and_grad`` plus the
  optax AdamW with the official param groups), compiled once (the compile time is reported apart);
- official: ``SAM2Train.forward_tracking`` + the official loss + ``backward`` + ``torch.optim.AdamW``, eager.
The prompts are fixed (click with ``center`` corrections, as in ``tests/training/test_sam2_train.py``) so both do
the same work; ours donates its params and optimizer state to the update, as ``train.py`` does. Timings interleave
the two implementations (``common.time_interleaved``). Memory (``--rss``): a fresh process per implementation (ours
in a second process that loads its compiled step from the persistent compilation cache, and without PyTorch),
reporting its whole peak RSS, the set-up's peak (model, weights, optimizer state, and for ours the compile), and
the steps' own peak after ``malloc_trim`` and a ``VmHWM`` reset; and XLA's ``memory_analysis()`` of our compiled
step (temporaries, arguments, outputs, and the outputs aliased to donated arguments): on an accelerator, where the
compiler's host memory does not count, the step holds arguments + temporaries + (outputs - aliased).
"""

import argparse
import ctypes
import functools
import json
import os
import resource
import subprocess
import sys

import common  # noqa: E402  (before JAX)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--objects", type=int, default=2)
    p.add_argument("--corrections", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=["ours", "official"], help="run one implementation (used by --rss)")
    p.add_argument("--rss", action="store_true", help="also measure the peak RSS of each in a fresh process")
    p.add_argument("--remat", default="none", help="ours: config.train.remat (none, frames, encoder, full)")
    return p.parse_args(argv)


def _clip(args):
    from sam2_jax.datasets.synthetic import synthetic_video

    S = args.image_size
    v = synthetic_video(5, args.frames, S, S, args.objects, hide_prob=0.0, late_start_prob=0.0)
    return v.frames, v.masks


def _plan(args):
    import numpy as np

    from sam2_jax.training import sam2_train as st

    T = args.frames
    return st.PromptPlan(
        init_frames=np.array([0, 0], np.int32),
        init_valid=np.array([True, False]),
        prompt_type=np.array([st.CLICK, st.MASK], np.int32),
        track_frames=np.arange(1, T, dtype=np.int32),
        track_valid=np.ones(T - 1, bool),
        extra_correct_frames=np.array([T - 1], np.int32),
        sample_from_gt=np.zeros((3, args.corrections), bool),
    )


def ours(args):
    """Returns (step function, compile seconds)."""
    import time

    import jax
    import optax

    from sam2_jax.build_sam import build_sam2
    from sam2_jax.configs.train_common import train_config
    from sam2_jax.modeling.sam2_model import make_module
    from sam2_jax.reference.image import converted_params
    from sam2_jax.training import optimizer as opt_lib
    from sam2_jax.training import sam2_train as st
    from sam2_jax.utils.config import copy_config, freeze_config

    cfg = train_config(args.model)
    cfg.model.image_size = args.image_size
    cfg.train.remat = args.remat
    p = cfg.train.prompts
    p.num_correction_pt_per_frame, p.point_sampling, p.box_noise = args.corrections, "center", 0.0
    init_cfg = copy_config(cfg)  # deep: ml_collections.ConfigDict(cfg) would share (and change) cfg.model
    init_cfg.model.image_size = 256
    model = build_sam2(init_cfg, None)
    module = st.training_module(make_module(cfg.model, model.module.dtype))
    fc = freeze_config(cfg)
    # The memory-only child process keeps PyTorch out (the official weights only matter for the loss printed).
    params = model.params if args.only else jax.tree.map(jax.numpy.asarray, converted_params(args.model))
    tx = opt_lib.make_optimizer(params, cfg, 1000)
    frames, masks = _clip(args)
    plan = _plan(args)

    # The state is donated, as train.py's update donates it: the new params and optimizer state reuse its buffers.
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state):
        def loss(p):
            losses, _ = st.clip_losses(module, p, st.normalize_images(frames), masks, plan, jax.random.key(0), fc)
            return losses["core_loss"]

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    state = [params, tx.init(params)]
    t0 = time.perf_counter()
    compiled = step.lower(*state).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()

    def run():
        out = common.block(compiled(*state))
        state[:] = out[:2]
        run.losses.append(float(out[2]))
        return run.losses[-1]

    run.losses = []  # the first is on the official's weights (later ones after our own AdamW updates)
    run.memory = {k: getattr(mem, f"{k}_size_in_bytes") / 2**20 for k in ("temp", "argument", "output", "alias")}
    return run, compile_s


def official(args):
    import numpy as np
    import torch

    from sam2_jax.reference.training import official_clip_forward, official_sam2train
    from sam2_jax.training import sam2_train as st

    model = official_sam2train(args.model, args.image_size, args.corrections)
    model.train(False)
    frames, masks = _clip(args)
    images = torch.from_numpy(np.asarray(st.normalize_images(frames)).transpose(0, 3, 1, 2).copy())
    masks_t = torch.from_numpy(masks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.1)

    def run():
        opt.zero_grad()
        losses = official_clip_forward(model, images, masks_t, [0], ["click"], [0, args.frames - 1])
        losses["core_loss"].backward()
        opt.step()
        run.losses.append(float(losses["core_loss"].detach()))
        return run.losses[-1]

    run.losses = []  # the first is on the same weights as ours (ours never applies its update between calls)
    return run


def _peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` of its own address space. Not ``ru_maxrss``, which a child forked from
    the (large) benchmark process inherits through ``execve``, so both children reported the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    """Give freed heap back to the OS and restart ``VmHWM`` from the current RSS (Linux ``clear_refs`` 5), so the
    peak read next is that of the work after this call (the steps), not of the set-up and compile before it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return float("nan")


def _rss(args, which: str) -> dict:
    argv = [sys.executable, __file__, "--only", which, "--repeats", "1"]
    argv += ["--model", args.model, "--image-size", str(args.image_size), "--frames", str(args.frames)]
    argv += ["--objects", str(args.objects), "--corrections", str(args.corrections), "--remat", args.remat]
    # Ours runs twice: the second process loads the compiled step from the persistent compilation cache, so its
    # peak is the step's, not XLA's compiler's.
    for _ in range(2 if which == "ours" else 1):
        out = subprocess.run(argv, check=True, capture_output=True, text=True, env=dict(os.environ))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    if args.only:
        fn = ours(args)[0] if args.only == "ours" else official(args)
        setup_peak = _peak_rss_mb()
        _reset_peak_rss()
        before = _current_rss_mb()
        for _ in range(max(args.repeats, 2)):  # the official's AdamW state appears at its first step
            fn()
        print(
            json.dumps(
                {
                    "peak_rss_mb": max(setup_peak, _peak_rss_mb()),
                    "setup_peak_mb": setup_peak,
                    "before_steps_mb": before,
                    "steps_peak_mb": _peak_rss_mb(),
                }
            )
        )
        return
    ours_fn, compile_s = ours(args)
    official_fn = official(args)
    timings = common.time_interleaved({"ours": ours_fn, "official": official_fn}, repeats=args.repeats)
    print(
        f"{args.model} {args.image_size}px, {args.frames} frames, {args.objects} objects, "
        f"{args.corrections} corrections, CPU float32 ({os.cpu_count()} cores)"
    )
    print(f"ours (remat {args.remat}): compile {compile_s:.1f} s, loss {ours_fn.losses[0]:.4f} (first step)")
    print("ours, XLA memory_analysis: " + ", ".join(f"{k} {v:.0f} MB" for k, v in ours_fn.memory.items()))
    print(f"official loss {official_fn.losses[0]:.4f} (first step; its AdamW steps then change its weights)")
    for k, t in timings.items():
        print(f"{k:9s} {t.median:8.3f} s/step ({t.spread()})")
    print(f"official / ours: {timings['official'].median / timings['ours'].median:.2f}x")
    if args.rss:
        print("peak RSS of a fresh process per implementation (MB): the whole process; the set-up (model, weights,")
        print("optimizer, and for ours the compile, loaded from the persistent cache); RSS before the steps; the")
        print("peak during the steps (after malloc_trim, VmHWM reset); the steps' own growth (peak - before).")
        for which in ("ours", "official"):
            r = _rss(args, which)
            print(
                f"  {which:9s} whole {r['peak_rss_mb']:6.0f}  set-up {r['setup_peak_mb']:6.0f}  before steps "
                f"{r['before_steps_mb']:6.0f}  steps {r['steps_peak_mb']:6.0f}  growth "
                f"{r['steps_peak_mb'] - r['before_steps_mb']:6.0f}"
            )


if __name__ == "__main__":
    main()
