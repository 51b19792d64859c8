"""The ``sam2-jax`` command end to end: every subcommand on the shared photos, the bedroom frames and an MP4, with
the written files checked (mask shapes and values, palette indices, JSON schema, overlay frame counts), and bad
input ending in one line on stderr with exit code 2.

Most runs call ``sam2_jax.cli.main`` in this process (``--random-weights --image-size 256``: a small random model,
so compiles are shared and fast); a few run the installed console script to check the real process exit code.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from sam2_jax import cli
from tests.reference import DATA, REPO, requires_data, requires_torch

SMALL = ["--random-weights", "--image-size", "256", "--quiet"]
BEDROOM = DATA / "videos" / "bedroom"
MP4 = DATA / "videos" / "01_dog.mp4"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """An empty checkpoint cache: nothing of the user's is read or written."""
    monkeypatch.setenv("SAM2_JAX_CACHE", str(tmp_path / "cache"))


def run(args, capsys):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


def _png(path):
    with Image.open(path) as im:
        return im.mode, np.asarray(im), im.getpalette()


@requires_data
def test_image(tmp_path, capsys):
    photo = DATA / "images" / "truck.jpg"
    out = tmp_path / "truck"
    args = ["image", photo, "--point", "500,375", "--point", "1125,625,0", "--box", "425,300,1300,875"]
    rc, stdout, err = run(args + ["--multimask", "--out", out] + SMALL, capsys)
    assert rc == 0, err
    assert "RANDOM WEIGHTS" in stdout
    h, w = 1200, 1800
    scores = json.loads((out / "scores.json").read_text())
    assert scores["random_weights"] is True and scores["checkpoint"] is None and scores["checkpoint_sha256"] is None
    assert (scores["height"], scores["width"]) == (h, w)
    assert scores["points"] == [[500, 375], [1125, 625]] and scores["labels"] == [1, 0]
    assert scores["box"] == [425, 300, 1300, 875]
    assert scores["masks"] == ["mask_0.png", "mask_1.png", "mask_2.png"]
    assert scores["iou_predictions"] == sorted(scores["iou_predictions"], reverse=True)
    for name, area in zip(scores["masks"], scores["mask_area"], strict=True):
        mode, m, _ = _png(out / name)
        assert mode == "L" and m.shape == (h, w) and set(np.unique(m)) <= {0, 255}
        assert (m > 0).sum() == area
    mode, ov, _ = _png(out / "overlay.png")
    assert ov.shape == (h, w, 3)
    np.testing.assert_array_equal(ov[375, 500], [0, 200, 0])  # positive click drawn green
    np.testing.assert_array_equal(ov[625, 1125], [220, 0, 0])  # negative click red
    np.testing.assert_array_equal(ov[300, 800], [0, 200, 0])  # the box's top edge

    # A box alone on the other photo: one mask.
    out2 = tmp_path / "groceries"
    rc, _, err = run(
        ["image", DATA / "images" / "groceries.jpg", "--box", "10,10,300,200", "--out", out2] + SMALL, capsys
    )
    assert rc == 0, err
    assert json.loads((out2 / "scores.json").read_text())["masks"] == ["mask_0.png"]
    assert _png(out2 / "mask_0.png")[1].shape == (534, 800)


@requires_data
def test_auto(tmp_path, capsys):
    from pycocotools import mask as mask_utils

    photo = DATA / "images" / "groceries.jpg"
    out = tmp_path / "auto"
    relaxed = ["--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--box-nms-thresh", "1.0"]
    rc, stdout, err = run(
        ["auto", photo, "--points-per-side", "4", "--points-per-batch", "8", "--out", out] + relaxed + SMALL, capsys
    )
    assert rc == 0, err
    doc = json.loads((out / "masks.json").read_text())
    assert set(doc) >= {"model", "checkpoint", "random_weights", "image", "height", "width", "settings", "annotations"}
    assert doc["settings"]["points_per_side"] == 4 and doc["settings"]["box_nms_thresh"] == 1.0
    h, w = doc["height"], doc["width"]
    assert (h, w) == (534, 800)
    anns = doc["annotations"]
    assert len(anns) == 4 * 4 * 3  # nothing filtered: 3 masks for each of the 16 points
    keys = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
    for a in anns:
        assert set(a) == keys
        seg = a["segmentation"]
        assert seg["size"] == [h, w] and isinstance(seg["counts"], str)
        m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        assert m.shape == (h, w) and m.sum() == a["area"]
        if a["area"]:
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert a["crop_box"] == [0, 0, w, h] and len(a["point_coords"]) == 1
    assert _png(out / "overlay.png")[1].shape == (h, w, 3)


