"""Comparisons of masks computed twice in ways that may round differently (another batch size, chunking, padding,
device or CPU: XLA picks other kernels and summation orders), so an exact comparison would flip a pixel whose logit
lies at the threshold. Logits are compared within a tolerance; masks only where the logit is farther than that
tolerance from the threshold, and the band left unchecked must stay thin.
"""

import numpy as np

# Largest fraction of pixels a check may leave undecided (within ``atol`` of the threshold): a wider band would
# make the mask comparison vacuous, so it fails instead.
MAX_UNDECIDED = 1e-3


def assert_mask_matches_logits(mask, logits, atol: float, threshold: float = 0.0, what: str = "", ignore=None) -> int:
    """``mask`` (from another computation of ``logits``) equals ``logits > threshold`` wherever the logit lies
    farther than ``atol`` from the threshold (and ``ignore``, a bool array, is False). Returns the number of pixels
    left undecided by the tolerance."""
    mask, logits = np.asarray(mask, bool), np.asarray(logits, np.float64)
    assert mask.shape == logits.shape, f"{what}: mask {mask.shape}, logits {logits.shape}"
    decided = np.abs(logits - threshold) > atol
    if ignore is not None:
        decided &= ~np.asarray(ignore, bool)
    wrong = decided & (mask != (logits > threshold))
    assert not wrong.any(), (
        f"{what}: {int(wrong.sum())} pixels differ whose logit is farther than {atol} from {threshold} "
        f"(largest distance {np.abs(logits - threshold)[wrong].max():.3g})"
    )
    undecided = int((np.abs(logits - threshold) <= atol).sum())
    assert undecided <= MAX_UNDECIDED * mask.size, f"{what}: {undecided} of {mask.size} pixels within {atol}"
    return undecided


def assert_masks_agree(logits_a, logits_b, atol: float, threshold: float = 0.0, what: str = "") -> int:
    """Two computations of the same logits: ``|a - b| <= atol`` everywhere, and their masks (``> threshold``)
    equal wherever ``a`` lies farther than ``atol`` from the threshold. Returns the number of pixels left
    undecided."""
    a, b = np.asarray(logits_a, np.float64), np.asarray(logits_b, np.float64)
    np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=what)
    return assert_mask_matches_logits(b > threshold, a, atol, threshold, what)
