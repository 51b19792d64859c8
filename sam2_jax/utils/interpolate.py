"""``torch.nn.functional.interpolate(..., align_corners=False)`` on NHWC arrays, equal to PyTorch (CPU).

SAM 2 resizes with ``F.interpolate`` in several places (the image predictor's bilinear+antialias input resize,
the bilinear upsampling of low-res masks, the FPN neck's nearest x2, bicubic resizing of position embeddings),
so the port needs PyTorch's exact sampling rules, which differ from ``jax.image.resize``:
- bilinear / bicubic without antialias: ``src = (dst + 0.5) * in / out - 0.5``; bilinear clamps ``src`` at 0,
  bicubic (Keys, A = -0.75) clamps its four taps to the border instead.
- antialias (bilinear, or bicubic with A = -0.5 as in PIL): the filter is widened by ``in / out`` when
  downsampling, its taps are cut at the border and the weights renormalised to sum to 1.
- nearest is PyTorch's legacy rule ``src = min(floor(dst * in / out), in - 1)`` with the scale in float32.

Not a port of a Meta file; the formulas follow ``aten/src/ATen/native/UpSample.h`` and
``aten/src/ATen/native/cpu/UpSampleKernel.cpp``. Deviations: channels-last layout; each axis is resampled as a
weighted sum of gathered rows (width first, then height, as the CPU kernels do), so results equal PyTorch's up
to float32 rounding (measured <= 5e-7 bilinear, <= 3e-6 bicubic on unit-normal inputs). The tap tables are
built in numpy at trace time from the static shapes. A gather formulation is used instead of a dense
``(out, in)`` matmul: it is exact whatever the backend's matmul precision, and costs O(out * taps), not
O(out * in).
"""

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

_MODES = ("nearest", "bilinear", "bicubic")


