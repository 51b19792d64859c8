"""J and F on hand-made masks whose values follow by hand, and on the real SA-V annotation against the official
toolkits' numbers (golden values made by ``python -m tests.evaluation.official_metrics``; compared live when the
official code is available, see ``official_metrics.py``)."""

import functools
import os

import numpy as np
import pytest

from sam2_jax.evaluation import metrics as M
from tests.evaluation import official_metrics, sav_cases


def square(top: int, left: int, size: int = 20, shape=(100, 100)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + size, left : left + size] = True
    return m


def test_boundary_map_and_radius_by_hand():
    # A single pixel at (5, 5): it differs from its right/lower/diagonal neighbours, (5, 4) from its right one,
    # (4, 5) from its lower one and (4, 4) from its diagonal one: four pixels, offset towards the origin.
    seg = np.zeros((10, 10), bool)
    seg[5, 5] = True
    expected = np.zeros((10, 10), bool)
    expected[4:6, 4:6] = True
    np.testing.assert_array_equal(M.seg2bmap(seg), expected)
    # A 20x20 square at rows/cols 10..29 has as boundary the outline of the 21x21 square 9..29.
    b = M.seg2bmap(square(10, 10))
    outline = np.zeros((100, 100), bool)
    outline[9:30, 9:30] = True
    outline[10:29, 10:29] = False
    np.testing.assert_array_equal(b, outline)
    assert b.sum() == 80
    # Edges along the image border are not boundaries; a full mask has none.
    assert not M.seg2bmap(np.ones((7, 9), bool)).any()
    assert M.boundary_radius(100, 100) == 2  # ceil(0.008 * 141.42)
    assert M.boundary_radius(480, 854) == 8  # ceil(7.837), DAVIS 480p
    assert M.boundary_radius(848, 480) == 8  # ceil(7.795), the SA-V video below
    assert M.boundary_radius(100, 100, bound_th=3) == 3
    np.testing.assert_array_equal(
        M.disk(2).astype(int),
        [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]],
    )
    assert M.disk(8).sum() == 197  # skimage.morphology.disk(8).sum()
    # Dilation by distance transform equals dilation by the disk (r = 3), including at the image border.
    rng = np.random.default_rng(0)
    pts = rng.random((40, 50)) < 0.02
    from scipy import ndimage

    np.testing.assert_array_equal(M.dilate(pts, 3), ndimage.binary_dilation(pts, structure=M.disk(3)))


def test_shifted_square_by_hand():
    gt = square(10, 10)
    # Shift by 1: overlap 19x20 of union 21x20; every boundary pixel is 1 px from the other outline (r = 2).
    assert M.region_similarity(square(10, 11), gt) == pytest.approx(380 / 420)
    assert M.boundary_f_measure(square(10, 11), gt) == 1.0
    # Shift by 10: J = 10*20 / (30*20). Predicted outline: rows 9 and 29 over cols 19..39, cols 19 and 39 over rows
    # 9..29. Within 2 px of the ground-truth outline (rows 9/29 over cols 9..29, cols 9/29): cols 19..31 of each
    # horizontal edge (13 + 13) and rows 10, 11, 27, 28 of col 19 (4): 30 of 80. By symmetry recall is the same.
    pred = square(10, 20)
    assert M.region_similarity(pred, gt) == pytest.approx(1 / 3)
    p, r = M.boundary_precision_recall(pred, gt)
    assert (p, r) == (30 / 80, 30 / 80)
    assert M.boundary_f_measure(pred, gt) == pytest.approx(30 / 80)
    # Batched form: one value per frame.
    np.testing.assert_allclose(M.boundary_f_measure(np.stack([pred, gt]), np.stack([gt, gt])), [30 / 80, 1.0])
    np.testing.assert_allclose(M.region_similarity(np.stack([pred, gt]), np.stack([gt, gt])), [1 / 3, 1.0])


def test_empty_masks_conventions():
    gt, empty = square(10, 10), np.zeros((100, 100), bool)
    assert M.region_similarity(empty, gt) == 0.0 and M.boundary_f_measure(empty, gt) == 0.0
    assert M.boundary_precision_recall(empty, gt) == (1.0, 0.0)
    assert M.region_similarity(gt, empty) == 0.0 and M.boundary_f_measure(gt, empty) == 0.0
    assert M.boundary_precision_recall(gt, empty) == (0.0, 1.0)
    assert M.region_similarity(empty, empty) == 1.0 and M.boundary_f_measure(empty, empty) == 1.0
    # A mask over the whole image has no boundary: against another full mask F = 1, against half the image F = 0.
    full, half = np.ones((100, 100), bool), np.zeros((100, 100), bool)
    half[:50] = True
    assert M.boundary_f_measure(full, full) == 1.0
    assert M.boundary_f_measure(full, half) == 0.0
    assert M.region_similarity(full, half) == 0.5
    # Void pixels leave both counts: the shifted-by-10 square scores 1 with the non-overlapping parts void.
    void = square(10, 10) ^ square(10, 20)
    assert M.region_similarity(square(10, 20), gt, void) == 1.0


