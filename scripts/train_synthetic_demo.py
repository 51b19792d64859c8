"""It learns: train ``configs/train_synthetic_tiny.py`` from scratch on this CPU, then let ``eval.py`` score held-out
synthetic videos with the initial and with the trained weights; draw the loss curve and the two scores.

    .venv/bin/python scripts/train_synthetic_demo.py --workdir runs/tiny_demo \\
        --figure docs/figures/train_synthetic_tiny_loss.png

Steps: (1) the trainer's initial params (``trainer.build_model``: random, seed ``train.seed``) are saved to
``WORKDIR/init/params``; (2) ``train_and_evaluate`` runs the config (wall time measured, compile included); (3)
``eval.py`` (a subprocess, as a user runs it) scores semi-supervised VOS with the ground-truth mask on frame 0 on
``--eval-videos`` synthetic videos of seed ``--eval-seed`` (the training videos use ``train.data.seed``, so these are
held out), at the config's input size, once with ``init/params`` and once with ``export/params``; (4) the figure:
training loss, the trainer's held-out loss and J, and eval.py's J&F before and after. ``WORKDIR/demo.json`` keeps
the numbers. Extra ``--config.*`` flags go to the config as in ``train.py``.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "sam2_jax" / "configs" / "train_synthetic_tiny.py"))
    p.add_argument("--workdir", required=True)
    p.add_argument("--figure", default="", help="PNG to write (default WORKDIR/curve.png)")
    p.add_argument("--eval-videos", type=int, default=20)
    p.add_argument("--eval-frames", type=int, default=9)
    p.add_argument("--eval-seed", type=int, default=7)
    return p.parse_known_args(argv)


def load_config(path: str, overrides: list[str]):
    """``get_config()`` of the config file, with ``--config.a.b=value`` overrides cast to the field's type."""
    import ast
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_config", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config()
    for item in overrides:
        if not item.startswith("--config.") or "=" not in item:
            raise SystemExit(f"unknown argument {item!r} (expected --config.<field>=<value>)")
        key, value = item[len("--config.") :].split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        old = node[leaf]
        if isinstance(old, bool):
            new = value.lower() in ("1", "true", "yes")
        elif isinstance(old, (int, float, str)):
            new = type(old)(value)
        else:
            new = ast.literal_eval(value)
        node[leaf] = new
    return config


def eval_py(config, checkpoint: str, out_dir: str, args) -> dict:
    """J&F of ``checkpoint`` on the held-out synthetic videos, by ``eval.py``."""
    t = config.train
    S = config.model.image_size
    argv = [sys.executable, str(REPO / "eval.py"), "--task", "vos", "--dataset_format", "synthetic"]
    argv += ["--num_synthetic", str(args.eval_videos), "--synthetic_frames", str(args.eval_frames)]
    argv += ["--synthetic_size", str(S), "--synthetic_objects", str(t.max_num_objects), "--seed", str(args.eval_seed)]
    argv += ["--model", config.name, "--image_size", str(S)]
    argv += ["--checkpoint", checkpoint, "--prompt", "mask", "--output_dir", out_dir, "--progress", "false"]
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, cwd=REPO)
    with open(os.path.join(out_dir, "summary.csv")) as f:
        row = next(csv.DictReader(f))
    return {k: float(row[k]) for k in ("J&F", "J", "F")} | {"seconds": time.perf_counter() - t0}


def figure(workdir: str, out: str, demo: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sam2_jax.training.plot_metrics import draw_eval_j, draw_loss, load

    rows = load(workdir)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    draw_loss(axes[0], rows, window=10)
    ax = axes[1]
    draw_eval_j(ax, rows, label="held-out J (trainer, clips of the training length)")
    steps = demo["steps"]
    ax.plot([0, steps], [demo["eval_init"]["J&F"], demo["eval_trained"]["J&F"]], "s--", ms=9, label="eval.py J&F")
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out score (mask prompt on frame 0)")
    ax.legend(loc="upper left")
    ax.set_title(f"{steps} steps, {demo['train_minutes']:.1f} min on {demo['cpu_count']} CPU cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv=None) -> None:
    args, overrides = parse_args(argv)
    import jax
    import numpy as np

    from sam2_jax.convert_weights.orbax_io import save_params
    from sam2_jax.training import trainer

    config = load_config(args.config, overrides)
    workdir = os.path.abspath(args.workdir)
    init = os.path.join(workdir, "init", "params")
    if not os.path.exists(init):
        model = trainer.build_model(config)
        save_params(jax.tree.map(np.asarray, model.params), init)
        del model
    t0 = time.perf_counter()
    trainer.train_and_evaluate(config, workdir)
    train_s = time.perf_counter() - t0
    demo = {
        "config": args.config,
        "overrides": overrides,
        "steps": int(config.train.total_steps),
        "train_minutes": train_s / 60,
        "cpu_count": os.cpu_count(),
        "load_average_end": os.getloadavg(),
        "eval_videos": args.eval_videos,
        "eval_seed": args.eval_seed,
    }
    demo["eval_init"] = eval_py(config, init, os.path.join(workdir, "eval_init"), args)
    demo["eval_trained"] = eval_py(
        config, os.path.join(workdir, "export", "params"), os.path.join(workdir, "eval"), args
    )
    with open(os.path.join(workdir, "demo.json"), "w") as f:
        json.dump(demo, f, indent=1)
    figure(workdir, args.figure or os.path.join(workdir, "curve.png"), demo)
    print(json.dumps(demo, indent=1))


if __name__ == "__main__":
    main()
