"""End to end: a small synthetic dataset written in every format, read back (folders in place and tfds builders),
evaluated with a random-weight tiny model (image_size 256): the same numbers from every format; eval.py's CLI on
the same data; its predicted PNGs scored without the model give the run's numbers; (slow) four forced host devices
running videos at the same time give the one-device outputs."""

import csv
import dataclasses
import functools
import os

import numpy as np
import pytest

from sam2_jax.datasets import vos, writers
from sam2_jax.datasets.synthetic import SyntheticVideoDataset
from sam2_jax.evaluation import run as run_lib
from sam2_jax.evaluation import vos_eval

STRIDE = 4  # SA-V train's fixed annotation stride; the other formats are written with the same
LOGIT_TOL = 1e-3  # mask logits of the tiny model after a few tracked frames, another per-device batch size


@functools.lru_cache(maxsize=1)
def _predictor():
    from sam2_jax.build_sam import build_sam2
    from sam2_jax.configs import get_config
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    cfg = get_config("sam2.1_hiera_t")
    cfg.model.image_size = 256
    return SAM2VideoPredictor(build_sam2(cfg, None, seed=3))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    videos = list(SyntheticVideoDataset(num_videos=2, seed=21, num_frames=9, height=48, width=64, num_objects=2))
    writers.write_davis(videos, str(root / "davis"), annotation_stride=STRIDE)
    writers.write_sav(videos, str(root / "sav"), annotation_stride=STRIDE)
    rt = [
        type(v)(frames=writers.jpeg_roundtrip(v.frames), masks=v.masks, object_ids=v.object_ids, video_id=v.video_id)
        for v in videos
    ]
    writers.write_sav_train(rt, str(root / "sav_train"))
    arrays = [vos.vos_video_from_arrays(v.video_id, v.frames, v.masks, v.object_ids, STRIDE) for v in rt]
    return root, arrays


def _values(result):
    return [(s.video, s.object_id, s.frames, s.j.tolist(), s.f.tolist()) for s in result.scores]


def _every_format(root, arrays, tmp_path) -> dict[str, list]:
    """The videos of every format and reader, and the in-memory arrays they were written from."""
    out = {}
    for name in ("davis", "sav", "sav_train"):
        for reader in ("folder", "tfds"):
            cfg = run_lib.RunConfig(
                dataset_format=name, data_root=str(root / name), reader=reader, tfds_dir=str(tmp_path)
            )
            out[f"{name}/{reader}"] = list(run_lib.dataset_videos(cfg))
    return out | {"arrays": arrays}


def test_every_format_reads_the_same_videos(data, tmp_path):
    """Every format and reader gives the same frames (decoded), masks, ids and annotated frames as the arrays the
    dataset was written from, and the evaluation scores them (the run over every format: the slow test below)."""
    from sam2_jax.video.video_io import VideoSource

    root, arrays = data
    sets = _every_format(root, arrays, tmp_path)
    ref = sets["arrays"]
    for name, videos in sets.items():
        assert [v.video_id for v in videos] == [v.video_id for v in ref], name
        for v, r in zip(videos, ref, strict=True):
            assert (v.frame_names, v.height, v.width) == (r.frame_names, r.height, r.width), name
            for field in ("object_ids", "mask_frames", "annotated", "packed_masks"):
                np.testing.assert_array_equal(getattr(v, field), getattr(r, field), err_msg=f"{name} {field}")
            a, b = VideoSource(v.frames, 64), VideoSource(r.frames, 64)
            for t in range(r.num_frames):
                np.testing.assert_array_equal(a.original_frame(t), b.original_frame(t), err_msg=f"{name} frame {t}")
    res = vos_eval.evaluate_vos(_predictor(), ref, vos_eval.VOSEvalConfig(output_layout="davis"), progress=False)
    assert res.skipped == [] and res.summary["num_objects"] >= 3 and res.num_frames == 18
    assert any(s.j.max() > 0 for s in res.scores) and res.summary["J"] < 1


# slow: seven evaluations (about 45 s on 2 cores); the default run checks that every format reads the same videos.
@pytest.mark.slow
def test_same_numbers_from_every_format(data, tmp_path):
    root, arrays = data
    pred = _predictor()
    cfg = vos_eval.VOSEvalConfig(output_layout="davis")
    results = {
        k: vos_eval.evaluate_vos(pred, v, cfg, progress=False) for k, v in _every_format(root, arrays, tmp_path).items()
    }
    ref = results["davis/folder"]
    assert ref.skipped == [] and ref.summary["num_objects"] >= 3 and ref.num_frames == 18
    for name, r in results.items():
        assert r.skipped == [], name
        assert _values(r) == _values(ref), name
        assert r.summary == ref.summary, name
    # The random-weight model's masks are not all empty (the comparison is not between empty predictions).
    assert any(s.j.max() > 0 for s in ref.scores) and ref.summary["J"] < 1


