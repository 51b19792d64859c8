"""The VOS protocol without a model (a stand-in predictor that reports its calls), folder scoring, bad predictions,
and outputs. The real model runs in tests/test_eval.py."""

import csv
import os

import numpy as np
import pytest

from sam2_jax.datasets import vos
from sam2_jax.datasets.synthetic import SyntheticVideoDataset
from sam2_jax.evaluation import metrics, prompts, vos_eval
from tests.evaluation import official_metrics


class EchoPredictor:
    """Predicts each object's ground truth on every frame from its prompt frame on (the logits +-10), and records
    the calls: what the protocol asks of a predictor, without a model."""

    def __init__(self, video: vos.VOSVideo, lose: dict | None = None):
        self.video = video
        self.calls = []
        self.lose = lose or {}  # obj_id -> frames where the prediction is empty

    def init_state(self, frames):
        self.calls.append(("init",))
        return {
            "num_frames": self.video.num_frames,
            "video_height": self.video.height,
            "video_width": self.video.width,
            "objs": [],
        }

    def _gt(self, t):
        full = np.zeros((len(self.video.object_ids), self.video.height, self.video.width), bool)
        rows = {int(f): a for a, f in enumerate(self.video.mask_frames)}
        if t in rows:
            full = self.video.masks(rows[t])
        return full

    def _logits(self, state, t):
        gt = self._gt(t)
        cols = {int(o): k for k, o in enumerate(self.video.object_ids)}
        out = np.stack([np.where(gt[cols[o]] & (t not in self.lose.get(o, ())), 10.0, -10.0) for o in state["objs"]])
        return out[:, None]

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        self.calls.append(("mask", frame_idx, obj_id, int(mask.sum())))
        if obj_id not in state["objs"]:
            state["objs"].append(obj_id)
        return frame_idx, list(state["objs"]), self._logits(state, frame_idx)

    def add_new_points_or_box(
        self, state, frame_idx, obj_id, points=None, labels=None, clear_old_points=True, box=None
    ):
        self.calls.append(
            (
                "points",
                frame_idx,
                obj_id,
                None if points is None else points.tolist(),
                None if labels is None else labels.tolist(),
                clear_old_points,
                None if box is None else box.tolist(),
            )
        )
        if obj_id not in state["objs"]:
            state["objs"].append(obj_id)
        logits = self._logits(state, frame_idx)
        if points is not None:  # a click-dependent answer: the gt cut to the rows above the last click
            k = state["objs"].index(obj_id)
            logits[k, 0, int(points[-1][1]) + 1 :] = -10.0
        return frame_idx, list(state["objs"]), logits

    def propagate_in_video(self, state, start_frame_idx=None, max_frame_num_to_track=None):
        self.calls.append(("propagate", start_frame_idx, max_frame_num_to_track, list(state["objs"])))
        end = self.video.num_frames - 1 if max_frame_num_to_track is None else start_frame_idx + max_frame_num_to_track
        for t in range(start_frame_idx, end + 1):
            yield t, list(state["objs"]), self._logits(state, t)


@pytest.fixture(scope="module")
def video():
    # Late starters and a hidden interval: seed 5 has an object entering at frame 4 (first annotated at 6).
    for seed in range(50):
        v = next(iter(SyntheticVideoDataset(1, seed=seed, num_frames=12, height=40, width=48, num_objects=3)))
        vv = vos.vos_video_from_arrays(v.video_id, v.frames, v.masks, v.object_ids, annotation_stride=2)
        first = vv.first_annotated()
        if (first >= 0).all() and len(set(first.tolist())) == 3:
            return vv
    raise AssertionError("no synthetic video with three different start frames")


def test_objects_start_on_their_first_annotated_frame_in_one_batched_run(video):
    pred = EchoPredictor(video)
    masks, tracked = vos_eval.track_video(pred, video, vos_eval.VOSEvalConfig())
    starts = sorted(int(video.mask_frames[a]) for a in video.first_annotated())
    calls = pred.calls
    assert calls[0] == ("init",) and sum(c[0] == "init" for c in calls) == 1
    props = [c for c in calls if c[0] == "propagate"]
    # One segment per start frame, each ending just before the next start; objects accumulate in the state.
    assert [p[1] for p in props] == starts
    assert [p[2] for p in props] == [starts[1] - starts[0] - 1, starts[2] - starts[1] - 1, None]
    assert [len(p[3]) for p in props] == [1, 2, 3]
    assert tracked == video.num_frames - starts[0]
    # The echo predictor returns the ground truth from each object's start on: the result is the ground truth.
    np.testing.assert_array_equal(masks, video.masks())
    # Mask prompts are the ground truth of the start frame.
    for c in calls:
        if c[0] == "mask":
            a = int(np.flatnonzero(video.mask_frames == c[1])[0])
            k = int(np.flatnonzero(video.object_ids == c[2])[0])
            assert c[3] == int(video.masks(a)[k].sum()) > 0


