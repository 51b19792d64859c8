"""Click and box samplers against the official ``sam2/modeling/sam2_utils.py``.

Deterministic parts are compared exactly: the centre sampler, the box without noise, and the uniform / noised-box
samplers given the same uniform noise (torch's ``rand`` is made to return our ``jax.random`` draws).
"""

import jax
import numpy as np
import pytest

from sam2_jax.training import prompts
from tests.reference import requires_torch
from tests.training.official import official_sam2_utils_with_exact_edt


def _masks(seed: int, B: int = 6, H: int = 24, W: int = 32):
    """Blobby ground truth and predictions (unions of random rectangles), including edge cases: an empty
    prediction, a perfect one, an empty ground truth, and a mask touching the border."""
    rng = np.random.default_rng(seed)

    def blobs(n):
        m = np.zeros((H, W), bool)
        for _ in range(n):
            y, x = rng.integers(0, H - 2), rng.integers(0, W - 2)
            m[y : y + rng.integers(2, 10), x : x + rng.integers(2, 12)] = True
        return m

    gt = np.stack([blobs(3) for _ in range(B)])[:, None]
    pred = np.stack([blobs(2) | (g & (rng.uniform(size=(H, W)) < 0.7)) for g in gt[:, 0]])[:, None]
    pred[0] = False
    pred[1] = gt[1]
    gt[2] = False
    gt[3, 0, :, :5] = True
    return gt, pred


@requires_torch
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_center_point_matches_official(seed):
    import torch

    su = official_sam2_utils_with_exact_edt()
    gt, pred = _masks(seed)
    ref_pts, ref_lbl = su.sample_one_point_from_error_center(torch.from_numpy(gt), torch.from_numpy(pred))
    pts, lbl = prompts.get_next_point(None, gt, pred, "center")
    np.testing.assert_array_equal(np.asarray(pts), ref_pts.numpy())
    np.testing.assert_array_equal(np.asarray(lbl), ref_lbl.numpy())
    assert set(np.asarray(lbl)[:, 0].tolist()) == {0, 1}


def test_squared_distance_transform_is_exact():
    from scipy import ndimage

    gt, pred = _masks(3)
    m = gt[:, 0] ^ pred[:, 0]
    padded = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    ref = np.stack([ndimage.distance_transform_edt(p)[1:-1, 1:-1] ** 2 for p in padded])
    np.testing.assert_array_equal(np.asarray(prompts.squared_distance_transform(m)), np.round(ref).astype(int))


@requires_torch
@pytest.mark.parametrize("num_pt", [1, 3])
def test_uniform_points_match_official_given_same_noise(monkeypatch, num_pt):
    import torch

    su = official_sam2_utils_with_exact_edt()
    gt, pred = _masks(4)
    key = jax.random.key(7)
    noise = np.asarray(jax.random.uniform(key, (gt.shape[0], num_pt, *gt.shape[2:], 2)))
    monkeypatch.setattr(torch, "rand", lambda *shape, device=None: torch.from_numpy(noise.copy()))
    ref_pts, ref_lbl = su.sample_random_points_from_errors(torch.from_numpy(gt), torch.from_numpy(pred), num_pt)
    pts, lbl = prompts.sample_random_points_from_errors(key, gt, pred, num_pt)
    np.testing.assert_array_equal(np.asarray(pts), ref_pts.numpy())
    np.testing.assert_array_equal(np.asarray(lbl), ref_lbl.numpy())


def test_uniform_points_lie_in_the_error():
    gt, pred = _masks(5)
    keys = jax.random.split(jax.random.key(0), 50)
    pts, lbl = jax.vmap(lambda k: prompts.get_next_point(k, gt, pred, "uniform"))(keys)
    pts, lbl = np.asarray(pts).astype(int), np.asarray(lbl)
    for b in range(gt.shape[0]):
        x, y = pts[:, b, 0, 0], pts[:, b, 0, 1]
        g, p = gt[b, 0][y, x], pred[b, 0][y, x]
        if (gt[b] == pred[b]).all():  # perfect prediction: a negative click on the background
            assert (lbl[:, b, 0] == 0).all() and (~g).all()
        else:
            assert (g != p).all() and (lbl[:, b, 0] == g).all()
    # FN and FP regions both non-empty: both labels occur across keys.
    assert set(lbl[:, 4, 0].tolist()) == {0, 1}


@requires_torch
def test_box_matches_official():
    import torch

    su = official_sam2_utils_with_exact_edt()
    gt, _ = _masks(6)
    gt[2, 0, 5:9, 7:20] = True
    ref_pts, ref_lbl = su.sample_box_points(torch.from_numpy(gt), noise=0.0)
    pts, lbl = prompts.sample_box_points(None, gt, noise=0.0)
    np.testing.assert_array_equal(np.asarray(pts), ref_pts.numpy())
    np.testing.assert_array_equal(np.asarray(lbl), ref_lbl.numpy())

    key = jax.random.key(3)
    noise = np.asarray(jax.random.uniform(key, (gt.shape[0], 1, 4)))
    orig = torch.rand
    try:
        torch.rand = lambda *shape, device=None: torch.from_numpy(noise.copy())
        ref_pts, _ = su.sample_box_points(torch.from_numpy(gt))
    finally:
        torch.rand = orig
    pts, _ = prompts.sample_box_points(key, gt)
    np.testing.assert_allclose(np.asarray(pts), ref_pts.numpy(), rtol=1e-6, atol=1e-5)
    assert np.abs(np.asarray(pts) - np.asarray(prompts.sample_box_points(None, gt, noise=0.0)[0])).max() > 0.1
