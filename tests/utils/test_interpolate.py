"""``sam2_jax.utils.interpolate`` against ``torch.nn.functional.interpolate(..., align_corners=False)``."""

import functools

import jax
import numpy as np
import pytest

from sam2_jax.utils.interpolate import interpolate
from tests.reference import requires_torch

# Measured max abs error on unit-normal inputs: bilinear 4.8e-7 (with or without antialias), bicubic 3.4e-6
# (A = -0.75) and 1.7e-6 (antialias); nearest is exact.
ATOL = {"nearest": 0.0, "bilinear": 1.5e-6, "bicubic": 1e-5}

# 1-pixel edges, up and down, integer and non-integer ratios, large ratios (36x) where index rounding shows.
SHAPE_PAIRS = [
    ((1, 1), (5, 3)),
    ((5, 3), (1, 1)),
    ((1, 7), (4, 1)),
    ((2, 2), (7, 9)),
    ((3, 5), (6, 10)),
    ((7, 16), (16, 7)),
    ((17, 31), (8, 64)),
    ((64, 64), (256, 256)),
    ((100, 127), (127, 100)),
    ((256, 256), (7, 64)),
    ((256, 3), (7, 2)),
    ((33, 65), (32, 32)),
]
MODES = [("nearest", False), ("bilinear", False), ("bilinear", True), ("bicubic", False), ("bicubic", True)]


def _torch_interpolate(x: np.ndarray, mode: str, antialias: bool = False, **kw) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if mode != "nearest":
        kw.update(align_corners=False, antialias=antialias)
    t = torch.from_numpy(x).permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    return F.interpolate(t, mode=mode, **kw).permute(0, 2, 3, 1).numpy()  # (B, C, H, W) -> (B, H, W, C)


@requires_torch
@pytest.mark.parametrize("mode,antialias", MODES)
@pytest.mark.parametrize("in_hw,out_hw", SHAPE_PAIRS)
def test_matches_torch_size(mode, antialias, in_hw, out_hw):
    x = np.random.default_rng(sum(in_hw + out_hw)).standard_normal((2, *in_hw, 3)).astype(np.float32)
    ref = _torch_interpolate(x, mode, antialias, size=out_hw)
    out = np.asarray(interpolate(x, out_hw, mode, antialias))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL[mode])


@requires_torch
@pytest.mark.parametrize("mode,antialias", MODES)
@pytest.mark.parametrize("scale_factor", [2.0, 0.37, 1.5, 3.3, 0.5])
def test_matches_torch_scale_factor(mode, antialias, scale_factor):
    x = np.random.default_rng(3).standard_normal((1, 13, 16, 4)).astype(np.float32)
    ref = _torch_interpolate(x, mode, antialias, scale_factor=scale_factor)
    out = np.asarray(interpolate(x, mode=mode, antialias=antialias, scale_factor=scale_factor))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL[mode])


@requires_torch
def test_nearest_index_rounding_float32():
    """Ratios where float64 index math floors differently from the float32 of PyTorch (float64 fails here)."""
    import torch

    for n_in, n_out in [(2, 82), (2, 98), (3, 123), (3, 147), (4, 94), (49, 7), (1000, 3), (3, 1000)]:
        x = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, n_in, 1)
        ref = torch.nn.functional.interpolate(x, size=(n_out, 1), mode="nearest")[0, 0, :, 0].numpy()
        xj = np.arange(n_in, dtype=np.float32).reshape(1, n_in, 1, 1)
        out = np.asarray(interpolate(xj, (n_out, 1), "nearest"))[0, :, 0, 0]
        np.testing.assert_array_equal(out, ref, err_msg=f"{n_in} -> {n_out}")


@requires_torch
def test_jit_static_size_and_image_resize():
    """Under jit; the image predictor's case: a non-square photo to 1024x1024 with bilinear antialias."""
    x = np.random.default_rng(4).uniform(size=(1, 480, 640, 3)).astype(np.float32)
    fn = jax.jit(functools.partial(interpolate, size=(1024, 1024), mode="bilinear", antialias=True))
    out = np.asarray(fn(x))
    ref = _torch_interpolate(x, "bilinear", True, size=(1024, 1024))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode,antialias", MODES)
def test_constant_and_identity(mode, antialias):
    """Without torch: weights sum to one (a constant stays constant); same-size resizing is the identity."""
    const = np.full((1, 9, 14, 2), 3.25, np.float32)
    np.testing.assert_allclose(np.asarray(interpolate(const, (31, 5), mode, antialias)), 3.25, rtol=1e-6)
    x = np.random.default_rng(5).standard_normal((1, 9, 14, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(interpolate(x, (9, 14), mode, antialias)), x)


def test_nearest_keeps_dtype_and_doubles():
    x = np.arange(6, dtype=np.int32).reshape(1, 2, 3, 1)
    out = np.asarray(interpolate(x, mode="nearest", scale_factor=2))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out[0, :, :, 0], np.repeat(np.repeat(x[0, :, :, 0], 2, 0), 2, 1))


def test_bad_arguments():
    x = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="area"):
        interpolate(x, (2, 2), "area")
    with pytest.raises(ValueError, match="antialias"):
        interpolate(x, (2, 2), "nearest", antialias=True)
    with pytest.raises(ValueError, match="exactly one"):
        interpolate(x, (2, 2), "bilinear", scale_factor=2.0)
    with pytest.raises(ValueError, match="shape"):
        interpolate(np.zeros((4, 4)), (2, 2))
