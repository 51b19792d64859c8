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

EXPORT_ONNX = textwrap.dedent(
    """
    import sys
    from sam2_jax.export.onnx_export import export_onnx
    from tests.test_exported import _model

    export_onnx(_model(int(sys.argv[1])), sys.argv[2])
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
    """Skip when jax2onnx or onnxruntime is not installed (``scripts/install_onnx.sh``). Found but broken fails: the
    conversion subprocess or the import of onnxruntime raises. jax2onnx is not imported here (see ``_onnx_parity``)."""
    import importlib.util

    for name in ("jax2onnx", "onnxruntime"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (scripts/install_onnx.sh .venv installs the pinned ONNX tools)")


def _onnx_parity(image_size: int, tmp_path) -> None:
    """jax2onnx graphs (encoder, prompt steps, tracking step) in the numpy + onnxruntime loop, on the scenario of the
    StableHLO test (a click on frame 0, 12 frames forward, a correction on frame 6, re-propagation), against the live
    predictor's stored logits, object scores, pointers and memories after each propagation (``_live``'s run).

    Two runs of the loop:
    - free: every frame's memory is the graphs' own. ONNX Runtime sums in another order than XLA (1e-5 on a
      step's logits); the memory is stored rounded to bfloat16 (as the official predictor stores it), so a few
      memory elements a frame round to the neighbouring bfloat16 value (one bfloat16 step: up to 3e-2; 0.1 to 0.7%
      of the 4096 at 128 px) and the next frames carry that: 1.1e-4 on logits from frame 5 on at 128 px, above the
      issue's 1e-4. The bar is 3e-4.
    - forced: the live predictor's memories are stored in place of the graphs' (the ``memory`` / ``memories``
      arguments of ``OnnxTracker``), so each frame measures the graphs alone: within the issue's 1e-4 at every
      frame (1.5e-5 measured), and each frame's memory equals the live one but for bfloat16 rounding neighbours.
    """
    _require_onnx()
    from sam2_jax.export.onnx_runtime import OnnxTracker
    from sam2_jax.video.video_io import preprocess_frame

    video = _video()
    # jax2onnx patches jax.numpy while it converts (export_onnx then clears JAX's caches): it runs in a subprocess,
    # so the tests after this one never see it, while this process runs (or finds cached) the live predictor
    env = os.environ | {"JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or ""}
    args = [sys.executable, "-c", EXPORT_ONNX, str(image_size), str(tmp_path)]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    live = _live(image_size)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    H, W = video.shape[1:3]
    to_model = lambda xy: (xy / np.array([W, H], np.float32) * image_size)[None]
    frames = np.stack([preprocess_frame(f, image_size) for f in video])
    tracker = OnnxTracker(tmp_path)
    C = scenario.CORRECTION_FRAME
    worst = {}
    for run in ("free", "forced"):
        # per propagation, the memories stored in place of the graphs' (the prompted frames' too)
        given = {rnd: {t: live[f"{rnd}_maskmem_{t}"] for t in range(NUM_FRAMES)} for rnd in ("first", "second")}
        given = given if run == "forced" else {"first": {}, "second": {}}
        v = tracker.init_state(frames)
        tracker.add_points(v, 0, to_model(scenario.CLICK), np.array([[1]], np.int32), given["first"].get(0))
        ours = {"first": tracker.propagate(v, given["first"])}
        tracker.add_points(v, C, to_model(scenario.CORRECTION), np.array([[0]], np.int32), given["second"].get(C))
        ours["second"] = tracker.propagate(v, given["second"])
        errs, fill_flips = [], []
        for rnd, outs in ours.items():
            assert sorted(outs) == list(range(NUM_FRAMES)), (run, rnd)
            for t, out in outs.items():
                ref = {k: live[f"{rnd}_{k}_{t}"] for k in ("low_res", "score", "ptr", "maskmem")}
                # the object is on every frame before the correction (after the negative click some frames are
                # empty: -1024 everywhere, which the ONNX loop must match too)
                assert rnd == "second" or np.ptp(ref["low_res"]) > 1, "degenerate outputs"
                m, rm = out["graph_maskmem"], ref["maskmem"]
                if run == "forced":
                    # an element differs from the live one by one bfloat16 rounding step (<= 2^-7 relative: up to
                    # 3e-2 here) or, near zero, by float32 noise
                    assert np.all(np.abs(m - rm) <= np.maximum(np.abs(rm) * 2.0**-7, 1e-4)), (rnd, t)
                # Hole filling (fill_hole_area) raises a background component (logits <= 0) to 0.1: a logit at
                # float32 noise from 0 is filled on one side only (measured at 1024 px: 0.1 against 3.7e-6, one
                # pixel). Such pixels are counted, not compared; the state (scores, pointers, memories) is unaffected.
                lo, rl = out["pred_masks"], ref["low_res"]
                filled = ((lo == np.float32(0.1)) & (np.abs(rl) < 1e-3)) | (
                    (rl == np.float32(0.1)) & (np.abs(lo) < 1e-3)
                )
                fill_flips.append(filled.sum())
                errs.append(
                    (
                        np.abs(lo - rl)[~filled].max(),
                        np.abs(out["object_score_logits"] - ref["score"]).max(),
                        np.abs(out["obj_ptr"] - ref["ptr"]).max(),
                        (m != rm).mean(),
                    )
                )
        worst[run] = np.max(errs, axis=0)
        print(
            f"\nONNX {run} loop vs live, {image_size} px, {NUM_FRAMES} frames, 2 propagations: logits max abs "
            f"{worst[run][0]:.2e}, object scores {worst[run][1]:.2e}, pointers {worst[run][2]:.2e}, memory elements "
            f"on another bfloat16 value {worst[run][3]:.2%}, hole-filling flips {sum(fill_flips)} pixels"
        )
        assert sum(fill_flips) <= 2, (run, fill_flips)  # measured 0 at 128 px; at 1024 px 1 (free run), 0 (forced)
    # logits (O(10)) at the bar; object scores and pointers (O(1)) within 10x of what was measured
    for i, what in enumerate(("logits", "object scores", "pointers")):
        measured.check(f"ONNX step {what}", worst["forced"][i], (ONNX_STEP_ATOL, 5e-6, 1e-5)[i])
        measured.check(f"ONNX free loop {what}", worst["free"][i], (ONNX_ATOL, 6.5e-5, 2.5e-4)[i])
    measured.check("ONNX step memory on another bfloat16", worst["forced"][3], 1e-2)  # at most 0.22% at 128 px
    assert "jax2onnx" not in sys.modules, "jax2onnx ran in the test process (the tests after this one would see it)"


def test_onnx_runtime_tracks_like_the_live_predictor(tmp_path):
    _onnx_parity(128, tmp_path)


@pytest.mark.slow
def test_onnx_runtime_tracks_like_the_live_predictor_1024(tmp_path):
    _onnx_parity(1024, tmp_path)
