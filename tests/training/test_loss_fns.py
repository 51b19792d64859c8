"""Our losses against the official ``MultiStepMultiMasksAndIous`` on the same random logits and targets."""

import numpy as np
import pytest

from sam2_jax.training import loss_fns
from tests.reference import requires_torch
from tests.training.official import official_loss_fns

OFFICIAL_KW = dict(
    supervise_all_iou=True,
    iou_use_l1_loss=True,
    pred_obj_scores=True,
    focal_gamma_obj_score=0.0,
    focal_alpha_obj_score=-1.0,
)
WEIGHTS = {"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1}


def _clip(seed: int, T: int = 3, N: int = 3, H: int = 16, W: int = 20):
    """Random clip: frame 0 has 3 steps (multimask, then 2 single-mask corrections), others one multimask step.
    Object 1 is absent on frame 1, so its mask losses must vanish there while its class loss stays."""
    rng = np.random.default_rng(seed)
    S, M = 3, 3
    masks = (rng.normal(size=(T, S, N, M, H, W)) * 4).astype(np.float32)
    ious = rng.uniform(size=(T, S, N, M)).astype(np.float32)
    obj = rng.normal(size=(T, S, N, 1)).astype(np.float32) * 2
    targets = (rng.uniform(size=(T, N, H, W)) < 0.3).astype(np.float32)
    if T > 1 and N > 1:
        targets[1, 1] = 0
    step_valid = np.zeros((T, S), bool)
    step_valid[:, 0] = True
    step_valid[0] = True
    mask_valid = np.ones((T, S, M), bool)
    mask_valid[0, 1:, 1:] = False  # correction steps output one mask
    return masks, ious, obj, targets, step_valid, mask_valid


def _official(masks, ious, obj, targets, step_valid, mask_valid):
    import torch

    lf = official_loss_fns()
    crit = lf.MultiStepMultiMasksAndIous(dict(WEIGHTS), **OFFICIAL_KW)
    outs = []
    for t in range(masks.shape[0]):
        steps = [s for s in range(masks.shape[1]) if step_valid[t, s]]
        sel = [np.flatnonzero(mask_valid[t, s]) for s in steps]
        pairs = list(zip(steps, sel, strict=True))
        outs.append(
            {
                "multistep_pred_multimasks_high_res": [torch.from_numpy(masks[t, s][:, c]) for s, c in pairs],
                "multistep_pred_ious": [torch.from_numpy(ious[t, s][:, c]) for s, c in pairs],
                "multistep_object_score_logits": [torch.from_numpy(obj[t, s]) for s in steps],
            }
        )
    losses = crit(outs, torch.from_numpy(targets))
    return {k: float(v) for k, v in losses.items()}


@requires_torch
@pytest.mark.parametrize("seed", [0, 1])
def test_multistep_loss_matches_official(seed):
    clip = _clip(seed)
    ref = _official(*clip)
    masks, ious, obj, targets, step_valid, mask_valid = clip
    ours = loss_fns.multistep_multimask_loss(
        masks, ious, obj, targets, num_objects=targets.shape[1], step_valid=step_valid, mask_valid=mask_valid
    )
    assert set(ref) == set(ours)
    for k in ref:
        np.testing.assert_allclose(float(ours[k]), ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert ref["loss_class"] > 0 and ref["loss_mask"] > 0


@requires_torch
def test_absent_object_has_only_class_loss():
    """Frame without ground truth: the official code gives zero mask/dice/IoU loss but a positive class loss."""
    masks, ious, obj, targets, _, _ = _clip(2, T=1, N=1)
    targets[:] = 0
    ref = _official(masks[:, :1], ious[:, :1], obj[:, :1], targets, np.ones((1, 1), bool), np.ones((1, 1, 3), bool))
    ours = loss_fns.multistep_multimask_loss(masks[:, :1], ious[:, :1], obj[:, :1], targets, num_objects=1)
    assert ref["loss_mask"] == 0 and float(ours["loss_mask"]) == 0 and float(ours["loss_iou"]) == 0
    np.testing.assert_allclose(float(ours["loss_class"]), ref["loss_class"], rtol=1e-5)
    assert ref["loss_class"] > 0


def test_lowest_loss_mask_is_supervised():
    """Of three masks, the one equal to the target gets the mask loss; a worse channel does not change it."""
    target = np.zeros((1, 8, 8), np.float32)
    target[0, 2:6, 2:6] = 1
    good = np.where(target > 0, 10.0, -10.0)[:, None]
    bad = -good
    masks = np.concatenate([bad, good, bad], 1).astype(np.float32)  # (1, 3, 8, 8)
    out = loss_fns.step_losses(masks, target, np.full((1, 3), 0.5, np.float32), np.ones((1, 1), np.float32), 1.0)
    alone = loss_fns.step_losses(masks[:, 1:2], target, np.full((1, 1), 0.5, np.float32), np.ones((1, 1)), 1.0)
    np.testing.assert_allclose(float(out["loss_mask"]), float(alone["loss_mask"]), rtol=1e-6)
    assert float(out["loss_dice"]) < 0.01
    # IoU is supervised on all three: actual IoUs 0, 1, 0 vs predicted 0.5 -> mean L1 0.5.
    np.testing.assert_allclose(float(out["loss_iou"]), 0.5, rtol=1e-6)
