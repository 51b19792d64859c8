"""The image task: the click protocol with a stand-in predictor (values by hand), and a run of eval.py's image task
with the random-weight tiny model on a synthetic SA-1B folder."""

import csv

import numpy as np
import pytest

from sam2_jax.datasets import writers
from sam2_jax.datasets.synthetic import SyntheticImageDataset
from sam2_jax.evaluation import image_eval, prompts


class StubImagePredictor:
    """Click 1: three candidates (empty, the ground truth, everything) scored 0.2, 0.9, 0.5; later clicks: the
    ground truth without the rows below the last click. Records the prompts."""

    def __init__(self, gts):
        self.gts = gts
        self.calls = []

    def set_image(self, image):
        self.calls.append(("image", image.shape))

    def predict(self, point_coords, point_labels, mask_input=None, multimask_output=True, return_logits=False):
        self.calls.append((point_coords.copy(), point_labels.copy(), mask_input, multimask_output))
        m, h, w = self.gts.shape
        if multimask_output:
            cands = np.stack([np.zeros_like(self.gts), self.gts, np.ones_like(self.gts)], axis=1)
            scores = np.tile([0.2, 0.9, 0.5], (m, 1))
        else:
            cands = self.gts.copy()
            for i in range(m):
                cands[i, int(point_coords[i, -1, 1]) + 1 :] = False
            cands, scores = cands[:, None], np.ones((m, 1))
        logits = np.where(cands, 5.0, -5.0)
        return logits, scores, np.zeros((m, cands.shape[1], 256, 256), np.float32)


def test_click_protocol_by_hand():
    gts = np.zeros((2, 20, 20), bool)
    gts[0, 2:12, 3:9] = True
    gts[1, 10:19, 10:19] = True
    pred = StubImagePredictor(gts)
    ious = image_eval.click_ious(pred, np.zeros((20, 20, 3), np.uint8), gts, 3)
    # Click 1 picks the best-scored candidate, the ground truth: IoU 1. Click 2 lands where the error is: with a
    # perfect mask there is none, so both maps are all zero and the click is negative at pixel 0 (a tie);
    # the stub then cuts every row below row 0 away: IoU 0 for both masks. Click 3 again at the error centre.
    assert ious[:, 0].tolist() == [1.0, 1.0]
    assert ious[:, 1].tolist() == [0.0, 0.0]
    second = pred.calls[2]
    assert second[0][:, 1].tolist() == [[0.0, 0.0], [0.0, 0.0]] and second[1][:, 1].tolist() == [0, 0]
    assert pred.calls[1][3] is True and second[3] is False and second[2] is not None
    # Click 3: after click 2 the mask is empty (rows > 0 cut, and row 0 is not in either object): a positive
    # click at each mask's centre, then the ground truth above that row.
    third = pred.calls[3]
    for i in range(2):
        p, lab = prompts.next_click(gts[i])
        assert third[0][i, 2].tolist() == p.tolist() and third[1][i, 2] == lab == 1
        cut = gts[i].copy()
        cut[int(p[1]) + 1 :] = False
        assert ious[i, 2] == pytest.approx(cut.sum() / gts[i].sum())


def test_image_task_with_the_tiny_model(tmp_path):
    import eval as eval_cli
    from sam2_jax.evaluation import run as run_lib

    images = list(SyntheticImageDataset(num_images=2, seed=2, height=64, width=80, num_objects=3))
    writers.write_sa1b(images, str(tmp_path / "sa1b"))
    cfg = eval_cli.parse(
        [
            "--task",
            "image",
            "--data_root",
            str(tmp_path / "sa1b"),
            "--image_size",
            "256",
            "--seed",
            "3",
            "--prompt",
            "click5",
            "--output_dir",
            str(tmp_path / "out"),
            "--progress",
            "false",
        ]
    )
    result = run_lib.run(cfg)
    n_masks = sum(int(im.masks.any(axis=(1, 2)).sum()) for im in images)
    assert result.skipped == [] and len(result.rows) == n_masks
    np.testing.assert_allclose(result.miou, np.mean([r[2] for r in result.rows], axis=0), rtol=1e-12)
    assert result.miou.shape == (5,) and np.all((0 <= result.miou) & (result.miou <= 1))
    with open(tmp_path / "out" / "image_summary.csv") as f:
        row = list(csv.DictReader(f))[0]
    assert float(row["1-click mIoU"]) == result.miou[0] and float(row["5-click mIoU"]) == result.miou[4]
    assert int(row["num_masks"]) == n_masks
