"""Port of ``sam2/modeling/sam/prompt_encoder.py``: SAM's encoder of point, box and mask prompts.

Deviations from the official file:
- Mask prompts are NHWC ``(B, 4h, 4w, 1)`` and the dense outputs NHWC: ``__call__`` returns ``(B, h, w, C)``
  and ``get_dense_pe`` ``(1, h, w, C)`` (the official returns NCHW).
- Point labels are compared as integers; the official pads with a float ``-1`` label, which promotes the
  labels to float (the same comparisons).
- The mask-downscaling activation is given by name (``"gelu"``); the ``nn.Sequential`` becomes the submodules
  ``mask_downscaling_0/1/3/4/6`` (the activations 2 and 5 have no params).
- ``nn.Embedding(1, C)`` weights are ``nn.Embed`` params named ``embedding``; no ``_get_device``.
- Linen creates params on first use, so ``init`` also visits the parts its prompts leave unused (all
  embeddings, the mask downscaling) and the params always match a checkpoint.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.layers import Conv2d, LayerNorm2d
from sam2_jax.modeling.position_encoding import PositionEmbeddingRandom
from sam2_jax.modeling.sam2_utils import get_activation_fn

Dtype = Any


# Not an official label: a click slot that holds no click. Callers pad the click axis to a bucket with it (so a
# compiled program serves several click counts); its token is zeroed and masked out of every attention that reads
# the prompt tokens (``MaskDecoder`` ``sparse_prompt_mask``), so the masks equal those of the unpadded clicks.
ABSENT_LABEL = -2


def sparse_prompt_mask(labels: jax.Array, pad: bool) -> jax.Array:
    """``(B, N)`` labels -> ``(B, N')`` bool: the sparse tokens that exist (False for ``ABSENT_LABEL``), with the
    padding token ``PromptEncoder`` appends when ``pad`` (no box)."""
    present = labels != ABSENT_LABEL
    if pad:
        present = jnp.concatenate([present, jnp.ones((labels.shape[0], 1), bool)], axis=1)
    return present


class PromptEncoder(nn.Module):
    """Embeds clicks and boxes as sparse tokens and a mask prompt as a dense map.

    Attributes:
      embed_dim: channels of the prompt embeddings (256 in SAM 2).
      image_embedding_size: ``(h, w)`` of the image embedding (64 x 64 for 1024 px input).
      input_image_size: ``(H, W)`` of the padded model input, the frame of the point coordinates.
      mask_in_chans: hidden channels of the mask downscaling (16 in SAM 2).
      activation: activation of the mask downscaling.
      dtype: compute dtype of the mask convolutions.
    """

    embed_dim: int
    image_embedding_size: tuple[int, int]
    input_image_size: tuple[int, int]
    mask_in_chans: int
    activation: str = "gelu"
    dtype: Dtype = jnp.float32

    # negative/positive click, top-left/bottom-right box corner (a constant: the checkpoint fixes it)
    num_point_embeddings = 4

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """``(4h, 4w)``: the spatial size a mask prompt must have."""
        return (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])

    def setup(self):
        dim, hidden = self.embed_dim, self.mask_in_chans
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.point_embeddings = [nn.Embed(1, dim) for _ in range(self.num_point_embeddings)]
        self.not_a_point_embed = nn.Embed(1, dim)
        self.mask_downscaling_0 = Conv2d(hidden // 4, kernel_size=2, stride=2, dtype=self.dtype)
        self.mask_downscaling_1 = LayerNorm2d()
        self.mask_downscaling_3 = Conv2d(hidden, kernel_size=2, stride=2, dtype=self.dtype)
        self.mask_downscaling_4 = LayerNorm2d()
        self.mask_downscaling_6 = Conv2d(dim, kernel_size=1, dtype=self.dtype)
        self.no_mask_embed = nn.Embed(1, dim)

    def get_dense_pe(self) -> jax.Array:
        """Position encoding of every image-embedding cell, ``(1, h, w, embed_dim)``."""
        return self.pe_layer(tuple(self.image_embedding_size))[None]

    def _embed_points(self, points: jax.Array, labels: jax.Array, pad: bool) -> jax.Array:
        points = points.astype(jnp.float32) + 0.5  # pixel centres
        labels = labels.astype(jnp.int32)
        if pad:
            # Without a box the decoder was trained with one extra "not a point" token.
            b = points.shape[0]
            points = jnp.concatenate([points, jnp.zeros((b, 1, 2), jnp.float32)], axis=1)
            labels = jnp.concatenate([labels, jnp.full((b, 1), -1, jnp.int32)], axis=1)
        emb = self.pe_layer.forward_with_coords(points, tuple(self.input_image_size))
        lab = labels[..., None]
        # Padding points carry no position: the PE is dropped, not added to.
        emb = jnp.where(lab == -1, jnp.zeros_like(emb) + self.not_a_point_embed.embedding[0], emb)
        for i in range(self.num_point_embeddings):
            emb = jnp.where(lab == i, emb + self.point_embeddings[i].embedding[0], emb)
        return jnp.where(lab == ABSENT_LABEL, 0.0, emb)

    def _embed_boxes(self, boxes: jax.Array) -> jax.Array:
        boxes = boxes.astype(jnp.float32) + 0.5  # pixel centres
        # (B, 4) -> (B, 2, 2): top-left and bottom-right corners as (x, y) points
        coords = boxes.reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(coords, tuple(self.input_image_size))
        corner = jnp.stack([self.point_embeddings[2].embedding[0], self.point_embeddings[3].embedding[0]])
        return emb + corner

    def _embed_masks(self, masks: jax.Array) -> jax.Array:
        act = get_activation_fn(self.activation)
        x = act(self.mask_downscaling_1(self.mask_downscaling_0(masks)))
        x = act(self.mask_downscaling_4(self.mask_downscaling_3(x)))
        return self.mask_downscaling_6(x)

    def _create_all_params(self) -> None:
        # Linen creates params on first use: ``init`` visits the parts this call's prompts leave unused.
        self.get_dense_pe()
        for embed in [*self.point_embeddings, self.not_a_point_embed, self.no_mask_embed]:
            embed.embedding  # noqa: B018
        self._embed_masks(jnp.zeros((1, 4, 4, 1), jnp.float32))

    def __call__(
        self,
        points: tuple[jax.Array, jax.Array] | None,
        boxes: jax.Array | None,
        masks: jax.Array | None,
    ) -> tuple[jax.Array, jax.Array]:
        """Embed the prompts of a batch.

        Args:
          points: ``(coords (B, N, 2) as pixel (x, y) in the input image, labels (B, N) int)`` or None.
            Labels: 1 positive, 0 negative, 2/3 box top-left/bottom-right corner, -1 padding, ``ABSENT_LABEL``
            (-2, not official) an empty bucket slot.
          boxes: ``(B, 4)`` as ``(x0, y0, x1, y1)`` pixels, or None. SAM 2 itself passes boxes as points 2/3.
          masks: ``(B, 4h, 4w, 1)`` mask logits (``mask_input_size``), or None.
        Returns:
          ``sparse (B, N', embed_dim)`` (points, one padding point when no box is given, then box corners) and
          ``dense (B, h, w, embed_dim)``.
        """
        if points is not None:
            coords, labels = points
            if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
                raise ValueError(
                    f"points should be coords (B, N, 2) and labels (B, N), got {coords.shape} and {labels.shape}"
                )
            bs = coords.shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        if boxes is not None and boxes.size != bs * 4:
            raise ValueError(f"boxes should be (B={bs}, 4), got {boxes.shape}")
        if masks is not None and masks.shape != (bs, *self.mask_input_size, 1):
            raise ValueError(f"masks should be (B={bs}, {self.mask_input_size}, 1), got {masks.shape}")

        if self.is_initializing():
            self._create_all_params()

        sparse = [jnp.zeros((bs, 0, self.embed_dim), jnp.float32)]
        if points is not None:
            sparse.append(self._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            sparse.append(self._embed_boxes(boxes))
        sparse = jnp.concatenate(sparse, axis=1)

        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = jnp.broadcast_to(self.no_mask_embed.embedding[0], (bs, h, w, self.embed_dim))
        return sparse, dense
