"""A runtime that is not JAX reads our StableHLO: IREE compiles the exported image encoder and one tracking step for
``llvm-cpu`` and runs them; their outputs equal the JAX runtime's (``sam2_jax.export.runtime``) on the same inputs.

The export is ``export_model(..., static_dims=...)``: IREE's StableHLO input takes no symbolic shapes. The
tracking step is exported with ``fill_hole_area=0``: the hole filling's nested while loop does not compile with
IREE 3.13 (``sam2_jax/export/iree_runtime.py`` says which op and why). Random tiny weights at 128 px.
"""

import time

import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.cli.common import random_model
from sam2_jax.export.stablehlo import export_model

pytest.importorskip("iree.compiler", reason="IREE (iree-base-compiler, iree-base-runtime) is in the test extra")
pytest.importorskip("iree.runtime", reason="IREE (iree-base-compiler, iree-base-runtime) is in the test extra")

S = 128
BOUND = 1e-4  # max |IREE - JAX| over every output, at outputs of order 1-10 (measured: see the test's print)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("iree_export")
    model = random_model("sam2.1_hiera_t", S, None, 0)
    export_model(
        model,
        out,
        platforms=("cpu",),
        fill_hole_area=0,
        only=["image_encoder", "frame_features", "prompt_first_one", "encode_prompt_memory", "propagate_1"],
        static_dims={"b": 1, "n": 1, "o": 2, "k": 1},
    )
    return str(out)


def _timed(fn, *args):
    fn(*args)  # the first call pays the compile (JAX) or the module load (IREE)
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def test_iree_runs_the_exported_image_encoder_as_jax_does(folder):
    import jax

    from sam2_jax.export.iree_runtime import IreeFunction
    from sam2_jax.export.runtime import ExportedModel

    images = np.random.default_rng(0).uniform(-2, 2, (1, S, S, 3)).astype(np.float32)
    exported = ExportedModel(folder)
    want, jax_s = _timed(lambda x: jax.block_until_ready(exported("image_encoder", x)), images)
    t0 = time.perf_counter()
    iree_fn = IreeFunction(folder, "image_encoder")
    compile_s = time.perf_counter() - t0
    got, iree_s = _timed(iree_fn, images)
    want = [np.asarray(x) for x in jax.tree.leaves(want)]
    assert [g.shape for g in got] == [w.shape for w in want]
    err = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
    scale = max(float(np.abs(w).max()) for w in want)
    print(
        f"image encoder: IREE vs JAX max |diff| {err:.2e} (outputs up to {scale:.1f}); IREE compile {compile_s:.1f}s,"
    )
    print(f"  steady call: IREE {iree_s * 1e3:.1f} ms, JAX runtime {jax_s * 1e3:.1f} ms")
    assert err < BOUND


def test_iree_runs_two_tracking_steps_as_jax_does(folder):
    """Two objects clicked on frame 0 with the JAX runtime's video predictor (``ExportedVideoPredictor``), then
    frames 1 and 2 through the exported single-frame step by both runtimes, the state carried from the first step
    to the second (so the second attends to frame 1's memory too); the masks and pointers finite, every output of
    both steps within the bound."""
    import jax

    from sam2_jax.export.iree_runtime import IreeFunction
    from sam2_jax.export.runtime import ExportedModel, ExportedVideoPredictor

    exported = ExportedModel(folder)
    frames = np.random.default_rng(1).integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    predictor = ExportedVideoPredictor(exported, chunk_size=1)
    video = predictor.init_state(frames)
    predictor.add_new_points_or_box(video, 0, 1, points=[[40.0, 40.0]], labels=[1])
    predictor.add_new_points_or_box(video, 0, 2, points=[[90.0, 80.0]], labels=[1])
    predictor.propagate_in_video_preflight(video)
    state = predictor.tracker_state(video, [0, 1], 1, False)
    assert state["cond_frame"].shape == (2, 1) and (state["cond_frame"] == 0).all()
    iree_fn = IreeFunction(folder, "propagate_1")
    worst, worst_bf16, excess = 0.0, 0.0, 0.0
    for t in range(2):
        args = (state, video.images[t + 1][None], np.array([t + 1], np.int32), np.bool_(False))
        want = exported("propagate_1", *args)
        got = iree_fn(*args)
        flat = [np.asarray(x) for x in jax.tree.leaves(want)]
        assert len(got) == len(flat)
        for g, w in zip(got, flat, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype
            # NaN marks what the sam2 policy leaves unset (best_iou, kf_score): NaN in both, at the same places
            np.testing.assert_array_equal(np.isnan(g.astype(np.float64)), np.isnan(w.astype(np.float64)))
            diff = np.nan_to_num(np.abs(g.astype(np.float64) - w.astype(np.float64)))
            if w.dtype == jnp.bfloat16:
                # the stored memories: float32 values ~1e-5 apart, each rounded once to bfloat16 (relative step
                # 2^-8 to 2^-7), so a value near a rounding boundary lands one step away
                worst_bf16 = max(worst_bf16, float(diff.max()))
                excess = max(excess, float((diff - 2.0**-7 * np.abs(w.astype(np.float64))).max()))
            else:
                worst = max(worst, float(diff.max()))
        assert np.isfinite(np.asarray(want[1]["pred_masks"])).all()
        assert np.isfinite(np.asarray(want[1]["obj_ptr"])).all()
        state = jax.tree.map(np.asarray, want[0])  # the JAX runtime's new state feeds both next
    print(f"tracking step, 2 frames: IREE vs JAX max |diff| {worst:.2e} (float32 outputs), {worst_bf16:.2e}")
    print(f"  (bfloat16 memories; beyond one bfloat16 rounding step: {max(excess, 0.0):.2e})")
    assert worst < BOUND
    assert excess < BOUND


def test_the_export_command_writes_the_static_stablehlo(tmp_path):
    import json

    from sam2_jax.cli import main

    out = tmp_path / "e"
    args = ["export", "--random-weights", "--image-size", "128", "--platforms", "cpu", "--only", "image_encoder"]
    assert main([*args, "--static-dims", "b=2", "--out", str(out), "--quiet"]) == 0
    entry = json.loads((out / "manifest.json").read_text())["functions"]["image_encoder"]
    assert entry["stablehlo_static"]["dims"] == {"b": 2}
    assert (out / entry["stablehlo_static"]["file"]).stat().st_size > 0
    # the encoder keeps the images (the last flat argument) and only the params it reads (not the decoder's)
    n_params = len(json.loads((out / "manifest.json").read_text())["params_order"])
    kept = entry["stablehlo_static"]["kept_arguments"]
    assert kept[-1] == n_params and len(kept) < n_params
    assert main([*args, "--static-dims", "b=0", "--out", str(tmp_path / "x")]) == 2
