"""Basic layers with PyTorch-compatible parameter layouts and an explicit compute dtype.

Ports the few ``torch.nn`` layers that SAM 2 uses (``Linear``, ``Conv2d``, ``ConvTranspose2d``, ``LayerNorm`` and
Meta's ``LayerNorm2d``) as Flax Linen modules. Deviations from ``torch.nn``:
- NHWC activations; kernels stored as ``(in, out)`` (linear) and ``(kh, kw, in/groups, out)`` (conv), the layouts
  that ``convert_weights`` produces from the official ``(out, in)`` / ``(out, in, kh, kw)`` tensors.
- ``dtype`` is the compute dtype: inputs and kernels are cast to it, every dot/conv accumulates in float32
  (``preferred_element_type``), and the result is float32. On XLA:CPU a bf16 x bf16 -> bf16 dot is converted to
  float32 internally and runs slower than float32, so float32 accumulation is both faster and more accurate.
- LayerNorm computes its variance as ``mean((x - mean)^2)`` in float32 like PyTorch (Flax's default
  ``E[x^2] - E[x]^2`` loses digits on the large activations of the Hiera trunk).
"""

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.backend import resolve_depthwise_conv_impl

Dtype = Any

# Weight init for freshly built (unconverted) models; converted checkpoints overwrite every param.
default_kernel_init = nn.initializers.lecun_normal()


def dense(x: jax.Array, kernel: jax.Array, dtype: Dtype) -> jax.Array:
    """``x @ kernel`` in ``dtype`` with float32 accumulation and float32 result.

    ``lax.dot_general``, the op ``jnp.einsum("...i,io->...o")`` lowers to (the same program): jax2onnx converts the
    einsum by broadcasting both operands to ``(..., i, o)`` (a 0.7 GB temporary per layer of the 128 px encoder).
    """
    # (..., i) x (i, o) -> (..., o)
    dims = (((x.ndim - 1,), (0,)), ((), ()))
    return jax.lax.dot_general(x.astype(dtype), kernel.astype(dtype), dims, preferred_element_type=jnp.float32)


class Linear(nn.Module):
    """``torch.nn.Linear``: params ``kernel (in, out)``, ``bias (out,)``."""

    features: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    kernel_init: Callable = default_kernel_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        y = dense(x, kernel, self.dtype)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` on NHWC input with PyTorch's explicit integer padding.

    Params: ``kernel (kh, kw, in/groups, out)``, ``bias (out,)``. A 1x1 conv runs as a matmul (XLA:CPU's conv
    emitter is far slower than its dot; the same dot on every backend), a stride-1 depthwise conv as
    ``depthwise_impl`` picks (``backend.py``: shifted multiply-adds on CPU, 72 ms vs 5 ms for 7x7 on 64x64x256
    here, see REFERENCE.md; ``lax.conv_general_dilated`` elsewhere), other convs through
    ``lax.conv_general_dilated``.
    """

    features: int
    kernel_size: Sequence[int] = (1, 1)
    stride: Sequence[int] = (1, 1)
    padding: Sequence[int] = (0, 0)
    groups: int = 1
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    depthwise_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        sh, sw = _pair(self.stride)
        ph, pw = _pair(self.padding)
        cin = x.shape[-1]
        if cin % self.groups:
            raise ValueError(f"Conv2d: {cin} input channels not divisible by groups={self.groups}")
        kernel = self.param("kernel", default_kernel_init, (kh, kw, cin // self.groups, self.features))
        if (kh, kw, sh, sw, ph, pw, self.groups) == (1, 1, 1, 1, 0, 0, 1):
            y = dense(x, kernel[0, 0], self.dtype)
        elif (
            self.groups == cin
            and self.features == cin
            and (sh, sw) == (1, 1)
            and resolve_depthwise_conv_impl(self.depthwise_impl) == "shifted"
        ):
            y = _depthwise_conv(x, kernel[:, :, 0, :], (ph, pw), self.dtype)
        else:
            y = jax.lax.conv_general_dilated(
                x.astype(self.dtype),
                kernel.astype(self.dtype),
                window_strides=(sh, sw),
                padding=((ph, ph), (pw, pw)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=self.groups,
                preferred_element_type=jnp.float32,
            )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _depthwise_conv(x: jax.Array, kernel: jax.Array, padding, dtype: Dtype) -> jax.Array:
    """Depthwise stride-1 conv as a sum of shifted products. x: (B, H, W, C), kernel: (kh, kw, C)."""
    kh, kw, _ = kernel.shape
    ph, pw = padding
    B, H, W, C = x.shape
    Ho, Wo = H + 2 * ph - kh + 1, W + 2 * pw - kw + 1
    xp = jnp.pad(x.astype(dtype), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    k = kernel.astype(dtype)
    acc = jnp.zeros((B, Ho, Wo, C), jnp.float32)
    for i in range(kh):
        for j in range(kw):
            acc = acc + (xp[:, i : i + Ho, j : j + Wo, :] * k[i, j]).astype(jnp.float32)
    return acc


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` with ``kernel_size == stride`` and no padding (the only kind SAM 2 uses).

    Non-overlapping, so each input pixel writes one ``k x k`` output patch:
    ``out[b, k*i + a, k*j + c, o] = sum_ci x[b, i, j, ci] * kernel[a, c, ci, o] + bias[o]``.
    Params: ``kernel (k, k, in, out)`` (the official ``(in, out, k, k)`` permuted by (2, 3, 0, 1)), ``bias (out,)``.
    """

    features: int
    kernel_size: int = 2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        B, H, W, C = x.shape
        kernel = self.param("kernel", default_kernel_init, (k, k, C, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        # (B, H, W, Cin) x (a, c, Cin, O) -> (B, H, a, W, c, O) -> (B, H*k, W*k, O)
        y = jnp.einsum(
            "bhwi,acio->bhawco",
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            preferred_element_type=jnp.float32,
        )
        return y.reshape(B, H * k, W * k, self.features) + bias


class LayerNorm(nn.Module):
    """``torch.nn.LayerNorm`` over the last axis (also Meta's ``LayerNorm2d``, which is this on NHWC input).

    Params: ``scale``, ``bias`` (the official ``weight``, ``bias``). Statistics in float32.
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


def LayerNorm2d(epsilon: float = 1e-6, name: str | None = None) -> LayerNorm:
    """Meta's ``LayerNorm2d`` (channel norm of an NCHW map, eps 1e-6) on an NHWC map."""
    return LayerNorm(epsilon=epsilon, name=name)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def gelu(x: jax.Array) -> jax.Array:
    """``torch.nn.GELU()``: ``x / 2 * (1 + erf(x / sqrt(2)))``, torch's own formula (not the tanh approximation that
    is Flax's default). ``jax.nn.gelu(approximate=False)`` computes ``erfc`` instead, which XLA:CPU runs slower (Hiera's
    first MLP, 65536 x 384 activations: 76 -> 60 ms, Xeon, 2026-12-08); both are within 1.1e-6 of float64 on values
    up to 30, as torch's float32 is."""
    half = jnp.asarray(0.5, x.dtype)
    return half * x * (1 + jax.lax.erf(x * jnp.asarray(math.sqrt(0.5), x.dtype)))
