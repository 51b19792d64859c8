"""The training augmentations against hand-computed expectations and the PIL definitions torchvision uses.

torchvision cannot be imported here, so each check is a closed form: where a known affine sends a known pixel,
torchvision's documented matrix coefficients, PIL's ``ImageEnhance`` / ITU-R 601 formulas on tiny arrays, the
mosaic layout, and determinism by seed.
"""

import dataclasses
import math

import numpy as np
import pytest
from PIL import Image

from sam2_jax.training import transforms as tr

OFF = tr.AugmentConfig(
    hflip_prob=0.0,
    degrees=0.0,
    shear=0.0,
    jitter=(0.0, 0.0, 0.0),
    grayscale_prob=0.0,
    frame_jitter=(0.0, 0.0, 0.0),
    mosaic_prob=0.0,
)


def _pil(a):
    return Image.fromarray(np.asarray(a, np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# Affine


def test_affine_matrix_matches_torchvision_closed_form():
    # torchvision's _get_inverse_affine_matrix documents RSS = R(a) S(s) SHy(sy) SHx(sx) =
    # [[s cos(a - sy) / cos(sy), s (-cos(a - sy) tan(sx) / cos(sy) - sin(a))],
    #  [s sin(a - sy) / cos(sy), s (-sin(a - sy) tan(sx) / cos(sy) + cos(a))]], about the centre, then + t.
    a, s, sx, sy = math.radians(17.0), 1.3, math.radians(-11.0), math.radians(6.0)
    c, t = (20.0, 12.0), (3.0, -2.0)
    rss = s * np.array(
        [
            [math.cos(a - sy) / math.cos(sy), -math.cos(a - sy) * math.tan(sx) / math.cos(sy) - math.sin(a)],
            [math.sin(a - sy) / math.cos(sy), -math.sin(a - sy) * math.tan(sx) / math.cos(sy) + math.cos(a)],
        ]
    )
    m = tr.affine_matrix(17.0, t, s, (-11.0, 6.0), c)
    np.testing.assert_allclose(m[:2, :2], rss, atol=1e-12)
    p = np.array([5.0, 30.0])
    np.testing.assert_allclose(m[:2] @ np.append(p, 1.0), rss @ (p - c) + c + t, atol=1e-12)


def test_rotation_by_90_is_clockwise_and_moves_a_pixel_where_the_formula_says():
    # 8x8, centre (4, 4): pixel (row 4, col 6) has centre (6.5, 4.5); R(90) sends (2.5, 0.5) to (-0.5, 2.5), i.e.
    # centre (3.5, 6.5): row 6, col 3. Rotating every pixel this way is np.rot90 clockwise.
    m = tr.affine_matrix(90.0, (0, 0), 1.0, (0, 0), (4.0, 4.0))
    mask = np.zeros((8, 8), bool)
    mask[4, 6] = True
    assert np.argwhere(tr.warp_masks(mask, m)).tolist() == [[6, 3]]
    img = np.zeros((8, 8, 3), np.uint8)
    img[4, 6] = (200, 100, 50)
    out = np.asarray(tr.warp_image(_pil(img), m, fill=(0, 0, 0))).astype(int)
    np.testing.assert_allclose(out[6, 3], (200, 100, 50), atol=1)  # PIL's bilinear truncates: 199 for 200
    assert out.sum() - out[6, 3].sum() == 0
    rand = np.random.default_rng(0).random((3, 8, 8)) > 0.5
    np.testing.assert_array_equal(tr.warp_masks(rand, m), np.rot90(rand, -1, axes=(1, 2)))


def test_shear_and_translation_send_pixels_where_the_formula_says():
    # Shear x with tan = 0.5 about centre (8, 8): x' = x - 0.5 (y - 8). Source of output (row 12, col 3), centre
    # (3.5, 12.5): x = 3.5 + 0.5 * 4.5 = 5.75 -> col 5, row 12.
    shear = math.degrees(math.atan(0.5))
    m = tr.affine_matrix(0.0, (0, 0), 1.0, (shear, 0.0), (8.0, 8.0))
    mask = np.zeros((16, 16), bool)
    mask[12, 5] = True
    out = tr.warp_masks(mask, m)
    assert out[12, 3] and out[12].sum() == 1 and out.sum() == 1
    # A translation by (+3, -2) pixels is a shift; what comes in from outside is empty.
    m = tr.affine_matrix(0.0, (3.0, -2.0), 1.0, (0, 0), (8.0, 8.0))
    rand = np.random.default_rng(1).random((16, 16)) > 0.5
    want = np.zeros_like(rand)
    want[:-2, 3:] = rand[2:, :-3]
    np.testing.assert_array_equal(tr.warp_masks(rand, m), want)


def _grow(m, n=1):
    """Dilation by a 3x3 square, ``n`` times."""
    for _ in range(n):
        p = np.pad(m, 1)
        m = np.any([p[i : i + m.shape[0], j : j + m.shape[1]] for i in range(3) for j in range(3)], axis=0)
    return m


def test_warped_frame_and_mask_stay_aligned():
    # An object drawn in its own colour: after random affines, pixels whose mask comes from at least one pixel
    # inside the object's edge have the object's colour, and those from at least one pixel outside it (and off
    # the image border) have the background's (bilinear reads the 2x2 pixels around the nearest one). A shift of
    # one pixel between frame and mask would break both.
    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy - 20) / 11.0) ** 2 + ((xx - 30) / 17.0) ** 2 < 1
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (20, 40, 60)
    img[mask] = (230, 10, 120)
    inner_src = ~_grow(~mask)
    border = np.ones((h, w), bool)
    border[1:-1, 1:-1] = False
    outer_src = ~_grow(mask) & ~_grow(border)
    rng = np.random.default_rng(5)
    for _ in range(6):
        m = tr.affine_matrix(*tr.affine_params(rng, 25.0, 20.0, (w, h)), (w / 2, h / 2))
        wi = np.asarray(tr.warp_image(_pil(img), m)).astype(int)
        inner, outer = tr.warp_masks(inner_src, m), tr.warp_masks(outer_src, m)
        assert inner.sum() > 300 and outer.sum() > 1000
        assert np.all(tr.warp_masks(mask, m)[inner]) and not np.any(tr.warp_masks(mask, m)[outer])
        np.testing.assert_allclose(wi[inner], np.broadcast_to((230, 10, 120), wi[inner].shape), atol=1)
        np.testing.assert_allclose(wi[outer], np.broadcast_to((20, 40, 60), wi[outer].shape), atol=1)
        # Where the source point is off the image the frame takes the mean colour.
        off = ~tr.warp_masks(~_grow(border, 2), m) & ~tr.warp_masks(np.ones((h, w), bool), m)
        if off.any():
            np.testing.assert_allclose(wi[off], np.broadcast_to(tr.IMAGE_MEAN_FILL, wi[off].shape), atol=1)


