"""Bad prompts through the image API, the video API and the command line: each input class is rejected with a
``ValueError`` naming the value, the same by every route (one validation layer, ``sam2_jax.utils.validation``), and
each rejected call is followed by a good call on the same predictor or state, which must answer exactly as it would
have without the bad call. Where the official predictor takes the same input silently (a NaN click, a NaN box), a
test shows what it answers: the wrong answer our error prevents.

A small model (image_size 256, random weights) keeps these fast.
"""

import argparse

import numpy as np
import pytest

from sam2_jax.utils import validation
from sam2_jax.utils.prompts import parse_box, parse_point
from tests.reference import requires_data, requires_torch
from tests.test_tracker import small_predictor

NAN, INF = float("nan"), float("inf")

# (what, kwargs of a click/box prompt, message regex): every class the validation layer rejects.
BAD_PROMPTS = [
    ("nan click", dict(points=[[NAN, 10.0]], labels=[1]), r"points must be finite.*nan"),
    ("inf click", dict(points=[[10.0, INF]], labels=[1]), r"points must be finite.*inf"),
    ("string click", dict(points=[["a", 1]], labels=[1]), r"points must be numeric"),
    ("label 7", dict(points=[[10.0, 10.0]], labels=[7]), r"labels must be 1 \(positive\) or 0.*\[7\]"),
    ("float label", dict(points=[[10.0, 10.0]], labels=[0.5]), r"labels must be integers"),
    ("bool label", dict(points=[[10.0, 10.0]], labels=[True]), r"labels must be integers"),
    ("unpaired corner", dict(points=[[10.0, 10.0]], labels=[2]), r"labels 2 and 3 must come in pairs"),
    ("nan box", dict(box=[NAN, 0, 10, 10]), r"box must be finite"),
    ("swapped box", dict(box=[50, 10, 20, 40]), r"box must have x0 < x1 and y0 < y1.*\[50\.0, 10\.0, 20\.0, 40\.0\]"),
    ("empty box", dict(box=[20, 10, 20, 40]), r"box must have x0 < x1 and y0 < y1"),
]


def _image_kwargs(kw):
    """The video prompt's kwargs in the image API's names."""
    out = {}
    if "points" in kw:
        out["point_coords"], out["point_labels"] = kw["points"], kw["labels"]
    if "box" in kw:
        out["box"] = kw["box"]
    return out


