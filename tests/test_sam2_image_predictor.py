"""SAM2ImagePredictor end to end against the official predictor on real photos (same random weights)."""

import functools

import numpy as np
import pytest

from tests import measured
from tests.reference import DATA, official_model, requires_data, requires_torch

NAME = "sam2.1_hiera_t"
# Logits are O(10) (random weights scaled as in sam2_jax.utils.random_weights); the largest difference measured
# on the truck photo is 2e-5 (float32 summation order through the encoder and decoder).
ATOL = 1e-4
BOUNDS = {"masks": ATOL, "iou": 1e-6, "low_res": ATOL}  # predicted IoUs (O(1)): measured 1.8e-7 / 2.4e-7 (two machines)


def _load(name):
    from PIL import Image

    return np.asarray(Image.open(DATA / "images" / name).convert("RGB"))


@functools.lru_cache(maxsize=1)
def _models(name=NAME):
    import jax.numpy as jnp
    from sam2.sam2_image_predictor import SAM2ImagePredictor as RefPredictor

    from sam2_jax.build_sam import SAM2Model
    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import make_module
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
    from tests.reference import converted_params

    ref = RefPredictor(official_model(name))
    config = get_config(name)

    module = make_module(config.model)
    params = {k: v for k, v in converted_params(name).items()}
    import jax

    model = SAM2Model(module=module, params=jax.tree.map(jnp.asarray, params), config=config)
    return ref, SAM2ImagePredictor(model)


@functools.lru_cache(maxsize=4)
def _set(photo):
    ref, ours = _models()
    image = _load(photo)
    ref.set_image(image)
    ours.set_image(image)
    return ref, ours, image


def _check(ref_out, our_out, what):
    for n, r, o in zip(("masks", "iou", "low_res"), ref_out, our_out, strict=True):
        r = np.asarray(r, np.float32)
        assert o.shape == r.shape, f"{what}/{n}: shape {o.shape} vs {r.shape}"
        measured.max_abs(n, o, r, BOUNDS[n])


CASES = {
    "point": dict(point_coords=np.array([[500, 375]]), point_labels=np.array([1])),
    "points_with_negative": dict(
        point_coords=np.array([[500, 375], [1125, 625], [300, 900]]),
        point_labels=np.array([1, 1, 0]),
        multimask_output=False,
    ),
    "box": dict(box=np.array([425, 600, 700, 875]), multimask_output=False),
    "box_and_point": dict(
        box=np.array([425, 600, 700, 875]),
        point_coords=np.array([[575, 750]]),
        point_labels=np.array([0]),
        multimask_output=False,
    ),
    "batched_boxes": dict(
        box=np.array([[75, 275, 1725, 850], [425, 600, 700, 875], [1375, 550, 1650, 800]]), multimask_output=False
    ),
    "normalized_point": dict(point_coords=np.array([[0.3, 0.4]]), point_labels=np.array([1]), normalize_coords=False),
}


@requires_torch
@requires_data
@pytest.mark.parametrize("case", sorted(CASES))
def test_predict_matches_official(case):
    ref, ours, _ = _set("truck.jpg")
    kw = dict(CASES[case], return_logits=True)
    _check(ref.predict(**kw), ours.predict(**kw), case)
    # binary masks equal too where the logit is not within tolerance of the threshold
    kw["return_logits"] = False
    rm, om = ref.predict(**kw)[0], ours.predict(**kw)[0]
    logits = ref.predict(**dict(kw, return_logits=True))[0]
    decided = np.abs(logits) > ATOL
    assert np.array_equal(rm[decided], om[decided])


@requires_torch
@requires_data
def test_mask_input_round_and_embedding():
    ref, ours, _ = _set("groceries.jpg")
    kw = dict(point_coords=np.array([[400, 300]]), point_labels=np.array([1]), return_logits=True)
    r1, o1 = ref.predict(**kw), ours.predict(**kw)
    _check(r1, o1, "first click")
    best = int(np.argmax(r1[1]))
    kw2 = dict(
        point_coords=np.array([[400, 300], [200, 150]]),
        point_labels=np.array([1, 0]),
        mask_input=r1[2][best][None],
        multimask_output=False,
        return_logits=True,
    )
    _check(ref.predict(**kw2), ours.predict(**kw2), "refine with mask_input")
    emb_r = ref.get_image_embedding().numpy()
    np.testing.assert_allclose(ours.get_image_embedding(), emb_r, atol=ATOL * max(1, np.abs(emb_r).max()))


@requires_torch
@requires_data
def test_set_image_batch_and_predict_batch():
    ref, ours = _models()
    images = [_load("truck.jpg"), _load("groceries.jpg")]
    ref.set_image_batch(images)
    ours.set_image_batch(images)
    pts = [np.array([[500, 375]]), np.array([[400, 300]])]
    lbl = [np.array([1]), np.array([1])]
    boxes = [None, np.array([100, 100, 500, 400])]
    r = ref.predict_batch(pts, lbl, box_batch=boxes, return_logits=True, multimask_output=False)
    o = ours.predict_batch(pts, lbl, box_batch=boxes, return_logits=True, multimask_output=False)
    for i in range(2):
        _check([r[0][i], r[1][i], r[2][i]], [o[0][i], o[1][i], o[2][i]], f"image {i}")


@requires_torch
@requires_data
def test_bad_input_raises_value_error():
    from PIL import Image

    _, ours = _models()
    ours.reset_predictor()
    with pytest.raises(ValueError, match="set_image"):
        ours.predict(point_coords=np.array([[1, 2]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="3 channels"):
        ours.set_image(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError, match="HWC"):
        ours.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ours.set_image(np.zeros((10, 10, 3), np.float64))
    ours.set_image(Image.fromarray(np.zeros((64, 48, 3), np.uint8)))  # PIL works, any size
    with pytest.raises(ValueError, match="point_labels must be supplied"):
        ours.predict(point_coords=np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"point_labels shape \(2,\) does not match"):
        ours.predict(point_coords=np.array([[1, 2]]), point_labels=np.array([1, 0]))
    with pytest.raises(ValueError, match="box must be"):
        ours.predict(box=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="mask_input must be"):
        ours.predict(point_coords=np.array([[1, 2]]), point_labels=np.array([1]), mask_input=np.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="set_image_batch"):
        ours.predict_batch([np.array([[1, 2]])], [np.array([1])])
    m, s, low = ours.predict(point_coords=np.array([[10, 20]]), point_labels=np.array([1]))
    assert m.shape == (3, 64, 48) and m.dtype == bool and s.shape == (3,) and low.shape == (3, 256, 256)
