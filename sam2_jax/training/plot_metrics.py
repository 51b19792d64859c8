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
    train = sorted((r["step"], r["core_loss"]) for r in rows if "core_loss" in r)
    evals = sorted((r["step"], r["eval_loss"], r["eval_J"]) for r in rows if "eval_J" in r)
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
    ax = axes[0, 0]
    if train:
        s, v = map(np.asarray, zip(*train, strict=True))
        ax.plot(s, v, alpha=0.35, label="train loss")
        if len(v) >= window:
            ax.plot(s[window - 1 :], np.convolve(v, np.ones(window) / window, "valid"), label=f"mean of {window}")
    if evals:
        s, el, _ = zip(*evals, strict=True)
        ax.plot(s, el, "o-", label="held-out loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (20 focal + dice + IoU + class)")
    ax.legend()
    if evals:
        s, _, j = zip(*evals, strict=True)
        axes[0, 1].plot(s, j, "o-")
        axes[0, 1].set_xlabel("step")
        axes[0, 1].set_ylabel("held-out J (mask prompt on frame 0)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m sam2_jax.training.plot_metrics WORKDIR OUT.png")
    plot(sys.argv[1], sys.argv[2])
