"""The smallest training run the trainer tests use (``train.py --config tests/training/tiny_train_config.py``).

64 px, 3-frame clips of 2 objects, 8 clips a step, 6 steps, no corrective clicks, logged every step and
checkpointed every two; a Hiera of 4 blocks and one memory-attention layer keep the compile short. The learning
rate is small, so the first steps do not blow up (comparisons across meshes would then compare amplified rounding).
"""

import ml_collections

from sam2_jax.configs.train_synthetic_tiny import get_config as tiny_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The config; ``arg`` unused."""
    del arg
    c = tiny_config()
    c.model.image_size = 64
    trunk = c.model.image_encoder.trunk
    trunk.stages, trunk.global_att_blocks = (1, 1, 1, 1), (2,)
    c.model.memory_attention.num_layers = 1
    t = c.train
    t.batch_size = 8
    t.total_steps, t.log_every, t.checkpoint_every = 6, 1, 2
    t.num_frames, t.max_num_objects = 3, 2
    t.prompts.num_correction_pt_per_frame = 0
    t.prompts.num_frames_to_correct = 1
    t.data.num_videos, t.data.video_frames = 8, 4
    t.mesh.fsdp_min_size = 2**12  # small enough that an fsdp axis splits most of the tiny model
    t.optim.base_lr, t.optim.vision_lr = 3e-5, 1.5e-5
    t.eval_videos = 0
    return c
