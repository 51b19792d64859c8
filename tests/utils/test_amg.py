"""sam2_jax.utils.amg against the official sam2/utils/amg.py (and the torchvision NMS the official generator
calls), on random inputs."""

import numpy as np
import pytest

from sam2_jax.utils import amg
from tests.reference import requires_torch


def _random_masks(n=6, h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), bool)
    for i in range(n - 1):  # blobs of random boxes; the last mask stays empty
        for _ in range(3):
            y0, x0 = rng.integers(0, h - 5), rng.integers(0, w - 5)
            masks[i, y0 : y0 + rng.integers(2, 12), x0 : x0 + rng.integers(2, 15)] = True
    masks[0, 0, 0] = True  # a run starting at the first pixel
    return masks


@requires_torch
def test_grids_and_crops_equal_official():
    from sam2.utils import amg as ref

    for n in (1, 4, 7, 32):
        np.testing.assert_array_equal(amg.build_point_grid(n), ref.build_point_grid(n))
    for a, b in zip(amg.build_all_layer_point_grids(16, 2, 2), ref.build_all_layer_point_grids(16, 2, 2), strict=True):
        np.testing.assert_array_equal(a, b)
    for size in ((1200, 1800), (534, 800), (97, 61)):
        for layers in (0, 1, 2):
            assert amg.generate_crop_boxes(size, layers, 512 / 1500) == ref.generate_crop_boxes(
                size, layers, 512 / 1500
            )


@requires_torch
def test_stability_boxes_and_edges_equal_official():
    import jax.numpy as jnp
    import torch
    from sam2.utils import amg as ref

    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((5, 40, 60)) * 3).astype(np.float32)
    logits[4] = -5.0  # empty at both thresholds: 0 / 0
    ours = np.asarray(amg.calculate_stability_score(jnp.asarray(logits), 0.0, 1.0))
    theirs = ref.calculate_stability_score(torch.from_numpy(logits), 0.0, 1.0).numpy()
    np.testing.assert_array_equal(ours, theirs)  # NaN where both are empty, in both

    masks = _random_masks()
    boxes = np.asarray(amg.batched_mask_to_box(jnp.asarray(masks)))
    np.testing.assert_array_equal(boxes, ref.batched_mask_to_box(torch.from_numpy(masks)).numpy())

    crop, orig = [10, 20, 60, 57], [0, 0, 70, 57]
    b = np.array([[0, 0, 30, 30], [25, 10, 49, 37], [5, 5, 20, 36], [0, 0, 0, 0]], np.int64)
    np.testing.assert_array_equal(
        amg.is_box_near_crop_edge(b, crop, orig), ref.is_box_near_crop_edge(torch.from_numpy(b), crop, orig).numpy()
    )


@requires_torch
def test_rle_equals_official():
    import torch
    from sam2.utils import amg as ref

    masks = _random_masks()
    ref_rles = ref.mask_to_rle_pytorch(torch.from_numpy(masks))
    rles = amg.mask_to_rle(masks)
    for m, r, o in zip(masks, ref_rles, rles, strict=True):
        assert amg.uncompressed_rle(o) == r
        assert amg.coco_encode_rle(o) == ref.coco_encode_rle(r)
        assert amg.area_from_rle(o) == ref.area_from_rle(r) == m.sum()
        np.testing.assert_array_equal(amg.rle_to_mask(o), m)
        np.testing.assert_array_equal(amg.rle_to_mask(r), ref.rle_to_mask(r))  # an uncompressed RLE decodes too
    np.testing.assert_array_equal(
        amg.uncrop_masks(masks, [3, 4, 56, 41], 45, 60),
        ref.uncrop_masks(torch.from_numpy(masks), [3, 4, 56, 41], 45, 60),
    )


@requires_torch
@pytest.mark.parametrize("thresh", [0.0, 0.3, 0.7, 1.0])
def test_nms_equals_torchvision(thresh):
    import torch
    from torchvision.ops.boxes import batched_nms

    rng = np.random.default_rng(2)
    xy = rng.integers(0, 50, (60, 2))
    boxes = np.concatenate([xy, xy + rng.integers(1, 30, (60, 2))], 1).astype(np.float32)
    boxes[10:15] = boxes[9]  # identical boxes (IoU exactly 1)
    scores = np.round(rng.random(60), 1).astype(np.float32)  # many ties: order must follow the stable sort
    cats = np.zeros(60)
    ours = amg.batched_nms(boxes, scores, cats, thresh)
    theirs = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.zeros(60), thresh).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_remove_small_regions():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = mask[6, 5] = False  # a 2-pixel hole
    mask[15, 15] = mask[16, 16] = True  # a 2-pixel island (8-connected)
    filled, changed = amg.remove_small_regions(mask, 3, "holes")
    assert changed and filled[5, 5] and filled[6, 5] and filled.sum() == mask.sum() + 2
    cleaned, changed = amg.remove_small_regions(filled, 3, "islands")
    assert changed and not cleaned[15, 15] and not cleaned[16, 16] and cleaned.sum() == 100
    same, changed = amg.remove_small_regions(cleaned, 3, "islands")
    assert not changed and same is cleaned
    # Every island small: the largest stays.
    tiny = np.zeros((9, 9), bool)
    tiny[1, 1] = True
    tiny[5:7, 5] = True
    kept, changed = amg.remove_small_regions(tiny, 10, "islands")
    assert changed and kept.sum() == 2 and kept[5, 5] and kept[6, 5]
    with pytest.raises(ValueError, match="mode"):
        amg.remove_small_regions(mask, 3, "specks")
