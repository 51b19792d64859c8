"""Our numbers against golden outputs of the official code (tests/golden, made by scripts/make_golden.py).

These run without torch: the random weights are rebuilt with numpy from the stored official key shapes, converted
by our converter, and the outputs compared with what the official code produced on the same inputs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.build_sam import SAM2Model
from sam2_jax.configs import get_config
from sam2_jax.convert_weights.convert import convert_state_dict
from sam2_jax.convert_weights.mapping import param_table
from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.modeling.sam2_model import make_module
from sam2_jax.utils.random_weights import random_state_dict
from tests.golden_cases import IMAGE_CASES, MODEL, memory_attention_inputs, memory_encoder_inputs, shipped_photo
from tests.reference import GOLDEN


def _golden(kind):
    path = GOLDEN / f"{kind}_{MODEL}.npz"
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/make_golden.py")
    return np.load(path)


@functools.lru_cache(maxsize=1)
def _model():
    shapes = {k: tuple(int(d) for d in v) for k, v in _golden("shapes").items()}
    config = get_config(MODEL)
    sd = random_state_dict(shapes, param_table(config), seed=0)
    params = jax.tree.map(jnp.asarray, convert_state_dict(sd, param_table(config)))
    return SAM2Model(make_module(config.model), params, config)


def test_image_predictor_matches_golden():
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

    gold = _golden("image_predictor")
    pred = SAM2ImagePredictor(_model())
    pred.set_image(shipped_photo())
    for name, kw in IMAGE_CASES.items():
        _, iou, low = pred.predict(**kw, return_logits=True)
        np.testing.assert_allclose(iou, gold[f"{name}/iou"], atol=1e-5, rtol=0, err_msg=name)
        np.testing.assert_allclose(low[..., ::4, ::4], gold[f"{name}/low_res"], atol=1e-4, rtol=0, err_msg=name)


def test_memory_modules_match_golden():
    gold = _golden("memory")
    model = _model()
    pix, masks = memory_encoder_inputs()
    enc = model.module.apply({"params": model.params}, pix, masks, method=lambda m, p, x: m.memory_encoder(p, x))
    np.testing.assert_allclose(np.asarray(enc["vision_features"]), gold["encoder_features"], atol=1e-4, rtol=0)
    curr, memory, curr_pos, memory_pos, num_ptr = memory_attention_inputs()
    att = model.module.apply(
        {"params": model.params}, curr, curr_pos, memory, memory_pos, num_ptr, method=SAM2Base.attend_memory
    )
    np.testing.assert_allclose(np.asarray(att), gold["attention"], atol=1e-4, rtol=0)
