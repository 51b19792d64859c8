"""Train SAM 2 (JAX): flags, then ``sam2_jax.training.trainer.train_and_evaluate``.

    python train.py --config sam2_jax/configs/train_synthetic_tiny.py --workdir /tmp/sam2_tiny
    python train.py --config sam2_jax/configs/train_common.py:sam2.1_hiera_b+ --workdir runs/bplus \\
        --config.train.init_checkpoint=sam2.1_hiera_base_plus.pt --config.train.total_steps=10000

A workdir that already holds checkpoints is resumed from the latest one.
"""

from absl import app, flags
from ml_collections import config_flags

from sam2_jax.training.trainer import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file (sam2_jax/configs/train_*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and the exported params")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