class EchoBatch:
    """One ``EchoPredictor`` per video behind one predictor, with ``propagate_in_videos``: ``videos_per_step``
    slots, a frame of every running pass per step, a slot taking the next pass (a video's next one first) when its
    pass ends, as the real one schedules them."""

    def __init__(self, videos):
        self.echo = {id(v.frames): EchoPredictor(v) for v in videos}
        self.widths, self.busy = [], []  # per call: the batch width; per step: the slots running a pass

    def init_state(self, frames):
        echo = self.echo[id(frames)]
        state = echo.init_state(frames)
        state["echo"] = echo
        return state

    def add_new_mask(self, state, *args):
        return state["echo"].add_new_mask(state, *args)

    def add_new_points_or_box(self, state, *args, **kwargs):
        return state["echo"].add_new_points_or_box(state, *args, **kwargs)

    def propagate_in_video(self, state, **kwargs):
        return state["echo"].propagate_in_video(state, **kwargs)

    def propagate_in_videos(self, passes, videos_per_step, next_pass):
        self.widths.append(videos_per_step)
        source, ready, slots = enumerate(passes), [], [None] * videos_per_step
        while True:
            for i in range(videos_per_step):
                if slots[i] is None and (job := ready.pop(0) if ready else next(source, None)) is not None:
                    v, (s, a, m) = job
                    slots[i] = (v, s, iter(list(s["echo"].propagate_in_video(s, a, m))))
            if not any(slots):
                return
            self.busy.append(sum(x is not None for x in slots))
            for i, slot in enumerate(slots):
                if slot is None:
                    continue
                v, s, frames = slot
                frame = next(frames, None)
                if frame is not None:
                    yield (v, *frame)
                    continue
                slots[i] = None
                if (nxt := next_pass(v)) is not None:
                    ready.append((v, (s, *nxt)))


def test_videos_per_step_runs_the_same_protocol_in_batches(video):
    """``videos_per_step``: the same prompts and segments as one video at a time (the calls each video sees are
    the same), slots refilled as videos end, the results in the dataset's order."""
    others = [
        vos.vos_video_from_arrays(f"v{seed}", v.frames, v.masks, v.object_ids, annotation_stride=2)
        for seed in (1, 2)
        for v in SyntheticVideoDataset(1, seed=seed, num_frames=8, height=40, width=48, num_objects=2)
    ]
    videos = [video, *others]
    alone, batched = EchoBatch(videos), EchoBatch(videos)
    r1 = vos_eval.evaluate_vos(alone, videos, vos_eval.VOSEvalConfig(), progress=False)
    r2 = vos_eval.evaluate_vos(batched, videos, vos_eval.VOSEvalConfig(videos_per_step=2), progress=False)
    calls = lambda e: [[c for c in p.calls if c[0] != "propagate"] for p in e.echo.values()]
    assert calls(batched) == calls(alone)
    # one window (3 videos < 2 slots x WINDOW_PER_SLOT); both slots busy until the last video's last segment
    segs = [len(set(v.first_annotated().tolist()) - {-1}) for v in videos]
    assert batched.widths == [2] and max(segs) == 3 and batched.busy[0] == 2 and batched.busy[-1] == 1
    assert [(s.video, s.object_id, s.frames, s.j.tolist()) for s in r2.scores] == [
        (s.video, s.object_id, s.frames, s.j.tolist()) for s in r1.scores
    ]
    assert r2.num_frames == r1.num_frames and r2.summary == r1.summary
    with pytest.raises(ValueError, match="videos_per_step must be at least 1"):
        vos_eval.evaluate_vos(alone, videos, vos_eval.VOSEvalConfig(videos_per_step=0), progress=False)