def _late_starter_video():
    """A synthetic video whose three objects start on three different annotated frames (three segments)."""
    for seed in range(50):
        v = next(iter(SyntheticVideoDataset(1, seed=seed, num_frames=10, height=40, width=48, num_objects=3)))
        vv = vos.vos_video_from_arrays(f"late_{seed}", v.frames, v.masks, v.object_ids, annotation_stride=2)
        first = vv.first_annotated()
        if (first >= 0).all() and len(set(first.tolist())) == 3:
            return vv
    raise AssertionError("no synthetic video with three different start frames")


# slow: about 110 s on 2 cores. The default run keeps the batch's numbers (tests/test_tracker.py's
# test_batch_of_videos_equals_one_at_a_time) and eval's batching protocol (tests/evaluation/test_vos_eval.py).
@pytest.mark.slow
def test_videos_per_step_tracks_a_batch_as_one_at_a_time(data):
    """``videos_per_step``: videos of different sizes, lengths and object counts (one with objects starting on three
    different frames) tracked two at a time, slots refilled as videos and segments end, give the one-at-a-time
    masks (a pixel may flip where its logit rounds across the threshold) and scores."""
    _, arrays = data
    videos = [*arrays, _late_starter_video()]
    pred = _predictor()
    cfg = vos_eval.VOSEvalConfig(output_layout="davis")
    alone = [vos_eval.track_video(pred, v, cfg) for v in videos]
    together = vos_eval.track_videos(pred, videos, dataclasses.replace(cfg, videos_per_step=2))  # slots refilled
    for (m1, n1), (m2, n2) in zip(alone, together, strict=True):
        assert n1 == n2 and m1.shape == m2.shape
        assert (m1 != m2).mean() <= 1e-3
    assert any(m.any() for m, _ in alone)
    for v, a, b in zip(videos, alone, together, strict=True):
        (s1, bad1, n1), (s2, bad2, n2) = vos_eval.score_tracked(v, a, cfg), vos_eval.score_tracked(v, b, cfg)
        assert bad1 is bad2 is None and n1 == n2 and len(s1) == len(s2)
        for x, y in zip(s1, s2, strict=True):
            assert (x.video, x.object_id, x.frames) == (y.video, y.object_id, y.frames)
            np.testing.assert_allclose(y.j, x.j, atol=2e-2)


def test_eval_cli_and_scoring_its_pngs(data, tmp_path):
    import eval as eval_cli

    root, _ = data
    out = tmp_path / "out"
    cfg = eval_cli.parse(
        [
            "--dataset_format",
            "sav",
            "--data_root",
            str(root / "sav"),
            "--image_size",
            "256",
            "--seed",
            "3",
            "--prompt",
            "click3",
            "--output_dir",
            str(out),
            "--progress",
            "false",
        ]
    )
    assert cfg.prompt == "click3" and cfg.progress is False and cfg.image_size == 256
    result = run_lib.run(cfg)
    assert result.skipped == [] and result.summary["num_objects"] >= 3
    with open(out / "summary.csv") as f:
        row = list(csv.DictReader(f))[0]
    assert float(row["J&F"]) == result.summary["J&F"] and row["prompt"] == "click3"
    assert os.path.getsize(out / "per_frame_jf.png") > 1000
    # SA-V layout predictions, scored by the folder scorer against the SA-V ground truth: the run's numbers.
    assert sorted(os.listdir(out / "pred" / "video_00000")) == ["001", "002"]
    again = run_lib.run(
        eval_cli.parse(
            [
                "--task",
                "score",
                "--gt_root",
                str(root / "sav" / "Annotations_6fps"),
                "--pred_root",
                str(out / "pred"),
                "--output_dir",
                str(tmp_path / "scored"),
                "--progress",
                "false",
            ]
        )
    )
    assert _values(again) == _values(result)
    np.testing.assert_equal(again.summary, result.summary)


_DEVICES_SCRIPT = r"""
import json, os, sys, threading, time
import jax
import numpy as np
from jax.sharding import PartitionSpec
from sam2_jax import sam2_video_predictor as P
from sam2_jax.evaluation import vos_eval
from sam2_jax.video.tracking import Tracking
from eval import parse
from sam2_jax.evaluation.run import run

runs, sharded, logits_of = {}, [], {}
_init, _track, _shard = P.SAM2VideoPredictor.init_state, vos_eval.track_video, Tracking.shard
_propagate = P.SAM2VideoPredictor.propagate_in_video

def init_state(self, *args, **kwargs):  # the devices the video's image features were computed on
    s = _init(self, *args, **kwargs)
    leaves = jax.tree.leaves(s["cached_features"])
    runs[threading.get_ident()]["features"] = sorted({d.id for x in leaves for d in x.devices()})
    return s

def track_video(predictor, video, cfg):  # which group ran the video, and when
    mesh = None if predictor.mesh is None else sorted(d.id for d in predictor.mesh.devices.flat)
    r = runs[threading.get_ident()] = {"mesh": mesh, "start": time.perf_counter(), "video": video.video_id}
    out = _track(predictor, video, cfg)
    r["end"] = time.perf_counter()
    runs[video.video_id] = runs.pop(threading.get_ident())
    return out

def shard(self, tstate):
    out = _shard(self, tstate)
    sharded.append(any(getattr(x.sharding, "spec", None) == PartitionSpec("obj") for x in jax.tree.leaves(out)))
    return out

def propagate_in_video(self, *args, **kwargs):  # the logits every predicted mask is thresholded from
    video = runs[threading.get_ident()]["video"]
    for t, obj_ids, logits in _propagate(self, *args, **kwargs):
        for j, obj_id in enumerate(obj_ids):
            logits_of[f"{video}|{t}|{obj_id}"] = np.asarray(logits[j, 0], np.float32)
        yield t, obj_ids, logits

P.SAM2VideoPredictor.init_state, vos_eval.track_video, Tracking.shard = init_state, track_video, shard
P.SAM2VideoPredictor.propagate_in_video = propagate_in_video
run(parse(sys.argv[1:]))
np.savez(os.environ["SAM2_JAX_TEST_LOGITS"], **logits_of)
print("RESULT", json.dumps({"devices": jax.device_count(), "runs": runs, "sharded": any(sharded)}))
"""


