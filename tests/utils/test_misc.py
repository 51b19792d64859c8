"""``sam2_jax.utils.misc``: connected components against scipy (8-connectivity, as the official CUDA kernel
``sam2/csrc/connected_components.cu``), hole filling and boxes against the official functions.

The official ``get_connected_components`` needs the CUDA extension ``sam2._C``, absent on CPU, so the official
``fill_holes_in_mask_scores`` is run with that one call replaced by a scipy labelling.
"""

import time

import jax
import numpy as np
import pytest
from scipy import ndimage

from sam2_jax.utils.misc import (
    fill_holes_in_mask_scores,
    get_connected_components,
    mask_to_box,
    remove_small_regions,
)
from tests.reference import requires_torch

EIGHT = np.ones((3, 3), bool)


def scipy_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: labels and areas of 8-connected components of ``(..., H, W)`` masks."""
    flat = mask.reshape(-1, *mask.shape[-2:]) != 0  # (..., H, W) -> (N, H, W)
    labels = np.zeros(flat.shape, np.int32)
    counts = np.zeros(flat.shape, np.int32)
    for i, m in enumerate(flat):
        lab, _ = ndimage.label(m, structure=EIGHT)
        area = np.bincount(lab.ravel())
        area[0] = 0
        labels[i], counts[i] = lab, area[lab]
    return labels.reshape(mask.shape), counts.reshape(mask.shape)


def assert_same_components(mask: np.ndarray) -> None:
    """Our labels induce the reference partition per image (ids may differ) and the areas are equal."""
    labels, counts = (np.asarray(a) for a in get_connected_components(mask))
    ref_labels, ref_counts = scipy_components(mask)
    assert labels.dtype == np.int32 and counts.dtype == np.int32
    assert labels.shape == mask.shape and counts.shape == mask.shape
    np.testing.assert_array_equal(labels > 0, mask != 0)
    np.testing.assert_array_equal(counts, ref_counts)
    flat, ref_flat = labels.reshape(-1, *mask.shape[-2:]), ref_labels.reshape(-1, *mask.shape[-2:])
    for ours, ref in zip(flat, ref_flat, strict=True):
        pairs = np.unique(np.stack([ours.ravel(), ref.ravel()]), axis=1)
        # A bijection between our ids and scipy's: no component split, no two components merged.
        assert pairs.shape[1] == len(np.unique(ours)) == len(np.unique(ref))


@pytest.mark.parametrize("density", [0.2, 0.45, 0.55, 0.7, 0.9])
def test_random_masks_match_scipy(density):
    rng = np.random.default_rng(int(density * 100))
    mask = (rng.random((3, 1, 64, 80)) < density).astype(np.uint8)
    assert_same_components(mask)


def test_random_blobs_256():
    rng = np.random.default_rng(1)
    noise = ndimage.gaussian_filter(rng.standard_normal((2, 1, 256, 256)), sigma=(0, 0, 2, 2))
    assert_same_components((noise > 0).astype(np.uint8))


def test_diagonal_connections():
    """A checkerboard is one 8-connected component (4-connectivity would give one per square)."""
    board = (np.add.outer(np.arange(9), np.arange(12)) % 2 == 0).astype(np.uint8)
    labels, counts = get_connected_components(board[None, None])
    assert len(np.unique(np.asarray(labels)[0, 0][board == 1])) == 1
    assert int(np.asarray(counts).max()) == board.sum()
    assert_same_components(board[None, None])
    # A pair touching only at a corner (one component); parallel diagonals three columns apart (two; at two
    # columns apart they touch through the anti-diagonal).
    m = np.zeros((1, 1, 8, 8), np.uint8)
    m[0, 0, 0, 1] = m[0, 0, 1, 0] = 1
    m[0, 0, np.arange(3, 8), np.arange(3, 8)] = 1
    m[0, 0, np.arange(3, 5), np.arange(6, 8)] = 1
    labels = np.asarray(get_connected_components(m)[0])
    assert len(np.unique(labels)) == 4  # background + 3 components
    assert_same_components(m)


def test_serpentine_and_spiral():
    """Long thin paths (a min-label flood fill would need ~10^4 rounds here)."""
    snake = np.zeros((255, 256), np.uint8)
    snake[::2] = 1
    snake[1::4, -1] = 1
    snake[3::4, 0] = 1
    spiral = np.zeros((256, 256), np.uint8)
    top, left, bottom, right = 0, 0, 255, 255
    while top <= bottom and left <= right:
        spiral[top, left : right + 1] = 1
        spiral[top : bottom + 1, right] = 1
        spiral[bottom, left : right + 1] = 1
        spiral[top + 2 : bottom + 1, left] = 1
        if left + 2 <= right:
            spiral[top + 2, left : left + 3] = 1
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    assert_same_components(snake[None, None])
    assert_same_components(spiral[None, None])
    _, counts = get_connected_components(snake[None, None])
    assert int(np.asarray(counts).max()) == snake.sum()


def test_edge_cases_and_batch_independence():
    assert_same_components(np.zeros((2, 1, 5, 7), np.uint8))
    assert_same_components(np.ones((2, 1, 5, 7), np.uint8))
    assert_same_components(np.array([[[[1, 0, 1, 1, 0, 1]]]], np.uint8))  # 1 x W
    assert_same_components(np.array([[1], [1], [0], [1]], np.uint8)[None, None])  # H x 1
    assert_same_components(np.ones((1, 1, 1, 1), np.uint8))
    # Image 0 is lit on its last row, image 1 on its first: in a flat index space they are neighbours.
    m = np.zeros((2, 1, 4, 4), np.uint8)
    m[0, 0, -1] = 1
    m[1, 0, 0] = 1
    _, counts = get_connected_components(m)
    assert int(np.asarray(counts).max()) == 4
    assert_same_components(m)


def test_labels_distinct_per_component():
    mask = np.zeros((1, 1, 6, 6), np.uint8)
    mask[0, 0, :2, :2] = 1
    mask[0, 0, 4:, 4:] = 1
    mask[0, 0, 0, 5] = 1
    labels = np.asarray(get_connected_components(mask)[0])[0, 0]
    assert len({labels[0, 0], labels[5, 5], labels[0, 5]}) == 3
    assert labels[0, 0] == labels[1, 1]


def test_speed_256():
    """Reports the time of one (3, 1, 256, 256) labelling; a loose bound catches a pathological slowdown."""
    rng = np.random.default_rng(2)
    mask = (rng.random((3, 1, 256, 256)) < 0.6).astype(np.uint8)
    fn = jax.jit(get_connected_components)
    jax.block_until_ready(fn(mask))
    start = time.perf_counter()
    jax.block_until_ready(fn(mask))
    elapsed = time.perf_counter() - start
    print(f"get_connected_components (3, 1, 256, 256): {elapsed * 1e3:.1f} ms")
    assert elapsed < 2.0


def _patch_official_components(monkeypatch):
    """Run the official code with scipy's labelling in place of the missing CUDA extension."""
    import sam2.utils.misc
    import torch

    def fake(mask):
        labels, counts = scipy_components(mask.to(torch.uint8).numpy())
        return torch.from_numpy(labels), torch.from_numpy(counts)

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", fake)


