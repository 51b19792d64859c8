import time

import numpy as np
import pytest

from sam2_jax.datasets.synthetic import (
    SyntheticImageDataset,
    SyntheticVideoDataset,
    item_seed,
    synthetic_image,
    synthetic_video,
)


def test_shapes_dtypes_and_determinism():
    a = synthetic_video(7, num_frames=10, height=40, width=56, num_objects=4)
    b = synthetic_video(7, num_frames=10, height=40, width=56, num_objects=4)
    c = synthetic_video(8, num_frames=10, height=40, width=56, num_objects=4)
    assert a.frames.shape == (10, 40, 56, 3) and a.frames.dtype == np.uint8
    assert a.masks.shape == (10, 4, 40, 56) and a.masks.dtype == bool
    np.testing.assert_array_equal(a.object_ids, [1, 2, 3, 4])
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert np.mean(a.frames != c.frames) > 0.5
    assert a.video_id == "synthetic_7"


def test_masks_are_disjoint_and_cover_exactly_the_drawn_pixels():
    v = synthetic_video(3, num_frames=12, height=64, width=64, num_objects=5)
    assert v.masks.sum(axis=1).max() == 1
    # Background and camera pan are drawn from the rng before the objects: the same seed with no objects gives the
    # empty scene, which must equal the video everywhere outside the masks and differ on most masked pixels.
    empty = synthetic_video(3, num_frames=12, height=64, width=64, num_objects=0)
    covered = v.masks.any(axis=1)
    np.testing.assert_array_equal(v.frames[~covered], empty.frames[~covered])
    changed = np.any(v.frames != empty.frames, axis=-1)
    assert changed[covered].mean() > 0.95
    assert not changed[~covered].any()


def test_occlusion_disappearance_reappearance_and_late_entry():
    """Over a few seeds the source must produce each event the trackers are meant to face."""
    reappear = late = occluded = False
    for seed in range(6):
        v = synthetic_video(seed, num_frames=16, height=64, width=64, num_objects=4)
        area = v.masks.sum(axis=(2, 3))  # (T, O)
        for k in range(area.shape[1]):
            present = np.flatnonzero(area[:, k] > 0)
            if present.size == 0:
                continue
            late |= present[0] > 0
            reappear |= np.any(np.diff(present) > 1)
        # An object drawn behind another loses pixels: its visible area is below its drawn area in some frame.
        for k in range(area.shape[1] - 1):
            alone = synthetic_video(seed, num_frames=16, height=64, width=64, num_objects=k + 1)
            occluded |= bool(np.any(alone.masks[:, k].sum(axis=(1, 2)) > area[:, k]))
    assert reappear and late and occluded


def test_datasets_index_and_iterate_alike():
    ds = SyntheticVideoDataset(num_videos=3, seed=5, num_frames=4, height=32, width=32, num_objects=2)
    items = list(ds)
    assert len(items) == len(ds) == 3
    for i, item in enumerate(items):
        ref = synthetic_video(item_seed(5, i), 4, 32, 32, 2)
        np.testing.assert_array_equal(item.frames, ref.frames)
        np.testing.assert_array_equal(item.masks, ds[i].masks)
        assert item.video_id == f"video_{i:05d}"
    assert not np.array_equal(items[0].frames, items[1].frames)
    with pytest.raises(IndexError):
        ds[3]
    images = SyntheticImageDataset(num_images=2, seed=1, height=48, width=40, num_objects=3)
    img = images[1]
    assert img.image.shape == (48, 40, 3) and img.masks.shape == (3, 48, 40)
    np.testing.assert_array_equal(img.image, synthetic_image(item_seed(1, 1), 48, 40, 3).image)
    assert img.masks.any(axis=(1, 2)).sum() >= 2


def test_fast_enough_for_training():
    start = time.perf_counter()
    synthetic_video(0, num_frames=16, height=256, width=256, num_objects=4)
    assert time.perf_counter() - start < 2.0