def test_affine_is_dropped_when_the_first_frame_object_leaves():
    # A one-pixel object in the corner leaves the frame under any rotation of a few degrees: every try fails and
    # the clip comes back unwarped; a central object is warped.
    frames = [_pil(np.random.default_rng(2).integers(0, 255, (16, 16, 3))) for _ in range(2)]
    corner = np.zeros((2, 1, 16, 16), bool)
    corner[:, 0, 0, 0] = True
    cfg = dataclasses.replace(OFF, degrees=25.0, shear=0.0, affine_tentatives=3)
    rng = np.random.default_rng(3)
    angles = [tr.affine_params(np.random.default_rng(3), 25.0, 0.0, (16, 16))[0]]
    assert abs(angles[0]) > 3
    out_f, out_m = tr.random_affine(rng, frames, corner, cfg)
    assert out_f is frames and out_m is corner
    central = np.zeros((2, 1, 16, 16), bool)
    central[:, 0, 6:10, 5:11] = True
    out_f, out_m = tr.random_affine(np.random.default_rng(3), frames, central, cfg)
    assert out_m[0, 0].any() and not np.array_equal(out_m, central)


def test_consistent_affine_warps_every_frame_alike():
    f = np.random.default_rng(4).integers(0, 255, (1, 24, 24, 3), dtype=np.uint8).repeat(3, 0)
    m = np.zeros((3, 1, 24, 24), bool)
    m[:, 0, 8:16, 8:16] = True
    cfg = dataclasses.replace(OFF, degrees=25.0, shear=20.0)
    out_f, out_m = tr.augment_clip(np.random.default_rng(0), f, m, 24, cfg)
    assert not np.array_equal(out_m[0], m[0])
    for t in (1, 2):
        np.testing.assert_array_equal(out_f[t], out_f[0])
        np.testing.assert_array_equal(out_m[t], out_m[0])
    per_frame = tr.random_affine(np.random.default_rng(0), [_pil(x) for x in f], m, cfg, consistent=False)[1]
    assert not np.array_equal(per_frame[1], per_frame[0])


# ---------------------------------------------------------------------------------------------------------------
# Resize, flip


