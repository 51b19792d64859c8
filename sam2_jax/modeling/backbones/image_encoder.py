"""Port of ``sam2/modeling/backbones/image_encoder.py``: the FPN neck and the image encoder (trunk + neck).

Deviations from the official file:
- NHWC everywhere: ``ImageEncoder`` takes ``(B, H, W, 3)`` and every output map (``vision_features``,
  ``vision_pos_enc``, ``backbone_fpn``) is ``(B, h, w, C)``.
- ``FpnNeck.convs`` are ``FpnLateral`` modules holding one ``conv`` (the official one-layer ``nn.Sequential``
  with a module named ``conv``), so params are ``convs_{i}/conv/{kernel,bias}``.
- ``dtype`` is the compute dtype of the lateral convs (float32 accumulation); the top-down path is float32 as
  in the official ``prev_features.to(torch.float32)``.
- Bad ``fuse_type`` / ``fpn_interp_model`` / trunk-neck channel mismatch raise ``ValueError`` (official:
  assert).
- ``image_encoder_from_config`` builds the encoder from our ml_collections config (the official code uses
  Hydra on the YAML).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.backbones.hieradet import Hiera
from sam2_jax.modeling.layers import Conv2d
from sam2_jax.modeling.position_encoding import PositionEmbeddingSine
from sam2_jax.utils.interpolate import interpolate

Dtype = Any


class FpnLateral(nn.Module):
    """One lateral projection of the FPN (the official ``nn.Sequential`` holding a single ``conv``)."""

    d_model: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dtype: Dtype = jnp.float32

    def setup(self):
        self.conv = Conv2d(
            self.d_model, (self.kernel_size,) * 2, (self.stride,) * 2, (self.padding,) * 2, dtype=self.dtype
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class FpnNeck(nn.Module):
    """FPN variant without output convs: lateral projections, top-down fusion on ``fpn_top_down_levels`` only.

    ``backbone_channel_list`` is lowest resolution first (``convs_0`` takes the trunk's last output); inputs
    and outputs are ordered like the trunk's outputs, highest resolution first.
    """

    position_encoding: nn.Module
    d_model: int
    backbone_channel_list: Sequence[int]
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    fpn_interp_model: str = "bilinear"
    fuse_type: str = "sum"
    fpn_top_down_levels: Sequence[int] | None = None
    dtype: Dtype = jnp.float32

    def setup(self):
        if self.fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {self.fuse_type!r}")
        if self.fpn_interp_model not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(
                f"fpn_interp_model must be 'nearest', 'bilinear' or 'bicubic', got {self.fpn_interp_model!r}"
            )
        self.convs = [
            FpnLateral(self.d_model, self.kernel_size, self.stride, self.padding, dtype=self.dtype)
            for _ in self.backbone_channel_list
        ]

    def __call__(self, xs: Sequence[jax.Array]) -> tuple[list[jax.Array], list[jax.Array]]:
        """xs: trunk outputs, highest resolution first -> (features, position encodings), same order, NHWC."""
        n = len(self.backbone_channel_list) - 1
        if len(xs) != n + 1:
            raise ValueError(f"FpnNeck expects {n + 1} feature maps, got {len(xs)}")
        levels = range(n + 1) if self.fpn_top_down_levels is None else list(self.fpn_top_down_levels)
        out: list[jax.Array] = [None] * (n + 1)
        pos: list[jax.Array] = [None] * (n + 1)
        prev_features = None
        # Top-down: from the lowest resolution (i = n) to the highest.
        for i in range(n, -1, -1):
            lateral_features = self.convs[n - i](xs[i])
            if i in levels and prev_features is not None:
                top_down_features = interpolate(
                    prev_features.astype(jnp.float32), scale_factor=2.0, mode=self.fpn_interp_model
                )
                prev_features = lateral_features + top_down_features
                if self.fuse_type == "avg":
                    prev_features = prev_features / 2
            else:
                prev_features = lateral_features
            out[i] = prev_features
            pos[i] = self.position_encoding(prev_features).astype(prev_features.dtype)
        return out, pos


class ImageEncoder(nn.Module):
    """Trunk + neck; drops the ``scalp`` lowest-resolution levels. Params ``trunk/…``, ``neck/…``."""

    trunk: nn.Module
    neck: nn.Module
    scalp: int = 0

    def setup(self):
        trunk_channels = list(self.trunk.channel_list)
        neck_channels = list(self.neck.backbone_channel_list)
        if trunk_channels != neck_channels:
            raise ValueError(
                f"channel dims of trunk and neck do not match: trunk {trunk_channels}, neck {neck_channels}"
            )

    def __call__(self, sample: jax.Array, deterministic: bool = True) -> dict[str, Any]:
        """sample: ``(B, H, W, 3)`` normalised image.

        Returns:
          ``vision_features`` (the lowest kept level), ``vision_pos_enc`` and ``backbone_fpn`` (lists, highest
          resolution first), all ``(B, h, w, d_model)``.
        """
        features, pos = self.neck(self.trunk(sample, deterministic))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}


def image_encoder_from_config(cfg, dtype: Dtype = jnp.float32, attention_impl: str = "auto") -> ImageEncoder:
    """``ImageEncoder`` from ``config.model.image_encoder`` (fields named as in the official YAML).

    ``attention_impl`` (``config.model.attention_impl``) picks the trunk's attention kernel (``backend.py``).
    """
    t, nk = cfg.trunk, cfg.neck
    trunk = Hiera(
        embed_dim=t.embed_dim,
        num_heads=t.num_heads,
        drop_path_rate=t.drop_path_rate,
        q_pool=t.q_pool,
        q_stride=tuple(t.q_stride),
        stages=tuple(t.stages),
        dim_mul=t.dim_mul,
        head_mul=t.head_mul,
        window_pos_embed_bkg_spatial_size=tuple(t.window_pos_embed_bkg_spatial_size),
        window_spec=tuple(t.window_spec),
        global_att_blocks=tuple(t.global_att_blocks) if t.global_att_blocks is not None else None,
        return_interm_layers=t.return_interm_layers,
        dtype=dtype,
        attention_impl=attention_impl,
    )
    pe = nk.position_encoding
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(
            num_pos_feats=pe.num_pos_feats, temperature=pe.temperature, normalize=pe.normalize, scale=pe.scale
        ),
        d_model=nk.d_model,
        backbone_channel_list=tuple(nk.backbone_channel_list),
        kernel_size=nk.kernel_size,
        stride=nk.stride,
        padding=nk.padding,
        fpn_interp_model=nk.fpn_interp_model,
        fuse_type=nk.fuse_type,
        fpn_top_down_levels=tuple(nk.fpn_top_down_levels) if nk.fpn_top_down_levels is not None else None,
        dtype=dtype,
    )
    return ImageEncoder(trunk=trunk, neck=neck, scalp=cfg.scalp)
