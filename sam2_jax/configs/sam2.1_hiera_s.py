"""SAM 2.1 Hiera-small (official `configs/sam2.1/sam2.1_hiera_s.yaml`)."""

from sam2_jax.configs.common import sam2_config


def get_config(arg=None):
    del arg
    return sam2_config("2.1", "small")