@pytest.fixture(scope="module")
def video():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (3, 96, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def image_predictor():
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

    pred = SAM2ImagePredictor(small_predictor().model)
    pred.set_image(np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return pred


GOOD = dict(points=np.array([[50.0, 40.0]], np.float32), labels=np.array([1], np.int32))


@pytest.mark.parametrize("what,kw,msg", BAD_PROMPTS, ids=[b[0] for b in BAD_PROMPTS])
def test_image_api_rejects_then_answers_as_before(image_predictor, what, kw, msg):
    before = image_predictor.predict(**_image_kwargs(GOOD))
    with pytest.raises(
        ValueError,
        match=msg.replace("points must", "point_coords must")
        .replace("labels must", "point_labels must")
        .replace("labels 2", "point_labels: box-corner labels 2"),
    ):
        image_predictor.predict(**_image_kwargs(kw))
    after = image_predictor.predict(**_image_kwargs(GOOD))
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_image_api_rejects_bad_mask_input_and_batched_boxes(image_predictor):
    good = image_predictor.predict(**_image_kwargs(GOOD), multimask_output=False)
    low = good[2]  # (1, 64, 64) logits at image_size 256
    bad = low.copy()
    bad[0, 3, 4] = NAN
    with pytest.raises(ValueError, match=r"mask_input must be finite numbers, got nan at index \[0, 3, 4\]"):
        image_predictor.predict(**_image_kwargs(GOOD), mask_input=bad, multimask_output=False)
    with pytest.raises(ValueError, match=r"box must have x0 < x1.*\(box 1\)"):
        image_predictor.predict(box=np.array([[0, 0, 10, 10], [5, 5, 5, 9]]))
    with pytest.raises(ValueError, match="point_labels: box-corner labels 2 and 3 must come in pairs"):
        image_predictor.predict(point_coords=[[1, 1], [5, 5]], point_labels=[2, 2])
    # labels 2, 3 given by hand encode a box exactly as box= does (the official encoding)
    by_labels = image_predictor.predict(point_coords=[[10, 10], [60, 50]], point_labels=[2, 3])
    by_box = image_predictor.predict(box=np.array([10, 10, 60, 50]))
    np.testing.assert_allclose(by_labels[1], by_box[1], atol=1e-6)
    again = image_predictor.predict(**_image_kwargs(GOOD), mask_input=low, multimask_output=False)
    assert np.isfinite(again[1]).all()


def _snapshot(pred, state):
    """What a state answers: objects, their prompts, and the masks on frame 0."""
    prompts = {
        o: {f: [np.asarray(a).copy() for a in v] for f, v in d.items()} for o, d in state.point_inputs_per_obj.items()
    }
    return list(state.obj_ids), prompts


@pytest.mark.parametrize("what,kw,msg", BAD_PROMPTS, ids=[b[0] for b in BAD_PROMPTS])
def test_video_api_rejects_and_state_is_unchanged(video, what, kw, msg):
    pred = small_predictor()
    state = pred.init_state(video)
    _, _, first = pred.add_new_points_or_box(state, 0, 1, **GOOD)
    ids, prompts = _snapshot(pred, state)
    with pytest.raises(ValueError, match=msg):
        pred.add_new_points_or_box(state, 1, 2, **kw)  # a new object: it must not be created
    with pytest.raises(ValueError, match=msg):
        pred.add_new_points_or_box(state, 0, 1, **kw, clear_old_points="box" in kw)  # nor change object 1
    ids2, prompts2 = _snapshot(pred, state)
    assert ids2 == ids == [1] and prompts2.keys() == prompts.keys()
    for o in prompts:
        for f in prompts[o]:
            for a, b in zip(prompts[o][f], prompts2[o][f], strict=True):
                np.testing.assert_array_equal(a, b)
    frames = {t: m for t, _, m in pred.propagate_in_video(state)}
    assert sorted(frames) == [0, 1, 2]
    np.testing.assert_array_equal(frames[0], first)
    assert all(np.isfinite(m).all() for m in frames.values())


def test_video_api_rejects_ids_frames_and_masks(video):
    pred = small_predictor()
    state = pred.init_state(video)
    for obj_id in ("1", 1.0, True, None, (1,)):
        with pytest.raises(ValueError, match="obj_id must be an int"):
            pred.add_new_points_or_box(state, 0, obj_id, **GOOD)
        with pytest.raises(ValueError, match="obj_id must be an int"):
            pred.add_new_mask(state, 0, obj_id, np.ones((96, 128), bool))
    for frame_idx in (1.0, "0", True, -1, 3):
        with pytest.raises(ValueError, match="frame_idx"):
            pred.add_new_points_or_box(state, frame_idx, 1, **GOOD)
    mask = np.zeros((96, 128), np.float32)
    mask[10:40, 20:60] = 1
    bad = mask.copy()
    bad[0, 0] = NAN
    with pytest.raises(ValueError, match=r"mask must be finite numbers, got nan at index \[0, 0\]"):
        pred.add_new_mask(state, 0, 1, bad)
    assert state.obj_ids == [] and state.num_objects == 0
    _, ids, m = pred.add_new_mask(state, 0, np.int64(1), mask)  # numpy ints are ints
    assert ids == [1] and m.shape == (1, 1, 96, 128)
    assert len(list(pred.propagate_in_video(state))) == 3


@pytest.mark.parametrize(
    "parse,text,msg",
    [
        (parse_point, "nan,3", r"--point must be finite"),
        (parse_point, "3,inf", r"--point must be finite"),
        (parse_point, "3,4,2", r"label must be 1 \(positive\) or 0"),
        (parse_box, "nan,0,10,10", r"--box must be finite"),
        (parse_box, "50,10,20,40", r"--box must have x0 < x1 and y0 < y1"),
        (parse_box, "20,10,20,40", r"--box must have x0 < x1 and y0 < y1"),
    ],
)
def test_command_line_uses_the_same_checks(parse, text, msg):
    with pytest.raises(argparse.ArgumentTypeError, match=msg):
        parse(text)
    # the same message as the API's, with the flag's name
    api = {"nan,3": "points", "3,inf": "points"}.get(text)
    if api:
        with pytest.raises(ValueError) as e:
            validation.check_points([float(v) for v in text.split(",")], "--point")
        assert str(e.value) in str(pytest.raises(argparse.ArgumentTypeError, parse, text).value)


def test_command_line_bad_prompts_end_in_one_line_errors(tmp_path, capsys):
    from PIL import Image

    from sam2_jax import cli

    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(photo)
    for args, needle in [
        (["--point", "nan,3"], "--point must be finite"),
        (["--box", "40,0,10,10"], "--box must have x0 < x1 and y0 < y1"),
    ]:
        rc = cli.main(["image", str(photo), *args, "--random-weights", "--image-size", "256", "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == cli.EXIT_ERROR and len(err) == 1 and needle in err[0], err


@pytest.mark.slow
@requires_torch
def test_official_takes_a_nan_box_and_a_nan_click_silently():
    """What our errors prevent: the official image predictor answers a NaN box with NaN scores, and the official
    video predictor a NaN click with a NaN object score and pointer, with no error."""
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor as RefPredictor

    from sam2_jax.reference.image import official_model

    ref = RefPredictor(official_model("sam2.1_hiera_t"))
    ref.set_image(np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    with torch.inference_mode():
        _, scores, _ = ref.predict(box=np.array([NAN, 0, 10, 10]))
    assert np.isnan(scores).all()
    with torch.inference_mode():
        _, scores, low = ref.predict(point_coords=np.array([[10.0, 20.0], [50, 40]]), point_labels=np.array([1, 7]))
    assert np.isfinite(scores).all()  # label 7: an answer, silently ignoring the click's label


def test_validation_layer_values():
    np.testing.assert_array_equal(validation.check_labels(np.array([1.0, 0.0])), [1, 0])
    assert validation.check_labels([[2, 3, 1]]).dtype == np.int32
    assert validation.check_obj_id(np.int16(4)) == 4 and type(validation.check_obj_id(np.int16(4))) is int
    assert validation.check_frame_idx(np.int64(2), 3) == 2
    assert validation.check_boxes([[0, 0, 1, 1], [2, 2, 3, 4]]).shape == (2, 4)
    with pytest.raises(ValueError, match="must be \\(N, 2\\)"):
        validation.check_points([1, 2, 3])
    with pytest.raises(ValueError, match="XYXY"):
        validation.check_boxes([1, 2, 3])


# --- late errors made early: init_state checks what it cheaply can ------------------------------------------


def _frames_dir(tmp_path, n=4, size=(128, 96)):
    from PIL import Image

    d = tmp_path / "frames"
    d.mkdir()
    rng = np.random.default_rng(0)
    for t in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{t:05d}.jpg")
    return d


@pytest.mark.parametrize(
    "damage,msg",
    [
        ("truncate", r"frame 2 \(.*00002\.jpg\) is cut short: its JPEG end marker is missing"),
        ("resize", r"frame 2 \(.*00002\.jpg\) is 64x48 but frame 0 is 128x96"),
        ("garbage", r"cannot read frame 2 \(.*00002\.jpg\)"),
    ],
)
def test_init_state_names_a_bad_frame_before_tracking(tmp_path, damage, msg):
    from PIL import Image

    d = _frames_dir(tmp_path)
    bad = d / "00002.jpg"
    if damage == "truncate":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "resize":
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(bad)
    else:
        bad.write_bytes(b"not a jpeg at all")
    pred = small_predictor()
    pred.progress = False
    with pytest.raises(ValueError, match=msg):
        pred.init_state(str(d))


@requires_data
def test_a_truncated_mp4_is_refused_when_opened(tmp_path):
    from sam2_jax.video.video_io import VideoSource
    from tests.reference import DATA

    mp4 = DATA / "videos" / "01_dog.mp4"
    data = mp4.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ValueError, match=r"half\.mp4' is truncated: its index lists 289 frames but the file ends after 148"
    ):
        VideoSource(str(half), image_size=64, cache_size=1)
    with VideoSource(str(mp4), image_size=64, cache_size=1) as src:  # the whole file is fine
        assert src.num_frames == 289


def test_propagate_in_video_shows_a_progress_bar(video, capsys):
    pred = small_predictor()
    state = pred.init_state(video)
    pred.add_new_points_or_box(state, 0, 1, **GOOD)
    capsys.readouterr()
    frames = [t for t, _, _ in pred.propagate_in_video(state)]
    err = capsys.readouterr().err
    assert frames == [0, 1, 2] and "propagate in video" in err and "3/3" in err
    pred.progress = False
    assert [t for t, _, _ in pred.propagate_in_video(state, start_frame_idx=1)] == [1, 2]
    assert "propagate in video" not in capsys.readouterr().err