def test_thin_structures():
    # A 1-pixel line at row 20, cols 10..29: its boundary is rows 19 and 20 over cols 9..29 (42 pixels).
    line = np.zeros((100, 100), bool)
    line[20, 10:30] = True
    assert M.seg2bmap(line).sum() == 42
    down = lambda k: np.roll(line, k, axis=0)  # noqa: E731
    # Off by one row: no overlap at all (J = 0) but every boundary pixel within 1 px (F = 1).
    assert M.region_similarity(down(1), line) == 0.0
    assert M.boundary_f_measure(down(1), line) == 1.0
    # Off by 3 rows: boundary rows 22, 23 against 19, 20 with r = 2: row 22 matches row 20 and row 20 matches row 22,
    # the other rows are 3 px away: P = R = 21/42.
    assert M.boundary_precision_recall(down(3), line) == (0.5, 0.5)
    assert M.boundary_f_measure(down(3), line) == 0.5
    # Off by 4: nothing within 2 px.
    assert M.boundary_f_measure(down(4), line) == 0.0


def test_db_statistics_by_hand():
    # n = 5: bin edges round(linspace(1, 5, 5)) - 1 = 0..4, bins v[0:2], v[1:3], v[2:4], v[3:5].
    mean, recall, decay = M.db_statistics([1.0, 0.9, 0.4, 0.2, 0.0])
    assert mean == pytest.approx(0.5)
    assert recall == pytest.approx(0.4)
    assert decay == pytest.approx(0.95 - 0.1)


def test_video_scorer_conventions_and_averaging():
    gt_obj = np.stack([np.zeros((100, 100), bool)] * 2 + [square(10, 10)] * 2)  # absent on frames 0-1
    pred_obj = gt_obj.copy()
    pred_obj[3] = False  # lost on frame 3
    never = np.zeros((4, 100, 100), bool)  # an object never in the ground truth nor predicted
    gt, pred = np.stack([gt_obj, never], 1), np.stack([pred_obj, never], 1)
    results = {}
    for conv in M.CONVENTIONS:
        scorer = M.VideoScorer("v", [1, 2], conv)
        for t in range(4):
            scorer.add_frame(t, pred[t], gt[t])
        results[conv] = scorer
    sav = results["sav"].results()
    # SA-V: scored from frame 2 (first present) on, so J = F = (1 + 0) / 2; object 2 is not reported.
    assert [s.object_id for s in sav] == [1] and sav[0].frames == [2, 3]
    assert sav[0].j_mean == 0.5 and sav[0].f_mean == 0.5
    assert results["sav"].unreported() == [2]
    # DAVIS 2017: all four frames count (absent in both = 1): (1 + 1 + 1 + 0) / 4; object 2 scores 1.
    davis = results["davis2017"].results()
    assert [s.j_mean for s in davis] == [0.75, 1.0] and [s.f_mean for s in davis] == [0.75, 1.0]
    # A false positive before the object appears starts the SA-V count there.
    pred2 = pred.copy()
    pred2[0, 0] = square(50, 50)
    scorer = M.VideoScorer("v", [1, 2], "sav")
    for t in range(4):
        scorer.add_frame(t, pred2[t], gt[t])
    assert scorer.results()[0].frames == [0, 1, 2, 3]
    np.testing.assert_allclose(scorer.results()[0].j, [0, 1, 1, 0])
    # The dataset averages objects, not videos: (0.5 + 1) / 2 in one video and 1 in another give J = 2/3 + ...
    a = M.ObjectScore("a", 1, [0], np.array([0.0]), np.array([0.0]))
    b = M.ObjectScore("a", 2, [0], np.array([1.0]), np.array([1.0]))
    c = M.ObjectScore("b", 1, [0], np.array([1.0]), np.array([0.5]))
    s = M.summarize([a, b, c])
    assert s["J"] == pytest.approx(2 / 3) and s["F"] == pytest.approx(0.5) and s["J&F"] == pytest.approx(7 / 12)
    assert s["num_objects"] == 3 and s["num_videos"] == 2
    pv = M.per_video([a, b, c])
    assert pv["a"]["J"] == 0.5 and pv["b"]["F"] == 0.5
    assert M.frames_to_score(range(5)) == [1, 2, 3] and M.frames_to_score(range(3), False) == [0, 1, 2]