def _blob_logits(seed: int, shape=(3, 1, 64, 64), sigma=1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(0, 0, sigma, sigma))
    return (noise * 20).astype(np.float32)


@requires_torch
@pytest.mark.parametrize("max_area", [1, 8, 40])
def test_fill_holes_matches_official(monkeypatch, max_area):
    import torch
    from sam2.utils.misc import fill_holes_in_mask_scores as official_fill

    _patch_official_components(monkeypatch)
    logits = _blob_logits(max_area)
    # A 1-pixel background region in a corner counts as a hole too, and one inside the image.
    logits[0, 0, :2, :2] = 1.0
    logits[0, 0, 0, 0] = -1.0
    logits[1, 0, 10:13, 10:13] = 5.0
    logits[1, 0, 11, 11] = -2.0
    ref = official_fill(torch.from_numpy(logits), max_area).numpy()
    out = np.asarray(fill_holes_in_mask_scores(logits, max_area))
    assert (ref != logits).any(), "the test case has no hole to fill"
    np.testing.assert_array_equal(out, ref)


@requires_torch
@pytest.mark.parametrize("hole,sprinkle", [(20, 0), (0, 20), (30, 12), (1, 1)])
def test_remove_small_regions_matches_official_postprocess(monkeypatch, hole, sprinkle):
    """The official ``SAM2Transforms.postprocess_masks`` without the final resize (orig_hw = input size)."""
    import torch
    from sam2.utils.transforms import SAM2Transforms

    _patch_official_components(monkeypatch)
    logits = _blob_logits(hole + sprinkle, (2, 3, 64, 64))
    official = SAM2Transforms(1024, 0.5, max_hole_area=hole, max_sprinkle_area=sprinkle)
    ref = official.postprocess_masks(torch.from_numpy(logits), (64, 64)).numpy()
    out = np.asarray(remove_small_regions(logits, 0.5, hole, sprinkle))
    assert (ref != logits).any(), "the test case has nothing to change"
    np.testing.assert_array_equal(out, ref)


def test_remove_small_regions_uses_input_components():
    """Sprinkle areas are measured before hole filling: a ring of 8 around a 1-pixel hole stays a sprinkle."""
    logits = np.full((1, 1, 7, 7), -5.0, np.float32)
    logits[0, 0, 2:5, 2:5] = 5.0
    logits[0, 0, 3, 3] = -5.0
    out = np.asarray(remove_small_regions(logits, 0.0, max_hole_area=1, max_sprinkle_area=8))
    assert out[0, 0, 3, 3] == 10.0  # the hole is filled ...
    assert out[0, 0, 2, 2] == -10.0  # ... and the 8-pixel ring is still removed as a sprinkle
    assert out[0, 0, 0, 0] == -5.0


@requires_torch
def test_mask_to_box_matches_official():
    import torch
    from sam2.utils.misc import mask_to_box as official_mask_to_box

    rng = np.random.default_rng(3)
    masks = np.zeros((4, 1, 20, 30), bool)
    masks[0, 0, 3:9, 5:25] = True
    masks[1, 0] = rng.random((20, 30)) < 0.01
    masks[3, 0, 19, 29] = True  # masks[2] stays empty
    ref = official_mask_to_box(torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(np.asarray(mask_to_box(masks)), ref)
    np.testing.assert_array_equal(ref[2, 0], [30, 20, -1, -1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_area"):
        fill_holes_in_mask_scores(np.zeros((1, 1, 4, 4), np.float32), 0)
    with pytest.raises(ValueError, match="shape"):
        get_connected_components(np.zeros((4,), np.uint8))