def _check_davis(mask_dir, names, hw, ids):
    assert sorted(os.listdir(mask_dir)) == [f"{n}.png" for n in names]
    areas = {}
    for n in names:
        mode, m, pal = _png(mask_dir / f"{n}.png")
        assert mode == "P" and m.shape == hw
        assert set(np.unique(m)) <= {0} | set(ids)
        assert pal[3:6] == [128, 0, 0] and pal[6:9] == [0, 128, 0]  # the DAVIS palette
        for i in ids:
            areas.setdefault(str(i), []).append(int((m == i).sum()))
    return areas


@requires_data
def test_video_folder(tmp_path, capsys):
    out = tmp_path / "bedroom"
    prompts = [
        "--obj",
        1,
        "--frame",
        0,
        "--point",
        "300,200",
        "--point",
        "350,250,0",
        "--obj",
        2,
        "--box",
        "600,100,800,400",
    ]
    gif = out / "overlay.gif"
    rc, stdout, err = run(
        ["video", BEDROOM, *prompts, "--max-frames", 4, "--overlay", gif, "--out", out] + SMALL, capsys
    )
    assert rc == 0, err
    meta = json.loads((out / "video.json").read_text())
    assert meta["num_frames"] == 200 and (meta["height"], meta["width"]) == (540, 960)
    assert meta["frames"] == ["00000", "00001", "00002", "00003"]
    areas = _check_davis(out / "masks", meta["frames"], (540, 960), [1, 2])
    # Where objects overlap the lower id is written, so the PNG areas are at most the per-object areas.
    for i in ("1", "2"):
        assert all(a <= b for a, b in zip(areas[i], meta["objects"][i]["area_per_frame"], strict=True))
    assert areas["1"] == meta["objects"]["1"]["area_per_frame"]
    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.size == (960, 540)
    assert _png(out / "contact_sheet.png")[0] == "RGB"

    # A mask prompt on a later frame: tracking starts there.
    mask = np.zeros((540, 960), np.uint8)
    mask[150:400, 250:450] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    out2 = tmp_path / "bedroom_mask"
    rc, _, err = run(
        ["video", BEDROOM, "--obj", 5, "--frame", 2, "--mask", tmp_path / "m.png", "--max-frames", 2, "--out", out2]
        + SMALL,
        capsys,
    )
    assert rc == 0, err
    _check_davis(out2 / "masks", ["00002", "00003"], (540, 960), [5])

    # Without --max-frames the whole video is tracked: frames before the prompt by a reverse pass.
    from tests.video_reference import link_frames

    clip = link_frames(tmp_path / "clip", range(4))
    out3 = tmp_path / "clip_out"
    rc, _, err = run(
        ["video", clip, "--obj", 5, "--frame", 2, "--mask", tmp_path / "m.png", "--out", out3] + SMALL, capsys
    )
    assert rc == 0, err
    meta = json.loads((out3 / "video.json").read_text())
    assert meta["frames"] == ["00000", "00001", "00002", "00003"]
    _check_davis(out3 / "masks", meta["frames"], (540, 960), [5])


