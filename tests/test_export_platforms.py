"""The model runs on GPU and TPU: its compiled entry points lower with ``jax.export`` for the ``cuda`` and ``tpu``
platforms on this CPU-only machine, with no CPU-only construct (a host callback, a CPU-only custom call).

Lowered with ``attention_impl="xla"`` (what ``"auto"`` resolves to on TPU, and on GPU where cuDNN refuses the
shape): ``"auto"`` resolves with the backend that traces, which is the CPU here. Abstract inputs only
(``jax.ShapeDtypeStruct``): nothing is computed, so the model runs at a small image size for speed; the graphs are
those of every size.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam2_jax.configs import get_config
from sam2_jax.configs.train_common import train_config
from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.modeling.sam2_model import make_module
from sam2_jax.tracker import calls, compiled, engine
from sam2_jax.tracker.step_config import StepConfig
from sam2_jax.training import sam2_train as st
from sam2_jax.utils.config import freeze_config
from sam2_jax.video.tracker_state import empty_tracker_state

PLATFORMS = ("cuda", "tpu")
S = 128  # image size
# Custom-call targets that only exist in XLA:CPU, and the host callbacks.
CPU_ONLY = re.compile(r"cpu|callback|lapack|ducc|host", re.IGNORECASE)


def _module(**overrides) -> SAM2Base:
    m = get_config("sam2.1_hiera_t").model
    m.image_size, m.attention_impl = S, "xla"
    m.update(overrides)
    return make_module(m)


def _abstract_params(module: SAM2Base):
    x = jax.ShapeDtypeStruct((1, S, S, 3), jnp.float32)
    return jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x), x)["params"]


def _state(module: SAM2Base, num_objects: int, num_cond: int = 2, num_frames: int = 30):
    return jax.eval_shape(lambda: empty_tracker_state(module.config, num_objects, num_cond, num_frames))


def _check(fn, *args) -> str:
    exp = jax.export.export(fn, platforms=PLATFORMS)(*args)
    assert tuple(exp.platforms) == PLATFORMS
    text = exp.mlir_module()
    targets = sorted(set(re.findall(r"custom_call @([\w.$-]+)", text)))
    bad = [t for t in targets if CPU_ONLY.search(t)]
    assert not bad, f"CPU-only custom calls {bad} in {targets}"
    assert "callback" not in text.lower()
    return text


def test_image_encoder_lowers_for_gpu_and_tpu():
    module = _module()
    img = jax.ShapeDtypeStruct((2, S, S, 3), jnp.float32)
    _check(jax.jit(functools.partial(calls.frame_features, module)), _abstract_params(module), img)


@pytest.mark.parametrize(
    "num_objects, policy",
    [(1, "sam2"), (3, "sam2")]
    + [pytest.param(3, p, marks=pytest.mark.slow) for p in ("samurai", "sam3_selection", "sam2long")],
)
def test_propagation_chunk_lowers_for_gpu_and_tpu(num_objects, policy):
    from sam2_jax.tracker.policies import get_policy

    module, pol = _module(), get_policy(policy)
    fn = jax.jit(
        lambda p, st, im, fi, rev: compiled.propagate_chunk(module, p, st, im, fi, rev, StepConfig(pol, 8, True))
    )
    args = (
        _abstract_params(module),
        _state(module, num_objects),
        jax.ShapeDtypeStruct((4, S, S, 3), jnp.float32),
        jax.ShapeDtypeStruct((4,), jnp.int32),
        jax.ShapeDtypeStruct((), jnp.bool_),
    )
    _check(fn, *args)


def test_batch_of_videos_lowers_for_gpu_and_tpu():
    module = _module()
    V, O = 3, 2
    fn = jax.jit(
        lambda p, st, im, fi, rev: compiled.propagate_videos_chunk(
            module, p, st, im, fi, rev, StepConfig(fill_hole_area=8, compact=True)
        )
    )
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((V, *x.shape), x.dtype), _state(module, O))
    args = (
        _abstract_params(module),
        state,
        jax.ShapeDtypeStruct((V, 4, S, S, 3), jnp.float32),
        jax.ShapeDtypeStruct((V, 4), jnp.int32),
        jax.ShapeDtypeStruct((V,), jnp.bool_),
    )
    _check(fn, *args)


@pytest.mark.parametrize("prompt", ["clicks", "mask", "clicks_on_memory"])
def test_interact_lowers_for_gpu_and_tpu(prompt):
    module = _module()
    params = _abstract_params(module)
    feats = jax.eval_shape(lambda p, x: calls.frame_features(module, p, x), params, jnp.zeros((1, S, S, 3)))
    pts = (jax.ShapeDtypeStruct((1, 3, 2), jnp.float32), jax.ShapeDtypeStruct((1, 3), jnp.int32))
    mask = jax.ShapeDtypeStruct((1, S, S, 1), jnp.float32)
    is_init = prompt != "clicks_on_memory"

    def fn(p, st, fe, t, rev, coords, labels, m):
        return engine.interact(
            module, p, st, fe, t, rev, coords, labels, m, None, is_init, StepConfig(fill_hole_area=8)
        )

    i32, b = jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.bool_)
    if prompt == "mask":
        _check(
            jax.jit(lambda p, st, fe, t, rev, m: fn(p, st, fe, t, rev, None, None, m)),
            params,
            _state(module, 1),
            feats,
            i32,
            b,
            mask,
        )
    else:
        _check(
            jax.jit(lambda p, st, fe, t, rev, c, l: fn(p, st, fe, t, rev, c, l, None)),
            params,
            _state(module, 1),
            feats,
            i32,
            b,
            *pts,
        )


def test_training_update_lowers_for_gpu_and_tpu():
    cfg = train_config("sam2.1_hiera_t")
    cfg.model.image_size, cfg.model.attention_impl = S, "xla"
    cfg.train.prompts.num_correction_pt_per_frame = 2
    module = st.training_module(make_module(cfg.model))
    fc = freeze_config(cfg)
    params = _abstract_params(module)
    tx = optax.adamw(1e-4)
    T, O = 3, 2
    plan = st.sample_prompt_plan(np.random.default_rng(0), T, cfg.train.prompts)

    def update(params, opt_state, frames, masks, key):
        def loss(p):
            losses, _ = st.batch_losses(
                module, p, frames, masks, jax.tree.map(lambda x: x[None], plan), key, fc, deterministic=False
            )
            return losses["core_loss"]

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    _check(
        jax.jit(update),
        params,
        jax.eval_shape(tx.init, params),
        jax.ShapeDtypeStruct((1, T, S, S, 3), jnp.uint8),
        jax.ShapeDtypeStruct((1, T, O, S, S), jnp.bool_),
        jax.eval_shape(lambda: jax.random.key(0)),
    )
