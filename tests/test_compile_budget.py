"""Compile once: after the first propagation, a new object or a correction compiles at most once per bucket
crossed (objects pad to 1, 2, 3, 4, 6, 8, 12, …; conditioning slots to powers of two), and nothing within a
bucket."""

import numpy as np

from configs import get_config
from sam2_jax import build_sam2
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
    print(dict(warm=warm, to_two=to_two, to_six=to_six, within=within, first=first_correction,
               second=second_correction))  # fmt: skip
    assert warm > 0
    assert within == 0 and second_correction == 0
    # Crossing a bucket recompiles the programs whose shapes hold the object axis: the scan over a chunk of 4 and of
    # 1 frames, the video-resolution resize of a chunk of 4 and of 1, the resize of a prompted frame.
    assert 0 < to_two <= 5 and 0 < to_six <= 5, (to_two, to_six)
    assert 0 < first_correction <= 4
    _, ids, masks = next(iter(predictor.propagate_in_video(state)))
    assert ids == [1, 2, 3, 4, 5, 6] and masks.shape == (6, 1, 48, 64) and np.isfinite(masks).all()
