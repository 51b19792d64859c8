"""The interactive offline/online protocols with a stand-in tracker whose quality is known by hand, and (slow) a
run with the random-weight tiny model."""

import numpy as np
import pytest

from sam2_jax.datasets import vos
from sam2_jax.evaluation import interactive


def _video(t=12):
    masks = np.zeros((t, 1, 24, 32), bool)
    for i in range(t):
        masks[i, 0, 4:14, 2 + i : 12 + i] = True
    frames = np.zeros((t, 24, 32, 3), np.uint8)
    return vos.vos_video_from_arrays("v", frames, masks, [1])


class HorizonTracker:
    """Predicts the ground truth on a frame within 2 frames after a prompted one (at or before it), else nothing.
    Clicks make their frame prompted and return its ground truth."""

    def __init__(self, video):
        self.video, self.calls = video, []

    def init_state(self, frames):
        return {"prompted": set()}

    def reset_state(self, state):
        state["prompted"].clear()
        self.calls.append(("reset",))

    def _logits(self, state, t):
        good = any(0 <= t - p <= 2 for p in state["prompted"])
        m = self.video.masks(t)[0] if good else np.zeros((24, 32), bool)
        return np.where(m, 10.0, -10.0)[None, None]

    def add_new_points_or_box(self, state, frame_idx, obj_id, points, labels, clear_old_points=True):
        self.calls.append(("click", frame_idx, clear_old_points))
        state["prompted"].add(frame_idx)
        return frame_idx, [obj_id], self._logits(state, frame_idx)

    def propagate_in_video(self, state, start_frame_idx=None):
        self.calls.append(("propagate", start_frame_idx))
        for t in range(start_frame_idx, self.video.num_frames):
            yield t, [1], self._logits(state, t)


