"""The official MOSE fine-tune (``sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml``): base_plus from the official
checkpoint on MOSE train, 8-frame clips of up to 3 objects at 1024 px, batch 1 per step, multiplier 2.

    python train.py --config sam2_jax/configs/train_mose_finetune.py:/data/MOSE --workdir runs/mose \\
        --config.train.init_checkpoint=sam2.1_hiera_base_plus.pt --config.train.total_steps=20000

The argument is the MOSE root holding ``JPEGImages/<video>/*.jpg`` and ``Annotations/<video>/*.png`` (the DAVIS layout
without a resolution folder). The official trains 40 epochs of the video list on 8 GPUs; set ``total_steps`` for
your run (one step = ``batch_size`` clips) and ``mesh`` for your devices.
"""

import ml_collections

from sam2_jax.configs.train_common import train_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The config; ``arg`` is the MOSE root."""
    c = train_config("sam2.1_hiera_b+")
    c.train.data.sources = dict(
        mose=dict(
            kind="vos_folder",
            root=arg or "",
            split="",
            resolution="",
            batch_size=0,
            num_frames=0,
            max_num_objects=0,
            multiplier=2,
            prob=0.0,
        )
    )
    return c
