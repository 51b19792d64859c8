"""``sam2_jax.utils.transforms.SAM2Transforms`` against the official ``sam2.utils.transforms.SAM2Transforms``.

The official transforms use torchvision (here a pure-torch stand-in checked bit for bit against torchvision
0.29.1). Hole filling / sprinkle removal needs the CUDA extension ``sam2._C`` in the official code, so those
cases run the official ``postprocess_masks`` with scipy's 8-connected labelling in its place.
"""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sam2_jax.utils.transforms import SAM2Transforms
from tests.reference import DATA, requires_data, requires_torch
from tests.utils.test_misc import _patch_official_components

# Measured max abs error of the normalised images (values in about [-2.1, 2.6]): 1.7e-6 on all three photos.
IMAGE_ATOL = 5e-6


def _official(**kw):
    from sam2.utils.transforms import SAM2Transforms as Official

    return Official(1024, 0.0, **kw)


def _photo(name: str) -> np.ndarray:
    return np.array(Image.open(DATA / "images" / f"{name}.jpg").convert("RGB"))


@requires_torch
@requires_data
@pytest.mark.parametrize("name", ["truck", "groceries", "cars"])
def test_image_matches_official(name):
    img = _photo(name)
    ref = _official()(img).permute(1, 2, 0).numpy()  # (3, 1024, 1024) -> (1024, 1024, 3)
    out = np.asarray(SAM2Transforms(1024, 0.0)(img))
    assert out.shape == (1024, 1024, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=0, atol=IMAGE_ATOL)


@requires_torch
@requires_data
def test_forward_batch_pil_and_float_inputs():
    imgs = [_photo("groceries"), Image.open(DATA / "images" / "truck.jpg").convert("RGB")]
    ref = _official().forward_batch(imgs).permute(0, 2, 3, 1).numpy()  # (B, 3, H, W) -> (B, H, W, 3)
    ours = SAM2Transforms(1024, 0.0)
    out = np.asarray(ours.forward_batch(imgs))
    assert out.shape == (2, 1024, 1024, 3)
    np.testing.assert_allclose(out, ref, rtol=0, atol=IMAGE_ATOL)
    # A float image is taken as already scaled to [0, 1] (``ToTensor`` does not divide floats).
    small = np.random.default_rng(0).uniform(size=(300, 500, 3)).astype(np.float32)
    ref = _official()(small).permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)
    np.testing.assert_allclose(np.asarray(ours(small)), ref, rtol=0, atol=IMAGE_ATOL)


@requires_torch
def test_coords_and_boxes_match_official():
    import torch

    rng = np.random.default_rng(1)
    coords = (rng.uniform(size=(2, 5, 2)) * [1800, 1200]).astype(np.float32)
    boxes = (rng.uniform(size=(3, 4)) * [1800, 1200, 1800, 1200]).astype(np.float32)
    official, ours = _official(), SAM2Transforms(1024, 0.0)
    for normalize in (True, False):
        c_in = coords if normalize else coords / np.float32(2000)
        b_in = boxes if normalize else boxes / np.float32(2000)
        ref_c = official.transform_coords(torch.from_numpy(c_in), normalize, (1200, 1800)).numpy()
        ref_b = official.transform_boxes(torch.from_numpy(b_in), normalize, (1200, 1800)).numpy()
        np.testing.assert_array_equal(np.asarray(ours.transform_coords(c_in, normalize, (1200, 1800))), ref_c)
        out_b = np.asarray(ours.transform_boxes(b_in, normalize, (1200, 1800)))
        assert out_b.shape == (3, 2, 2)
        np.testing.assert_array_equal(out_b, ref_b)


def _logits(seed: int, shape=(2, 3, 256, 256)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(0, 0, 1.5, 1.5))
    return (noise * 30).astype(np.float32)


@requires_torch
@pytest.mark.parametrize("orig_hw", [(1200, 1800), (534, 800), (97, 301)])
def test_postprocess_masks_matches_official(orig_hw):
    """Without hole filling the official CPU path runs for real: bilinear upsampling of the logits."""
    import torch

    logits = _logits(sum(orig_hw))
    ref = _official().postprocess_masks(torch.from_numpy(logits), orig_hw).numpy()
    out = np.asarray(SAM2Transforms(1024, 0.0).postprocess_masks(logits, orig_hw))
    assert out.shape == (2, 3, *orig_hw)
    # Measured 0.0 (bit-equal) on logits of magnitude ~30.
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


@requires_torch
@pytest.mark.parametrize("hole,sprinkle", [(25, 0), (0, 25), (40, 10)])
def test_postprocess_masks_small_regions_match_official(monkeypatch, hole, sprinkle):
    import torch

    _patch_official_components(monkeypatch)
    logits = _logits(hole + 7 * sprinkle)
    official = _official(max_hole_area=hole, max_sprinkle_area=sprinkle)
    # At the input size the resize is the identity, so the region handling is compared exactly.
    same = official.postprocess_masks(torch.from_numpy(logits), (256, 256)).numpy()
    assert (same != logits).any(), "the test case has no small region"
    ours = SAM2Transforms(1024, 0.0, max_hole_area=hole, max_sprinkle_area=sprinkle)
    np.testing.assert_array_equal(np.asarray(ours.postprocess_masks(logits, (256, 256))), same)
    ref = official.postprocess_masks(torch.from_numpy(logits), (600, 900)).numpy()
    out = np.asarray(ours.postprocess_masks(logits, (600, 900)))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def test_bad_inputs():
    t = SAM2Transforms(1024, 0.0)
    with pytest.raises(ValueError, match="RGB"):
        t(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        t(np.zeros((10, 10, 3), np.int32))
    with pytest.raises(ValueError, match="orig_hw"):
        t.transform_coords(np.zeros((1, 2)), normalize=True)
    with pytest.raises(ValueError, match="masks"):
        t.postprocess_masks(np.zeros((3, 256, 256)), (10, 10))
