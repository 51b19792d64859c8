"""build_sam2 without a checkpoint and param shapes: traced at the config's own input size."""

import functools

import jax
import pytest

from sam2_jax.checkpoints import init_params, param_shapes
from sam2_jax.configs import get_config
from sam2_jax.modeling.sam2_model import make_module


@pytest.mark.parametrize("image_size", [1024, 512])
def test_init_params_at_the_config_size(image_size):
    """Tracing at a fixed input size (256 for init, 1024 for shapes) broke every other size: the prompt encoder's
    dense PE is sized by the config. Traced shapes only, so nothing is computed."""
    cfg = get_config("sam2.1_hiera_t")
    cfg.model.image_size = image_size
    module = make_module(cfg.model)
    shapes = jax.eval_shape(functools.partial(init_params, module, 0))
    flat = {k: tuple(v.shape) for k, v in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    assert len(flat) == len(param_shapes(module))


def test_a_config_mutated_after_building_does_not_alias_the_first_model():
    """ml_collections' ``FrozenConfigDict(cfg)`` keeps references to ``cfg``'s nested dicts and hashes and compares
    through them: after ``cfg.model.<nested> = …`` the first model's module compared equal to the second's, so a
    ``jax.jit`` with the module as static argument reused the first one's compiled function (found when the train
    remat policy, set on one config between two compiles, changed nothing). Every module and config we freeze is a
    snapshot now."""
    from sam2_jax.build_sam import build_sam2

    cfg = get_config("sam2.1_hiera_t")
    cfg.model.image_size = 64
    trunk = cfg.model.image_encoder.trunk
    first = build_sam2(cfg, None, seed=0)
    before = hash(first.module), first.module.config.image_encoder.trunk.drop_path_rate
    trunk.drop_path_rate = 0.5
    second = build_sam2(cfg, None, seed=0)
    assert (hash(first.module), first.module.config.image_encoder.trunk.drop_path_rate) == before
    assert second.module.config.image_encoder.trunk.drop_path_rate == 0.5
    assert first.module != second.module and hash(first.module) != hash(second.module)


def test_build_sam2_leaves_the_callers_config_alone():
    """``ml_collections.ConfigDict(cfg)`` is a shallow copy: the builder's overrides used to reach into the caller's
    nested dicts. ``build_sam2`` deep-copies now."""
    from sam2_jax.build_sam import build_sam2

    cfg = get_config("sam2.1_hiera_t")
    cfg.model.image_size = 64
    model = build_sam2(cfg, None, hydra_overrides_extra=["++model.image_encoder.trunk.drop_path_rate=0.3"])
    assert model.config.model.image_encoder.trunk.drop_path_rate == 0.3
    assert cfg.model.image_encoder.trunk.drop_path_rate == 0.0
