"""build_sam2 without a checkpoint and param shapes: traced at the config's own input size."""

import functools

import jax
import ml_collections
import pytest

from configs import get_config
from sam2_jax.checkpoints import init_params, param_shapes
from sam2_jax.modeling.sam2_base import SAM2Base


@pytest.mark.parametrize("image_size", [1024, 512])
def test_init_params_at_the_config_size(image_size):
    """Tracing at a fixed input size (256 for init, 1024 for shapes) broke every other size: the prompt encoder's
    dense PE is sized by the config. Traced shapes only, so nothing is computed."""
    cfg = get_config("sam2.1_hiera_t")
    cfg.model.image_size = image_size
    module = SAM2Base(config=ml_collections.FrozenConfigDict(cfg.model))
    shapes = jax.eval_shape(functools.partial(init_params, module, 0))
    flat = {k: tuple(v.shape) for k, v in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    assert len(flat) == len(param_shapes(module))