def test_click_and_box_prompts(video):
    pred = EchoPredictor(video)
    vos_eval.track_video(pred, video, vos_eval.VOSEvalConfig(prompt="click3"))
    clicks = [c for c in pred.calls if c[0] == "points"]
    assert len(clicks) == 9
    first_obj = clicks[:3]
    a = int(np.flatnonzero(video.mask_frames == first_obj[0][1])[0])
    k = int(np.flatnonzero(video.object_ids == first_obj[0][2])[0])
    gt = video.masks(a)[k]
    # Click 1 at the mask's centre; then the predictor's answer (gt above the click's row) leaves the rows below as
    # false negatives: click 2 at their centre, positive; only click 1 clears old points.
    p1, l1 = prompts.next_click(gt)
    assert first_obj[0][3] == [p1.tolist()] and first_obj[0][4] == [l1] == [1] and first_obj[0][5]
    after1 = gt.copy()
    after1[int(p1[1]) + 1 :] = False
    p2, l2 = prompts.next_click(gt, after1)
    assert first_obj[1][3] == [p2.tolist()] and first_obj[1][4] == [l2] == [1] and not first_obj[1][5]
    assert p2[1] > p1[1]
    pred = EchoPredictor(video)
    vos_eval.track_video(pred, video, vos_eval.VOSEvalConfig(prompt="box"))
    boxes = [c for c in pred.calls if c[0] == "points"]
    assert boxes[0][6] == prompts.mask_to_box(gt).tolist()


def test_next_click_by_hand():
    gt = np.zeros((9, 9), bool)
    gt[1:8, 1:6] = True  # rows 1..7, cols 1..5: rows 3..5 of col 3 are 3 px from the background, (3, 3) first
    p, label = prompts.next_click(gt)
    assert p.tolist() == [3.0, 3.0] and label == 1
    # A false positive blob larger than the false negative: a negative click at its centre.
    pred = gt.copy()
    pred[1, 1] = False  # 1-px false negative
    pred[0:9, 6:9] = True  # 9x3 false positive
    p, label = prompts.next_click(gt, pred)
    assert label == 0 and p.tolist() == [7.0, 1.0]  # first (raster order) of the column x=7 at distance 2
    # A mask touching the image border: padding counts outside as background, so the border pixel is 1 away.
    edge = np.zeros((5, 5), bool)
    edge[:, :1] = True
    assert prompts.next_click(edge)[0].tolist() == [0.0, 0.0]
    assert prompts.mask_to_box(gt).tolist() == [1, 1, 5, 7]


def test_scores_of_a_run_with_losses(video, tmp_path):
    ids = video.object_ids
    present = video.masks()[:, 0].any(axis=(1, 2))
    present[[0, -1]] = False  # not scored
    lost_frame = int(video.mask_frames[np.flatnonzero(present)[-1]])
    pred = EchoPredictor(video, lose={int(ids[0]): {lost_frame}})
    cfg = vos_eval.VOSEvalConfig(output_dir=str(tmp_path / "out"))
    # Use the same predictor through evaluate_vos (it tracks and scores).
    res = vos_eval.evaluate_vos(pred, [video], cfg, progress=False)
    by_obj = {s.object_id: s for s in res.scores}
    first = video.first_annotated()
    # Object ids[0] is lost on its last scored frame where it is present (J = F = 0 there, 1 elsewhere): a hand count.
    s0 = by_obj[int(ids[0])]
    n0 = len(s0.frames)
    assert s0.j_mean == pytest.approx((n0 - 1) / n0) and s0.f_mean == pytest.approx((n0 - 1) / n0)
    # The SA-V convention scores an object from its first presence; the first and last annotated frames are not
    # scored; the other objects are perfect.
    for k, oid in enumerate(ids[1:], start=1):
        s = by_obj[int(oid)]
        assert s.j_mean == 1.0 and s.f_mean == 1.0
        assert s.frames[0] == video.frame_names[int(video.mask_frames[max(first[k], 1)])]
    # CSVs at full precision, equal to the in-memory results; the plot exists; PNGs in the DAVIS layout.
    with open(tmp_path / "out" / "per_object.csv") as f:
        rows = list(csv.DictReader(f))
    got = {int(r["object"]): float(r["J"]) for r in rows}
    assert got[int(ids[0])] == s0.j_mean  # repr round-trips exactly
    with open(tmp_path / "out" / "summary.csv") as f:
        summary = list(csv.DictReader(f))[0]
    assert float(summary["J&F"]) == res.summary["J&F"] and summary["num_skipped"] == "0"
    assert os.path.getsize(tmp_path / "out" / "per_frame_jf.png") > 1000
    names = sorted(os.listdir(tmp_path / "out" / "pred" / video.video_id))
    assert names == [f"{video.frame_names[t]}.png" for t in video.mask_frames]
    # Scoring the written PNGs against the ground truth gives the run's numbers.
    gt_root = tmp_path / "gt"
    os.makedirs(gt_root / video.video_id)
    for a, t in enumerate(video.mask_frames):
        vos.write_label_png(
            str(gt_root / video.video_id / f"{video.frame_names[t]}.png"), vos_eval.combine_davis(video.masks(a), ids)
        )
    again = vos_eval.score_folder(
        str(gt_root), str(tmp_path / "out" / "pred"), vos_eval.VOSEvalConfig(), progress=False
    )
    assert again.summary == res.summary


