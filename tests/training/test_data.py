"""Training batches are a function of (data seed, step): a resumed run sees the batches it would have seen."""

import numpy as np

from configs.train_synthetic_tiny import get_config
from sam2_jax.training import data


def _config():
    c = get_config()
    c.model.image_size = 32
    c.train.batch_size = 2
    c.train.data.num_videos, c.train.data.video_frames = 5, 6
    return c


def test_batches_are_reproducible_per_step():
    c = _config()
    src = data.synthetic_source(c)
    a, b, other = data.make_batch(src, c, 7), data.make_batch(src, c, 7), data.make_batch(src, c, 8)
    np.testing.assert_array_equal(a["frames"], b["frames"])
    np.testing.assert_array_equal(a["masks"], b["masks"])
    for x, y in zip(a["plan"], b["plan"], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a["frames"], other["frames"])
    T, O, S = c.train.num_frames, c.train.max_num_objects, c.model.image_size
    assert a["frames"].shape == (2, T, S, S, 3) and a["frames"].dtype == np.uint8
    assert a["masks"].shape == (2, T, O, S, S) and a["masks"].dtype == bool
    assert a["plan"].init_frames.shape == (2, 2)


def test_prefetching_iterator_resumes_at_a_step():
    c = _config()
    src = data.synthetic_source(c)
    it = data.batches(src, c, start_step=3)
    steps = [next(it) for _ in range(3)]
    it.close()
    assert [s for s, _ in steps] == [3, 4, 5]
    np.testing.assert_array_equal(steps[1][1]["frames"], data.make_batch(src, c, 4)["frames"])


def test_clip_slices_concatenate_to_the_full_batch():
    c = _config()
    c.train.batch_size = 4
    src = data.synthetic_source(c)
    full = data.make_batch(src, c, 5)
    halves = [data.make_batch(src, c, 5, clip_slice=slice(0, 2)), data.make_batch(src, c, 5, clip_slice=slice(2, 4))]
    for key in ("frames", "masks"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), full[key])
    for i, x in enumerate(full["plan"]):
        np.testing.assert_array_equal(np.concatenate([h["plan"][i] for h in halves]), x)
