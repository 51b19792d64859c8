"""Self-test of ``tests/video_reference.py``: the official video predictor on 4 bedroom frames is recorded
frame by frame, and the float32 memory cast is needed for reverse tracking from a frame with no prompt on its
past side (and changes nothing in forward tracking)."""

import numpy as np
import pytest

from tests.reference import requires_data, requires_torch
from tests.video_reference import (
    VideoRecorder,
    link_frames,
    memory_casts,
    official_video_predictor,
    propagate,
    without_memory_cast,
)


def check_record(r, frame_idx: int, kind: str, reverse: bool) -> None:
    assert (r.frame_idx, r.obj_idx, r.kind, r.reverse) == (frame_idx, 0, kind, reverse)
    assert r.pred_masks.shape == (1, 1, 256, 256) and np.isfinite(r.pred_masks).all()
    assert r.object_score_logits.shape == (1, 1) and np.isfinite(r.object_score_logits).all()
    assert r.obj_ptr.shape == (1, 256) and np.isfinite(r.obj_ptr).all()
    # Clicks skip the memory encoder (it runs when propagation starts); propagated frames are encoded at once.
    if kind == "propagate":
        assert r.maskmem_features.shape == (1, 64, 64, 64) and np.isfinite(r.maskmem_features).all()
    else:
        assert r.maskmem_features is None


def video_res(pred_masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(pred_masks), size=hw, mode="bilinear", align_corners=False).numpy()


@requires_torch
@requires_data
@pytest.mark.slow
def test_recorder_forward_and_reverse(tmp_path):
    predictor = official_video_predictor("sam2.1_hiera_t")
    state = predictor.init_state(str(link_frames(tmp_path / "clip", range(4))), offload_video_to_cpu=True)
    hw = (state["video_height"], state["video_width"])
    casts = memory_casts(predictor)

    with VideoRecorder(predictor) as rec:
        _, obj_ids, click_masks = predictor.add_new_points_or_box(state, 0, 5, points=[[480, 270]], labels=[1])
        forward = propagate(predictor, state)
    assert obj_ids == [5] and [t for t, _, _ in forward] == [0, 1, 2, 3]
    clicks, memories, tracked = rec.of_kind("points"), rec.of_kind("memory"), rec.of_kind("propagate")
    check_record(clicks[0], 0, "points", False)
    assert [(m.frame_idx, m.obj_idx, m.maskmem_features.shape) for m in memories] == [(0, 0, (1, 64, 64, 64))]
    for r, t in zip(tracked, [1, 2, 3], strict=True):
        check_record(r, t, "propagate", False)
    # The records are the tensors the predictor itself uses: its video-resolution outputs are their resizes.
    np.testing.assert_allclose(click_masks.numpy(), video_res(clicks[0].pred_masks, hw), rtol=0, atol=1e-5)
    for (t, _, masks), r in zip(forward, [clicks[0], *tracked], strict=True):
        np.testing.assert_allclose(masks, video_res(r.pred_masks, hw), rtol=0, atol=1e-5, err_msg=f"frame {t}")
    assert memory_casts(predictor) == casts  # forward memories always meet a float32 pointer

    # Reverse from frame 3: no prompted frame at or after it and no frame 4, so no pointer joins the bfloat16
    # memory. As shipped, the official code fails on CPU; with the harness's cast it runs.
    with without_memory_cast(predictor), pytest.raises(RuntimeError, match="must have the same dtype"):
        propagate(predictor, state, start_frame_idx=3, reverse=True)
    with VideoRecorder(predictor) as rec:
        backward = propagate(predictor, state, start_frame_idx=3, reverse=True)
    assert [t for t, _, _ in backward] == [3, 2, 1, 0]
    assert memory_casts(predictor) > casts
    for r, t in zip(rec.records, [3, 2, 1], strict=True):  # frame 0 holds the click: not recomputed
        check_record(r, t, "propagate", True)
    # Frame 3 reversed sees only the click's memory; forward it also saw frames 1 and 2: the outputs differ.
    assert np.abs(rec.records[0].pred_masks - tracked[2].pred_masks).max() > 1e-3

    # A mask prompt on a new object (frame 1's features are still cached, so this is cheap).
    mask = np.zeros(hw, bool)
    mask[200:400, 300:600] = True
    with VideoRecorder(predictor) as rec:
        _, obj_ids, _ = predictor.add_new_mask(state, 1, 7, mask)
    assert obj_ids == [5, 7] and len(rec.records) == 1
    r = rec.records[0]
    assert (r.frame_idx, r.obj_idx, r.kind, r.is_init_cond_frame) == (1, 1, "mask", True)
    assert r.pred_masks.shape == (1, 1, 256, 256) and np.isfinite(r.pred_masks).all()
