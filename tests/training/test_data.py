"""Training batches: a function of (data seed, step) (a resumed run sees the batches it would have seen), mixed
from several sources in proportion to their sizes, clips sampled as the official ``RandomUniformSampler``."""

import numpy as np
import pytest

from sam2_jax.configs.train_synthetic_tiny import get_config
from sam2_jax.datasets.synthetic import SyntheticImageDataset, SyntheticVideoDataset
from sam2_jax.datasets.vos import DataError
from sam2_jax.datasets.writers import jpeg_roundtrip, write_davis, write_sa1b
from sam2_jax.training import data


def _config():
    c = get_config()
    c.model.image_size = 32
    c.train.batch_size = 2
    c.train.data.num_videos, c.train.data.video_frames = 5, 6
    return c


def _no_augment(c):
    d = c.train.data
    d.hflip_prob, d.degrees, d.shear, d.grayscale_prob, d.mosaic_prob = 0.0, 0.0, 0.0, 0.0, 0.0
    d.jitter, d.frame_jitter = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    return c


def _assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for k in ("frames", "masks", "obj_valid"):
        np.testing.assert_array_equal(a[k], b[k])
    for x, y in zip(a["plan"], b["plan"], strict=True):
        np.testing.assert_array_equal(x, y)


def test_batches_are_reproducible_per_step():
    c = _config()
    src = data.synthetic_source(c)
    a, b, other = data.make_batch(src, c, 7), data.make_batch(src, c, 7), data.make_batch(src, c, 8)
    _assert_batches_equal(a, b)
    assert not np.array_equal(a["frames"], other["frames"])
    T, O, S = c.train.num_frames, c.train.max_num_objects, c.model.image_size
    assert a["frames"].shape == (2, T, S, S, 3) and a["frames"].dtype == np.uint8
    assert a["masks"].shape == (2, T, O, S, S) and a["masks"].dtype == bool
    assert a["obj_valid"].shape == (2, O) and a["obj_valid"].dtype == bool
    assert a["plan"].init_frames.shape == (2, 2)


def test_grain_iterator_resumes_at_a_step_and_from_a_saved_state():
    c = _config()
    src = data.synthetic_source(c)
    it = data.batch_iterator(src, c, start_step=3)
    steps = [next(it) for _ in range(3)]
    state = it.get_state()
    after = next(it)
    it.close()
    assert [s for s, _ in steps] == [3, 4, 5]
    np.testing.assert_array_equal(steps[1][1]["frames"], data.make_batch(src, c, 4)["frames"])
    # a new iterator given the saved state (what the trainer restores from a checkpoint) reads on at step 6
    it = data.batch_iterator(src, c)
    it.set_state(state)
    step, b = next(it)
    it.close()
    assert step == after[0] == 6
    _assert_batches_equal(b, after[1])


def test_grain_threads_yield_the_steps_in_order_and_raise_errors():
    c = _config()
    src = data.synthetic_source(c)
    it = data.batch_iterator(src, c, start_step=10, prefetch=2, workers=3)
    got = [next(it) for _ in range(4)]
    it.close()
    assert [s for s, _ in got] == [10, 11, 12, 13]
    for s, b in got:
        _assert_batches_equal(b, data.make_batch(src, c, s))
    c.train.num_frames = 7  # longer than the 6-frame videos: every clip fails
    it = data.batch_iterator(src, c, start_step=0, workers=2)
    with pytest.raises(DataError, match="100 items in a row failed"):
        next(it)
    it.close()


def test_grain_worker_processes_give_the_same_batches_and_state():
    c = _config()
    src = data.synthetic_source(c)
    it = data.batch_iterator(src, c, workers=1, processes=2)
    got = [next(it) for _ in range(3)]
    state = it.get_state()
    it.close()
    assert [s for s, _ in got] == [0, 1, 2]
    for s, b in got:
        _assert_batches_equal(b, data.make_batch(src, c, s))
    it = data.batch_iterator(src, c, workers=1, processes=2)
    it.set_state(state)
    step, b = next(it)
    it.close()
    assert step == 3
    _assert_batches_equal(b, data.make_batch(src, c, 3))


def test_clip_slices_concatenate_to_the_full_batch():
    c = _config()
    c.train.batch_size = 4
    src = data.synthetic_source(c)
    full = data.make_batch(src, c, 5)
    halves = [data.make_batch(src, c, 5, clip_slice=slice(0, 2)), data.make_batch(src, c, 5, clip_slice=slice(2, 4))]
    for key in ("frames", "masks", "obj_valid"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), full[key])
    for i, x in enumerate(full["plan"]):
        np.testing.assert_array_equal(np.concatenate([h["plan"][i] for h in halves]), x)
    with pytest.raises(ValueError, match="selects none"):
        data.make_batch(src, c, 5, clip_slice=slice(4, 6))