def test_offline_protocol_by_hand():
    video = _video()
    tracker = HorizonTracker(video)
    cfg = interactive.InteractiveConfig(mode="offline", max_frames=3)
    res = interactive.evaluate_interactive(tracker, [video], cfg, progress=False)
    o = res.objects[0]
    # Pass 1: frames 0-2 right, 3-11 empty (J = F = 0): 3/12. The worst frame is the earliest of the zeros, 3;
    # pass 2 gets 0-5 right: 6/12; then frame 6: 9/12.
    np.testing.assert_allclose(o.j, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(o.f, [0.25, 0.5, 0.75])
    assert [c[1] for c in tracker.calls if c[0] == "click"] == [0] * 3 + [3] * 3 + [6] * 3
    assert [c[2] for c in tracker.calls if c[0] == "click"] == [True, False, False] * 3
    assert [c[1] for c in tracker.calls if c[0] == "propagate"] == [0, 0, 0]
    # Time: each pass reviews 12 frames (30 s * 12/300 = 1.2 s) and interacts once (1 + 3 * 1.5 = 5.5 s).
    np.testing.assert_allclose(o.seconds, [6.7, 13.4, 20.1])
    np.testing.assert_allclose(res.jf, [0.25, 0.5, 0.75])
    assert res.average_jf == pytest.approx(0.5)


def test_online_protocol_by_hand(tmp_path):
    video = _video()
    tracker = HorizonTracker(video)
    cfg = interactive.InteractiveConfig(mode="online", max_frames=4, output_dir=str(tmp_path))
    res = interactive.evaluate_interactive(tracker, [video], cfg, progress=False)
    o = res.objects[0]
    # N=1: no pause allowed: 3/12. N=2: pause at frame 3 (J = 0 < 0.75), resume from 3: 0-5 right: 6/12.
    # N=3: 9/12. N=4: 12/12 (pauses at 3, 6, 9).
    np.testing.assert_allclose(o.j, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(o.interacted, [1, 2, 3, 4])
    # Time: one review of the video (1.2 s) plus 5.5 s per interacted frame.
    np.testing.assert_allclose(o.seconds, [6.7, 12.2, 17.7, 23.2])
    # Each run resumes from its pause frame; frames before it are not tracked again.
    props = [c[1] for c in tracker.calls if c[0] == "propagate"]
    assert props == [0, 0, 3, 0, 3, 6, 0, 3, 6, 9]
    assert (tmp_path / "interactive_online.png").stat().st_size > 1000
    rows = (tmp_path / "interactive_online_summary.csv").read_text().splitlines()
    assert rows[-1] == f"average,{res.average_jf!r},"
    # A tracker that is always right never pauses: one run stands for every N.
    tracker.propagate_in_video = lambda state, start_frame_idx=None: (
        (t, [1], np.where(video.masks(t)[0], 10.0, -10.0)[None, None]) for t in range(start_frame_idx, 12)
    )
    res = interactive.evaluate_interactive(tracker, [video], cfg, progress=False)
    np.testing.assert_array_equal(res.objects[0].interacted, [1, 1, 1, 1])
    np.testing.assert_allclose(res.jf, 1.0)


@pytest.mark.slow
def test_interactive_with_the_tiny_model():
    from sam2_jax.datasets.synthetic import synthetic_video
    from tests.test_eval import _predictor

    v = synthetic_video(4, num_frames=6, height=48, width=64, num_objects=1, hide_prob=0, late_start_prob=0)
    video = vos.vos_video_from_arrays("s", v.frames, v.masks, v.object_ids)
    for mode in ("offline", "online"):
        cfg = interactive.InteractiveConfig(mode=mode, max_frames=2)
        res = interactive.evaluate_interactive(_predictor(), [video], cfg, progress=False)
        o = res.objects[0]
        assert res.skipped == [] and o.j.shape == (2,) and np.all((0 <= o.j) & (o.j <= 1))
        assert o.interacted[0] == 1 and o.interacted[1] <= 2


class DegradedTracker(HorizonTracker):
    """Right on every frame except ``bad``, where ``drop`` of the 100 object pixels are missing (IoU 1 - drop/100),
    until that frame is prompted."""

    def __init__(self, video, bad, drop):
        super().__init__(video)
        self.bad, self.drop = bad, drop

    def _logits(self, state, t):
        m = self.video.masks(t)[0].copy()
        if t == self.bad and t not in state["prompted"]:
            ys, xs = np.nonzero(m)
            m[ys[: self.drop], xs[: self.drop]] = False
        return np.where(m, 10.0, -10.0)[None, None]


@pytest.mark.parametrize("drop, pauses", [(25, False), (26, True)])
def test_online_pause_is_iou_strictly_below_075(drop, pauses):
    # Frame 5 has IoU 0.75 (no pause: the paper pauses at IoU < 0.75) or 0.74 (pause there).
    video = _video()
    tracker = DegradedTracker(video, bad=5, drop=drop)
    cfg = interactive.InteractiveConfig(mode="online", max_frames=2)
    o = interactive.evaluate_interactive(tracker, [video], cfg, progress=False).objects[0]
    np.testing.assert_array_equal(o.interacted, [1, 2] if pauses else [1, 1])
    clicked = sorted({c[1] for c in tracker.calls if c[0] == "click"})
    assert clicked == ([0, 5] if pauses else [0])
    # N=1 never pauses: frame 5 keeps its 1 - drop/100 IoU among 12 frames.
    assert o.j[0] == pytest.approx((11 + 1 - drop / 100) / 12)
    assert o.j[1] == pytest.approx(1.0 if pauses else o.j[0])


def test_offline_picks_the_lowest_iou_frame():
    # Every frame right but frame 7 (IoU 0.9): pass 2 prompts frame 7, not the first imperfect-by-index frame.
    video = _video()
    tracker = DegradedTracker(video, bad=7, drop=10)
    cfg = interactive.InteractiveConfig(mode="offline", max_frames=2)
    o = interactive.evaluate_interactive(tracker, [video], cfg, progress=False).objects[0]
    assert [c[1] for c in tracker.calls if c[0] == "click"] == [0] * 3 + [7] * 3
    assert o.j[0] == pytest.approx((11 + 0.9) / 12) and o.j[1] == pytest.approx(1.0)


def test_annotation_time_on_a_300_frame_video():
    # The paper's model at L = 300: T_exam L/300 = 30 s, T_loc + 3 T_click = 5.5 s per interacted frame.
    # Offline (30 + 5.5) N_frame; online 30 + 5.5 N_frame. A tracker that is always right: offline still prompts
    # one new frame per pass (the lowest IoU, all tied at 1: the earliest unprompted), online never pauses.
    t = 300
    masks = np.zeros((t, 1, 24, 32), bool)
    masks[:, 0, 4:14, 2:12] = True
    video = vos.vos_video_from_arrays("long", np.zeros((t, 24, 32, 3), np.uint8), masks, [1])
    tracker = DegradedTracker(video, bad=-1, drop=0)
    off = interactive.evaluate_interactive(
        tracker, [video], interactive.InteractiveConfig(mode="offline", max_frames=3), progress=False
    ).objects[0]
    np.testing.assert_array_equal(off.interacted, [1, 2, 3])
    np.testing.assert_allclose(off.seconds, [35.5, 71.0, 106.5])
    assert [c[1] for c in tracker.calls if c[0] == "click"] == [0] * 3 + [1] * 3 + [2] * 3
    on = interactive.evaluate_interactive(
        tracker, [video], interactive.InteractiveConfig(mode="online", max_frames=3), progress=False
    ).objects[0]
    np.testing.assert_array_equal(on.interacted, [1, 1, 1])
    np.testing.assert_allclose(on.seconds, [35.5, 35.5, 35.5])
    cfg = interactive.InteractiveConfig(mode="online", max_frames=1, t_exam=60.0, t_loc=2.0, t_click=1.0)
    on = interactive.evaluate_interactive(tracker, [video], cfg, progress=False).objects[0]
    np.testing.assert_allclose(on.seconds, [60.0 + 2.0 + 3 * 1.0])
