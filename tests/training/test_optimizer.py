"""Param groups and schedules against the official ``construct_optimizer`` run on the official MOSE fine-tune
config (``trainer.optim`` of ``sam2.1_hiera_b+_MOSE_finetune.yaml``) and the official tiny model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.configs.train_common import train_config
from sam2_jax.training import optimizer as opt
from tests.reference import converted_params, official_model, requires_torch
from tests.training.official import install_fvcore_schedulers, official_mose_optim_config

NAME = "sam2.1_hiera_t"


@pytest.fixture(scope="module")
def official_groups():
    """Official per-parameter (lr, weight_decay) at several training fractions."""
    install_fvcore_schedulers()
    from training.optimizer import construct_optimizer

    model = official_model(NAME)
    optim = official_mose_optim_config()
    o = construct_optimizer(model, optim.optimizer, optim.options, optim.param_group_modifiers)
    name_of = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for where in (0.0, 0.3, 0.9):
        o.step_schedulers(where, 0)
        for g in o.optimizer.param_groups:
            for p in g["params"]:
                out.setdefault(name_of[id(p)], {})[where] = (g["lr"], g["weight_decay"])
    return out


@requires_torch
def test_param_groups_match_official(official_groups):
    config = train_config(NAME)
    params = converted_params(NAME)
    groups = opt.param_groups(params, config)
    names = opt.torch_names(params, config)
    total = 10
    flat = {k: jax.tree_util.tree_flatten_with_path(v)[0] for k, v in groups.items()}
    seen = set()
    mults = set()
    for i, (path, _) in enumerate(flat["lr_mult"]):
        p = tuple(k.key for k in path)
        n = names[p]
        if n in opt.BUFFERS:  # a torch buffer: not a parameter, never trained
            assert not flat["trainable"][i][1]
            continue
        seen.add(n)
        mult, vision, wd = flat["lr_mult"][i][1], flat["vision"][i][1], flat["weight_decay"][i][1]
        mults.add(round(mult, 8))
        for where, (ref_lr, ref_wd) in official_groups[n].items():
            base, vis = opt.learning_rates(jnp.asarray(where * total), config.train.optim, total)
            lr = float(vis if vision else base) * mult
            np.testing.assert_allclose(lr, ref_lr, rtol=1e-6, err_msg=f"{n} at {where}")
            assert wd == ref_wd, (n, wd, ref_wd)
    assert seen == set(official_groups)
    # 12 trunk blocks: decays 0.9^13 (patch_embed) ... 0.9^1 (last block), and 1.
    assert len(mults) == 14


def test_update_is_adamw_with_groups():
    """One step of our transformation equals a hand-computed AdamW step with per-leaf lr and weight decay."""
    config = train_config(NAME)
    config.train.optim.grad_clip = 0.0
    params = converted_params(NAME)
    tx = opt.make_optimizer(params, config, total_steps=100)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.01), params)
    state = tx.init(params)
    updates, _ = jax.jit(tx.update)(grads, state, params)
    groups = opt.param_groups(params, config)
    base, vis = opt.learning_rates(0, config.train.optim, 100)

    def expected(p, m, v, wd, t):
        if not t:
            return np.zeros_like(p)
        lr = float(vis if v else base) * m
        adam = 0.01 / (0.01 + 1e-8)  # first step: m_hat / (sqrt(v_hat) + eps)
        return -lr * (adam + wd * np.asarray(p))

    exp = jax.tree.map(
        expected, params, groups["lr_mult"], groups["vision"], groups["weight_decay"], groups["trainable"]
    )
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(exp), strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-14)
    pe = updates["sam_prompt_encoder"]["pe_layer"]["positional_encoding_gaussian_matrix"]
    assert float(jnp.abs(pe).max()) == 0.0


def test_rsqrt_schedule_shape():
    config = train_config(NAME)
    s = config.train.optim.schedule
    s.kind, s.warmup, s.cooldown, s.timescale = "rsqrt", 0.1, 0.2, 0.1
    lr = np.array([float(opt.learning_rates(i, config.train.optim, 100)[0]) for i in range(100)])
    base = config.train.optim.base_lr
    np.testing.assert_allclose(lr[5], base * 0.5, rtol=1e-5)  # linear warm-up
    np.testing.assert_allclose(lr[10], base, rtol=1e-5)  # peak when warm-up ends
    np.testing.assert_allclose(lr[40], base * np.sqrt(0.2 / 0.5), rtol=1e-5)  # reciprocal sqrt
    np.testing.assert_allclose(lr[90], base * np.sqrt(0.2 / 1.0) * 0.5, rtol=1e-5)  # cool-down halfway
    assert np.all(np.diff(lr[10:]) <= 0)
