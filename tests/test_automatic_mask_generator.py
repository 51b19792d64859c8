"""SAM2AutomaticMaskGenerator against the official generator on real photos (same noised random weights), and
its behaviour (parameters, output modes, crops, bad input) on a small random model.

With random weights the official default thresholds (predicted IoU > 0.8, stability >= 0.95) keep nothing, and
every mask's box is the whole photo, so box NMS at any threshold below 1 leaves one record. The parity runs use
relaxed thresholds, measured on these weights to keep dozens of masks with wide margins:
- ``pred_iou_thresh=0.55``: the predicted IoUs form groups, one per multimask output (truck: about 0.58-0.64,
  0.47-0.53, 0.40-0.46; groceries: 0.66-0.72, 0.38-0.44); 0.55 lies in a gap far from every value and keeps the
  first output of each of the 64 points;
- ``stability_score_thresh=0.2`` (the kept masks have 0.26-0.72);
- ``box_nms_thresh=1.0``: identical full-image boxes have IoU exactly 1, which is not above 1.0, so every kept mask
  stays (NMS itself still runs and orders the records by predicted IoU).
The margins of the kept records are checked in the test, so a threshold decision that the tolerance could flip
fails loudly instead of as a confusing count mismatch.
"""

import functools

import numpy as np
import pytest

from tests import measured
from tests.compare import assert_mask_matches_logits
from tests.reference import DATA, official_model, requires_data, requires_torch

NAME = "sam2.1_hiera_t"
RELAXED = dict(pred_iou_thresh=0.55, stability_score_thresh=0.2, box_nms_thresh=1.0)
SCORE_TOL = 1e-4  # predicted_iou / stability_score: the matching tolerance; the bounds are below
MASK_IOU = 0.99998  # measured >= 0.999997 on truck.jpg (2026-12-05)
# The slow tier's grids, crops and m2m: groceries with m2m measured 0.999979 (2 of 94,108 pixels; 2026-12-06)
SLOW_MASK_IOU = 0.9999
IOU_TOL = 1e-5  # predicted_iou of the small model between batch shapes
LOGIT_TOL = 1e-4  # its mask logits (median |logit| 1.5) between batch shapes; measured below 1e-5


def _load(name):
    from PIL import Image

    return np.asarray(Image.open(DATA / "images" / name).convert("RGB"))


@functools.lru_cache(maxsize=1)
def _our_model(name=NAME):
    import jax
    import jax.numpy as jnp

    from sam2_jax.build_sam import SAM2Model
    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import make_module
    from tests.reference import converted_params

    config = get_config(name)

    module = make_module(config.model)
    return SAM2Model(module=module, params=jax.tree.map(jnp.asarray, converted_params(name)), config=config)


def _run_both(photo, **kwargs):
    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as RefGenerator

    from sam2_jax.automatic_mask_generator import SAM2AutomaticMaskGenerator

    image = _load(photo)
    kwargs = dict(output_mode="coco_rle", **kwargs)
    with torch.no_grad():
        ref = RefGenerator(official_model(NAME), **kwargs).generate(image)
    ours = SAM2AutomaticMaskGenerator(_our_model(), **kwargs).generate(image)
    return ref, ours


def _rle(rec):
    seg = dict(rec["segmentation"])
    if isinstance(seg["counts"], str):
        seg["counts"] = seg["counts"].encode("utf-8")
    return seg


