"""The exported runtime (``sam2_jax.export.runtime``) against the live predictors, on the bedroom frames.

One export (tiny, random weights, float32, 128 px so it stays fast; 1024 px is slow-marked) is run by the runtime in
a subprocess whose ``sys.modules`` must never hold Flax or ``sam2_jax.modeling``, while this process runs the same
calls on the live ``SAM2ImagePredictor`` / ``SAM2VideoPredictor`` (in parallel on two cores). Image: masks (logits),
scores, low-res logits of a click and a box. Video: a click on frame 0, 12 frames forward, a correction on frame 6,
re-propagation: every returned logit map and every frame's stored logits, object score and pointer.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.configs import get_config
from tests import exported_scenario as scenario
from tests import measured
from tests.reference import DATA, REPO

NAME = "sam2.1_hiera_t"
NUM_FRAMES = 12
ATOL = 1e-5  # the bar on logits; measured 0.0 at 128 px (the same XLA programs)
ONNX_STEP_ATOL = 1e-4  # the ONNX bar: each tracking step on the live predictor's memories
ONNX_ATOL = 3e-4  # the free-running ONNX loop: bfloat16 rounding neighbours in the memory (_onnx_parity)
ONNX_OBJECTS_ATOL = 1e-3  # two objects, forward and reverse, free-running: measured 2.5e-4 at 128 px
FRAMES = DATA / "videos" / "bedroom"
# What the scenario calls (exporting only these keeps the default test short; the slow test exports everything).
USED = (
    "image_encoder",
    "image_decode_multi",
    "image_decode_single",
    "frame_features",
    "prompt_first_one",
    "prompt_tracked_one",
    "encode_prompt_memory",
    "propagate_4",
)

RUNTIME = textwrap.dedent(
    """
    import sys
    import numpy as np
    from sam2_jax.export import runtime as exported
    from tests import exported_scenario as scenario

    folder, frames, out = sys.argv[1:4]
    video = np.load(frames)
    model = exported.ExportedModel(folder, model="sam2.1_hiera_t")
    res = scenario.image_calls(exported.ExportedImagePredictor(model), video["raw"][0])
    pred = exported.ExportedVideoPredictor(model)
    state = pred.init_state(video["frames"], video["raw"].shape[1:3])

    def stored(s, t):
        o = s.cond[0].get(t) or s.non_cond[0][t]
        return o["pred_masks"], o["object_score_logits"], o["obj_ptr"], o["maskmem"]

    res |= scenario.video_calls(pred, state, stored)
    bad = sorted(m for m in sys.modules if m.split(".")[0] == "flax" or m.startswith("sam2_jax.modeling"))
    assert not bad, f"the runtime imported {bad[:5]}"
    np.savez(out, **res)
    """
)


@functools.lru_cache(maxsize=2)
def _model(image_size: int, dtype: str = "float32"):
    from sam2_jax.build_sam import DTYPES, SAM2Model
    from sam2_jax.checkpoints import random_params
    from sam2_jax.modeling.sam2_model import make_module

    cfg = get_config(NAME)
    cfg.model.image_size = image_size
    # The exported propagation attends to every memory slot (its conditioning-slot count is symbolic, so the slot
    # buckets of ``memory.condition_on_memory`` cannot apply): the live predictors run the same programs.
    cfg.model.compact_memory = "off"
    module = make_module(cfg.model, DTYPES[dtype])
    return SAM2Model(module, jax.tree.map(jnp.asarray, random_params(cfg, module, 0)), cfg)


def _video() -> np.ndarray:
    from PIL import Image

    if not FRAMES.is_dir():
        pytest.skip(f"the bedroom frames are not at {FRAMES} (set SAM2_JAX_SHARED)")
    files = sorted(FRAMES.glob("*.jpg"))[:NUM_FRAMES]
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


@functools.lru_cache(maxsize=3)
def _live(image_size: int, dtype: str = "float32") -> dict[str, np.ndarray]:
    """The scenario on the live predictors (cached: the StableHLO and the ONNX tests compare against the same run)."""
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    model, video = _model(image_size, dtype), _video()
    res = scenario.image_calls(SAM2ImagePredictor(model), video[0])
    pred = SAM2VideoPredictor(model)

    def stored(s, t):
        o = s.store.get(0, t)
        return o.pred_masks, o.object_score_logits, o.obj_ptr, o.maskmem_features

    return res | scenario.video_calls(pred, pred.init_state(video), stored)


def _check_parity(image_size: int, tmp_path, only=None, dtype: str = "float32") -> None:
    from sam2_jax.export.stablehlo import export_model
    from sam2_jax.video.video_io import preprocess_frame

    video = _video()
    model = _model(image_size, dtype)
    export_model(model, tmp_path / "export", platforms=("cpu",), only=only)
    frames = np.stack([preprocess_frame(f, image_size) for f in video])
    np.savez(tmp_path / "frames.npz", raw=video, frames=frames)
    args = [sys.executable, "-c", RUNTIME, str(tmp_path / "export"), str(tmp_path / "frames.npz")]
    # the runtime shares the tests' persistent compilation cache (JAX reads the variable)
    env = os.environ | {"JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or ""}
    proc = subprocess.Popen([*args, str(tmp_path / "out.npz")], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    live = _live(image_size, dtype)  # meanwhile, on the other core
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    with np.load(tmp_path / "out.npz") as z:
        ours = {k: z[k] for k in z.files}
    assert sorted(ours) == sorted(live)
    assert np.abs(live["first_score_5"]).max() < 1e3 and np.ptp(live["first_low_res_5"]) > 1, "degenerate outputs"
    worst = max(float(np.abs(np.asarray(ours[k], np.float32) - np.asarray(live[k], np.float32)).max()) for k in live)
    print(
        f"\nexported runtime vs live, {image_size} px, {dtype}: max abs difference {worst:.2e} over {len(live)} arrays"
    )
    for k in live:
        measured.max_abs("exported vs live", np.asarray(ours[k], np.float32), np.asarray(live[k], np.float32), ATOL)


def test_exported_runtime_matches_live_predictors(tmp_path):
    _check_parity(128, tmp_path, only=USED)


@pytest.mark.slow
def test_exported_runtime_matches_live_predictors_1024(tmp_path):
    _check_parity(1024, tmp_path)


def test_exported_bfloat16_runtime_matches_live_predictors(tmp_path):
    """The bfloat16 export against the live bfloat16 predictors: the same scenario and bar as float32 (the exported
    functions are the live predictors' programs, so bfloat16 rounding happens at the same places)."""
    _check_parity(128, tmp_path, only=USED, dtype="bfloat16")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    from sam2_jax import cli

    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_export_cli_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    (tmp_path / "other").mkdir()
    other = {"format": "sam2-jax-export", "model": "sam2.1_hiera_l"}
    (tmp_path / "other" / "manifest.json").write_text(json.dumps(other))
    cases = {
        ("--platforms", "cpu,gpu", "--random-weights"): "unknown platform(s) ['gpu']",
        ("--random-weights", "--out", str(tmp_path / "photos")): "is a non-empty folder that is not an export",
        ("--check", str(tmp_path / "photos")): "is not a sam2-jax export",
        ("--check", str(tmp_path / "other"), "--model", "sam2.1_hiera_t"): "an export of 'sam2.1_hiera_l'",
        ("--format", "onnx", "--random-weights", "--dtype", "bfloat16"): "--format onnx exports float32 graphs",
        ("--format", "onnx", "--random-weights", "--objects", "0,2"): "--objects takes positive object counts",
        ("--format", "tflite"): "invalid choice: 'tflite'",
    }
    for argv, msg in cases.items():
        rc, _, err = _cli(capsys, "export", *argv)
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_export_cli_writes_a_bfloat16_export_the_runtime_runs(tmp_path, capsys):
    from sam2_jax.export.runtime import ExportedModel
    from sam2_jax.tracker import compiled

    out = tmp_path / "export"
    argv = ("--random-weights", "--image-size", "128", "--platforms", "cpu", "--dtype", "bfloat16")
    rc, stdout, err = _cli(capsys, "export", *argv, "--only", "frame_features", "--out", str(out), "--quiet")
    assert rc == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["platforms"] == ["cpu"] and manifest["image_size"] == 128 and manifest["source"]["random_weights"]
    assert manifest["dtype"] == "bfloat16" and manifest["params_dtype"] == ["float32"]
    assert list(manifest["functions"]) == ["frame_features"]
    assert manifest["functions"]["frame_features"]["inputs"]["images"][0]["shape"] == ["b", "128", "128", "3"]
    rc, stdout, err = _cli(capsys, "export", "--check", str(out), "--model", "sam2.1_hiera_t")
    assert rc == 0 and "sam2.1_hiera_t at 128 px, bfloat16" in stdout, err

    # the same numbers as the live model (the CLI's --random-weights are random_params(seed 0), as _model's)
    model = _model(128, "bfloat16")
    image = np.random.default_rng(0).normal(size=(2, 128, 128, 3)).astype(np.float32)  # batch 2: b is symbolic
    ours = ExportedModel(out)("frame_features", image)
    live = compiled.jit_frame_features(model.module, model.params, image)
    names = ("vision_feat", "vision_pos", "high_res_0", "high_res_1")
    for name, x in zip(names, (live.vision_feat, live.vision_pos, *live.high_res), strict=True):
        np.testing.assert_array_equal(np.asarray(ours[name], np.float32), np.asarray(x, np.float32), err_msg=name)


def _require_onnx() -> None:
    """Skip when jax2onnx or onnxruntime is not installed (``pip install 'sam2-jax[onnx]'``). Found but broken fails:
    the conversion subprocess or the import of onnxruntime raises. jax2onnx is not imported here (see
    ``_onnx_parity``)."""
    import importlib.util

    for name in ("jax2onnx", "onnxruntime"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (pip install 'sam2-jax[onnx]' installs the pinned ONNX tools)")


@functools.lru_cache(maxsize=2)
def _live_objects(image_size: int) -> dict[str, np.ndarray]:
    """``scenario.objects_calls`` (two objects, a click and a box, forward then reverse) on the live predictor."""
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    pred, video = SAM2VideoPredictor(_model(image_size)), _video()

    def stored(s, o, t):
        x = s.store.get(o, t)
        return x.pred_masks, x.object_score_logits, x.obj_ptr

    return scenario.objects_calls(pred, pred.init_state(video), stored)


def _logit_diff(ours: np.ndarray, live: np.ndarray) -> tuple[float, int]:
    """(max abs difference of two logit maps, pixels left out). Hole filling (``fill_hole_area``) raises a background
    component (logits <= 0) to 0.1: a logit at float32 noise from 0 is filled on one side only (measured at 1024 px:
    0.1 against 3.7e-6, one pixel). Such pixels are counted, not compared."""
    ours, live = np.asarray(ours, np.float32), np.asarray(live, np.float32)
    assert ours.shape == live.shape, (ours.shape, live.shape)
    fill = np.float32(0.1)
    flips = ((ours == fill) & (np.abs(live) < 1e-3)) | ((live == fill) & (np.abs(ours) < 1e-3))
    return float(np.abs(ours - live)[~flips].max()), int(flips.sum())


def _onnx_parity(image_size: int, tmp_path) -> None:
    """The ONNX graphs, written by ``sam2-jax export --format onnx``, in ``OnnxVideoPredictor`` (the StableHLO
    runtime's bookkeeping on onnxruntime) against the live predictor.

    - one object, the StableHLO test's scenario (a click on frame 0, 12 frames forward, a correction on frame 6,
      re-propagation), free-running: every frame's memory is the graphs' own. ONNX Runtime sums in another order
      than XLA (1e-5 on a step's logits); the memory is stored rounded to bfloat16 (as the official predictor stores
      it), so a few memory elements a frame round to the neighbouring bfloat16 value (one bfloat16 step: up to 3e-2;
      0.1 to 0.7% of the 4096 at 128 px) and the next frames carry that: 1.2e-4 on logits at 128 px, above the
      issue's 1e-4. The bar is 3e-4.
    - each step alone: the state built from the live predictor's stored outputs (the second propagation: prompted
      frames 0 and 6), one frame tracked by the graphs: within the issue's 1e-4.
    - two objects (a click on frame 0, a box on frame 2) forward from frame 0, then reverse from the last frame,
      free-running, through the 2-object tracking graph.
    """
    _require_onnx()
    from sam2_jax.export.onnx_runtime import OnnxVideoPredictor
    from sam2_jax.video.video_io import preprocess_frame

    video = _video()
    # jax2onnx patches jax.numpy while it converts (export_onnx then clears JAX's caches): the CLI runs in a
    # subprocess, so the tests after this one never see it, while this process runs (or finds cached) the live
    # predictor. Its --random-weights are random_params(seed 0), as _model's.
    env = os.environ | {"JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or ""}
    out = tmp_path / "onnx"
    argv = ["--format", "onnx", "--random-weights", "--image-size", str(image_size), "--objects", "1,2"]
    args = [sys.executable, "-m", "sam2_jax.cli", "export", *argv, "--out", str(out), "--quiet"]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    live, live_objects = _live(image_size), _live_objects(image_size)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    frames = np.stack([preprocess_frame(f, image_size) for f in video])
    pred = OnnxVideoPredictor(out)

    # one object, free-running
    def stored(s, t):
        x = s.output(0, t)
        return x["pred_masks"], x["object_score_logits"], x["obj_ptr"], x["maskmem"]

    ours = scenario.video_calls(pred, pred.init_state(frames, video.shape[1:3]), stored)
    assert sorted(ours) == sorted(k for k in live if not k.startswith(("click", "box"))), "scenario keys"
    free, flips = np.zeros(4), 0
    for k, x in ours.items():
        kind = k.split("_")[1] if k.startswith(("first", "second")) else "low"
        if kind == "maskmem":
            free[3] = max(free[3], (np.asarray(x, np.float32) != live[k]).mean())
            continue
        if kind in ("low", "video", "res"):
            d, f = _logit_diff(x, live[k])
            flips += f
            free[0] = max(free[0], d)
        else:
            free[("score", "ptr").index(kind) + 1] = max(
                free[("score", "ptr").index(kind) + 1], np.abs(x - live[k]).max()
            )
    assert np.ptp(live["first_low_res_5"]) > 1, "degenerate outputs"

    # each step alone, from the live predictor's stored outputs
    C, T = scenario.CORRECTION_FRAME, len(video)
    s = pred.init_state(frames, video.shape[1:3])
    o = s.obj_idx(1)
    for t in range(T):
        entry = {
            "pred_masks": live[f"second_low_res_{t}"],
            "object_score_logits": live[f"second_score_{t}"],
            "obj_ptr": live[f"second_ptr_{t}"],
            "maskmem": live[f"second_maskmem_{t}"],
        }
        (s.cond if t in (0, C) else s.non_cond)[o][t] = entry
    step = np.zeros(4)
    for t in range(1, T):
        if t == C:
            continue
        live_t = s.non_cond[o][t]
        list(pred.propagate_in_video(s, start_frame_idx=t, max_frame_num_to_track=0))
        x = s.non_cond[o][t]
        d, f = _logit_diff(x["pred_masks"], live_t["pred_masks"])
        flips += f
        step[0] = max(step[0], d)
        step[1] = max(step[1], np.abs(x["object_score_logits"] - live_t["object_score_logits"]).max())
        step[2] = max(step[2], np.abs(x["obj_ptr"] - live_t["obj_ptr"]).max())
        m, rm = x["maskmem"], live_t["maskmem"]
        # an element differs from the live one by one bfloat16 rounding step (<= 2^-7 relative) or, near zero, by
        # float32 noise
        assert np.all(np.abs(m - rm) <= np.maximum(np.abs(rm) * 2.0**-7, 1e-4)), t
        step[3] = max(step[3], (m != rm).mean())
        s.non_cond[o][t] = live_t

    # two objects, a box, forward then reverse
    def stored_objects(s, i, t):
        x = s.output(i, t)
        return x["pred_masks"], x["object_score_logits"], x["obj_ptr"]

    ours = scenario.objects_calls(pred, pred.init_state(frames, video.shape[1:3]), stored_objects)
    assert sorted(ours) == sorted(live_objects)
    objs = np.zeros(3)
    for k, x in ours.items():
        kind = k.split("_")[1] if k.startswith(("forward", "reverse")) else "low"
        if kind in ("low", "video"):
            d, f = _logit_diff(x, live_objects[k])
            flips += f
            objs[0] = max(objs[0], d)
        else:
            i = ("score", "ptr").index(kind) + 1
            objs[i] = max(objs[i], np.abs(x - live_objects[k]).max())
    print(
        f"\nONNX vs live, {image_size} px, {T} frames: free loop logits {free[0]:.2e}, scores {free[1]:.2e}, "
        f"pointers {free[2]:.2e}, memory elements on another bfloat16 value {free[3]:.2%}; each step alone: logits "
        f"{step[0]:.2e}, scores {step[1]:.2e}, pointers {step[2]:.2e}, memory {step[3]:.2%}; two objects forward and "
        f"reverse: logits {objs[0]:.2e}, scores {objs[1]:.2e}, pointers {objs[2]:.2e}; hole-filling flips {flips}"
    )
    assert flips <= 2, flips  # measured 0 at 128 px; at 1024 px 1
    # logits (O(10)) at the bar; object scores and pointers (O(1)) within 10x of what was measured
    for i, what in enumerate(("logits", "object scores", "pointers")):
        measured.check(f"ONNX step {what}", step[i], (ONNX_STEP_ATOL, 5e-6, 1e-5)[i])
        measured.check(f"ONNX free loop {what}", free[i], (ONNX_ATOL, 6.5e-5, 2.5e-4)[i])
        measured.check(f"ONNX two objects {what}", objs[i], (ONNX_OBJECTS_ATOL, 6.5e-5, 2.5e-4)[i])
    measured.check("ONNX step memory on another bfloat16", step[3], 1e-2)  # at most 0.22% at 128 px
    assert "jax2onnx" not in sys.modules, "jax2onnx ran in the test process (the tests after this one would see it)"

    # past the limits the graphs were written with, the runtime names the export option to raise
    s = pred.init_state(frames, video.shape[1:3])
    for obj in (1, 2, 3):
        pred.add_new_points_or_box(s, 0, obj, points=scenario.CLICK, labels=np.array([1], np.int32))
    with pytest.raises(ValueError, match=r"3 objects: this ONNX export tracks at most 2 \(.*--objects"):
        list(pred.propagate_in_video(s))
    nine = np.tile(scenario.CLICK, (9, 1))
    with pytest.raises(ValueError, match=r"9 points .* at most 8 \(.*--num-points"):
        pred.add_new_points_or_box(s, 1, 1, points=nine, labels=np.ones(9, np.int32))
    for t in (3, 5):
        pred.add_new_points_or_box(s, t, 1, points=scenario.CLICK, labels=np.array([1], np.int32))
    with pytest.raises(ValueError, match=r"3 prompted frames for one object: .* 2 conditioning slots \(.*--cond-slots"):
        list(pred.propagate_in_video(s))

    # the CLI's check of the folder: the shipped sample, two objects, forward and reverse
    from sam2_jax import cli

    assert cli.main(["export", "--check", str(out), "--check-frames", str(REPO / "examples" / "bedroom")]) == 0


def test_onnx_runtime_tracks_like_the_live_predictor(tmp_path):
    _onnx_parity(128, tmp_path)


@pytest.mark.slow
def test_onnx_runtime_tracks_like_the_live_predictor_1024(tmp_path):
    _onnx_parity(1024, tmp_path)


def test_onnx_runtime_loads_no_jax():
    """``sam2_jax.export.onnx_runtime`` (and the video driver it runs) imports neither JAX nor Flax, and its absent
    click label is the model's."""
    from sam2_jax.export import onnx_runtime
    from sam2_jax.modeling.sam.prompt_encoder import ABSENT_LABEL

    assert onnx_runtime.ABSENT_LABEL == ABSENT_LABEL
    code = (
        "import sys, sam2_jax.export.onnx_runtime\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax'))\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
