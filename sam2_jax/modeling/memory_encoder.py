"""Port of ``sam2/modeling/memory_encoder.py``: mask down-sampler, ConvNeXt fuser and the memory encoder.

Deviations from the official file:
- NHWC in and out: ``pix_feat (B, H, W, C)``, ``masks (B, 16H, 16W, 1)``; ``vision_features`` and each
  ``vision_pos_enc`` entry are ``(B, H, W, out_dim)`` (the official returns NCHW).
- Nested configs are mappings of constructor fields (``mask_downsampler``, ``fuser`` with its ``layer``,
  ``position_encoding``) instead of built modules; ``MemoryEncoder.from_config`` builds the module from
  ``config.model.memory_encoder``. Submodules keep the official names (``mask_downsampler``, ``fuser``, ...).
- ``MaskDownSampler.activation`` is an activation name (``"gelu"``, exact erf) instead of a module class.
- ``CXBlock`` applies its LayerNorm and pointwise layers on NHWC directly (the official permutes NCHW <-> NHWC
  around them: same arithmetic). Its ``DropPath`` runs only with ``deterministic=False`` and a ``'dropout'``
  RNG.
- ``get_clones`` has no counterpart: each fuser layer has its own params.
- ``dtype`` is the compute dtype of the convs and linears (float32 accumulation); norms run in float32.
"""

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.layers import Conv2d, LayerNorm2d, Linear, gelu
from sam2_jax.modeling.memory_attention import freeze_config
from sam2_jax.modeling.position_encoding import PositionEmbeddingSine
from sam2_jax.modeling.sam2_utils import DropPath, get_activation_fn

Dtype = Any


