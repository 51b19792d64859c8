"""SAMURAI's box Kalman filter and candidate choice, batched over objects, as pure JAX functions.

Ports ``sam2/sam2/utils/kalman_filter.py`` and the ``samurai_mode`` branch of ``_forward_sam_heads`` in
``sam2/sam2/modeling/sam2_base.py`` (github ``yangchris11/samurai``, Apache-2.0), read and rewritten:
- the state is (x, y, a, h) box centre, aspect ratio and height with their velocities; constant-velocity motion;
  noise scaled by the height (``std_weight_position = 1/20``, ``std_weight_velocity = 1/160``);
- a candidate's box is the min/max pixel index of ``high_res_mask > 0`` (``[0, 0, 0, 0]`` when empty, whose IoU
  with anything is 0), ``h = 0`` is taken as 1 when converting to (x, y, a, h);
- per object: while ``stable == 0`` the filter is (re)initiated on the best-IoU mask; while
  ``stable < stable_frames_threshold`` it predicts and updates on the best-IoU mask when its IoU passes
  ``stable_ious_threshold`` (else ``stable = 0``); once stable, the candidate maximises
  ``w * IoU(predicted box, candidate box) + (1 - w) * predicted IoU``, and the filter updates on it unless its
  predicted IoU is below ``stable_ious_threshold`` (then ``stable = 0``).

Deviations: float32 instead of numpy's float64 (the tests compare means within 1e-3 px); the 4x4 Cholesky solve of
the Kalman gain is unrolled (``cho_solve``) instead of calling LAPACK.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

STD_POS, STD_VEL = 1.0 / 20, 1.0 / 160
# x' = x + v (dt = 1). A numpy constant: importing the tracker must not start a JAX backend (``train.py`` calls
# ``jax.distributed.initialize`` after its imports).
_MOTION = np.eye(8, dtype=np.float32) + np.eye(8, k=4, dtype=np.float32)


def mask_boxes(masks: jax.Array) -> jax.Array:
    """(..., H, W) logits -> (..., 4) xyxy pixel boxes of ``mask > 0`` (inclusive indices; zeros when empty)."""
    fg = masks > 0
    rows, cols = fg.any(-1), fg.any(-2)  # (..., H), (..., W)
    H, W = masks.shape[-2:]
    first = lambda a: jnp.argmax(a, -1)
    last = lambda a, n: n - 1 - jnp.argmax(a[..., ::-1], -1)
    box = jnp.stack([first(cols), first(rows), last(cols, W), last(rows, H)], -1).astype(jnp.float32)
    return jnp.where(rows.any(-1)[..., None], box, 0.0)


def xyxy_to_xyah(box: jax.Array) -> jax.Array:
    x1, y1, x2, y2 = jnp.moveaxis(box, -1, 0)
    h = y2 - y1
    h = jnp.where(h == 0, 1.0, h)
    return jnp.stack([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / h, h], -1)


def xyah_to_xyxy(xyah: jax.Array) -> jax.Array:
    xc, yc, a, h = jnp.moveaxis(xyah[..., :4], -1, 0)
    return jnp.stack([xc - a * h / 2, yc - h / 2, xc + a * h / 2, yc + h / 2], -1)


def box_iou(box: jax.Array, boxes: jax.Array) -> jax.Array:
    """IoU of box (..., 4) with boxes (..., M, 4), xyxy; 0 for an all-zero candidate box or an empty union."""
    b = box[..., None, :]
    iw = jnp.maximum(0.0, jnp.minimum(b[..., 2], boxes[..., 2]) - jnp.maximum(b[..., 0], boxes[..., 0]))
    ih = jnp.maximum(0.0, jnp.minimum(b[..., 3], boxes[..., 3]) - jnp.maximum(b[..., 1], boxes[..., 1]))
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    union = area(b) + area(boxes) - inter
    iou = jnp.where(union != 0, inter / jnp.where(union != 0, union, 1.0), 0.0)
    return jnp.where((boxes == 0).all(-1), 0.0, iou)


def initiate(xyah: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(O, 4) measurement -> mean (O, 8), covariance (O, 8, 8)."""
    h = xyah[:, 3]
    one = jnp.ones_like(h)
    std = jnp.stack(
        [
            2 * STD_POS * h,
            2 * STD_POS * h,
            1e-2 * one,
            2 * STD_POS * h,
            10 * STD_VEL * h,
            10 * STD_VEL * h,
            1e-5 * one,
            10 * STD_VEL * h,
        ],
        -1,
    )
    return jnp.concatenate([xyah, jnp.zeros_like(xyah)], -1), jax.vmap(jnp.diag)(std**2)


