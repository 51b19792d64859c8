"""The training forward against the official ``SAM2Train`` forward + loss, and its own invariants.

The official model runs in eval mode with ``center`` corrective clicks and noise-free boxes, so that both sides see
the same prompts; the training-mode pointer rule is kept (see ``official_sam2train``). Tiny model at 256 px.
"""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from configs.train_common import train_config
from sam2_jax.datasets.synthetic import synthetic_video
from sam2_jax.training import sam2_train as st
from tests.reference import converted_params, requires_torch

NAME = "sam2.1_hiera_t"
S, T, O, NCORR = 256, 3, 2, 2


def _config():
    cfg = train_config(NAME)
    cfg.model.image_size = S
    p = cfg.train.prompts
    p.num_correction_pt_per_frame, p.point_sampling, p.box_noise = NCORR, "center", 0.0
    return cfg


def _clip(seed=5):
    v = synthetic_video(seed, num_frames=T, height=S, width=S, num_objects=O, hide_prob=0.0, late_start_prob=0.0)
    masks = v.masks.copy()
    masks[1, 1] = False  # an object absent on frame 1: only its object score is supervised there
    return v.frames, masks


# (init frames, prompt types, extra corrected frames)
SCENARIOS = {
    "masks_on_two_frames": ([0, 2], ["mask", "mask"], []),
    "click_and_corrected_tracked_frame": ([0], ["click"], [2]),
    "box_and_click": ([0, 1], ["box", "click"], []),
}


def _plan(init, types, extra):
    kinds = {"mask": st.MASK, "click": st.CLICK, "box": st.BOX}
    rest = [t for t in range(T) if t not in init]
    return st.PromptPlan(
        init_frames=np.array(init + [0] * (2 - len(init)), np.int32),
        init_valid=np.arange(2) < len(init),
        prompt_type=np.array([kinds[k] for k in types] + [st.MASK] * (2 - len(types)), np.int32),
        track_frames=np.array(rest + [0] * (T - 1 - len(rest)), np.int32),
        track_valid=np.arange(T - 1) < len(rest),
        extra_correct_frames=np.array(extra + [-1] * (1 - len(extra)), np.int32),
        sample_from_gt=np.zeros((3, NCORR), bool),
    )


@functools.lru_cache(maxsize=1)
def _ours():
    from sam2_jax.build_sam import build_sam2

    cfg = _config()
    module = st.training_module(build_sam2(cfg, None, seed=0).module)
    fc = ml_collections.FrozenConfigDict(cfg)

    @jax.jit
    def value_and_grad(params, frames, masks, plan):
        def loss(p):
            losses, _ = st.clip_losses(module, p, st.normalize_images(frames), masks, plan, jax.random.key(0), fc)
            return losses["core_loss"], losses

        return jax.value_and_grad(loss, has_aux=True)(params)

    return value_and_grad


def _official(init, types, extra, frames, masks):
    import torch

    from tests.training.official import official_clip_forward, official_sam2train

    model = official_sam2train(NAME, S, NCORR)
    images = torch.from_numpy(np.asarray(st.normalize_images(frames)).transpose(0, 3, 1, 2).copy())
    model.zero_grad()
    corrected = [t for t, k in zip(init, types, strict=True) if k != "mask"] + extra
    losses = official_clip_forward(model, images, torch.from_numpy(masks), init, types, corrected)
    losses["core_loss"].backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in losses.items()}, grads


def _relative_errors(grads, ref_grads):
    """Per-parameter relative L2 error of our gradients, the official ones brought to our layout."""
    from configs import get_config
    from convert_weights.convert import convert_state_dict, flatten
    from convert_weights.mapping import param_table
    from tests.reference import reference_state_dict

    sd = {k: ref_grads.get(k, np.zeros_like(v)) for k, v in reference_state_dict(NAME).items()}
    ref = flatten(convert_state_dict(sd, param_table(get_config(NAME))))
    ours = flatten(jax.tree.map(np.asarray, grads))
    total = np.sqrt(sum(float(np.sum(r.astype(np.float64) ** 2)) for r in ref.values()))
    out = {}
    for k, r in ref.items():
        if k == ("sam_prompt_encoder", "pe_layer", "positional_encoding_gaussian_matrix"):
            continue  # a torch buffer (never trained): the official code has no gradient for it
        # Relative to the parameter's own gradient norm, floored at 1e-4 of the whole gradient's norm.
        denom = max(float(np.linalg.norm(r)), 1e-4 * total)
        out["/".join(k)] = float(np.linalg.norm(ours[k] - r)) / denom
    return out, total


@requires_torch
@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_loss_and_gradients_match_official(scenario):
    init, types, extra = SCENARIOS[scenario]
    frames, masks = _clip()
    ref_losses, ref_grads = _official(init, types, extra, frames, masks)
    (_, losses), grads = _ours()(converted_params(NAME), frames, masks, _plan(init, types, extra))
    for k, v in ref_losses.items():
        np.testing.assert_allclose(float(losses[k]), v, rtol=1e-4, atol=1e-5, err_msg=k)
    rel, total = _relative_errors(grads, ref_grads)
    worst = sorted(rel.items(), key=lambda kv: -kv[1])[:5]
    print(f"{scenario}: losses {ref_losses}; grad norm {total:.4g}; worst relative errors {worst}")
    assert total > 0 and worst[0][1] < 1e-3, worst


def test_prompt_plan_follows_the_official_probabilities():
    """``sample_prompt_plan`` reproduces ``prepare_prompt_inputs``' distribution (MOSE config): mask / click / box
    0.5 / 0.25 / 0.25, 1 or 2 initial frames, an extra corrected frame in 1/8 of the clips, GT clicks at 0.1."""
    cfg = _config()
    rng = np.random.default_rng(0)
    n = 4000
    plans = [st.sample_prompt_plan(rng, 8, cfg.train.prompts) for _ in range(n)]
    kind = np.array([p.prompt_type[0] for p in plans])
    for k, expected in ((st.MASK, 0.5), (st.CLICK, 0.25), (st.BOX, 0.25)):
        assert abs((kind == k).mean() - expected) < 0.03, (k, (kind == k).mean())
    assert abs(np.mean([p.init_valid[1] for p in plans]) - 0.5) < 0.03
    assert abs(np.mean([p.extra_correct_frames[0] >= 0 for p in plans]) - 0.125) < 0.02
    assert abs(np.mean([p.sample_from_gt.mean() for p in plans]) - 0.1) < 0.01
    for p in plans[:200]:
        init = p.init_frames[p.init_valid]
        track = p.track_frames[p.track_valid]
        assert init[0] == 0 and sorted(np.concatenate([init, track])) == list(range(8))
        assert list(track) == sorted(track)
        if p.extra_correct_frames[0] >= 0:
            assert p.prompt_type[0] != st.MASK and p.extra_correct_frames[0] in track
        if p.prompt_type[0] == st.MASK:
            assert (p.prompt_type[p.init_valid] == st.MASK).all()
