"""End to end: a small synthetic dataset written in every format, read back (folders in place and tfds builders),
evaluated with a random-weight tiny model (image_size 256): the same numbers from every format; eval.py's CLI on
the same data; its predicted PNGs scored without the model give the run's numbers."""

import csv
import functools
import os

import numpy as np
import pytest

from sam2_jax.datasets import vos, writers
from sam2_jax.datasets.synthetic import SyntheticVideoDataset
from sam2_jax.evaluation import run as run_lib
from sam2_jax.evaluation import vos_eval

STRIDE = 4  # SA-V train's fixed annotation stride; the other formats are written with the same


@functools.lru_cache(maxsize=1)
def _predictor():
    from configs import get_config
    from sam2_jax.build_sam import build_sam2
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


def test_same_numbers_from_every_format(data, tmp_path):
    root, arrays = data
    pred = _predictor()
    results = {}
    for name in ("davis", "sav", "sav_train"):
        for reader in ("folder", "tfds"):
            videos = run_lib.dataset_videos(
                run_lib.RunConfig(
                    dataset_format=name, data_root=str(root / name), reader=reader, tfds_dir=str(tmp_path)
                )
            )
            cfg = vos_eval.VOSEvalConfig(output_layout="davis")
            results[f"{name}/{reader}"] = vos_eval.evaluate_vos(pred, videos, cfg, progress=False)
    results["arrays"] = vos_eval.evaluate_vos(
        pred, arrays, vos_eval.VOSEvalConfig(output_layout="davis"), progress=False
    )
    ref = results["davis/folder"]
    assert ref.skipped == [] and ref.summary["num_objects"] >= 3 and ref.num_frames == 18
    for name, r in results.items():
        assert r.skipped == [], name
        assert _values(r) == _values(ref), name
        assert r.summary == ref.summary, name
    # The random-weight model's masks are not all empty (the comparison is not between empty predictions).
    assert any(s.j.max() > 0 for s in ref.scores) and ref.summary["J"] < 1


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


_TWO_DEVICE_SCRIPT = r"""
import json, sys
import jax
from jax.sharding import PartitionSpec
from sam2_jax import sam2_video_predictor as P
from eval import parse
from sam2_jax.evaluation.run import run

sharded = []
_orig = P.SAM2VideoPredictor._shard
def _record(self, tstate):
    out = _orig(self, tstate)
    sharded.append(any(getattr(x.sharding, "spec", None) == PartitionSpec("obj") for x in jax.tree.leaves(out)))
    return out
P.SAM2VideoPredictor._shard = _record
run(parse(sys.argv[1:]))
print("RESULT", json.dumps({"devices": jax.device_count(), "sharded": any(sharded)}))
"""


@pytest.mark.slow
def test_eval_on_two_devices_gives_the_one_device_numbers(tmp_path):
    """eval.py with 2 (forced host) devices: each video's object batch is sharded over them by the predictor, and
    the CSVs and PNGs are the one-device run's, bit for bit."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"d{n}"
        args = "--dataset_format synthetic --num_synthetic 2 --synthetic_frames 4 --synthetic_objects 2"
        args += f" --synthetic_size 64 --image_size 256 --progress false --output_dir {out}"
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        proc = subprocess.run(
            [sys.executable, "-c", _TWO_DEVICE_SCRIPT, *args.split()],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
        outs[n] = (out, json.loads(line[len("RESULT ") :]))
    assert outs[1][1] == {"devices": 1, "sharded": False}
    assert outs[2][1] == {"devices": 2, "sharded": True}
    for name in ("per_object.csv", "per_video.csv", "per_frame.csv", "summary.csv"):
        assert (outs[1][0] / name).read_text() == (outs[2][0] / name).read_text(), name
    pngs = sorted(p.relative_to(outs[1][0]) for p in (outs[1][0] / "pred").rglob("*.png"))
    assert pngs and pngs == sorted(p.relative_to(outs[2][0]) for p in (outs[2][0] / "pred").rglob("*.png"))
    for p in pngs:
        assert (outs[1][0] / p).read_bytes() == (outs[2][0] / p).read_bytes(), p