def test_mask_resize_is_antialiased_bilinear_above_one_half():
    m = np.zeros((8, 8), bool)
    m[:4, :4] = True
    np.testing.assert_array_equal(tr.resize_masks(m, 4, 4), np.kron([[1, 0], [0, 0]], np.ones((2, 2))).astype(bool))
    # Halving [1, 1, 0, 0] with PIL's widened triangle (taps 1/8, 3/8, 3/8, 1/8; renormalised at the border):
    # pixel 0 = (3/8 + 3/8) / (7/8) = 6/7, pixel 1 = (1/8) / (7/8) = 1/7.
    row = np.array([[1, 1, 0, 0]], bool).repeat(4, 0)
    np.testing.assert_array_equal(tr.resize_masks(row, 2, 2), [[True, False], [True, False]])
    # A one-pixel line shrunk 4x averages to 1/4 and vanishes (nearest would keep or drop it by position).
    line = np.zeros((16, 16), bool)
    line[:, 6] = True
    assert not tr.resize_masks(line, 4, 4).any()
    assert tr.resize_masks(m, 16, 16).sum() == 64  # 2x up: the 4x4 block becomes 8x8


def test_hflip_mirrors_frames_and_masks():
    f = np.random.default_rng(0).integers(0, 255, (2, 8, 10, 3), dtype=np.uint8)
    m = np.random.default_rng(1).random((2, 3, 8, 10)) > 0.5
    cfg = dataclasses.replace(OFF, hflip_prob=1.0)
    out_f, out_m = tr.augment_clip(np.random.default_rng(0), f, m, 8, dataclasses.replace(cfg))
    # The resize (10 -> 8 wide) runs after the flip: compare with flipping and then resizing.
    want_m = tr.resize_masks(m[..., ::-1], 8, 8)
    np.testing.assert_array_equal(out_m, want_m)
    want_f = np.stack([np.asarray(_pil(x[:, ::-1]).resize((8, 8), Image.Resampling.BILINEAR)) for x in f])
    np.testing.assert_array_equal(out_f, want_f)


# ---------------------------------------------------------------------------------------------------------------
# Colour


def test_brightness_contrast_saturation_formulas():
    px = np.array([[[10, 100, 200], [50, 60, 70]]], np.uint8)  # (1, 2, 3)
    out = np.asarray(tr.adjust_brightness(_pil(px), 1.5)).astype(int)
    np.testing.assert_array_equal(out, [[[15, 150, 255], [75, 90, 105]]])  # clip(1.5 x)
    luma = px.astype(float) @ [0.299, 0.587, 0.114]  # (1, 2)
    # Contrast: towards the rounded mean luma.
    mean = round(float(np.mean(np.asarray(_pil(px).convert("L")))))
    out = np.asarray(tr.adjust_contrast(_pil(px), 0.5)).astype(float)
    np.testing.assert_allclose(out, np.clip(mean + 0.5 * (px.astype(float) - mean), 0, 255), atol=1)
    # Saturation: towards each pixel's luma.
    out = np.asarray(tr.adjust_saturation(_pil(px), 0.25)).astype(float)
    np.testing.assert_allclose(out, np.clip(luma[..., None] + 0.25 * (px - luma[..., None]), 0, 255), atol=1)
    np.testing.assert_array_equal(np.asarray(tr.adjust_saturation(_pil(px), 1.0)), px)


def test_grayscale_has_equal_channels_with_itu_601_weights():
    px = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = np.asarray(tr.to_grayscale(_pil(px))).astype(float)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 0], px.astype(float) @ [0.299, 0.587, 0.114], atol=1)


def test_jitter_params_range_order_and_consistency():
    rng = np.random.default_rng(0)
    draws = [tr.jitter_params(rng, (0.1, 0.03, 0.05)) for _ in range(300)]
    f = np.array([d[1] for d in draws])
    assert f.min(0).tolist() > [0.9, 0.97, 0.95] and f.max(0).tolist() < [1.1, 1.03, 1.05]
    assert all(sorted(d[0].tolist()) == [0, 1, 2, 3] for d in draws)
    assert len({tuple(d[0]) for d in draws}) == 24  # every order of the four adjustments occurs
    # Applying in the drawn order: brightness then contrast differs from contrast then brightness.
    px = _pil(np.array([[[10, 100, 250], [200, 30, 60]]]))
    a = np.asarray(tr.apply_jitter(px, np.array([0, 1, 2, 3]), (1.6, 0.3, 1.0)))
    b = np.asarray(tr.apply_jitter(px, np.array([1, 0, 2, 3]), (1.6, 0.3, 1.0)))
    assert not np.array_equal(a, b)
    # Identical frames stay identical under the consistent jitter and come apart under the per-frame one.
    frames = [_pil(np.full((4, 4, 3), (120, 80, 40), np.uint8)) for _ in range(4)]
    same = [np.asarray(x) for x in tr.random_jitter(np.random.default_rng(1), frames, (0.3, 0.3, 0.3), True)]
    assert all(np.array_equal(s, same[0]) for s in same) and not np.array_equal(same[0], np.asarray(frames[0]))
    diff = [np.asarray(x) for x in tr.random_jitter(np.random.default_rng(1), frames, (0.3, 0.3, 0.3), False)]
    assert len({d.tobytes() for d in diff}) == 4