def test_the_configured_synthetic_source_gives_the_trainers_batches():
    # training_source(config) of the default config and the trainer's synthetic_source give the same batches.
    c = _config()
    mixed = data.training_source(c)
    assert [s.name for s in mixed.sources] == ["synthetic"] and mixed.probs.tolist() == [1.0]
    for step in (0, 3):
        _assert_batches_equal(data.make_batch(mixed, c, step), data.make_batch(data.synthetic_source(c), c, step))


def test_synthetic_clips_follow_the_official_sampler():
    # Without augmentation a clip is T consecutive frames of one video (reversed or not), with the objects visible
    # on its first frame (at most max_num_objects, the rest padded with empty masks and obj_valid False).
    c = _no_augment(_config())
    c.train.max_num_objects = 3
    c.train.data.num_videos, c.train.data.late_start_prob, c.train.data.hide_prob = 4, 0.9, 0.9
    src = data.synthetic_source(c)
    videos = [src[i] for i in range(len(src))]
    T, counts, reversed_ = c.train.num_frames, set(), 0
    for step in range(12):
        b = data.make_batch(src, c, step)
        for f, m, valid in zip(b["frames"], b["masks"], b["obj_valid"], strict=True):
            k = int(valid.sum())
            counts.add(k)
            assert k >= 1 and valid.tolist() == [True] * k + [False] * (3 - k)
            assert not m[:, k:].any() and all(m[0, j].any() for j in range(k))
            hits = []
            for v in videos:
                for s in range(v.frames.shape[0] - T + 1):
                    for rows in (np.arange(s, s + T), np.arange(s, s + T)[::-1]):
                        if np.array_equal(v.frames[rows], f):
                            hits.append((v, rows))
            assert len(hits) == 1
            v, rows = hits[0]
            reversed_ += rows[0] > rows[-1]
            ids = [next(o for o in range(3) if np.array_equal(v.masks[rows, o], m[:, j])) for j in range(k)]
            visible = {o for o in range(3) if v.masks[rows[0], o].any()}
            assert set(ids) == visible  # max_num_objects = O: every visible object, none of the others
    assert len(counts) > 1 and 0 < reversed_ < 24  # some clips lose late objects; reverse_time_prob 0.5


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """4 DAVIS videos (6 frames, 32x32, 3 objects) and 9 SA-1B images (32x32, 4 objects)."""
    root = tmp_path_factory.mktemp("data")
    videos = SyntheticVideoDataset(4, seed=3, num_frames=6, height=32, width=32, num_objects=3, hide_prob=0.3)
    write_davis(list(videos), str(root / "davis"), split="train", resolution=None)
    images = SyntheticImageDataset(9, seed=4, height=32, width=32, num_objects=4)
    write_sa1b(list(images), str(root / "sa1b"))
    return root, videos, images


def _mixed_config(root):
    c = _config()
    c.train.data.sources = dict(
        davis=dict(kind="vos_folder", root=str(root / "davis"), split="train", batch_size=2, num_frames=3),
        sa1b=dict(kind="sa1b", root=str(root / "sa1b"), batch_size=3, max_num_objects=5),
    )
    return c


def test_mixed_batches_draw_each_source_in_proportion_to_its_batches(folders):
    root, _, _ = folders
    c = _mixed_config(root)
    mixed = data.training_source(c)
    # floor(4 / 2) = 2 DAVIS batches, floor(9 / 3) = 3 SA-1B batches.
    assert [s.name for s in mixed.sources] == ["davis", "sa1b"]
    np.testing.assert_allclose(mixed.probs, [0.4, 0.6])
    names = [data.step_source(mixed, c, s).name for s in range(4000)]
    assert "".join(n[0] for n in names[:12]) == "ssssdsdddssd"  # seed 1000
    frac = names.count("davis") / len(names)
    assert abs(frac - 0.4) < 0.025  # 4000 draws: standard deviation 0.008
    # A configured prob overrides the sizes.
    c.train.data.sources.davis.prob, c.train.data.sources.sa1b.prob = 0.9, 0.1
    mixed = data.training_source(c)
    np.testing.assert_allclose(mixed.probs, [0.9, 0.1])
    frac = np.mean([data.step_source(mixed, c, s).name == "davis" for s in range(4000)])
    assert abs(frac - 0.9) < 0.02
    c.train.data.sources.sa1b.prob = 0.0
    with pytest.raises(ValueError, match="all sources or none"):
        data.training_source(c)