class MaskDownSampler(nn.Module):
    """Down-sample a mask by ``total_stride`` in steps of ``stride`` (conv, LayerNorm2d, activation each,
    channels growing by ``stride**2``), then project to ``embed_dim`` with a 1x1 conv.

    Params follow the official ``nn.Sequential``: ``encoder_{3j}`` (conv), ``encoder_{3j+1}`` (norm) per step
    and ``encoder_{3n}`` for the final projection.
    """

    embed_dim: int = 256
    kernel_size: int = 4
    stride: int = 4
    padding: int = 0
    total_stride: int = 16
    activation: str = "gelu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, 1) -> (B, H / total_stride, W / total_stride, embed_dim)."""
        num_layers = int(math.log2(self.total_stride) // math.log2(self.stride))
        if self.stride**num_layers != self.total_stride:
            raise ValueError(f"total_stride={self.total_stride} is not a power of stride={self.stride}")
        act = get_activation_fn(self.activation)
        chans = x.shape[-1]
        for j in range(num_layers):
            chans = chans * self.stride**2
            x = Conv2d(
                chans,
                kernel_size=(self.kernel_size, self.kernel_size),
                stride=(self.stride, self.stride),
                padding=(self.padding, self.padding),
                dtype=self.dtype,
                name=f"encoder_{3 * j}",
            )(x)
            x = act(LayerNorm2d(name=f"encoder_{3 * j + 1}")(x))
        return Conv2d(self.embed_dim, dtype=self.dtype, name=f"encoder_{3 * num_layers}")(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm, Linear(4 dim), GELU, Linear(dim), layer scale ``gamma``,
    residual (with drop path)."""

    dim: int
    kernel_size: int = 7
    padding: int = 3
    drop_path: float = 0.0
    layer_scale_init_value: float = 1e-6
    use_dwconv: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        """x: (B, H, W, dim) -> (B, H, W, dim)."""
        shortcut = x
        x = Conv2d(
            self.dim,
            kernel_size=(self.kernel_size, self.kernel_size),
            padding=(self.padding, self.padding),
            groups=self.dim if self.use_dwconv else 1,
            dtype=self.dtype,
            name="dwconv",
        )(x)
        x = LayerNorm2d(name="norm")(x)
        x = Linear(4 * self.dim, dtype=self.dtype, name="pwconv1")(x)
        x = Linear(self.dim, dtype=self.dtype, name="pwconv2")(gelu(x))
        if self.layer_scale_init_value > 0:
            init = nn.initializers.constant(self.layer_scale_init_value)
            x = self.param("gamma", init, (self.dim,)) * x
        return shortcut + DropPath(self.drop_path)(x, deterministic=deterministic)


class Fuser(nn.Module):
    """Optional 1x1 input projection (``proj``), then ``num_layers`` blocks (``layers_0 …``).

    ``layer`` holds the ``CXBlock`` fields (except ``dtype``).
    """

    layer: Mapping[str, Any]
    num_layers: int
    dim: int | None = None
    input_projection: bool = False
    dtype: Dtype = jnp.float32

    def setup(self):
        if self.input_projection:
            if self.dim is None:
                raise ValueError("Fuser(input_projection=True) needs dim, got None")
            self.proj = Conv2d(self.dim, dtype=self.dtype)
        self.layers = [CXBlock(**self.layer, dtype=self.dtype) for _ in range(self.num_layers)]

    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        """x: (B, H, W, C) -> (B, H, W, C)."""
        if self.input_projection:
            x = self.proj(x)
        for layer in self.layers:
            x = layer(x, deterministic=deterministic)
        return x


class MemoryEncoder(nn.Module):
    """Encodes a frame's features and its predicted mask into a memory of ``out_dim`` channels.

    ``mask_downsampler``, ``fuser`` and ``position_encoding`` hold the fields of ``MaskDownSampler``,
    ``Fuser`` and ``PositionEmbeddingSine`` (as in the official YAML).
    """

    out_dim: int
    mask_downsampler: Mapping[str, Any]
    fuser: Mapping[str, Any]
    position_encoding: Mapping[str, Any]
    in_dim: int = 256
    dtype: Dtype = jnp.float32

    @classmethod
    def from_config(cls, cfg: Any, dtype: Dtype = jnp.float32) -> "MemoryEncoder":
        """Build from ``config.model.memory_encoder`` (the official YAML's fields)."""
        cfg = freeze_config(cfg)
        return cls(
            out_dim=cfg["out_dim"],
            mask_downsampler=cfg["mask_downsampler"],
            fuser=cfg["fuser"],
            position_encoding=cfg["position_encoding"],
            in_dim=cfg["in_dim"],
            dtype=dtype,
        )

    @nn.compact
    def __call__(
        self,
        pix_feat: jax.Array,
        masks: jax.Array,
        skip_mask_sigmoid: bool = False,
        deterministic: bool = True,
    ) -> dict[str, Any]:
        """Fuse image features with a mask.

        Args:
          pix_feat: ``(B, H, W, in_dim)`` image features (stride 16).
          masks: ``(B, H * s, W * s, 1)`` mask logits (or probabilities with ``skip_mask_sigmoid``), ``s`` the
            down-sampler's ``total_stride``.
          skip_mask_sigmoid: True when ``masks`` are already in [0, 1] (e.g. binarized masks).
          deterministic: False turns on the fuser's drop path (needs a ``'dropout'`` RNG).
        Returns:
          ``{"vision_features": (B, H, W, out_dim), "vision_pos_enc": [(B, H, W, out_dim)]}``.
        """
        if pix_feat.ndim != 4 or masks.ndim != 4 or masks.shape[-1] != 1:
            raise ValueError(f"expected NHWC pix_feat and (B, H, W, 1) masks, got {pix_feat.shape}, {masks.shape}")
        if not skip_mask_sigmoid:
            # Logits become probabilities, closer to the binary ground-truth masks seen in training.
            masks = jax.nn.sigmoid(masks)
        masks = MaskDownSampler(**self.mask_downsampler, dtype=self.dtype, name="mask_downsampler")(masks)
        if masks.shape[:3] != pix_feat.shape[:3]:
            raise ValueError(f"down-sampled masks {masks.shape} do not match pix_feat {pix_feat.shape}")
        x = Conv2d(self.in_dim, dtype=self.dtype, name="pix_feat_proj")(pix_feat)
        x = x + masks
        x = Fuser(**self.fuser, dtype=self.dtype, name="fuser")(x, deterministic=deterministic)
        if self.out_dim != self.in_dim:
            x = Conv2d(self.out_dim, dtype=self.dtype, name="out_proj")(x)
        pos = PositionEmbeddingSine(**self.position_encoding, name="position_encoding")(x)
        return {"vision_features": x, "vision_pos_enc": [pos.astype(x.dtype)]}
