"""Plot the training curves of a workdir: ``python -m sam2_jax.training.plot_metrics WORKDIR OUT.png``.

Reads ``WORKDIR/metrics.jsonl`` (written by the trainer) and draws the total loss per step (raw and a moving
average) and, when present, the held-out loss and J.
"""

import json
import sys

import numpy as np


def load(workdir: str) -> list[dict]:
    """The rows of ``metrics.jsonl``."""
    with open(f"{workdir}/metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def draw_loss(ax, rows: list[dict], window: int = 10) -> None:
    """The training loss per logged step (raw and a moving average) and the held-out loss, on ``ax`` (log scale)."""
    train = sorted((r["step"], r["core_loss"]) for r in rows if "core_loss" in r)
    evals = sorted((r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r)
    if train:
        s, v = map(np.asarray, zip(*train, strict=True))
        ax.plot(s, v, alpha=0.35, label="train loss")
        if len(v) >= window:
            ax.plot(s[window - 1 :], np.convolve(v, np.ones(window) / window, "valid"), label=f"mean of {window}")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="held-out loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (20 focal + dice + IoU + class)")
    ax.legend()


def draw_eval_j(ax, rows: list[dict], label: str = "held-out J (mask prompt on frame 0)") -> bool:
    """The trainer's held-out J per evaluated step on ``ax``; False when the run logged none."""
    evals = sorted((r["step"], r["eval_J"]) for r in rows if "eval_J" in r)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("held-out J (mask prompt on frame 0)")
    return bool(evals)


def plot(workdir: str, out: str, window: int = 10) -> None:
    """Write the figure ``out`` (PNG) for the run in ``workdir``.

    Args:
        workdir: the trainer's workdir.
        out: output image path.
        window: moving-average window (logged points).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load(workdir)
    has_eval = any("eval_J" in r for r in rows)
    fig, axes = plt.subplots(1, 2 if has_eval else 1, figsize=(11 if has_eval else 6, 4), squeeze=False)
    draw_loss(axes[0, 0], rows, window)
    if has_eval:
        draw_eval_j(axes[0, 1], rows)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m sam2_jax.training.plot_metrics WORKDIR OUT.png")
    plot(sys.argv[1], sys.argv[2])