def _max_overlap(runs: dict) -> int:
    events = sorted([(r["start"], 1) for r in runs.values()] + [(r["end"], -1) for r in runs.values()])
    level = best = 0
    for _, d in events:
        level += d
        best = max(best, level)
    return best


@pytest.mark.slow
def test_eval_on_four_devices_gives_the_one_device_outputs(tmp_path):
    """eval.py with 4 (forced host) devices: 4 videos run at once, one per device (the default), or two at a time
    on groups of 2 devices with each video's 2 objects sharded over its group; the mask logits are the one-device
    run's within a tolerance, and the CSVs, PNGs and plot byte for byte unless a logit lies at the threshold (the
    sharded objects run in per-device batches of another size, which may round differently)."""
    import json
    import subprocess
    import sys

    from tests.compare import assert_masks_agree

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = {}
    for name, n, extra in (("d1", 1, ""), ("d4", 4, ""), ("d4g2", 4, " --devices_per_video 2")):
        out = tmp_path / name
        args = "--dataset_format synthetic --num_synthetic 4 --synthetic_frames 4 --synthetic_objects 2"
        args += f" --synthetic_size 64 --image_size 128 --progress false --output_dir {out}{extra}"
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        env["SAM2_JAX_TEST_LOGITS"] = str(tmp_path / f"{name}_logits.npz")
        proc = subprocess.run(
            [sys.executable, "-c", _DEVICES_SCRIPT, *args.split()],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
        outs[name] = (out, json.loads(line[len("RESULT ") :]))
    videos = [f"video_{i:05d}" for i in range(4)]
    one, four, pairs = (outs[k][1] for k in ("d1", "d4", "d4g2"))
    assert one["devices"] == 1 and not one["sharded"] and sorted(one["runs"]) == videos
    assert all(r["mesh"] is None and r["features"] == [0] for r in one["runs"].values())
    assert _max_overlap(one["runs"]) == 1
    # Default on 4 devices: one group per device, the 4 videos at the same time, each on its own device.
    assert four["devices"] == 4 and sorted(four["runs"]) == videos
    assert all(len(r["mesh"]) == 1 and r["features"] == r["mesh"] for r in four["runs"].values())
    assert sorted(r["mesh"][0] for r in four["runs"].values()) == [0, 1, 2, 3]
    assert _max_overlap(four["runs"]) == 4
    # Groups of 2: two videos at a time, each one's objects sharded over its group's 2 devices.
    assert pairs["sharded"] and sorted(pairs["runs"]) == videos
    assert {tuple(r["mesh"]) for r in pairs["runs"].values()} == {(0, 1), (2, 3)}
    assert all(r["features"] == r["mesh"] for r in pairs["runs"].values())  # replicated over the group
    assert _max_overlap(pairs["runs"]) == 2
    ref = outs["d1"][0]
    files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    assert len([p for p in files if p.suffix == ".png"]) > 10 and len([p for p in files if p.suffix == ".csv"]) == 5
    logits = {name: dict(np.load(tmp_path / f"{name}_logits.npz")) for name in outs}
    undecided = sum(int((np.abs(v) <= LOGIT_TOL).sum()) for v in logits["d1"].values())  # score_thresh 0
    for name in ("d4", "d4g2"):
        assert sorted(logits[name]) == sorted(logits["d1"]), name
        for k, v in logits["d1"].items():
            assert_masks_agree(v, logits[name][k], LOGIT_TOL, what=f"{name} {k}")
        worst = max(float(np.abs(v - logits[name][k]).max()) for k, v in logits["d1"].items())
        print(f"{name}: {len(logits[name])} logit maps, max difference {worst:.2e}, {undecided} pixels near 0")
        assert files == sorted(p.relative_to(outs[name][0]) for p in outs[name][0].rglob("*") if p.is_file()), name
        differ = [p for p in files if (ref / p).read_bytes() != (outs[name][0] / p).read_bytes()]
        # One video per device runs the one-device shapes: the same files. With objects sharded, a pixel may flip
        # only where a logit lies within the tolerance of the threshold; with none there, the files are the same.
        assert not differ or (name == "d4g2" and undecided > 0), (name, differ)