def test_mixed_batches_have_each_sources_geometry_and_resume_exactly(folders):
    root, _, _ = folders
    c = _mixed_config(root)
    mixed = data.training_source(c)
    names = [data.step_source(mixed, c, s).name for s in range(10)]
    s_video, s_image = names.index("davis"), names.index("sa1b")
    S = c.model.image_size
    v = data.make_batch(mixed, c, s_video)
    assert v["frames"].shape == (2, 3, S, S, 3) and v["masks"].shape == (2, 3, 2, S, S)
    assert v["plan"].track_frames.shape == (2, 2)
    im = data.make_batch(mixed, c, s_image)
    assert im["frames"].shape == (3, 1, S, S, 3) and im["masks"].shape == (3, 1, 5, S, S)
    # Images: points or a box on the one frame (the official num_frames == 1 case), nothing tracked.
    assert im["plan"].track_frames.shape == (3, 0) and im["plan"].init_valid.tolist() == [[True, False]] * 3
    assert set(im["plan"].prompt_type[:, 0].tolist()) <= {1, 2}
    assert im["obj_valid"].sum(1).tolist() == [4, 4, 4]  # every image has 4 masks, fewer than the 5 slots
    for s in (s_video, s_image):
        _assert_batches_equal(data.make_batch(mixed, c, s), data.make_batch(data.training_source(c), c, s))
    it = data.batch_iterator(mixed, c, start_step=s_image)
    step, b = next(it)
    it.close()
    assert step == s_image
    _assert_batches_equal(b, im)
    halves = [data.make_batch(mixed, c, s_image, clip_slice=sl) for sl in (slice(0, 1), slice(1, 3))]
    for key in ("frames", "masks", "obj_valid"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), im[key])


def test_folder_clips_are_the_written_frames_and_masks(folders):
    # Without augmentation (and at the written size) a DAVIS clip is 3 consecutive decoded JPEG frames of a video
    # with the masks of objects visible on its first frame; an SA-1B clip is an image with some of its masks.
    root, videos, images = folders
    c = _no_augment(_mixed_config(root))
    mixed = data.training_source(c)
    decoded = [(v, jpeg_roundtrip(v.frames)) for v in videos]
    decoded_images = [(im, jpeg_roundtrip(im.image[None])[0]) for im in images]
    seen = set()
    for step in range(8):
        b = data.make_batch(mixed, c, step)
        src = data.step_source(mixed, c, step).name
        seen.add(src)
        for f, m, valid in zip(b["frames"], b["masks"], b["obj_valid"], strict=True):
            k = int(valid.sum())
            if src == "davis":
                match = [
                    (v, rows)
                    for v, d in decoded
                    for s in range(4)
                    for rows in (np.arange(s, s + 3), np.arange(s + 2, s - 1, -1))
                    if np.array_equal(d[rows], f)
                ]
                assert len(match) == 1
                v, rows = match[0]
                for j in range(k):
                    assert any(np.array_equal(v.masks[rows, o], m[:, j]) for o in range(3))
                    assert m[0, j].any()
            else:
                match = [im for im, d in decoded_images if np.array_equal(d, f[0])]
                assert len(match) == 1
                for j in range(k):
                    assert any(np.array_equal(match[0].masks[o], m[0, j]) for o in range(4))
                # The k masks are distinct objects.
                assert len({m[0, j].tobytes() for j in range(k)}) == k
    assert seen == {"davis", "sa1b"}


def test_bad_sources_are_rejected(tmp_path):
    c = _config()
    c.train.data.sources = dict(x=dict(kind="coco", root=str(tmp_path)))
    with pytest.raises(ValueError, match="kind 'coco'"):
        data.training_source(c)
    c.train.data.sources = dict(x=dict(kind="sa1b", root=str(tmp_path)))
    with pytest.raises(ValueError, match="no videos or images"):
        data.training_source(c)


@pytest.mark.parametrize("kind", ["sav", "sav_train"])
def test_sav_clips_use_the_annotated_frames(tmp_path, kind):
    # SA-V annotates every 4th frame: clips are consecutive annotated frames (0, 4, 8 or 4, 8, 12, maybe reversed),
    # read from JPEG folders (val/test) or the mp4 (train).
    from sam2_jax.datasets.writers import write_sav, write_sav_train

    v = SyntheticVideoDataset(1, seed=5, num_frames=16, height=24, width=24, num_objects=2, hide_prob=0.0)[0]
    if kind == "sav":
        write_sav([v], str(tmp_path), split="val")
        frames = jpeg_roundtrip(v.frames)
    else:
        write_sav_train([v], str(tmp_path))
        frames = v.frames
    c = _no_augment(_config())
    c.model.image_size = 24
    c.train.data.sources = dict(s=dict(kind=kind, root=str(tmp_path), split="val", batch_size=1, num_frames=3))
    mixed = data.training_source(c)
    starts = set()
    for step in range(6):
        b = data.make_batch(mixed, c, step)
        for f, m, valid in zip(b["frames"], b["masks"], b["obj_valid"], strict=True):
            match = [r for s in (0, 4) for r in ([s, s + 4, s + 8], [s + 8, s + 4, s]) if np.array_equal(frames[r], f)]
            assert len(match) == 1
            starts.add(match[0][0])
            for j in range(int(valid.sum())):
                assert any(np.array_equal(v.masks[match[0], o], m[:, j]) for o in range(2))
    assert len(starts) > 1