def _linear_filter(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _cubic_filter(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _scale(in_size: int, out_size: int, scale_factor: float | None) -> float:
    """PyTorch's ``area_pixel_compute_scale`` (align_corners=False), in float32 like the CPU kernels."""
    if scale_factor is not None:
        return float(np.float32(1.0 / scale_factor))
    return float(np.float32(in_size) / np.float32(out_size))


@functools.lru_cache(maxsize=256)
def _taps(
    in_size: int, out_size: int, mode: str, antialias: bool, scale_factor: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, both ``(out_size, taps)``, for one axis."""
    scale = _scale(in_size, out_size, scale_factor)
    dst = np.arange(out_size, dtype=np.float64)

    if mode == "nearest":
        if out_size == in_size:
            idx = np.arange(out_size)
        elif out_size == 2 * in_size:
            idx = np.arange(out_size) >> 1
        else:
            # float32 product and floor as in ``nearest_idx``; float64 rounds some boundaries differently.
            src = np.floor(dst.astype(np.float32) * np.float32(scale))
            idx = np.minimum(src.astype(np.int64), in_size - 1)
        return idx[:, None], np.ones((out_size, 1), np.float32)

    if antialias:
        interp_size = 2 if mode == "bilinear" else 4
        if mode == "bilinear":
            filt = _linear_filter
        else:
            filt = functools.partial(_cubic_filter, a=-0.5)
        # Downsampling widens the filter by the scale; upsampling keeps the plain kernel.
        support = interp_size * 0.5 * scale if scale >= 1.0 else interp_size * 0.5
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        n_taps = int(math.ceil(support)) * 2 + 1
        center = (scale * (dst + 0.5)).astype(np.float32).astype(np.float64)
        # C++ int casts truncate toward zero; the max with 0 makes that a floor here.
        xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
        xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
        xsize = np.clip(xmax - xmin, 0, n_taps)
        j = np.arange(n_taps)[None, :]
        w = filt((j + xmin[:, None] - center[:, None] + 0.5) * invscale)
        w = np.where(j < xsize[:, None], w, 0.0)
        total = w.sum(axis=1, keepdims=True)
        w = np.where(total != 0.0, w / np.where(total != 0.0, total, 1.0), w)
        idx = np.minimum(xmin[:, None] + j, in_size - 1)
        return idx, w.astype(np.float32)

    # One rounding of ``scale * (dst + 0.5) - 0.5`` (the compiled kernel fuses it into an FMA); rounding each
    # float32 step separately moves the source index by up to 4e-6 pixels at scale 36.
    src = (scale * (dst + 0.5) - 0.5).astype(np.float32).astype(np.float64)
    if mode == "bilinear":
        src = np.maximum(src, 0.0)
    # ``guard_index_and_lambda``: integer part capped at the last pixel, fraction kept in [0, 1].
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    t = np.clip(src - i0, 0.0, 1.0)
    if mode == "bilinear":
        idx = np.stack([i0, np.minimum(i0 + 1, in_size - 1)], axis=1)
        w = np.stack([1.0 - t, t], axis=1)
    else:
        a = -0.75
        w = np.stack(
            [
                _cubic_filter(t + 1.0, a),
                _cubic_filter(t, a),
                _cubic_filter(1.0 - t, a),
                _cubic_filter(2.0 - t, a),
            ],
            axis=1,
        )
        idx = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    return idx, w.astype(np.float32)


def _resample_axis(x: jax.Array, axis: int, idx: np.ndarray, w: np.ndarray) -> jax.Array:
    """``y[o] = sum_k w[o, k] * x[idx[o, k]]`` along ``axis``, taps accumulated in order like PyTorch."""
    n_taps = idx.shape[1]
    if n_taps == 1 and np.all(w == 1.0):
        return jnp.take(x, jnp.asarray(idx[:, 0], jnp.int32), axis=axis)
    bshape = [1] * x.ndim
    bshape[axis] = idx.shape[0]
    y = None
    for k in range(n_taps):
        if not np.any(w[:, k]):
            continue
        rows = jnp.take(x, jnp.asarray(idx[:, k], jnp.int32), axis=axis)
        term = rows * jnp.asarray(w[:, k]).reshape(bshape)
        y = term if y is None else y + term
    if y is None:
        shape = list(x.shape)
        shape[axis] = idx.shape[0]
        y = jnp.zeros(shape, x.dtype)
    return y


def interpolate(
    x: jax.Array | np.ndarray,
    size: Sequence[int] | int | None = None,
    mode: str = "nearest",
    antialias: bool = False,
    scale_factor: float | Sequence[float] | None = None,
) -> jax.Array:
    """Resize the spatial axes of an NHWC array like ``F.interpolate(..., align_corners=False)`` on NCHW.

    Args:
      x: ``(..., H, W, C)`` array (usually ``(B, H, W, C)``); float for ``bilinear``/``bicubic``.
      size: output ``(H_out, W_out)`` (or one int for both); static under ``jit``.
      mode: ``'nearest'`` (PyTorch's legacy nearest), ``'bilinear'`` or ``'bicubic'``.
      antialias: PyTorch's ``antialias=True`` (bilinear and bicubic only).
      scale_factor: instead of ``size``: output size ``floor(in * scale_factor)`` and the source scale
        ``1 / scale_factor``, as PyTorch does with ``recompute_scale_factor=None``.

    Returns:
      ``(..., H_out, W_out, C)``; float32 for ``bilinear``/``bicubic``, the input dtype for ``nearest``.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if antialias and mode == "nearest":
        raise ValueError("antialias=True needs mode 'bilinear' or 'bicubic', got mode 'nearest'")
    if x.ndim < 3:
        raise ValueError(f"expected an (..., H, W, C) array, got shape {x.shape}")
    in_hw = tuple(int(d) for d in x.shape[-3:-1])
    if (size is None) == (scale_factor is None):
        raise ValueError(f"give exactly one of size and scale_factor, got size={size}, scale_factor={scale_factor}")
    if size is not None:
        out_hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        scales = (None, None)
    else:
        scales = (
            (float(scale_factor),) * 2
            if isinstance(scale_factor, (int, float))
            else tuple(float(s) for s in scale_factor)
        )
        out_hw = tuple(int(math.floor(n * s)) for n, s in zip(in_hw, scales, strict=True))
    if len(out_hw) != 2 or min(out_hw) < 1:
        raise ValueError(f"output size must be two positive ints, got {out_hw}")
    if min(in_hw) < 1:
        raise ValueError(f"input spatial size must be positive, got {in_hw}")

    x = jnp.asarray(x)
    if mode != "nearest":
        x = x.astype(jnp.float32)
    # Width first, then height (the order of PyTorch's separable CPU kernels).
    for axis, n_in, n_out, sf in (
        (x.ndim - 2, in_hw[1], out_hw[1], scales[1]),
        (x.ndim - 3, in_hw[0], out_hw[0], scales[0]),
    ):
        if n_in == n_out and sf is None:
            continue
        idx, w = _taps(n_in, n_out, mode, antialias, sf)
        x = _resample_axis(x, axis, idx, w)
    return x
