"""Train SAM 2.1 tiny from scratch on the synthetic videos at 64 px: a CPU-sized run of the official recipe.

Differences from the official fine-tuning config (``train_common.py``): random init, 64 px input, 4-frame clips
with 2 objects, 2 corrective clicks instead of 7, learning rates for training from scratch (the official
5e-6 / 3e-6 fine-tune a pretrained model) with the paper's reciprocal-square-root schedule, and of the official
augmentations only the flip, the colour jitters and the grayscale (no affine, no mosaic), and no trunk drop path: on
64 px synthetic shapes they cost more of a 30-minute CPU budget than they give back.

    python train.py --config sam2_jax/configs/train_synthetic_tiny.py --workdir /tmp/sam2_tiny
    python scripts/train_synthetic_demo.py --workdir /tmp/sam2_tiny_demo   # + eval.py before and after
"""

import ml_collections

from sam2_jax.configs.train_common import train_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The config; ``arg`` unused."""
    del arg
    c = train_config("sam2.1_hiera_t")
    c.model.image_size = 64
    c.model.image_encoder.trunk.drop_path_rate = 0.0
    t = c.train
    t.total_steps = 2400
    t.num_frames = 4
    t.max_num_objects = 2
    t.prompts.num_correction_pt_per_frame = 2
    t.optim.base_lr = 2e-4
    t.optim.vision_lr = 1e-4
    t.optim.schedule = ml_collections.ConfigDict(
        dict(kind="rsqrt", end_factor=0.0, warmup=0.05, cooldown=0.3, timescale=0.1)
    )
    t.data.num_videos = 400
    t.data.video_frames = 8
    t.data.degrees = 0.0
    t.data.shear = 0.0
    t.data.mosaic_prob = 0.0
    t.log_every = 20
    t.checkpoint_every = 600
    t.eval_videos = 8
    t.eval_every = 600
    return c
