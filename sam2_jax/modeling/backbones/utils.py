"""Port of ``sam2/modeling/backbones/utils.py``: window partition / unpartition and the patch embedding.

Deviations from the official file:
- NHWC in and out (the official ``PatchEmbed`` takes NCHW and returns NHWC).
- ``PatchEmbed.proj`` stays XLA's strided conv: space-to-depth + matmul formulations measured slower here
  (folding the image into 4x4 blocks or gathering 7x7 columns costs more than the whole conv, ~40 ms of ~1 s).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.layers import Conv2d

Dtype = Any


def window_partition(x: jax.Array, window_size: int) -> tuple[jax.Array, tuple[int, int]]:
    """Split an NHWC map into non-overlapping ``window_size`` windows, zero-padding bottom/right as needed.

    Args:
      x: ``(B, H, W, C)``.
      window_size: side of a square window.

    Returns:
      ``(B * num_windows, window_size, window_size, C)`` windows (row-major over the window grid, batch
      outermost) and the padded size ``(Hp, Wp)``.
    """
    B, H, W, C = x.shape
    ws = window_size
    pad_h, pad_w = -H % ws, -W % ws
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    Hp, Wp = H + pad_h, W + pad_w
    # (B, Hp, Wp, C) -> (B, Hp/ws, ws, Wp/ws, ws, C) -> (B, Hp/ws, Wp/ws, ws, ws, C) -> (B*nW, ws, ws, C)
    x = x.reshape(B, Hp // ws, ws, Wp // ws, ws, C).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, C), (Hp, Wp)


def window_unpartition(windows: jax.Array, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]) -> jax.Array:
    """Inverse of ``window_partition``: ``(B * nW, ws, ws, C)`` -> ``(B, H, W, C)``, padding removed."""
    Hp, Wp = pad_hw
    H, W = hw
    ws = window_size
    B = windows.shape[0] // ((Hp // ws) * (Wp // ws))
    C = windows.shape[-1]
    # (B*nW, ws, ws, C) -> (B, Hp/ws, Wp/ws, ws, ws, C) -> (B, Hp/ws, ws, Wp/ws, ws, C) -> (B, Hp, Wp, C)
    x = windows.reshape(B, Hp // ws, Wp // ws, ws, ws, C).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(B, Hp, Wp, C)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :]
    return x


class PatchEmbed(nn.Module):
    """Image to patches: ``(B, H, W, in_chans)`` -> ``(B, H/stride, W/stride, embed_dim)``; param ``proj``."""

    kernel_size: Sequence[int] = (7, 7)
    stride: Sequence[int] = (4, 4)
    padding: Sequence[int] = (3, 3)
    in_chans: int = 3
    embed_dim: int = 768
    dtype: Dtype = jnp.float32

    def setup(self):
        self.proj = Conv2d(self.embed_dim, self.kernel_size, self.stride, self.padding, dtype=self.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.in_chans:
            raise ValueError(f"PatchEmbed expects (B, H, W, {self.in_chans}) input, got shape {x.shape}")
        return self.proj(x)