def _match(ref, ours, mask_iou=MASK_IOU):
    """For each reference record, the index of an unused record of ours with mask IoU >= mask_iou and scores
    within SCORE_TOL (the same position first: the order is the official one). Returns the indices and the
    worst mask IoU and score differences."""
    from pycocotools import mask as mask_utils

    ious = mask_utils.iou([_rle(r) for r in ours], [_rle(r) for r in ref], [0] * len(ref))
    ious = np.asarray(ious).reshape(len(ours), len(ref))
    used, picks, worst = set(), [], dict(mask_iou=1.0, predicted_iou=0.0, stability_score=0.0)
    for j, r in enumerate(ref):
        cands = [j] + [i for i in range(len(ours)) if i != j] if j < len(ours) else range(len(ours))
        for i in cands:
            o = ours[i]
            d_iou = abs(o["predicted_iou"] - r["predicted_iou"])
            d_stab = abs(o["stability_score"] - r["stability_score"])
            if i not in used and ious[i, j] >= mask_iou and d_iou <= SCORE_TOL and d_stab <= SCORE_TOL:
                used.add(i)
                picks.append(i)
                worst["mask_iou"] = min(worst["mask_iou"], float(ious[i, j]))
                worst["predicted_iou"] = max(worst["predicted_iou"], d_iou)
                worst["stability_score"] = max(worst["stability_score"], d_stab)
                break
        else:
            best = int(np.argmax(ious[:, j]))
            pytest.fail(
                f"reference record {j} (predicted_iou {r['predicted_iou']:.5f}, stability "
                f"{r['stability_score']:.5f}, area {r['area']}) has no match; closest of ours: #{best} mask IoU "
                f"{ious[best, j]:.4f}, predicted_iou {ours[best]['predicted_iou']:.5f}, stability "
                f"{ours[best]['stability_score']:.5f}"
            )
    return picks, worst


def _check_parity(ref, ours, what, kwargs, mask_iou=MASK_IOU):
    assert 12 <= len(ref) <= 500, f"{what}: the relaxed thresholds should keep dozens of masks, got {len(ref)}"
    # Margins: no kept score lies within ten tolerances of its threshold.
    for r in ref:
        for key, thresh in (("predicted_iou", "pred_iou_thresh"), ("stability_score", "stability_score_thresh")):
            if kwargs[thresh] > 0:
                assert abs(r[key] - kwargs[thresh]) > 10 * SCORE_TOL, f"{what}: a {key} near its threshold"
    assert len(ours) == len(ref), f"{what}: {len(ours)} records, reference {len(ref)}"
    picks, worst = _match(ref, ours, mask_iou)
    print(f"{what}: {len(ref)} records, worst {worst}, same order: {picks == list(range(len(ref)))}")
    measured.min_value("mask_iou", worst["mask_iou"], mask_iou)
    # measured on truck.jpg 2.4e-7 and 1.4e-6 (2026-12-05); the slow tier's grids and crops up to 1.1e-5
    measured.check("predicted_iou", worst["predicted_iou"], 2e-5)
    measured.check("stability_score", worst["stability_score"], 2e-5)
    for j, i in enumerate(picks):
        r, o = ref[j], ours[i]
        assert set(o) == set(r)
        assert o["crop_box"] == r["crop_box"]
        np.testing.assert_allclose(o["point_coords"], r["point_coords"], atol=1e-3)
        # Boxes and areas of (near-)identical masks agree to a few pixels.
        np.testing.assert_allclose(o["bbox"], r["bbox"], atol=2)
        assert abs(o["area"] - r["area"]) <= (1 - mask_iou) * r["area"] + 1
        assert o["segmentation"]["size"] == r["segmentation"]["size"]


@requires_torch
@requires_data
# groceries is slow-marked (35 s): the default run keeps truck's full-default parity.
@pytest.mark.parametrize("photo", ["truck.jpg", pytest.param("groceries.jpg", marks=pytest.mark.slow)])
def test_parity_with_official(photo):
    """8x8 grid, 3 masks per point, relaxed thresholds; about 1.5 min per photo on 2 cores (both implementations)."""
    kwargs = dict(points_per_side=8, points_per_batch=64, **RELAXED)
    ref, ours = _run_both(photo, **kwargs)
    _check_parity(ref, ours, photo, kwargs)


