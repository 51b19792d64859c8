"""Image batches (SA-1B, one frame) in training: the official ``num_frames == 1`` case of ``SAM2Train``.

An image clip has no tracked frames, only its prompted frame with its corrective clicks. Its losses must equal those
of the same frame as the first of a two-frame clip whose second frame is not tracked (``track_valid`` False adds
nothing), which checks the T = 1 path of ``clip_losses`` against the T = 2 path; and a mixed run of ``train.py``
(synthetic videos + SA-1B images, both shapes compiled) must train through both kinds of step.
"""

import json

import jax
import ml_collections
import numpy as np
import pytest

from sam2_jax.datasets.synthetic import SyntheticImageDataset
from sam2_jax.datasets.writers import write_sa1b
from sam2_jax.training import data as data_lib
from sam2_jax.training import sam2_train as st
from sam2_jax.utils.config import freeze_config
from tests.training.tiny_train_config import get_config


def _image_config(root: str) -> ml_collections.ConfigDict:
    c = get_config()
    c.train.batch_size = 2
    c.train.prompts.num_correction_pt_per_frame = 2
    c.train.prompts.point_sampling = "center"  # deterministic clicks: the two paths sample the same points
    c.train.prompts.box_noise = 0.0
    c.train.data.sources = dict(images=dict(kind="sa1b", root=root, batch_size=2, max_num_objects=2))
    return c


@pytest.fixture(scope="module")
def sa1b_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sa1b")
    write_sa1b(list(SyntheticImageDataset(4, seed=5, height=64, width=64, num_objects=3)), str(root))
    return str(root)


@pytest.mark.slow
def test_an_image_clip_equals_a_two_frame_clip_with_an_untracked_second_frame(sa1b_root):
    from sam2_jax.build_sam import build_sam2

    c = _image_config(sa1b_root)
    src = data_lib.training_source(c)
    batch = data_lib.make_batch(src, c, 0)
    B, T, O = batch["masks"].shape[:3]
    assert (B, T, O) == (2, 1, 2) and batch["plan"].track_frames.shape == (2, 0)
    model = build_sam2(c, None, seed=0)
    module = st.training_module(model.module)
    fc = freeze_config(c)
    key = jax.random.key(3)
    one, preds1 = st.batch_losses(
        module, model.params, batch["frames"], batch["masks"], batch["plan"], key, fc, True, batch["obj_valid"]
    )
    plan = batch["plan"]
    plan2 = plan._replace(track_frames=np.ones((B, 1), np.int32), track_valid=np.zeros((B, 1), bool))
    frames2 = np.concatenate([batch["frames"], batch["frames"][:, ::-1, :, ::-1]], axis=1)  # frame 1: another picture
    masks2 = np.concatenate([batch["masks"], batch["masks"][:, :, :, :, ::-1]], axis=1)
    two, preds2 = st.batch_losses(module, model.params, frames2, masks2, plan2, key, fc, True, batch["obj_valid"])
    assert float(one["core_loss"]) > 0
    for k in one:
        np.testing.assert_allclose(float(one[k]), float(two[k]), rtol=2e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(np.asarray(preds1[:, 0]), np.asarray(preds2[:, 0]), rtol=1e-4, atol=1e-4)
    assert not np.any(np.asarray(preds2[:, 1]))  # the untracked frame keeps its zero prediction


@pytest.mark.slow
def test_training_alternates_image_and_video_steps(sa1b_root, tmp_path):
    # 4 steps drawn from the synthetic videos (batch 8, 3 frames) and the SA-1B images (batch 2, 1 frame).
    from sam2_jax.training.trainer import train_and_evaluate

    c = get_config()
    c.train.total_steps, c.train.checkpoint_every = 4, 100
    c.train.data.sources = dict(
        synthetic=dict(kind="synthetic", batch_size=0, num_frames=0, max_num_objects=0, prob=0.5),
        images=dict(kind="sa1b", root=sa1b_root, batch_size=2, num_frames=0, max_num_objects=2, prob=0.5),
    )
    src = data_lib.training_source(c)
    while len({data_lib.step_source(src, c, s).name for s in range(4)}) < 2:  # a data seed that draws both kinds
        c.train.data.seed += 1
    train_and_evaluate(c, str(tmp_path / "run"))
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f if "core_loss" in line]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["core_loss"]) and r["core_loss"] > 0 for r in rows)