def predict(mean: jax.Array, cov: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = mean[:, 3]
    one = jnp.ones_like(h)
    std = jnp.stack(
        [STD_POS * h, STD_POS * h, 1e-2 * one, STD_POS * h, STD_VEL * h, STD_VEL * h, 1e-5 * one, STD_VEL * h], -1
    )
    mean = mean @ _MOTION.T
    cov = _MOTION @ cov @ _MOTION.T + jax.vmap(jnp.diag)(std**2)
    return mean, cov


def update(mean: jax.Array, cov: jax.Array, xyah: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Correct (O, 8), (O, 8, 8) with measurements (O, 4)."""
    h = mean[:, 3]
    std = jnp.stack([STD_POS * h, STD_POS * h, 1e-1 * jnp.ones_like(h), STD_POS * h], -1)
    proj_mean = mean[:, :4]
    proj_cov = cov[:, :4, :4] + jax.vmap(jnp.diag)(std**2)
    # K = P H^T S^-1  (S symmetric): solve S K^T = H P^T, by Cholesky as the reference (scipy cho_solve)
    gain = jnp.swapaxes(cho_solve(proj_cov, jnp.swapaxes(cov[:, :, :4], 1, 2)), 1, 2)  # (O, 8, 4)
    new_mean = mean + jnp.einsum("oij,oj->oi", gain, xyah - proj_mean)
    new_cov = cov - gain @ proj_cov @ jnp.swapaxes(gain, 1, 2)
    return new_mean, new_cov


def cho_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a^-1 b`` for symmetric positive definite a (O, n, n) and b (O, n, k), n small: a Cholesky factorisation
    unrolled into elementwise ops, so the step needs no linear-algebra custom call on any platform."""
    n = a.shape[-1]
    L: dict[tuple[int, int], jax.Array] = {}
    for j in range(n):
        L[j, j] = jnp.sqrt(a[:, j, j] - sum(L[j, k] ** 2 for k in range(j)))
        for i in range(j + 1, n):
            L[i, j] = (a[:, i, j] - sum(L[i, k] * L[j, k] for k in range(j))) / L[j, j]
    y: list[jax.Array] = []
    for i in range(n):  # L y = b
        y.append((b[:, i] - sum(L[i, k][:, None] * y[k] for k in range(i))) / L[i, i][:, None])
    x: dict[int, jax.Array] = {}
    for i in reversed(range(n)):  # L^T x = y
        x[i] = (y[i] - sum(L[k, i][:, None] * x[k] for k in range(i + 1, n))) / L[i, i][:, None]
    return jnp.stack([x[i] for i in range(n)], 1)


class KalmanState(NamedTuple):
    mean: jax.Array  # (O, 8)
    cov: jax.Array  # (O, 8, 8)
    stable: jax.Array  # (O,) int32: SAMURAI's ``stable_frames``


class SamuraiChoice(NamedTuple):
    best: jax.Array  # (O,) int: the kept candidate
    kalman: KalmanState  # after this frame
    kf_score: jax.Array  # (O,) Kalman IoU of the kept candidate (0 outside the stable phase)
    kf_scored: jax.Array  # (O,) bool: the stable phase scored the candidates (the reference's kf_score is not None)


def samurai_choice(kf: KalmanState, ious: jax.Array, high_res_multimasks: jax.Array, policy) -> SamuraiChoice:
    """SAMURAI's candidate choice and filter step for one frame: ious (O, M), high_res_multimasks (O, M, S, S)."""
    boxes = mask_boxes(high_res_multimasks)  # (O, M, 4)
    argmax_iou = jnp.argmax(ious, -1)
    init = kf.stable == 0
    scoring = ~init & (kf.stable >= policy.stable_frames_threshold)
    p_mean, p_cov = predict(kf.mean, kf.cov)
    kf_ious = box_iou(xyah_to_xyxy(p_mean), boxes)  # (O, M)
    weighted = policy.kf_score_weight * kf_ious + (1 - policy.kf_score_weight) * ious
    best = jnp.where(scoring, jnp.argmax(weighted, -1), argmax_iou)
    pick = lambda x: jnp.take_along_axis(x, best[:, None], 1)[:, 0]
    meas = xyxy_to_xyah(jnp.take_along_axis(boxes, best[:, None, None], 1)[:, 0])
    best_iou = pick(ious)
    i_mean, i_cov = initiate(meas)
    u_mean, u_cov = update(p_mean, p_cov, meas)
    # warming up: update when IoU > thr; stable phase: update unless IoU < thr (the reference's two comparisons)
    good = jnp.where(scoring, best_iou >= policy.stable_ious_threshold, best_iou > policy.stable_ious_threshold)
    sel = lambda a, b, c: jnp.where(
        init.reshape((-1,) + (1,) * (a.ndim - 1)), a, jnp.where(good.reshape((-1,) + (1,) * (a.ndim - 1)), b, c)
    )
    mean, cov = sel(i_mean, u_mean, p_mean), sel(i_cov, u_cov, p_cov)
    stable = jnp.where(init, 1, jnp.where(good, kf.stable + jnp.where(scoring, 0, 1), 0)).astype(jnp.int32)
    return SamuraiChoice(best, KalmanState(mean, cov, stable), pick(kf_ious) * scoring, scoring)