@pytest.mark.slow
@requires_torch
@requires_data
@pytest.mark.parametrize(
    "photo,extra",
    [
        ("truck.jpg", dict(points_per_side=16)),
        ("groceries.jpg", dict(points_per_side=16)),
        ("truck.jpg", dict(points_per_side=8, crop_n_layers=1, crop_n_points_downscale_factor=2, crop_nms_thresh=1.0)),
        ("groceries.jpg", dict(points_per_side=8, use_m2m=True, pred_iou_thresh=0.0, stability_score_thresh=0.0)),
        ("truck.jpg", dict(points_per_side=8, multimask_output=False, points_per_batch=24, pred_iou_thresh=0.0)),
    ],
    ids=["truck-16x16", "groceries-16x16", "truck-crops", "groceries-m2m", "truck-single-mask"],
)
def test_parity_with_official_more(photo, extra):
    kwargs = dict(dict(points_per_batch=64, **RELAXED), **extra)
    ref, ours = _run_both(photo, **kwargs)
    _check_parity(ref, ours, f"{photo} {extra}", kwargs, SLOW_MASK_IOU)


# --- behaviour on a small random model (no reference needed) ---------------------------------------------------


@functools.lru_cache(maxsize=1)
def _small_model():
    from sam2_jax.build_sam import build_sam2
    from sam2_jax.configs import get_config

    cfg = get_config(NAME)
    cfg.model.image_size = 256
    return build_sam2(cfg, None, seed=3)


