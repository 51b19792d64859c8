"""Parity of the SAM heads (prompt encoder, mask decoder, two-way transformer) with the official modules.

The official modules come from ``official_model()`` (random weights, eval mode); ours get the same weights
through the converter's table. Inputs are realistic in shape and range: 64x64x256 image embeddings, high-res
features at stride 4 and 8, clicks in 1024 px coordinates, boxes as corner points, 256x256 mask logits.
"""

import copy
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.convert_weights.convert import convert_state_dict
from sam2_jax.convert_weights.mapping import _table, component_table, mask_decoder_modules
from sam2_jax.modeling.sam.mask_decoder import MaskDecoder
from sam2_jax.modeling.sam.prompt_encoder import PromptEncoder
from sam2_jax.modeling.sam.transformer import TwoWayTransformer
from tests.reference import component_params, official_model, requires_torch

# Measured max-abs errors (float32, XLA:CPU): about 1e-6 on the tokens and prompt embeddings; on mask logits
# up to 1.2e-5 where the reference weights give logits of magnitude ~30 (relative error ~4e-7).
ATOL = 3e-5
IMAGE_SIZE, EMBED, DIM = 1024, 64, 256


def nhwc(x) -> np.ndarray:
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else x).transpose(0, 2, 3, 1)


def t(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def our_prompt_encoder() -> PromptEncoder:
    return PromptEncoder(DIM, (EMBED, EMBED), (IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16)


def our_mask_decoder(**overrides) -> MaskDecoder:
    """The decoder as SAM2Base builds it from the official configs (with the build_sam2 post-processing)."""
    kw = dict(
        use_high_res_features=True,
        iou_prediction_use_sigmoid=True,
        dynamic_multimask_via_stability=True,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
    )
    kw.update(overrides)
    return MaskDecoder(DIM, TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=8, mlp_dim=2048), **kw)


@functools.lru_cache(maxsize=None)
def jitted_decoder(decoder: MaskDecoder, multimask_output: bool, repeat_image: bool, training: bool = False):
    return jax.jit(
        functools.partial(
            decoder.apply, multimask_output=multimask_output, repeat_image=repeat_image, training=training
        )
    )


def prompts(case: str, rng: np.random.Generator):
    """(points, boxes, masks) in the official layout (NCHW masks) for one named case."""
    if case == "one_positive":
        return (
            (rng.uniform(0, IMAGE_SIZE, (1, 1, 2)).astype(np.float32), np.array([[1]], np.int32)),
            None,
            None,
        )
    if case == "clicks_with_negatives_and_padding":
        coords = rng.uniform(0, IMAGE_SIZE, (3, 4, 2)).astype(np.float32)
        labels = np.array([[1, 0, 1, -1], [1, 1, 0, 0], [0, 1, -1, -1]], np.int32)
        return (coords, labels), None, None
    if case == "box_as_corner_points_and_click":
        x0, y0 = rng.uniform(0, 500, (2, 2)).T
        corners = np.stack([np.stack([x0, y0], -1), np.stack([x0 + 400, y0 + 300], -1)], 1)  # (2, 2, 2)
        click = rng.uniform(0, IMAGE_SIZE, (2, 1, 2))
        coords = np.concatenate([corners, click], 1).astype(np.float32)
        return (coords, np.array([[2, 3, 1], [2, 3, 0]], np.int32)), None, None
    if case == "boxes_argument_with_clicks":
        boxes = np.array([[100.0, 200.0, 600.0, 700.0], [10.5, 0.0, 1023.0, 511.0]], np.float32)
        coords = rng.uniform(0, IMAGE_SIZE, (2, 2, 2)).astype(np.float32)
        return (coords, np.array([[1, 0], [1, 1]], np.int32)), boxes, None
    if case == "box_only":
        return None, np.array([[50.0, 60.0, 900.0, 1000.0]], np.float32), None
    if case == "mask_and_click":
        mask = (4.0 * rng.standard_normal((2, 1, 4 * EMBED, 4 * EMBED))).astype(np.float32)
        coords = rng.uniform(0, IMAGE_SIZE, (2, 1, 2)).astype(np.float32)
        return (coords, np.array([[1], [0]], np.int32)), None, mask
    if case == "mask_only":
        return None, None, (4.0 * rng.standard_normal((1, 1, 4 * EMBED, 4 * EMBED))).astype(np.float32)
    if case == "nothing":
        return None, None, None
    raise ValueError(case)


PROMPT_CASES = [
    "one_positive",
    "clicks_with_negatives_and_padding",
    "box_as_corner_points_and_click",
    "boxes_argument_with_clicks",
    "box_only",
    "mask_and_click",
    "mask_only",
    "nothing",
]


def run_prompt_encoders(case: str, name: str = "sam2.1_hiera_t", seed: int = 0):
    """(ours, official) sparse (B, N, C) and dense NHWC embeddings for one prompt case."""
    import torch

    points, boxes, masks = prompts(case, np.random.default_rng(PROMPT_CASES.index(case)))
    with torch.no_grad():
        s_t, d_t = official_model(name, seed).sam_prompt_encoder(
            None if points is None else (t(points[0]), t(points[1])),
            None if boxes is None else t(boxes),
            None if masks is None else t(masks),
        )
    s, d = jax.jit(our_prompt_encoder().apply)(
        {"params": component_params("sam_prompt_encoder", name, seed)},
        None if points is None else (jnp.asarray(points[0]), jnp.asarray(points[1])),
        None if boxes is None else jnp.asarray(boxes),
        None if masks is None else jnp.asarray(nhwc(masks)),
    )
    return (np.asarray(s), np.asarray(d)), (s_t.numpy(), nhwc(d_t))


def dense_pe(name: str = "sam2.1_hiera_t", seed: int = 0):
    import torch

    with torch.no_grad():
        pe_t = official_model(name, seed).sam_prompt_encoder.get_dense_pe()
    pe = our_prompt_encoder().apply(
        {"params": component_params("sam_prompt_encoder", name, seed)}, method="get_dense_pe"
    )
    return np.asarray(pe), nhwc(pe_t)


def decoder_inputs(batch: int, image_batch: int, seed: int = 0):
    """Image embeddings (NCHW, official layout) and projected high-res features for ``image_batch`` images."""
    rng = np.random.default_rng(100 + seed)
    img = rng.standard_normal((image_batch, DIM, EMBED, EMBED)).astype(np.float32)
    f0 = rng.standard_normal((image_batch, DIM // 8, 4 * EMBED, 4 * EMBED)).astype(np.float32)
    f1 = rng.standard_normal((image_batch, DIM // 4, 2 * EMBED, 2 * EMBED)).astype(np.float32)
    return img, (f0, f1)


def run_decoders(dec_t, decoder, params, img, pe_t, sparse, dense, multimask, repeat_image, high_res, training=False):
    """Both decoders on the same inputs (official layout in); returns (ours, official) as numpy tuples."""
    import torch

    with torch.no_grad():
        out_t = dec_t(
            t(img),
            t(pe_t),
            t(sparse),
            t(dense),
            multimask,
            repeat_image,
            None if high_res is None else [t(f) for f in high_res],
        )
    out = jitted_decoder(decoder, multimask, repeat_image, training)(
        {"params": params},
        nhwc(img),
        nhwc(pe_t),
        sparse,
        nhwc(dense),
        high_res_features=None if high_res is None else tuple(nhwc(f) for f in high_res),
    )
    return tuple(np.asarray(o) for o in out), tuple(o.numpy() for o in out_t)


def assert_outputs_close(ours, ref, atol=ATOL):
    names = ("masks", "iou_pred", "sam_tokens_out", "object_score_logits")
    for n, a, b in zip(names, ours, ref, strict=True):
        assert a.shape == b.shape, (n, a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=n)


def official_decoder_variant(**kw):
    """An official MaskDecoder with other options, sharing the tiny model's weights where shapes agree, and
    our params for it converted through the mapping table."""
    import torch
    from sam2.modeling.sam.mask_decoder import MaskDecoder as TorchMaskDecoder
    from sam2.modeling.sam.transformer import TwoWayTransformer as TorchTwoWay

    base = official_model().sam_mask_decoder
    args = dict(
        transformer_dim=DIM,
        num_multimask_outputs=3,
        use_high_res_features=True,
        iou_prediction_use_sigmoid=True,
        dynamic_multimask_via_stability=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
    )
    args.update(kw)
    torch.manual_seed(1)
    dec_t = TorchMaskDecoder(transformer=TorchTwoWay(depth=2, embedding_dim=DIM, mlp_dim=2048, num_heads=8), **args)
    base_sd = base.state_dict()
    sd = {k: (base_sd[k] if k in base_sd and base_sd[k].shape == v.shape else v) for k, v in dec_t.state_dict().items()}
    dec_t.load_state_dict(sd, strict=True)
    dec_t.eval()
    cfg = types.SimpleNamespace(
        pred_obj_scores=args["pred_obj_scores"],
        pred_obj_scores_mlp=args["pred_obj_scores_mlp"],
        use_high_res_features_in_sam=args["use_high_res_features"],
    )
    table = component_table(_table(mask_decoder_modules(cfg)), "sam_mask_decoder")
    params = convert_state_dict({k: v.numpy() for k, v in sd.items()}, table)
    ours = our_mask_decoder(**{k: v for k, v in args.items() if k != "transformer_dim"})
    return dec_t, ours, params


# ----------------------------------------------------------------------------------------------------------
# Prompt encoder


@requires_torch
@pytest.mark.parametrize("case", PROMPT_CASES)
def test_prompt_encoder_matches_official(case):
    (s, d), (s_t, d_t) = run_prompt_encoders(case)
    assert s.shape == s_t.shape and d.shape == d_t.shape
    np.testing.assert_allclose(s, s_t, rtol=0, atol=ATOL)
    np.testing.assert_allclose(d, d_t, rtol=0, atol=ATOL)


@requires_torch
def test_prompt_encoder_pads_with_not_a_point_only_without_boxes():
    """The padding token is appended to clicks when no box is given, and not otherwise."""
    (s, _), _ = run_prompt_encoders("one_positive")
    not_a_point = np.asarray(component_params("sam_prompt_encoder")["not_a_point_embed"]["embedding"][0])
    assert s.shape == (1, 2, DIM)
    np.testing.assert_allclose(s[0, 1], not_a_point, atol=0)  # zero PE + not_a_point_embed
    (s, _), _ = run_prompt_encoders("boxes_argument_with_clicks")
    assert s.shape == (2, 2 + 2, DIM)


@requires_torch
def test_dense_pe_matches_official():
    pe, pe_t = dense_pe()
    assert pe.shape == (1, EMBED, EMBED, DIM)
    np.testing.assert_allclose(pe, pe_t, rtol=0, atol=ATOL)


@requires_torch
def test_prompt_encoder_param_shapes_match_converted():
    enc = our_prompt_encoder()
    shapes = jax.eval_shape(enc.init, jax.random.key(0), None, None, None)["params"]
    want = jax.tree.map(np.shape, component_params("sam_prompt_encoder"))
    assert jax.tree.map(lambda a: a.shape, shapes) == want
    assert enc.mask_input_size == (4 * EMBED, 4 * EMBED)


def test_prompt_encoder_rejects_bad_prompts():
    enc = our_prompt_encoder()
    with pytest.raises(ValueError, match="masks should be"):
        enc.init(jax.random.key(0), None, None, jnp.zeros((1, 128, 128, 1)))
    with pytest.raises(ValueError, match="points should be"):
        enc.init(jax.random.key(0), (jnp.zeros((1, 3, 2)), jnp.zeros((1, 2), jnp.int32)), None, None)
    with pytest.raises(ValueError, match="boxes should be"):
        enc.init(jax.random.key(0), None, jnp.zeros((2, 3)), None)


# ----------------------------------------------------------------------------------------------------------
# Mask decoder


@requires_torch
def test_mask_decoder_param_shapes_match_converted():
    dec = our_mask_decoder()
    img, (f0, f1) = decoder_inputs(1, 1)
    init = functools.partial(dec.init, multimask_output=True, repeat_image=False)
    shapes = jax.eval_shape(
        init,
        jax.random.key(0),
        nhwc(img),
        nhwc(img)[:1],
        np.zeros((1, 2, DIM), np.float32),
        nhwc(img),
        high_res_features=(nhwc(f0), nhwc(f1)),
    )["params"]
    want = jax.tree.map(np.shape, component_params("sam_mask_decoder"))
    assert jax.tree.map(lambda a: a.shape, shapes) == want


@requires_torch
def test_mask_decoder_multimask_chain_matches_official():
    """Prompt encoder -> mask decoder, each side on its own encoder's output: 3 images with clicks (positive,
    negative, padding), multimask output with high-res features."""
    _, (s_t, d_t) = run_prompt_encoders("clicks_with_negatives_and_padding")
    (s, d), _ = run_prompt_encoders("clicks_with_negatives_and_padding")
    img, high_res = decoder_inputs(3, 3)
    _, pe_t = dense_pe()
    pe_t = pe_t.transpose(0, 3, 1, 2)
    dec_t = official_model().sam_mask_decoder
    import torch

    with torch.no_grad():
        ref = dec_t(t(img), t(pe_t), t(s_t), t(d_t.transpose(0, 3, 1, 2)), True, False, [t(f) for f in high_res])
    ours = jitted_decoder(our_mask_decoder(), True, False)(
        {"params": component_params("sam_mask_decoder")},
        nhwc(img),
        dense_pe()[0],
        s,
        d,
        high_res_features=tuple(nhwc(f) for f in high_res),
    )
    ref, ours = tuple(o.numpy() for o in ref), tuple(np.asarray(o) for o in ours)
    assert ours[0].shape == (3, 3, 4 * EMBED, 4 * EMBED) and ours[2].shape == (3, 3, DIM)
    assert_outputs_close(ours, ref)


@requires_torch
def test_mask_decoder_single_mask_repeat_image_matches_official():
    """One image for 2 box prompts (``repeat_image``), single-mask output through the dynamic fallback."""
    _, (s_t, d_t) = run_prompt_encoders("box_as_corner_points_and_click")
    img, high_res = decoder_inputs(2, 1)
    _, pe_t = dense_pe()
    ours, ref = run_decoders(
        official_model().sam_mask_decoder,
        our_mask_decoder(),
        component_params("sam_mask_decoder"),
        img,
        pe_t.transpose(0, 3, 1, 2),
        s_t,
        d_t.transpose(0, 3, 1, 2),
        False,
        True,
        high_res,
    )
    assert ours[0].shape == (2, 1, 4 * EMBED, 4 * EMBED) and ours[2].shape == (2, 1, DIM)
    assert_outputs_close(ours, ref)


@requires_torch
def test_mask_decoder_dynamic_multimask_both_branches_in_full_forward():
    """Threshold placed between the single-mask stabilities of the batch, so one example keeps its single mask
    and the other falls back to the best multimask output."""
    import torch

    dec_t = copy.deepcopy(official_model().sam_mask_decoder)
    _, (s_t, d_t) = run_prompt_encoders("mask_and_click")
    _, pe_t = dense_pe()
    pe_t = pe_t.transpose(0, 3, 1, 2)
    # The first input seed whose two stabilities are far enough apart to split reliably (deterministic).
    for seed in range(10):
        img, high_res = decoder_inputs(2, 2, seed)
        with torch.no_grad():
            all_masks, all_iou, _, _ = dec_t.predict_masks(
                t(img), t(pe_t), t(s_t), t(d_t.transpose(0, 3, 1, 2)), False, [t(f) for f in high_res]
            )
            stab = dec_t._get_stability_scores(all_masks[:, 0:1]).numpy()[:, 0]
        lo, hi = sorted(stab)
        if hi - lo > 0.01:
            break
    assert hi - lo > 0.01, f"stabilities {stab} too close to split for every input seed"
    thresh = float((lo + hi) / 2)
    dec_t.dynamic_multimask_stability_thresh = thresh
    ours, ref = run_decoders(
        dec_t,
        our_mask_decoder(dynamic_multimask_stability_thresh=thresh),
        component_params("sam_mask_decoder"),
        img,
        pe_t,
        s_t,
        d_t.transpose(0, 3, 1, 2),
        False,
        False,
        high_res,
    )
    assert_outputs_close(ours, ref)
    # One example kept mask 0, the other took a multimask output (so the outputs differ from mask 0 there).
    single = all_masks[:, 0].numpy()
    kept = [np.abs(ref[0][i, 0] - single[i]).max() == 0 for i in range(2)]
    assert sorted(kept) == [False, True]


@requires_torch
def test_mask_decoder_training_mode_skips_dynamic_multimask():
    dec_t = copy.deepcopy(official_model().sam_mask_decoder).train()
    _, (s_t, d_t) = run_prompt_encoders("box_as_corner_points_and_click")
    img, high_res = decoder_inputs(2, 2)
    _, pe_t = dense_pe()
    ours, ref = run_decoders(
        dec_t,
        our_mask_decoder(),
        component_params("sam_mask_decoder"),
        img,
        pe_t.transpose(0, 3, 1, 2),
        s_t,
        d_t.transpose(0, 3, 1, 2),
        False,
        False,
        high_res,
        training=True,
    )
    assert_outputs_close(ours, ref)


@requires_torch
@pytest.mark.parametrize(
    "variant, multimask",
    [
        # no high-res skip, linear object-score head, plain IoU, single-mask token as SAM token in multimask
        (
            dict(
                use_high_res_features=False,
                pred_obj_scores_mlp=False,
                iou_prediction_use_sigmoid=False,
                use_multimask_token_for_obj_ptr=False,
            ),
            True,
        ),
        # no object-score head (constant 10), no dynamic fallback: mask 0 as is
        (
            dict(use_high_res_features=False, pred_obj_scores=False, dynamic_multimask_via_stability=False),
            False,
        ),
    ],
    ids=["no_high_res_linear_obj_head", "no_obj_scores"],
)
def test_mask_decoder_variants_match_official(variant, multimask):
    dec_t, dec, params = official_decoder_variant(**variant)
    _, (s_t, d_t) = run_prompt_encoders("clicks_with_negatives_and_padding")
    img, _ = decoder_inputs(3, 3)
    _, pe_t = dense_pe()
    ours, ref = run_decoders(
        dec_t,
        dec,
        params,
        img,
        pe_t.transpose(0, 3, 1, 2),
        s_t,
        d_t.transpose(0, 3, 1, 2),
        multimask,
        False,
        None,
    )
    assert_outputs_close(ours, ref)
    assert ours[0].shape == (3, 3 if multimask else 1, 4 * EMBED, 4 * EMBED) and ours[2].shape == (3, 1, DIM)
    if not variant.get("pred_obj_scores", True):
        np.testing.assert_array_equal(ours[3], np.full((3, 1), 10.0, np.float32))


@requires_torch
def test_conv_s0_s1_match_official():
    import torch

    dec_t = official_model().sam_mask_decoder
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((2, DIM, 32, 32)).astype(np.float32)
    x1 = rng.standard_normal((2, DIM, 16, 16)).astype(np.float32)
    with torch.no_grad():
        r0, r1 = dec_t.conv_s0(t(x0)), dec_t.conv_s1(t(x1))
    o0, o1 = our_mask_decoder().apply(
        {"params": component_params("sam_mask_decoder")},
        nhwc(x0),
        nhwc(x1),
        method="project_high_res_features",
    )
    np.testing.assert_allclose(np.asarray(o0), nhwc(r0), rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.asarray(o1), nhwc(r1), rtol=0, atol=ATOL)


@requires_torch
def test_dynamic_multimask_via_stability_crafted_logits():
    """Crafted logits whose stability lands on each side of the 0.98 threshold (and an empty union: 1)."""
    import torch

    dec_t = official_model().sam_mask_decoder
    rng = np.random.default_rng(7)
    H = W = 32
    logits = rng.standard_normal((5, 4, H, W)).astype(np.float32) * 3
    s0 = np.full((H, W), -5.0, np.float32)
    s0[:16] = 5.0
    logits[0, 0] = s0  # crisp mask: stability 1 -> keep token 0
    s1 = s0.copy()
    s1[16:26] = 0.01  # 320 of 832 union pixels inside (-delta, delta]: stability ~0.62 -> fall back
    logits[1, 0] = s1
    logits[2, 0] = -10.0  # empty union: stability defined as 1 -> keep
    s3 = s0.copy()
    s3[16, :5] = 0.0  # 5 of 517: 0.990 -> keep
    logits[3, 0] = s3
    s4 = s0.copy()
    s4[16, :20] = 0.0  # 20 of 532: 0.962 -> fall back
    logits[4, 0] = s4
    ious = rng.uniform(0, 1, (5, 4)).astype(np.float32)
    with torch.no_grad():
        m_t, i_t = dec_t._dynamic_multimask_via_stability(t(logits), t(ious))
        stab_t = dec_t._get_stability_scores(t(logits)).numpy()
    dec = our_mask_decoder()
    m, i = dec.apply({}, jnp.asarray(logits), jnp.asarray(ious), method="_dynamic_multimask_via_stability")
    stab = dec.apply({}, jnp.asarray(logits), method="_get_stability_scores")
    np.testing.assert_allclose(np.asarray(stab), stab_t, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(m), m_t.numpy())
    np.testing.assert_array_equal(np.asarray(i), i_t.numpy())
    kept = [bool(np.array_equal(m_t.numpy()[b, 0], logits[b, 0])) for b in range(5)]
    assert kept == [True, False, True, True, False]


def test_mask_decoder_rejects_mismatched_batches():
    dec = our_mask_decoder(use_high_res_features=False)
    img = jnp.zeros((2, 8, 8, DIM))
    with pytest.raises(ValueError, match="repeat_image"):
        dec.init(jax.random.key(0), img, img[:1], jnp.zeros((3, 2, DIM)), jnp.zeros((3, 8, 8, DIM)), True, False)


# ----------------------------------------------------------------------------------------------------------
# Other official configs (the heads are the same in every size; SAM 2 with other random weights)


@requires_torch
@pytest.mark.parametrize("name", ["sam2_hiera_t"])
def test_heads_match_official_other_config(name):
    seed = 1
    for case in ("mask_and_click", "clicks_with_negatives_and_padding"):
        (s, d), (s_t, d_t) = run_prompt_encoders(case, name, seed)
        np.testing.assert_allclose(s, s_t, rtol=0, atol=ATOL)
        np.testing.assert_allclose(d, d_t, rtol=0, atol=ATOL)
    pe, pe_t = dense_pe(name, seed)
    np.testing.assert_allclose(pe, pe_t, rtol=0, atol=ATOL)
    img, high_res = decoder_inputs(3, 3, seed)
    for multimask in (True, False):
        ours, ref = run_decoders(
            official_model(name, seed).sam_mask_decoder,
            our_mask_decoder(),
            component_params("sam_mask_decoder", name, seed),
            img,
            pe_t.transpose(0, 3, 1, 2),
            s_t,
            d_t.transpose(0, 3, 1, 2),
            multimask,
            False,
            high_res,
        )
        assert_outputs_close(ours, ref)