# Made by `python -m tests.evaluation.official_metrics` with davis2017-evaluation at ac7c43f (opencv 5.0.0,
# scikit-image 0.26.0) and sav_dataset/utils/sav_benchmark.py of facebookresearch/sam2 at 2b90b9f: per case,
# (DAVIS mean J, DAVIS mean F over all frames and objects, SA-V J, SA-V F on 0-100, means over objects).
OFFICIAL = {
    "identity": (1.0, 1.0, 100.0, 100.0),
    "eroded2": (0.8746977604538021, 0.9984146661422522, 82.61165487632002, 99.72512875989443),
    "shift5": (0.7903550236079546, 1.0, 70.77323582786045, 100.0),
    "shift12": (0.5881349867775307, 0.5851615118459434, 44.734531090597194, 49.627074268187656),
    "dropped": (0.7853658536585366, 0.7853658536585366, 72.35772357723577, 72.35772357723577),
}


@functools.cache
def our_case_values() -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for name, (gt, pred) in sav_cases.sav_cases().items():
        per_conv = {}
        for conv in M.CONVENTIONS:
            scorer = M.VideoScorer(name, range(1, gt.shape[1] + 1), conv)
            for t in range(gt.shape[0]):
                scorer.add_frame(t, pred[t], gt[t])
            per_conv[conv] = scorer.results()
        davis = per_conv["davis2017"]
        sav = M.summarize(per_conv["sav"])
        out[name] = (
            float(np.mean([s.j for s in davis])),
            float(np.mean([s.f for s in davis])),
            100 * sav["J"],
            100 * sav["F"],
        )
    return out


requires_sav = pytest.mark.skipif(not os.path.exists(sav_cases.SAV_JSON), reason="shared SA-V annotation not found")


@requires_sav
def test_real_sav_annotation_against_official_numbers():
    ours = our_case_values()
    for name, expected in OFFICIAL.items():
        np.testing.assert_allclose(ours[name], expected, rtol=1e-12, atol=1e-12, err_msg=name)
    # By hand: a shift of 5 px <= r = 8 keeps every boundary pixel matched where no object touches the border.
    assert ours["shift5"][1] == 1.0
    # Dropping frames: each (frame, object) whose ground truth is present scores J = F = 0, every other one 1.
    gt, pred = sav_cases.sav_cases()["dropped"]
    lost = np.sum(gt.any(axis=(2, 3)) & ~pred.any(axis=(2, 3)))
    assert lost == 44
    assert ours["dropped"][0] == ours["dropped"][1] == pytest.approx(1 - lost / gt[:, :, 0, 0].size)


@requires_sav
@official_metrics.requires_toolkits
def test_real_sav_annotation_against_official_code_live():
    loaded = official_metrics.load_official()
    official = official_metrics.official_case_values(*loaded)
    ours = our_case_values()
    for name in official:
        np.testing.assert_allclose(ours[name], official[name], rtol=1e-12, atol=1e-12, err_msg=name)


@official_metrics.requires_toolkits
def test_edge_cases_against_official_code_live():
    davis_metrics, _ = official_metrics.load_official()
    rng = np.random.default_rng(1)
    from scipy import ndimage

    cases = [(np.zeros((37, 53), bool), np.zeros((37, 53), bool)), (np.ones((37, 53), bool), np.zeros((37, 53), bool))]
    for _ in range(30):
        h, w = rng.integers(5, 120, size=2)
        blobs = [ndimage.gaussian_filter(rng.random((h, w)), 2) > rng.uniform(0.45, 0.55) for _ in range(2)]
        cases.append((blobs[0], blobs[1]))
        cases.append((blobs[0], np.zeros_like(blobs[0])))
    for pred, gt in cases:
        assert M.boundary_f_measure(pred, gt) == pytest.approx(davis_metrics.f_measure(pred, gt), abs=1e-15)
        assert M.boundary_f_measure(pred, gt, bound_th=3) == pytest.approx(
            davis_metrics.f_measure(pred, gt, bound_th=3), abs=1e-15
        )
        assert M.region_similarity(pred, gt) == pytest.approx(davis_metrics.db_eval_iou(gt, pred), abs=1e-15)
