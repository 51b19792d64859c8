"""SAM 2 Hiera-small (official `configs/sam2/sam2_hiera_s.yaml`)."""

from sam2_jax.configs.common import sam2_config


def get_config(arg=None):
    del arg
    return sam2_config("2", "small")
