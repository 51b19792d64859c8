"""Port of ``sam2/modeling/backbones/hieradet.py``: the Hiera trunk (multi-scale windowed ViT) of SAM 2.

Deviations from the official file:
- NHWC input ``(B, H, W, 3)``; the four stage outputs are returned NHWC (official: NCHW), same list order
  (highest resolution first).
- ``dtype`` is the compute dtype of every matmul (float32 accumulation); norms, softmax and the residual
  stream stay float32.
- ``MultiScaleBlock``'s stochastic depth submodule is ``drop_path_layer`` (``drop_path`` is the rate field, as
  in the official constructor); it has no params. Drop path runs only with ``deterministic=False`` and a
  ``'dropout'`` RNG.
- ``MultiScaleAttention`` takes ``q_stride`` instead of a pooling module; q-pooling is a reshape + max (same
  as ``nn.MaxPool2d(q_stride, q_stride)``, floor mode). A global-attention block with q-pooling works here
  (the official one divides by a zero window size).
- Attention runs through ``backend.dot_product_attention`` with the static ``attention_impl`` (from
  ``config.model.attention_impl``). On CPU (``"fused"``) the global blocks at 1024 px take their 4096 keys as one
  tile, 1024 queries at a time (``backend.fused_tiles``); ``"chunked"`` runs a large score matrix as a ``lax.map``
  over chunks of 256 queries (``GLOBAL_BLOCK_CHUNKS``), each query row computed as in one piece.
- The official tiling of ``pos_embed_window`` fails (a broadcast error) when the token grid is not a multiple
  of ``window_spec[0]``; here that raises a ``ValueError`` naming the grid.
- No ``weights_path`` loading (weights come from ``convert_weights``); ``get_layer_id`` / ``get_num_layers``
  (for layer-wise learning-rate decay) are left to the trainer.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.backbones.utils import PatchEmbed, window_partition, window_unpartition
from sam2_jax.modeling.backend import GLOBAL_BLOCK_CHUNKS, dot_product_attention
from sam2_jax.modeling.layers import LayerNorm, Linear
from sam2_jax.modeling.sam2_utils import MLP, DropPath
from sam2_jax.utils.interpolate import interpolate

Dtype = Any


def do_pool(x: jax.Array, q_stride: Sequence[int] | None) -> jax.Array:
    """``nn.MaxPool2d(q_stride, q_stride)`` (floor mode) on an NHWC map; identity if ``q_stride`` is None."""
    if q_stride is None:
        return x
    sh, sw = q_stride
    B, H, W, C = x.shape
    Ho, Wo = H // sh, W // sw
    x = x[:, : Ho * sh, : Wo * sw, :]
    # (B, Ho*sh, Wo*sw, C) -> (B, Ho, sh, Wo, sw, C) -> max over the pooling cells -> (B, Ho, Wo, C)
    return x.reshape(B, Ho, sh, Wo, sw, C).max(axis=(2, 4))


# The old names of the global blocks' chunked attention (tests/modeling/test_image_encoder.py uses them).
_MAX_SCORES = GLOBAL_BLOCK_CHUNKS.above


def _attention(q: jax.Array, k: jax.Array, v: jax.Array, dtype: Dtype) -> jax.Array:
    """The ``"chunked"`` attention of ``MultiScaleAttention`` (query chunks of ``GLOBAL_BLOCK_CHUNKS``)."""
    return dot_product_attention(q, k, v, impl="chunked", dtype=dtype, query_chunks=GLOBAL_BLOCK_CHUNKS)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention within each ``(h, w)`` map (a window or the whole grid), q maybe pooled."""

    dim: int
    dim_out: int
    num_heads: int
    q_stride: Sequence[int] | None = None
    dtype: Dtype = jnp.float32
    # Which ``backend.dot_product_attention`` implementation runs (static; ``config.model.attention_impl``).
    attention_impl: str = "auto"

    def setup(self):
        if self.dim_out % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide dim_out={self.dim_out}")
        self.qkv = Linear(self.dim_out * 3, dtype=self.dtype)
        self.proj = Linear(self.dim_out, dtype=self.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: ``(B, H, W, dim)`` -> ``(B, H', W', dim_out)``, ``(H', W')`` pooled by ``q_stride`` if set."""
        B, H, W, _ = x.shape
        nh, hd = self.num_heads, self.dim_out // self.num_heads
        # (B, H, W, 3*dim_out) -> (B, H*W, 3, heads, hd) -> 3 x (B, heads, H*W, hd)
        qkv = self.qkv(x).reshape(B, H * W, 3, nh, hd).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.q_stride is not None:
            # (B, heads, H*W, hd) -> (B, H, W, heads*hd), pooled, back to (B, heads, H'*W', hd)
            q = do_pool(q.transpose(0, 2, 1, 3).reshape(B, H, W, self.dim_out), self.q_stride)
            H, W = q.shape[1:3]
            q = q.reshape(B, H * W, nh, hd).transpose(0, 2, 1, 3)
        # Self-attention over a whole map: the "chunked" path splits the global blocks into fixed query chunks.
        x = dot_product_attention(q, k, v, impl=self.attention_impl, dtype=self.dtype, query_chunks=GLOBAL_BLOCK_CHUNKS)
        # (B, heads, H*W, hd) -> (B, H*W, heads, hd) -> (B, H, W, dim_out)
        x = x.transpose(0, 2, 1, 3).reshape(B, H, W, self.dim_out)
        return self.proj(x)


class MultiScaleBlock(nn.Module):
    """Pre-norm block on an NHWC map: (windowed) attention with optional q-pooling, then an MLP."""

    dim: int
    dim_out: int
    num_heads: int
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    q_stride: Sequence[int] | None = None
    window_size: int = 0
    dtype: Dtype = jnp.float32
    attention_impl: str = "auto"

    def setup(self):
        self.norm1 = LayerNorm(epsilon=1e-6)
        self.attn = MultiScaleAttention(
            self.dim,
            self.dim_out,
            num_heads=self.num_heads,
            q_stride=self.q_stride,
            dtype=self.dtype,
            attention_impl=self.attention_impl,
        )
        self.drop_path_layer = DropPath(self.drop_path)
        self.norm2 = LayerNorm(epsilon=1e-6)
        self.mlp = MLP(
            self.dim_out,
            int(self.dim_out * self.mlp_ratio),
            self.dim_out,
            num_layers=2,
            activation="gelu",
            dtype=self.dtype,
        )
        if self.dim != self.dim_out:
            self.proj = Linear(self.dim_out, dtype=self.dtype)

    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        """x: ``(B, H, W, dim)`` -> ``(B, H', W', dim_out)``."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            # The shortcut is projected from the normed input and pooled like the queries.
            shortcut = do_pool(self.proj(x), self.q_stride)

        window_size = self.window_size
        if window_size > 0:
            H, W = x.shape[1:3]
            x, pad_hw = window_partition(x, window_size)
        x = self.attn(x)
        if self.q_stride is not None:
            # Pooled queries shrink each window; unpartition on the pooled grid of the shortcut.
            window_size = self.window_size // self.q_stride[0]
            H, W = shortcut.shape[1:3]
            pad_hw = (H + (-H % window_size), W + (-W % window_size)) if window_size > 0 else (H, W)
        if self.window_size > 0:
            x = window_unpartition(x, window_size, pad_hw, (H, W))

        x = shortcut + self.drop_path_layer(x, deterministic)
        return x + self.drop_path_layer(self.mlp(self.norm2(x)), deterministic)


class Hiera(nn.Module):
    """Hiera trunk (https://arxiv.org/abs/2306.00989) with windowed absolute position embeddings.

    Params: ``patch_embed/proj``, ``pos_embed (1, *window_pos_embed_bkg_spatial_size, embed_dim)``,
    ``pos_embed_window (1, window_spec[0], window_spec[0], embed_dim)``, ``blocks_0 … blocks_{depth-1}``.
    """

    embed_dim: int = 96
    num_heads: int = 1
    drop_path_rate: float = 0.0
    q_pool: int = 3
    q_stride: Sequence[int] = (2, 2)
    stages: Sequence[int] = (2, 3, 16, 3)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    window_pos_embed_bkg_spatial_size: Sequence[int] = (14, 14)
    window_spec: Sequence[int] = (8, 4, 14, 7)
    global_att_blocks: Sequence[int] | None = (12, 16, 20)
    return_interm_layers: bool = True
    dtype: Dtype = jnp.float32
    attention_impl: str = "auto"

    @property
    def stage_ends(self) -> list[int]:
        return [int(e) for e in np.cumsum(self.stages) - 1]

    def block_specs(self) -> list[dict]:
        """Constructor arguments of every block, following the official schedule."""
        if len(self.stages) != len(self.window_spec):
            raise ValueError(f"stages {self.stages} and window_spec {self.window_spec} differ in length")
        stage_ends = self.stage_ends
        if not 0 <= self.q_pool <= len(stage_ends) - 1:
            raise ValueError(f"q_pool must be in [0, {len(stage_ends) - 1}], got {self.q_pool}")
        q_pool_blocks = [e + 1 for e in stage_ends[:-1]][: self.q_pool]
        depth = sum(self.stages)
        dpr = np.linspace(0.0, self.drop_path_rate, depth, dtype=np.float32)
        globals_ = set(self.global_att_blocks or ())
        embed_dim, num_heads, cur_stage = self.embed_dim, self.num_heads, 1
        specs = []
        for i in range(depth):
            dim_out = embed_dim
            # The window size lags by one block: a stage's first block still uses the previous stage's window.
            window_size = 0 if i in globals_ else self.window_spec[cur_stage - 1]
            if i - 1 in stage_ends:
                dim_out = int(embed_dim * self.dim_mul)
                num_heads = int(num_heads * self.head_mul)
                cur_stage += 1
            specs.append(
                dict(
                    dim=embed_dim,
                    dim_out=dim_out,
                    num_heads=num_heads,
                    drop_path=float(dpr[i]),
                    q_stride=tuple(self.q_stride) if i in q_pool_blocks else None,
                    window_size=window_size,
                )
            )
            embed_dim = dim_out
        return specs

    @property
    def channel_list(self) -> list[int]:
        """Output channels, lowest resolution first (the FPN neck's ``backbone_channel_list``)."""
        specs = self.block_specs()
        if not self.return_interm_layers:
            return [specs[-1]["dim_out"]]
        return [specs[i]["dim_out"] for i in self.stage_ends[::-1]]

    def setup(self):
        self.patch_embed = PatchEmbed(embed_dim=self.embed_dim, dtype=self.dtype)
        ws0 = self.window_spec[0]
        self.pos_embed = self.param(
            "pos_embed", nn.initializers.zeros, (1, *self.window_pos_embed_bkg_spatial_size, self.embed_dim)
        )
        self.pos_embed_window = self.param("pos_embed_window", nn.initializers.zeros, (1, ws0, ws0, self.embed_dim))
        self.blocks = [
            MultiScaleBlock(**spec, dtype=self.dtype, attention_impl=self.attention_impl) for spec in self.block_specs()
        ]

    def get_pos_embed(self, hw: tuple[int, int]) -> jax.Array:
        """Background embedding resized to ``hw`` (torch bicubic) plus the tiled window embedding."""
        h, w = hw
        ws = self.window_spec[0]
        if h % ws or w % ws:
            raise ValueError(
                f"token grid {(h, w)} must be a multiple of window_spec[0]={ws} (image size a multiple of {4 * ws})"
            )
        pos_embed = interpolate(self.pos_embed, (h, w), mode="bicubic")
        # (1, ws, ws, C) tiled to (1, h, w, C)
        return pos_embed + jnp.tile(self.pos_embed_window, (1, h // ws, w // ws, 1))

    def __call__(self, x: jax.Array, deterministic: bool = True) -> list[jax.Array]:
        """Image ``(B, H, W, 3)`` -> stage outputs ``[(B, H/4, W/4, C0), …]`` (or only the last one)."""
        x = self.patch_embed(x)
        x = x + self.get_pos_embed(x.shape[1:3])
        stage_ends = self.stage_ends
        outputs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, deterministic)
            if i == stage_ends[-1] or (i in stage_ends and self.return_interm_layers):
                outputs.append(x)
        return outputs
