"""Port of ``sam2/modeling/sam/mask_decoder.py``: SAM 2's mask decoder (masks, IoU, object score, SAM tokens).

Deviations from the official file:
- NHWC maps: ``image_embeddings``, ``image_pe``, ``dense_prompt_embeddings`` are ``(B, h, w, C)`` and the
  high-res features ``(B, 4h, 4w, C/8)`` / ``(B, 2h, 2w, C/4)``. The masks keep the official layout
  ``(B, M, 4h, 4w)``: the mask axis is not a conv channel.
- ``transformer`` is a Linen submodule field (usually a ``TwoWayTransformer``); its params live under
  ``transformer/``. Activations are given by name (``"gelu"``).
- Linen has no ``module.training``: ``__call__`` takes ``training`` (default False, i.e. eval), which turns
  the dynamic multimask fallback off as ``self.training`` does in the official code.
- The ``nn.Sequential`` ``output_upscaling`` becomes the submodules ``output_upscaling_0/1/3``; the high-res
  branch adds the skip features at the same places as the official one.
- ``conv_s0`` / ``conv_s1`` (used by SAM2Base on the backbone's high-res levels) are also reachable as one
  call, ``project_high_res_features`` (``apply(..., method=...)``). ``init`` creates them too.
- The per-example pick of the best multimask output uses ``take_along_axis`` instead of advanced indexing.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.layers import Conv2d, ConvTranspose2d, LayerNorm2d, Linear
from sam2_jax.modeling.sam2_utils import MLP, get_activation_fn

Dtype = Any


def _token_mask(output_tokens: jax.Array, sparse_prompt_mask: jax.Array | None, tokens: jax.Array) -> jax.Array | None:
    """``(B, T + N)`` bool: the output tokens (always present) then ``sparse_prompt_mask (B, N)``; None for all."""
    if sparse_prompt_mask is None:
        return None
    if sparse_prompt_mask.shape != (tokens.shape[0], tokens.shape[1] - output_tokens.shape[1]):
        raise ValueError(f"sparse_prompt_mask should be (B, N) of the sparse prompts, got {sparse_prompt_mask.shape}")
    return jnp.concatenate([jnp.ones(output_tokens.shape[:2], bool), sparse_prompt_mask], axis=1)


class MaskDecoder(nn.Module):
    """Predicts masks from image and prompt embeddings with a two-way transformer and hypernetwork heads.

    Attributes:
      transformer_dim: channels of the transformer (256).
      transformer: the two-way transformer (``TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8,
        mlp_dim=2048)`` in SAM 2).
      num_multimask_outputs: masks output in multimask mode; one more token gives the single mask.
      activation: activation of the output upscaling.
      iou_head_depth, iou_head_hidden_dim: the IoU prediction MLP.
      use_high_res_features: add the stride-4/stride-8 backbone features during upscaling (``conv_s0/1``).
      iou_prediction_use_sigmoid: IoU predictions through a sigmoid.
      dynamic_multimask_via_stability: in single-mask eval mode, fall back to the best multimask output
        when the single mask is unstable (stability below ``dynamic_multimask_stability_thresh`` for a logit
        threshold perturbation of ``dynamic_multimask_stability_delta``).
      pred_obj_scores: predict an object-presence logit from its own token (else a constant 10).
      pred_obj_scores_mlp: that head is a 3-layer MLP (else one linear layer).
      use_multimask_token_for_obj_ptr: in multimask mode return the multimask tokens as SAM tokens.
      dtype: compute dtype.
    """

    transformer_dim: int
    transformer: nn.Module
    num_multimask_outputs: int = 3
    activation: str = "gelu"
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    use_high_res_features: bool = False
    iou_prediction_use_sigmoid: bool = False
    dynamic_multimask_via_stability: bool = False
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    pred_obj_scores: bool = False
    pred_obj_scores_mlp: bool = False
    use_multimask_token_for_obj_ptr: bool = False
    dtype: Dtype = jnp.float32

    @property
    def num_mask_tokens(self) -> int:
        return self.num_multimask_outputs + 1

    def setup(self):
        dim = self.transformer_dim
        self.iou_token = nn.Embed(1, dim)
        self.mask_tokens = nn.Embed(self.num_mask_tokens, dim)
        if self.pred_obj_scores:
            self.obj_score_token = nn.Embed(1, dim)

        self.output_upscaling_0 = ConvTranspose2d(dim // 4, kernel_size=2, dtype=self.dtype)
        self.output_upscaling_1 = LayerNorm2d()
        self.output_upscaling_3 = ConvTranspose2d(dim // 8, kernel_size=2, dtype=self.dtype)
        if self.use_high_res_features:
            self.conv_s0 = Conv2d(dim // 8, kernel_size=1, dtype=self.dtype)
            self.conv_s1 = Conv2d(dim // 4, kernel_size=1, dtype=self.dtype)

        self.output_hypernetworks_mlps = [
            MLP(dim, dim, dim // 8, 3, dtype=self.dtype) for _ in range(self.num_mask_tokens)
        ]
        self.iou_prediction_head = MLP(
            dim,
            self.iou_head_hidden_dim,
            self.num_mask_tokens,
            self.iou_head_depth,
            sigmoid_output=self.iou_prediction_use_sigmoid,
            dtype=self.dtype,
        )
        if self.pred_obj_scores:
            if self.pred_obj_scores_mlp:
                self.pred_obj_score_head = MLP(dim, dim, 1, 3, dtype=self.dtype)
            else:
                self.pred_obj_score_head = Linear(1, dtype=self.dtype)

    def project_high_res_features(self, feat_s0: jax.Array, feat_s1: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(conv_s0(feat_s0), conv_s1(feat_s1))``: the backbone's stride-4 and stride-8 levels (NHWC, C
        channels) projected to C/8 and C/4 channels, as SAM2Base's ``forward_image`` does."""
        if not self.use_high_res_features:
            raise ValueError("project_high_res_features needs use_high_res_features=True (no conv_s0/conv_s1)")
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)

    def __call__(
        self,
        image_embeddings: jax.Array,
        image_pe: jax.Array,
        sparse_prompt_embeddings: jax.Array,
        dense_prompt_embeddings: jax.Array,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: Sequence[jax.Array] | None = None,
        training: bool = False,
        sparse_prompt_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Predict masks for a batch of prompts.

        Args:
          image_embeddings: (B or 1, h, w, C) image features.
          image_pe: (1, h, w, C) position encoding (``PromptEncoder.get_dense_pe``).
          sparse_prompt_embeddings: (B, N, C) point/box tokens.
          dense_prompt_embeddings: (B, h, w, C) mask-prompt embedding.
          multimask_output: return the ``num_multimask_outputs`` masks instead of one (static).
          repeat_image: each image embedding serves ``B`` prompts: repeat it ``B`` times (static).
          high_res_features: ``(feat_s0 (B, 4h, 4w, C/8), feat_s1 (B, 2h, 2w, C/4))`` already projected by
            ``conv_s0/1``; needed when ``use_high_res_features``, ignored otherwise.
          training: the official ``self.training`` (disables the dynamic multimask fallback).
          sparse_prompt_mask: (B, N) bool, False for sparse tokens that do not exist (empty click slots of a
            bucket, ``prompt_encoder.sparse_prompt_mask``): no token or image cell attends to them. None: all exist.
        Returns:
          ``masks (B, M, 4h, 4w)`` logits, ``iou_pred (B, M)``, ``sam_tokens_out (B, M', C)`` and
          ``object_score_logits (B, 1)``; M = ``num_multimask_outputs`` in multimask mode, else 1;
          M' is M when ``multimask_output and use_multimask_token_for_obj_ptr``, else 1.
        """
        if self.is_initializing() and self.use_high_res_features:
            # Linen creates params on first use and SAM2Base, not this call, applies conv_s0/1: visit them.
            dummy = jnp.zeros((1, 1, 1, self.transformer_dim), jnp.float32)
            self.project_high_res_features(dummy, dummy)
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image,
            high_res_features,
            sparse_prompt_mask,
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not training:
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]

        # The single-mask token is the object pointer even after a multimask click (it is what training saw
        # after several clicks), unless the config asks for the multimask tokens.
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            sam_tokens_out = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens_out, object_score_logits

    def _check_inputs(self, image_embeddings, image_pe, sparse_prompt_embeddings, high_res_features) -> None:
        """Raise a ``ValueError`` naming the first input of ``predict_masks`` with a wrong shape."""
        dim = self.transformer_dim
        if sparse_prompt_embeddings.ndim != 3 or sparse_prompt_embeddings.shape[-1] != dim:
            raise ValueError(f"sparse_prompt_embeddings should be (B, N, {dim}), got {sparse_prompt_embeddings.shape}")
        if image_embeddings.ndim != 4 or image_embeddings.shape[-1] != dim:
            raise ValueError(f"image_embeddings should be (B, h, w, {dim}), got {image_embeddings.shape}")
        if image_pe.shape != (1, *image_embeddings.shape[1:]):
            raise ValueError(f"image_pe should be (1, {image_embeddings.shape[1:]}), got {image_pe.shape}")
        if self.use_high_res_features and (high_res_features is None or len(high_res_features) != 2):
            raise ValueError("use_high_res_features=True needs high_res_features=(feat_s0, feat_s1)")

    def predict_masks(
        self,
        image_embeddings: jax.Array,
        image_pe: jax.Array,
        sparse_prompt_embeddings: jax.Array,
        dense_prompt_embeddings: jax.Array,
        repeat_image: bool,
        high_res_features: Sequence[jax.Array] | None = None,
        sparse_prompt_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """All ``num_mask_tokens`` masks and IoUs, the mask tokens and the object-score logits."""
        self._check_inputs(image_embeddings, image_pe, sparse_prompt_embeddings, high_res_features)
        # Output tokens first: [obj_score,] iou, mask tokens, then the prompt tokens.
        s = 1 if self.pred_obj_scores else 0
        token_list = [self.iou_token.embedding, self.mask_tokens.embedding]
        if self.pred_obj_scores:
            token_list.insert(0, self.obj_score_token.embedding)
        output_tokens = jnp.concatenate(token_list, axis=0)
        b = sparse_prompt_embeddings.shape[0]
        # (T, C) -> (B, T, C)
        output_tokens = jnp.broadcast_to(output_tokens[None], (b, *output_tokens.shape))
        tokens = jnp.concatenate([output_tokens, sparse_prompt_embeddings.astype(jnp.float32)], axis=1)

        if repeat_image:
            # (Bi, h, w, C) -> (Bi * B, h, w, C), each image repeated for its B prompts
            src = jnp.repeat(image_embeddings, b, axis=0)
        else:
            if image_embeddings.shape[0] != b:
                raise ValueError(
                    f"image_embeddings batch {image_embeddings.shape[0]} != prompt batch {b} "
                    "(pass repeat_image=True to share one image)"
                )
            src = image_embeddings
        if dense_prompt_embeddings.shape != src.shape:
            raise ValueError(f"dense_prompt_embeddings should be {src.shape}, got {dense_prompt_embeddings.shape}")
        src = src + dense_prompt_embeddings
        # (1, h, w, C) -> (B, h, w, C)
        pos_src = jnp.broadcast_to(image_pe, src.shape)
        _, h, w, c = src.shape

        hs, src = self.transformer(src, pos_src, tokens, _token_mask(output_tokens, sparse_prompt_mask, tokens))
        iou_token_out = hs[:, s]
        mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens]

        # (B, h*w, C) -> (B, h, w, C)
        src = src.reshape(src.shape[0], h, w, c)
        act = get_activation_fn(self.activation)
        if self.use_high_res_features:
            feat_s0, feat_s1 = high_res_features
            up = act(self.output_upscaling_1(self.output_upscaling_0(src) + feat_s1))
            up = act(self.output_upscaling_3(up) + feat_s0)
        else:
            up = act(self.output_upscaling_1(self.output_upscaling_0(src)))
            up = act(self.output_upscaling_3(up))

        # One hypernetwork per mask token turns it into the weights of a 1x1 conv on the upscaled features.
        hyper_in = jnp.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], axis=1
        )
        # (B, M, C/8) x (B, 4h, 4w, C/8) -> (B, M, 4h, 4w)
        masks = jnp.einsum(
            "bmc,byxc->bmyx",
            hyper_in.astype(self.dtype),
            up.astype(self.dtype),
            preferred_element_type=jnp.float32,
        )

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:
            # sigmoid(10) ~ 1: without a head the object is taken as present.
            object_score_logits = jnp.full((iou_pred.shape[0], 1), 10.0, iou_pred.dtype)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def _get_stability_scores(self, mask_logits: jax.Array) -> jax.Array:
        """IoU of the masks thresholded at ``+delta`` and ``-delta``: (..., H, W) logits -> (...)."""
        # (..., H, W) -> (..., H*W)
        flat = mask_logits.reshape(*mask_logits.shape[:-2], -1)
        delta = self.dynamic_multimask_stability_delta
        area_i = jnp.sum(flat > delta, axis=-1).astype(jnp.float32)
        area_u = jnp.sum(flat > -delta, axis=-1).astype(jnp.float32)
        return jnp.where(area_u > 0, area_i / jnp.maximum(area_u, 1.0), 1.0)

    def _dynamic_multimask_via_stability(
        self, all_mask_logits: jax.Array, all_iou_scores: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Keep the single-mask output (token 0) where it is stable, else the multimask output of highest IoU.

        all_mask_logits (B, M, H, W), all_iou_scores (B, M) -> (B, 1, H, W), (B, 1).
        """
        multimask_logits = all_mask_logits[:, 1:]
        multimask_iou_scores = all_iou_scores[:, 1:]
        best = jnp.argmax(multimask_iou_scores, axis=-1)
        best_logits = jnp.take_along_axis(multimask_logits, best[:, None, None, None], axis=1)
        best_iou = jnp.take_along_axis(multimask_iou_scores, best[:, None], axis=1)

        singlemask_logits = all_mask_logits[:, 0:1]
        singlemask_iou_scores = all_iou_scores[:, 0:1]
        is_stable = self._get_stability_scores(singlemask_logits) >= self.dynamic_multimask_stability_thresh
        mask_logits_out = jnp.where(is_stable[..., None, None], singlemask_logits, best_logits)
        iou_scores_out = jnp.where(is_stable, singlemask_iou_scores, best_iou)
        return mask_logits_out, iou_scores_out