@requires_data
def test_video_mp4(tmp_path, capsys):
    import av

    with av.open(str(MP4)) as c:
        s = c.streams.video[0]
        w, h = s.codec_context.width, s.codec_context.height
    out = tmp_path / "dog"
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 1
    Image.fromarray(mask).save(tmp_path / "m.png")
    prompts = ["--obj", 3, "--point", f"{w // 2},{h // 2}", "--obj", 7, "--mask", tmp_path / "m.png"]
    rc, _, err = run(["video", MP4, *prompts, "--max-frames", 3, "--out", out] + SMALL, capsys)
    assert rc == 0, err
    meta = json.loads((out / "video.json").read_text())
    assert meta["frames"] == ["00000", "00001", "00002"] and set(meta["objects"]) == {"3", "7"}
    _check_davis(out / "masks", meta["frames"], (h, w), [3, 7])
    with av.open(str(out / "overlay.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 3 and (frames[0].height, frames[0].width) == (h - h % 2, w - w % 2)


@requires_data
def test_bad_input_one_line_errors(tmp_path, capsys):
    photo = DATA / "images" / "truck.jpg"
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    cases = [
        (["image", bad, "--point", "1,1"], [bad.name, "cannot read image"]),
        (["image", tmp_path / "missing.jpg", "--point", "1,1"], ["missing.jpg", "does not exist"]),
        (["image", photo, "--point", "1900,10"], ["(1900, 10)", "outside the 1800x1200"]),
        (["image", photo, "--box", "10,10,5,50"], ["x0 < x1"]),
        (["image", photo, "--point", "10,10,7"], ["label"]),
        (["image", photo], ["--point"]),
        (["image", photo, "--point", "1,1", "--model", "sam3_huge"], ["sam3_huge"]),
        (["auto", bad], [bad.name]),
        (["video", BEDROOM, "--frame", 500, "--point", "10,10"], ["--frame 500", "200 frames"]),
        (["video", BEDROOM, "--point", "961,10"], ["(961, 10)", "960x540"]),
        (["video", BEDROOM, "--obj", 256, "--point", "10,10"], ["1..255", "256"]),
        (["video", BEDROOM], ["at least one prompt"]),
        (["video", tmp_path / "nothing", "--point", "1,1"], ["nothing", "does not exist"]),
        (["video", BEDROOM, "--point", "1,1", "--overlay", tmp_path / "x.avi"], ["x.avi"]),
        (["frobnicate"], ["frobnicate"]),
    ]
    small_mask = tmp_path / "small.png"
    Image.fromarray(np.ones((100, 100), np.uint8)).save(small_mask)
    cases.append((["video", BEDROOM, "--mask", small_mask], ["small.png", "100x100", "960x540"]))
    for args, needles in cases:
        assert_one_line_error(*run(list(args) + SMALL, capsys)[::2], *needles)
    # No checkpoint in the (empty) cache, and none given.
    rc, _, err = run(["image", photo, "--point", "5,5", "--quiet"], capsys)
    assert_one_line_error(rc, err, "no checkpoint", "sam2-jax download", "--random-weights")


@requires_torch
@requires_data
def test_checkpoint_errors_and_convert(tmp_path, capsys):
    import torch

    from sam2_jax.checkpoints import cached_conversion, random_checkpoint, sha256_file
    from sam2_jax.convert_weights.orbax_io import save_params

    photo = DATA / "images" / "groceries.jpg"
    wrong_pt = tmp_path / "wrong.pt"
    torch.save({"model": {"image_encoder.trunk.pos_embed": torch.zeros(1, 96, 7, 7)}}, wrong_pt)
    wrong_dir = tmp_path / "wrong_orbax"
    save_params({"sam_mask_decoder": {"w": np.zeros(3, np.float32)}}, str(wrong_dir))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    for ckpt, needles in [
        (wrong_pt, ["wrong.pt", "does not fit model sam2.1_hiera_t"]),
        (wrong_dir, ["wrong_orbax", "does not fit model sam2.1_hiera_t"]),
        (junk, ["junk.pt"]),
        (photo.parent, ["images", "is not an orbax params folder (it has no _METADATA file)"]),
        (tmp_path / "absent.pt", ["absent.pt", "does not exist"]),
    ]:
        rc, _, err = run(["image", photo, "--point", "5,5", "--checkpoint", ckpt, "--quiet"], capsys)
        assert_one_line_error(rc, err, *needles)

    # convert: an official-format .pt (random weights) into the cache, where the model commands pick it up.
    pt = random_checkpoint("sam2.1_hiera_t", tmp_path / "sam2.1_hiera_tiny.pt")
    rc, stdout, err = run(["convert", pt], capsys)
    assert rc == 0, err
    converted = cached_conversion(pt)
    assert converted is not None and converted.is_relative_to(tmp_path / "cache") and str(converted) in stdout
    rc, stdout, err = run(["convert", pt], capsys)
    assert rc == 0 and "already converted" in stdout, err
    # The model commands read the conversion and record the file, its hash and what was read.
    out = tmp_path / "from_pt"
    rc, _, err = run(["image", photo, "--point", "5,5", "--checkpoint", pt, "--quiet", "--out", out], capsys)
    assert rc == 0, err
    scores = json.loads((out / "scores.json").read_text())
    assert scores["checkpoint"] == str(pt) and scores["random_weights"] is False
    assert scores["checkpoint_sha256"] == sha256_file(pt) and scores["loaded_from"] == str(converted)
    rc, _, err = run(["convert", pt, "--config", "sam2.1_hiera_l", "--out", tmp_path / "x"], capsys)
    assert_one_line_error(rc, err, "sam2.1_hiera_tiny.pt", "does not convert")
    rc, _, err = run(["convert", tmp_path / "absent.pt"], capsys)
    assert_one_line_error(rc, err, "absent.pt")
    # The same file name cut in half (mtime kept): never served from the cached conversion of the whole file.
    data, stat = pt.read_bytes(), pt.stat()
    pt.write_bytes(data[: len(data) // 2])
    os.utime(pt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    out = tmp_path / "from_truncated"
    rc, _, err = run(["image", photo, "--point", "5,5", "--checkpoint", pt, "--quiet", "--out", out], capsys)
    assert_one_line_error(rc, err, "sam2.1_hiera_tiny.pt")
    assert not (out / "scores.json").exists() and cached_conversion(pt) is None


def _sam2_jax_script():
    exe = shutil.which("sam2-jax", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the sam2-jax console script is not installed (pip install -e .)")
    return exe


def _offline(host="dl.fbaipublicfiles.com") -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return True
    return False


@requires_data
def test_console_script_exit_codes_and_help(tmp_path):
    exe = _sam2_jax_script()
    env = dict(
        os.environ, SAM2_JAX_CACHE=str(tmp_path / "cache"), JAX_COMPILATION_CACHE_DIR=str(REPO / ".cache" / "jax")
    )
    r = subprocess.run(
        [exe, "image", str(tmp_path / "nope.jpg"), "--point", "1,1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"sam2-jax image: error: image {str(tmp_path / 'nope.jpg')!r} does not exist"
    ]
    r = subprocess.run(
        [exe, "video", str(BEDROOM), "--frame", "999", "--point", "1,1"] + SMALL,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--frame 999" in r.stderr
    for sub in ("image", "auto", "video", "download", "convert"):
        r = subprocess.run([exe, sub, "--help"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0 and "example" in r.stdout, sub


def test_download_without_network_fails_fast(tmp_path):
    if not _offline():
        pytest.skip("this machine has network access; the test checks the offline message")
    exe = _sam2_jax_script()
    env = dict(os.environ, SAM2_JAX_CACHE=str(tmp_path / "cache"))
    t0 = time.time()
    r = subprocess.run(
        [exe, "download", "--model", "sam2.1_hiera_s", "--timeout", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert time.time() - t0 < 60
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
    assert "cannot download sam2.1_hiera_small.pt" in lines[0] and str(tmp_path / "cache") in lines[0]
    assert not list((tmp_path / "cache").glob("*.part"))  # no half-written file left