def _write_gt_and_pred(root, videos, layout, perturb):
    gt, pred = root / "gt", root / "pred"
    for v in videos:
        for t in range(0, len(v.frames), 2):
            name = f"{t:05d}"
            p = perturb(v, t)
            if layout == "davis":
                os.makedirs(gt / v.video_id, exist_ok=True)
                os.makedirs(pred / v.video_id, exist_ok=True)
                vos.write_label_png(
                    str(gt / v.video_id / f"{name}.png"), vos_eval.combine_davis(v.masks[t], v.object_ids)
                )
                vos.write_label_png(str(pred / v.video_id / f"{name}.png"), vos_eval.combine_davis(p, v.object_ids))
            else:
                vos_eval.write_prediction(str(gt), v.video_id, name, v.masks[t], v.object_ids, "sav")
                vos_eval.write_prediction(str(pred), v.video_id, name, p, v.object_ids, "sav")
    return str(gt), str(pred)


def _perturb(v, t):
    p = np.roll(v.masks[t], 3 * (t % 3), axis=-1)
    if t % 4 == 2:
        p[1] = False
    return p


@pytest.mark.parametrize("layout", ["davis", "sav"])
def test_score_folder_equals_direct_metrics(tmp_path, layout):
    videos = list(SyntheticVideoDataset(2, seed=3, num_frames=11, height=36, width=44, num_objects=3))
    gt, pred = _write_gt_and_pred(tmp_path, videos, layout, _perturb)
    res = vos_eval.score_folder(gt, pred, vos_eval.VOSEvalConfig(), progress=False)
    assert res.skipped == []
    # The same numbers straight from the arrays: frames 2..8 (0 and 10 skipped), SA-V convention.
    expected = []
    for v in videos:
        scorer = metrics.VideoScorer(v.video_id, v.object_ids, "sav")
        for t in range(2, 9, 2):
            scorer.add_frame(f"{t:05d}", vos_eval.as_layout(_perturb(v, t), v.object_ids, layout), v.masks[t])
        expected += scorer.results()
    assert [(s.video, s.object_id) for s in res.scores] == [(s.video, s.object_id) for s in expected]
    for a, b in zip(res.scores, expected, strict=True):
        np.testing.assert_array_equal(a.j, b.j)
        np.testing.assert_array_equal(a.f, b.f)
    assert 0 < res.summary["J&F"] < 1


@official_metrics.requires_toolkits
@pytest.mark.parametrize("layout", ["davis", "sav"])
def test_score_folder_against_official_sav_evaluator_live(tmp_path, layout):
    _, sav = official_metrics.load_official()
    videos = list(SyntheticVideoDataset(2, seed=3, num_frames=11, height=36, width=44, num_objects=3))
    gt, pred = _write_gt_and_pred(tmp_path, videos, layout, _perturb)
    ours = vos_eval.score_folder(gt, pred, vos_eval.VOSEvalConfig(), progress=False)
    jf, j, f, _ = sav.benchmark([gt], [pred], num_processes=1, verbose=False)
    assert ours.summary["J"] * 100 == pytest.approx(j[0], abs=1e-9)
    assert ours.summary["F"] * 100 == pytest.approx(f[0], abs=1e-9)
    assert ours.summary["J&F"] * 100 == pytest.approx(jf[0], abs=1e-9)


def test_bad_predictions_are_skipped_with_the_reason(tmp_path):
    videos = list(SyntheticVideoDataset(3, seed=3, num_frames=7, height=36, width=44, num_objects=2))
    gt, pred = _write_gt_and_pred(tmp_path, videos, "davis", lambda v, t: v.masks[t])
    os.remove(os.path.join(pred, "video_00000", "00002.png"))
    vos.write_label_png(os.path.join(pred, "video_00001", "00004.png"), np.full((36, 44), 7, np.uint8))
    res = vos_eval.score_folder(gt, pred, vos_eval.VOSEvalConfig(), progress=False)
    assert [s[0] for s in res.skipped] == ["video_00000", "video_00001"]
    assert "00002.png not found" in res.skipped[0][1]
    assert "object ids [7]" in res.skipped[1][1]
    assert res.summary["num_videos"] == 1 and res.summary["J&F"] == 1.0
    vos.write_label_png(os.path.join(pred, "video_00002", "00004.png"), np.zeros((30, 44), np.uint8))
    res = vos_eval.score_folder(gt, pred, vos_eval.VOSEvalConfig(), progress=False)
    assert "is 44x30, ground truth 44x36" in res.skipped[2][1]
    assert "2 videos" not in vos_eval.format_summary(res) and "3 videos skipped" in vos_eval.format_summary(res)
