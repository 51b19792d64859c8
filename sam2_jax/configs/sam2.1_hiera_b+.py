"""SAM 2.1 Hiera-base_plus (official `configs/sam2.1/sam2.1_hiera_b+.yaml`)."""

from sam2_jax.configs.common import sam2_config


def get_config(arg=None):
    del arg
    return sam2_config("2.1", "base_plus")
