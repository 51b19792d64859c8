"""Compile once: after the first propagation, a new object or a correction compiles at most once per bucket
crossed (objects pad to 1, 2, 3, 4, 6, 8, 12, …; conditioning slots to powers of two), and nothing within a
bucket."""

import numpy as np
import pytest

from sam2_jax import build_sam2
from sam2_jax.configs import get_config
from sam2_jax.sam2_video_predictor import SAM2VideoPredictor
from sam2_jax.tracker.state import object_bucket
from sam2_jax.utils.compile_cache import CompileCounter


def test_object_bucket():
    assert [object_bucket(n) for n in range(1, 18)] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 24]


def test_scripted_session_compiles_once_per_bucket():
    cfg = get_config("sam2.1_hiera_t")
    cfg.model.image_size = 128
    predictor = SAM2VideoPredictor(build_sam2(cfg, None), chunk_size=4)
    rng = np.random.default_rng(0)
    state = predictor.init_state(rng.integers(0, 255, (6, 48, 64, 3), dtype=np.uint8))
    clicks = {1: (10, 10), 2: (50, 30), 3: (30, 20), 4: (20, 40), 5: (60, 10), 6: (40, 40)}

    def counted(fn):
        with CompileCounter() as c:
            fn()
        return c.compiles

    def add(obj_id, frame=0):
        return counted(lambda: predictor.add_new_points_or_box(state, frame, obj_id, [clicks[obj_id]], [1]))

    def propagate():
        return counted(lambda: [m.shape for _, _, m in predictor.propagate_in_video(state)])

    warm = add(1) + propagate()
    to_two = add(2) + propagate()  # bucket 1 -> 2
    add(3), add(4), propagate()
    to_six = add(5) + propagate()  # bucket 4 -> 6
    within = add(6) + propagate()  # still 6
    first_correction = add(1, frame=3) + propagate()  # a new program (mask prompt on memory), slots 1 -> 2
    second_correction = add(2, frame=3) + propagate()  # same shapes
    print(
        dict(warm=warm, to_two=to_two, to_six=to_six, within=within, first=first_correction, second=second_correction)
    )
    assert warm > 0
    assert within == 0 and second_correction == 0
    # Crossing a bucket recompiles the programs whose shapes hold the object axis: the scan over a chunk of 4 and of
    # 1 frames, the video-resolution resize of a chunk of 4 and of 1, the resize of a prompted frame.
    assert 0 < to_two <= 5 and 0 < to_six <= 5, (to_two, to_six)
    assert 0 < first_correction <= 4
    _, ids, masks = next(iter(predictor.propagate_in_video(state)))
    assert ids == [1, 2, 3, 4, 5, 6] and masks.shape == (6, 1, 48, 64) and np.isfinite(masks).all()


def test_click_bucket():
    from sam2_jax.tracker.state import click_bucket

    assert [click_bucket(n) for n in range(0, 10)] == [0, 1, 2, 4, 4, 8, 8, 8, 8, 16]
    # counts up to multimask_max_pt_num keep their own program (the decoder's multimask switch reads the count)
    assert [click_bucket(n, 2) for n in range(1, 6)] == [1, 2, 4, 4, 8]


@pytest.mark.slow  # a model, two eager decodes and three compiles of the prompt step (the default run is at 25 min)
def test_padded_clicks_decode_as_the_clicks_alone_and_share_a_compile():
    """Three clicks padded to the bucket of 4 (one ``ABSENT_LABEL`` slot, masked out of the decoder's attention)
    give the masks, IoUs, object score and pointer of the three clicks unpadded; the predictor's 3rd and 4th
    click on a frame run the same compiled step."""
    import jax
    import jax.numpy as jnp

    from sam2_jax.tracker import engine
    from sam2_jax.tracker.state import pad_clicks

    cfg = get_config("sam2.1_hiera_t")
    cfg.model.image_size = 128
    predictor = SAM2VideoPredictor(build_sam2(cfg, None, seed=1), chunk_size=4)
    rng = np.random.default_rng(0)
    state = predictor.init_state(rng.integers(0, 255, (3, 48, 64, 3), dtype=np.uint8))
    feats = predictor._get_image_feature(state, 0)
    coords = np.array([[[20.0, 30.0], [90.0, 60.0], [64.0, 100.0]]], np.float32)
    labels = np.array([[1, 0, 1]], np.int32)
    padded = pad_clicks(coords, labels)
    assert padded[1].tolist() == [[1, 0, 1, -2]]
    run = lambda c, lab: engine.interact(  # noqa: E731
        predictor.module,
        predictor.params,
        predictor._dummy_state(),
        feats,
        jnp.int32(0),
        jnp.bool_(False),
        jnp.asarray(c),
        jnp.asarray(lab),
        None,
        None,
        is_init_cond_frame=True,
    )
    a, b = run(coords, labels), run(*padded)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=2e-5, rtol=0)
    # and the predictor: one compile for the bucket of 4, none for the 4th click
    clicks = [(10, 10), (50, 30), (30, 20), (20, 40)]
    counts = []
    for k, xy in enumerate(clicks):
        with CompileCounter() as c:
            predictor.add_new_points_or_box(state, 0, 1, [xy], [1], clear_old_points=(k == 0))
        counts.append(c.compiles)
    print("compiles per click:", counts)
    assert counts[3] == 0, counts