def _small_image(h=90, w=140, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    img[20:60, 30:90] = [230, 40, 40]
    img[50:80, 100:130] = [40, 200, 60]
    return img


def _gen(**kwargs):
    from sam2_jax.automatic_mask_generator import SAM2AutomaticMaskGenerator

    kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    return SAM2AutomaticMaskGenerator(_small_model(), **dict(kw, **kwargs))


def test_output_modes_batches_and_grids_agree():
    """binary / uncompressed / COCO RLE decode to the same masks; the padded last batch and an explicit
    point grid give the same records as one full batch."""
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
    from sam2_jax.utils.amg import build_point_grid, rle_to_mask

    image = _small_image()
    binary = _gen(points_per_batch=16, output_mode="binary_mask").generate(image)
    assert len(binary) == 4 * 4 * 3  # no threshold, NMS at 1.0, no crops: every mask stays
    for mode in ("uncompressed_rle", "coco_rle"):
        recs = _gen(points_per_batch=16, output_mode=mode).generate(image)
        for b, r in zip(binary, recs, strict=True):
            np.testing.assert_array_equal(rle_to_mask(r["segmentation"]), b["segmentation"])
            assert {k: v for k, v in r.items() if k != "segmentation"} == {
                k: v for k, v in b.items() if k != "segmentation"
            }
    padded = _gen(points_per_batch=6).generate(image)  # 16 points: batches of 6, 6, 4 (padded to 6)
    grid = _gen(points_per_side=None, point_grids=[build_point_grid(4)], points_per_batch=16).generate(image)
    # Other batch shapes round differently (by CPU too), so a pixel whose logit is at the threshold may flip: the
    # masks are checked against the image predictor's logits for the same points, away from the threshold.
    # The records are ordered by predicted IoU; these are far enough apart that rounding cannot reorder them.
    assert np.diff(sorted(r["predicted_iou"] for r in binary)).min() > 10 * IOU_TOL
    points = np.unique([r["point_coords"][0] for r in binary], axis=0)  # (16, 2)
    pred = SAM2ImagePredictor(_small_model())
    pred.set_image(image)
    logits, ious, _ = pred.predict(points[:, None], np.ones((len(points), 1)), return_logits=True)  # (16, 3, H, W)
    for name, recs in (("one batch", binary), ("padded batches", padded), ("point grid", grid)):
        assert len(recs) == len(binary)
        for b, o in zip(binary, recs, strict=True):
            assert o["point_coords"] == b["point_coords"]
            np.testing.assert_allclose(o["predicted_iou"], b["predicted_iou"], atol=IOU_TOL)
            p = np.flatnonzero((points == o["point_coords"][0]).all(axis=1))[0]
            k = int(np.argmin(np.abs(ious[p] - o["predicted_iou"])))
            np.testing.assert_allclose(ious[p, k], o["predicted_iou"], atol=IOU_TOL)
            assert_mask_matches_logits(o["segmentation"], logits[p, k], LOGIT_TOL, what=f"{name} {o['point_coords']}")
    for r in binary:
        m = r["segmentation"]
        assert m.shape == image.shape[:2] and r["area"] == m.sum()
        if r["area"]:
            ys, xs = np.nonzero(m)
            assert r["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert r["crop_box"] == [0, 0, image.shape[1], image.shape[0]]


def test_crops_thresholds_and_bad_arguments():
    from sam2_jax.automatic_mask_generator import SAM2AutomaticMaskGenerator

    image = _small_image()
    recs = _gen(crop_n_layers=1, crop_n_points_downscale_factor=2, crop_nms_thresh=1.0).generate(image)
    crops = {tuple(r["crop_box"]) for r in recs}
    assert (0, 0, image.shape[1], image.shape[0]) in crops
    for r in recs:  # masks of a crop lie inside it
        x, y, w, h = r["crop_box"]
        m = r["segmentation"]
        assert not m[:, : int(x)].any() and not m[: int(y)].any()
        assert not m[:, int(x + w) :].any() and not m[int(y + h) :].any()
    all_recs = _gen().generate(image)
    ious = sorted(r["predicted_iou"] for r in all_recs)
    cut = (ious[len(ious) // 2 - 1] + ious[len(ious) // 2]) / 2
    kept = _gen(pred_iou_thresh=cut).generate(image)
    assert len(kept) == sum(i > cut for i in ious) and all(r["predicted_iou"] > cut for r in kept)
    with pytest.raises(ValueError, match="exactly one"):
        SAM2AutomaticMaskGenerator(_small_model(), points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        SAM2AutomaticMaskGenerator(_small_model(), output_mode="png")
    with pytest.raises(ValueError, match="uint8"):
        _gen().generate(image.astype(np.float32))


def test_min_mask_region_area_matches_the_image_predictor():
    """``min_mask_region_area`` is the predictor's hole filling and sprinkle removal, as in the official code: the
    generator's masks for one grid point equal ``SAM2ImagePredictor(max_hole_area=a, max_sprinkle_area=a)``'s."""
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

    image = _small_image()
    recs = _gen(min_mask_region_area=30).generate(image)
    assert len(recs) == 4 * 4 * 3
    pred = SAM2ImagePredictor(_small_model(), max_hole_area=30, max_sprinkle_area=30)
    pred.set_image(image)
    plain_pred = SAM2ImagePredictor(_small_model())  # no filling: which pixels the filling changed
    plain_pred.set_image(image)
    for point in ([17.5, 11.25], [87.5, 56.25]):  # two grid points (cell centres of the 4x4 grid)
        logits, ious, _ = pred.predict(np.array([point]), np.array([1]), multimask_output=True, return_logits=True)
        plain, _, low_res = plain_pred.predict(np.array([point]), np.array([1]), return_logits=True)
        mine = sorted((r for r in recs if r["point_coords"] == [point]), key=lambda r: -r["predicted_iou"])
        assert len(mine) == 3
        order = np.argsort(-ious)
        for r, lg, pl, lo, s in zip(mine, logits[order], plain[order], low_res[order], ious[order], strict=True):
            np.testing.assert_allclose(r["predicted_iou"], s, atol=IOU_TOL)
            # Another batch shape: float32 summation order may flip a pixel whose logit is at the threshold. Where
            # the filling changed the logits, a low-res logit at the threshold may change a region's area and
            # so whether it is filled (seen: one at 7e-7 flips two pixels): tolerated only then, and only a few.
            filled = lg != pl
            assert_mask_matches_logits(r["segmentation"], lg, LOGIT_TOL, what=f"{point}", ignore=filled)
            differ = int((filled & (r["segmentation"] != (lg > 0))).sum())
            assert differ == 0 or (differ <= 4 and np.abs(lo).min() <= LOGIT_TOL), f"{point}: {differ} filled pixels"