def test_grayscale_probability_is_per_clip():
    frames = [_pil(np.random.default_rng(i).integers(0, 255, (4, 4, 3))) for i in range(3)]
    grey = 0
    for s in range(400):
        out = [np.asarray(f) for f in tr.random_grayscale(np.random.default_rng(s), frames, 0.05)]
        flags = [bool(np.all(o[..., 0] == o[..., 1]) and np.all(o[..., 1] == o[..., 2])) for o in out]
        assert len(set(flags)) == 1  # all frames or none
        grey += flags[0]
    assert 8 <= grey <= 35  # 400 * 0.05 = 20 expected


# ---------------------------------------------------------------------------------------------------------------
# Mosaic


@pytest.mark.parametrize("hflip", [False, True])
def test_mosaic_layout(hflip):
    S = 16
    f = np.random.default_rng(0).integers(0, 255, (2, S, S, 3), dtype=np.uint8)
    m = np.zeros((2, 2, S, S), bool)
    m[:, 0, 2:10, 1:7] = True
    m[:, 1, 9:15, 8:14] = True
    cfg = dataclasses.replace(OFF, mosaic_prob=1.0, mosaic_hflip=hflip)
    rng = np.random.default_rng(7)
    out_f, out_m = tr.random_mosaic(rng, [_pil(x) for x in f], m, cfg)
    rng = np.random.default_rng(7)
    rng.random()
    ty, tx = int(rng.integers(2)), int(rng.integers(2))
    flips = rng.random((2, 2)) < 0.5 if hflip else np.zeros((2, 2), bool)
    if hflip:
        assert flips.any()  # seed 7 flips some cell
    for t in range(2):
        small = np.asarray(_pil(f[t]).resize((8, 8), Image.Resampling.BILINEAR))
        small_m = tr.resize_masks(m[t], 8, 8)
        frame = np.asarray(out_f[t])
        for i in range(2):
            for j in range(2):
                cell = frame[8 * i : 8 * i + 8, 8 * j : 8 * j + 8]
                np.testing.assert_array_equal(cell, small[:, ::-1] if flips[i, j] else small)
                cell_m = out_m[t][:, 8 * i : 8 * i + 8, 8 * j : 8 * j + 8]
                if (i, j) == (ty, tx):
                    np.testing.assert_array_equal(cell_m, small_m[..., ::-1] if flips[i, j] else small_m)
                else:
                    assert not cell_m.any()


def test_mosaic_frequency_and_cells_of_odd_size():
    cfg = dataclasses.replace(OFF, mosaic_prob=0.1)
    f = [_pil(np.zeros((5, 7, 3), np.uint8) + 9)]
    m = np.ones((1, 1, 5, 7), bool)
    hits = sum(tr.random_mosaic(np.random.default_rng(s), f, m, cfg)[1].sum() < 35 for s in range(500))
    assert 30 <= hits <= 75  # 50 expected
    out_m = tr.random_mosaic(np.random.default_rng(0), f, m, dataclasses.replace(cfg, mosaic_prob=1.0))[1]
    # Cells of a 5x7 frame: rows [0, 2), [2, 5); cols [0, 3), [3, 7); the full mask fills exactly its cell.
    sizes = {(2, 3), (2, 4), (3, 3), (3, 4)}
    ys, xs = np.nonzero(out_m[0, 0])
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) in sizes
    assert out_m.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)


# ---------------------------------------------------------------------------------------------------------------
# The pipeline


def test_augment_clip_is_deterministic_by_seed():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 255, (3, 30, 40, 3), dtype=np.uint8)
    m = np.zeros((3, 2, 30, 40), bool)
    m[:, 0, 8:20, 10:25] = True
    m[:, 1, 18:28, 25:38] = True
    a = tr.augment_clip(np.random.default_rng(11), f, m, 32)
    b = tr.augment_clip(np.random.default_rng(11), f, m, 32)
    c = tr.augment_clip(np.random.default_rng(12), f, m, 32)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (3, 32, 32, 3) and a[0].dtype == np.uint8
    assert a[1].shape == (3, 2, 32, 32) and a[1].dtype == bool
    # With everything off the clip is only resized.
    f2, m2 = tr.augment_clip(np.random.default_rng(11), f, m, 32, OFF)
    np.testing.assert_array_equal(m2, tr.resize_masks(m, 32, 32))
    np.testing.assert_array_equal(f2[1], np.asarray(_pil(f[1]).resize((32, 32), Image.Resampling.BILINEAR)))


def test_augment_clip_rejects_bad_shapes():
    with pytest.raises(ValueError, match="uint8"):
        tr.augment_clip(np.random.default_rng(0), np.zeros((2, 8, 8, 3), np.float32), np.zeros((2, 1, 8, 8)), 8)
    with pytest.raises(ValueError, match="masks must be"):
        tr.augment_clip(np.random.default_rng(0), np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 1, 8, 9)), 8)
