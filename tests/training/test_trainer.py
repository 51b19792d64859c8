"""The training loop: resuming from a checkpoint continues with the losses of an uninterrupted run; sharding rules.

A very small setting keeps the compile short: 64 px, 3-frame clips, one object, no corrective clicks.
"""

import json

import jax
import numpy as np
import pytest

from sam2_jax.configs.train_synthetic_tiny import get_config
from sam2_jax.training import trainer


def _config():
    c = get_config()
    c.model.image_size = 64
    t = c.train
    t.total_steps, t.log_every, t.checkpoint_every = 4, 1, 2
    t.num_frames, t.max_num_objects = 3, 1
    t.prompts.num_correction_pt_per_frame = 0
    t.prompts.num_frames_to_correct = 1
    t.data.num_videos, t.data.video_frames = 4, 4
    t.eval_videos = 0
    return c


def _losses(workdir):
    with open(workdir / "metrics.jsonl") as f:
        return {r["step"]: r["core_loss"] for r in map(json.loads, f) if "core_loss" in r}


@pytest.mark.slow  # three short runs; about 5 CPU-minutes, most of it compiling the update
def test_resumed_run_continues_with_the_same_losses(tmp_path):
    c = _config()
    full = trainer.train_and_evaluate(c, str(tmp_path / "full"))["losses"]
    assert sorted(full) == [1, 2, 3, 4]

    # A run that stops after step 3 without saving (as a killed process would) ...
    c.train.stop_after = 3
    first = trainer.train_and_evaluate(c, str(tmp_path / "cut"))["losses"]
    assert sorted(first) == [1, 2, 3]
    assert sorted(int(p.name) for p in (tmp_path / "cut" / "checkpoints").iterdir()) == [2]
    # ... is resumed from its checkpoint at step 2: steps 3 and 4 see the same batches and give the same losses.
    c.train.stop_after = 0
    resumed = trainer.train_and_evaluate(c, str(tmp_path / "cut"))["losses"]
    assert sorted(resumed) == [3, 4]
    for s in (3, 4):
        np.testing.assert_allclose(resumed[s], full[s], rtol=1e-6)
    np.testing.assert_allclose(first[3], full[3], rtol=1e-6)
    assert len({round(v, 3) for v in full.values()}) == 4  # the steps differ (not a constant)
    assert (tmp_path / "full" / "export" / "params").is_dir()
    assert list((tmp_path / "full" / "tensorboard").iterdir())


def test_fsdp_rule_splits_large_leaves_only():
    devices = np.array(jax.devices() * 4)[:4]  # a mesh shape needs no distinct devices to check the rule
    from jax.sharding import Mesh

    mesh = Mesh(devices.reshape(1, 4), ("data", "fsdp"))
    big = trainer.leaf_sharding((96, 1024, 3), mesh, 2**10)
    small = trainer.leaf_sharding((6, 10), mesh, 2**10)
    odd = trainer.leaf_sharding((3, 999), mesh, 2**10)
    assert big.spec == jax.sharding.PartitionSpec(None, "fsdp", None)
    assert small.spec == jax.sharding.PartitionSpec(None, None)
    assert odd.spec == jax.sharding.PartitionSpec(None, None)


def test_mesh_from_config():
    c = _config()
    mesh = trainer.make_mesh(c)
    assert mesh.axis_names == ("data", "fsdp") and mesh.shape["data"] == len(jax.devices())
    c.train.mesh.fsdp = len(jax.devices()) + 1
    with pytest.raises(ValueError, match="does not cover"):
        trainer.make_mesh(c)
