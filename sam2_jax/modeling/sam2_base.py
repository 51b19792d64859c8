"""Port of ``sam2/modeling/sam2_base.py``: SAM2Base's parameters and its pure per-frame methods.

Only the model lives here. Memory *selection* (which frames a frame attends to) is tracking policy and lives in
``sam2_jax/tracker/engine.py``, which composes the public per-frame methods below. Each returns a ``NamedTuple``
(or one array) and names the official function it ports:

| ours | official (``SAM2Base``) |
| --- | --- |
| ``forward_image`` -> backbone dict | ``forward_image`` |
| ``prepare_backbone_features`` / ``encode_image`` -> ``ImageFeatures`` | ``_prepare_backbone_features`` |
| ``image_embeddings`` -> ``ImageEmbeddings`` | ``SAM2ImagePredictor.set_image``'s feature prep |
| ``decode_prompts`` -> ``DecoderOutput`` | ``sam_prompt_encoder`` + ``sam_mask_decoder`` |
| ``sam_heads`` -> ``SamHeadsOutput`` | ``_forward_sam_heads`` |
| ``use_mask_as_output`` -> ``SamHeadsOutput`` | ``_use_mask_as_output`` |
| ``encode_memory`` -> ``MemoryEncoding`` | ``_encode_new_memory`` |
| ``attend_memory`` -> array | ``memory_attention`` call in ``_prepare_memory_conditioned_features`` |
| ``use_multimask`` -> bool | ``_use_multimask`` |

Deviations from the official file:
- NHWC feature maps ``(B, h, w, C)`` instead of the official ``(HW, B, C)`` sequences / NCHW maps; mask inputs are
  ``(B, H, W, 1)``; mask outputs keep the official ``(B, M, H, W)`` (M is a mask index, not a conv channel).
- Point prompts are arrays ``(coords (B, N, 2), labels (B, N))``; no dicts; "no points" is ``None``.
- ``multimask_output`` and other switches are static Python values; decisions on data (object present or not) are
  ``jnp.where``, never Python branches.
- The official ``forward`` raises; here ``__call__`` only exists to create every parameter at ``init``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.backbones.image_encoder import image_encoder_from_config
from sam2_jax.modeling.layers import Conv2d, Linear
from sam2_jax.modeling.memory_attention import MemoryAttention
from sam2_jax.modeling.memory_encoder import MemoryEncoder
from sam2_jax.modeling.sam.mask_decoder import MaskDecoder
from sam2_jax.modeling.sam.prompt_encoder import PromptEncoder, sparse_prompt_mask
from sam2_jax.modeling.sam.transformer import TwoWayTransformer
from sam2_jax.modeling.sam2_utils import MLP
from sam2_jax.utils.interpolate import interpolate

Dtype = Any

# A large negative value as a placeholder score for missing objects (official NO_OBJ_SCORE).
NO_OBJ_SCORE = -1024.0


class ImageFeatures(NamedTuple):
    """The features of a batch of images that the heads and the tracker use (official
    ``_prepare_backbone_features`` output, NHWC maps instead of ``(HW, B, C)`` sequences)."""

    vision_feat: jax.Array  # (B, h, w, C) top level (stride 16)
    vision_pos: jax.Array  # (B, h, w, C) its sine position encoding
    high_res: tuple  # ((B, 4h, 4w, C/8), (B, 2h, 2w, C/4)) after conv_s0/s1, or () without high-res features


class ImageEmbeddings(NamedTuple):
    """What the image predictor keeps per image (the official ``_features`` dict, whose two keys it also answers:
    ``emb["image_embed"]``)."""

    image_embed: jax.Array  # (B, h, w, C), ``no_mem_embed`` added when ``directly_add_no_mem_embed``
    high_res_feats: list  # [(B, 4h, 4w, C/8), (B, 2h, 2w, C/4)] or []

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


class DecoderOutput(NamedTuple):
    """Prompt encoder + mask decoder outputs."""

    low_res_masks: jax.Array  # (B, M, 4h, 4w) logits, M = 3 with multimask output else 1
    iou_predictions: jax.Array  # (B, M)
    sam_tokens: jax.Array  # (B, M or 1, C) output tokens (for the object pointer)
    object_score_logits: jax.Array  # (B, 1)


class SamHeadsOutput(NamedTuple):
    """Official ``_forward_sam_heads`` outputs (same order)."""

    low_res_multimasks: jax.Array  # (B, M, 4h, 4w) float32, NO_OBJ_SCORE where the object is absent
    high_res_multimasks: jax.Array  # (B, M, S, S) float32, S = image_size
    ious: jax.Array  # (B, M)
    low_res_masks: jax.Array  # (B, 1, 4h, 4w) the chosen (best-IoU) mask
    high_res_masks: jax.Array  # (B, 1, S, S)
    obj_ptr: jax.Array  # (B, C) object pointer, gated by the object score
    object_score_logits: jax.Array  # (B, 1)


class MemoryEncoding(NamedTuple):
    """Official ``_encode_new_memory`` outputs."""

    maskmem_features: jax.Array  # (B, h, w, mem_dim)
    maskmem_pos_enc: jax.Array  # (B, h, w, mem_dim)


class SAM2Base(nn.Module):
    """SAM 2 with the official attribute names: image_encoder, memory_attention, memory_encoder,
    sam_prompt_encoder, sam_mask_decoder, obj_ptr_proj, obj_ptr_tpos_proj, mask_downsample and the raw params
    ``maskmem_tpos_enc``, ``no_mem_embed``, ``no_mem_pos_enc``, ``no_obj_ptr``, ``no_obj_embed_spatial``.

    ``config`` is ``get_config(...).model`` (an ``ml_collections`` config, frozen).
    """

    config: Any
    dtype: Dtype = jnp.float32

    # --- static properties read by predictors and the tracker -------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def hidden_dim(self) -> int:
        return self.config.image_encoder.neck.d_model

    @property
    def mem_dim(self) -> int:
        return self.config.memory_encoder.out_dim

    @property
    def sam_image_embedding_size(self) -> int:
        return self.config.image_size // self.config.backbone_stride

    @property
    def num_feature_levels(self) -> int:
        return 3 if self.config.use_high_res_features_in_sam else 1

    def setup(self):
        c = self.config
        C = self.hidden_dim
        # The backend policy (sam2_jax/modeling/backend.py): "auto" picks per platform at trace time.
        impl = c.get("attention_impl", "auto")
        self.image_encoder = image_encoder_from_config(c.image_encoder, dtype=self.dtype, attention_impl=impl)
        self.memory_attention = MemoryAttention.from_config(c.memory_attention, dtype=self.dtype, attention_impl=impl)
        self.memory_encoder = MemoryEncoder.from_config(c.memory_encoder, dtype=self.dtype)

        e = self.sam_image_embedding_size
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=C,
            image_embedding_size=(e, e),
            input_image_size=(c.image_size, c.image_size),
            mask_in_chans=16,
            dtype=self.dtype,
        )
        extra = dict(c.sam_mask_decoder_extra_args or {})
        self.sam_mask_decoder = MaskDecoder(
            transformer_dim=C,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=C, mlp_dim=2048, num_heads=8, dtype=self.dtype, attention_impl=impl
            ),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            use_high_res_features=c.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=c.iou_prediction_use_sigmoid,
            pred_obj_scores=c.pred_obj_scores,
            pred_obj_scores_mlp=c.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=c.use_multimask_token_for_obj_ptr,
            dtype=self.dtype,
            **extra,
        )

        normal02 = nn.initializers.truncated_normal(0.02)
        # (num_maskmem, 1, 1, mem_dim): temporal encoding of the memories, as in the official layout.
        self.maskmem_tpos_enc = self.param("maskmem_tpos_enc", normal02, (c.num_maskmem, 1, 1, self.mem_dim))
        self.no_mem_embed = self.param("no_mem_embed", normal02, (1, 1, C))
        self.no_mem_pos_enc = self.param("no_mem_pos_enc", normal02, (1, 1, C))
        if c.pred_obj_scores and c.use_obj_ptrs_in_encoder:
            self.no_obj_ptr = self.param("no_obj_ptr", normal02, (1, C))
        if c.no_obj_embed_spatial:
            self.no_obj_embed_spatial = self.param("no_obj_embed_spatial", normal02, (1, self.mem_dim))
        if c.use_obj_ptrs_in_encoder:
            # Downsamples a mask prompt to stride 4 (SAM logit scale) to produce a pointer from a mask input.
            self.mask_downsample = Conv2d(1, kernel_size=(4, 4), stride=(4, 4), dtype=self.dtype)
            if c.use_mlp_for_obj_ptr_proj:
                self.obj_ptr_proj = MLP(C, C, C, 3, dtype=self.dtype)
            else:
                self.obj_ptr_proj = Linear(C, dtype=self.dtype)
        if c.proj_tpos_enc_in_obj_ptrs:
            if not c.add_tpos_enc_to_obj_ptrs:
                raise ValueError("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")
            self.obj_ptr_tpos_proj = Linear(self.mem_dim, dtype=self.dtype)
        if c.fixed_no_obj_ptr and not (c.pred_obj_scores and c.use_obj_ptrs_in_encoder):
            raise ValueError("fixed_no_obj_ptr needs pred_obj_scores and use_obj_ptrs_in_encoder")

    # --- image ------------------------------------------------------------------------------------------------
    def forward_image(self, img_batch: jax.Array, deterministic: bool = True) -> dict[str, Any]:
        """img_batch (B, H, W, 3) normalised -> backbone dict (NHWC); levels 0/1 already through conv_s0/s1."""
        backbone_out = self.image_encoder(img_batch, deterministic)
        if self.config.use_high_res_features_in_sam:
            # Project levels 0 and 1 once here rather than on every click (as the official forward_image does).
            fpn = list(backbone_out["backbone_fpn"])
            fpn[0], fpn[1] = self.sam_mask_decoder.project_high_res_features(fpn[0], fpn[1])
            backbone_out = {**backbone_out, "backbone_fpn": fpn}
        return backbone_out

    def prepare_backbone_features(self, backbone_out: dict[str, Any]) -> ImageFeatures:
        """Official ``_prepare_backbone_features``: the last ``num_feature_levels`` maps (NHWC, high-res first)."""
        n = self.num_feature_levels
        feats, pos = backbone_out["backbone_fpn"][-n:], backbone_out["vision_pos_enc"][-n:]
        return ImageFeatures(feats[-1], pos[-1], tuple(feats[:-1]))

    def encode_image(self, img_batch: jax.Array, deterministic: bool = True) -> ImageFeatures:
        """img_batch (B, S, S, 3) normalised -> ``ImageFeatures`` (``forward_image``, ``prepare_backbone_features``)."""
        return self.prepare_backbone_features(self.forward_image(img_batch, deterministic))

    def image_embeddings(self, img_batch: jax.Array) -> ImageEmbeddings:
        """What the image predictor keeps per image: ``image_embed (B, 64, 64, C)`` (with ``no_mem_embed`` added
        when ``directly_add_no_mem_embed``) and ``high_res_feats`` [(B, 256, 256, C/8), (B, 128, 128, C/4)]."""
        feats = self.encode_image(img_batch)
        embed = feats.vision_feat
        if self.config.directly_add_no_mem_embed:
            embed = embed + self.no_mem_embed
        return ImageEmbeddings(embed, list(feats.high_res))

    @nn.nowrap
    def use_multimask(self, is_init_cond_frame: bool, num_pts: int) -> bool:
        """Official ``_use_multimask``: whether a prompt step outputs 3 masks (static: the number of points is known
        when tracing). Needs no params: call it on the module itself, ``module.use_multimask(...)``."""
        c = self.config
        return bool(
            c.multimask_output_in_sam
            and (is_init_cond_frame or c.multimask_output_for_tracking)
            and c.multimask_min_pt_num <= num_pts <= c.multimask_max_pt_num
        )

    # --- SAM heads --------------------------------------------------------------------------------------------
    def decode_prompts(
        self,
        image_embed: jax.Array,
        high_res_feats: list[jax.Array] | None,
        point_coords: jax.Array | None,
        point_labels: jax.Array | None,
        mask_input: jax.Array | None,
        multimask_output: bool,
        repeat_image: bool = False,
    ) -> DecoderOutput:
        """Prompt encoder + mask decoder, as the image predictor calls them (no object-score gating).

        Args:
          image_embed: (B or 1, h, w, C); high_res_feats: projected stride-4/8 features or None.
          point_coords: (B, N, 2) in model input pixels; point_labels: (B, N) int (``ABSENT_LABEL`` for empty
            slots of a click bucket); or both None.
          mask_input: (B, 256, 256, 1) low-res logits or None.
        Returns:
          ``DecoderOutput``.
        """
        points = None if point_coords is None else (point_coords, point_labels)
        sparse, dense = self.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        # Click slots labelled ABSENT_LABEL (a click bucket's padding) are masked out of the decoder's attention.
        present = None if point_labels is None else sparse_prompt_mask(point_labels, pad=True)
        out = self.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=repeat_image,
            high_res_features=high_res_feats,
            sparse_prompt_mask=present,
        )
        return DecoderOutput(*out)

    def sam_heads(
        self,
        backbone_features: jax.Array,
        point_coords: jax.Array | None = None,
        point_labels: jax.Array | None = None,
        mask_inputs: jax.Array | None = None,
        high_res_features: list[jax.Array] | None = None,
        multimask_output: bool = False,
        choose: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
        obj_score_threshold: float = 0.0,
        all_obj_ptrs: bool = False,
    ) -> SamHeadsOutput | tuple[SamHeadsOutput, jax.Array]:
        """Official ``_forward_sam_heads``: prompt encoder + mask decoder + object pointer, gated by the object score.

        Args:
          backbone_features: (B, h, w, C). point_coords (B, P, 2) absolute model-input pixels, point_labels (B, P)
            (-1 padding), or None for no points. mask_inputs: (B, H, W, 1) of any size (resized to 256 with
            bilinear antialias, like the official) or None.
          choose: with multimask output, a function ``(ious (B, M), high_res_multimasks (B, M, S, S)) -> (B,)`` index
            of the kept candidate (a tracking policy, ``sam2_jax/tracker/policies/``); default the best IoU.
          obj_score_threshold: the object-score logit above which the object counts as present (official: 0;
            SAMURAI's ``min_obj_score_logits``: -1).
          all_obj_ptrs: also return the gated object pointer of every candidate, (B, M, C) (SAM2Long keeps any
            candidate of any pathway; its ``_forward_sam_heads`` projects every output token).
        Returns:
          ``SamHeadsOutput``, or ``(SamHeadsOutput, obj_ptrs (B, M, C))`` with ``all_obj_ptrs``.
        """
        c = self.config
        B = backbone_features.shape[0]
        if point_coords is None:
            # No points: pad with one empty point (label -1), as the official does.
            point_coords = jnp.zeros((B, 1, 2), jnp.float32)
            point_labels = -jnp.ones((B, 1), jnp.int32)
        if mask_inputs is not None:
            size = self.sam_prompt_encoder.mask_input_size
            if tuple(mask_inputs.shape[1:3]) != tuple(size):
                mask_inputs = interpolate(mask_inputs.astype(jnp.float32), size, "bilinear", antialias=True)
        low_res_multimasks, ious, sam_output_tokens, object_score_logits = self.decode_prompts(
            backbone_features, high_res_features, point_coords, point_labels, mask_inputs, multimask_output
        )
        if c.pred_obj_scores:
            is_obj_appearing = object_score_logits > obj_score_threshold  # (B, 1)
            # The mask used for memory is a hard choice between object and no object.
            low_res_multimasks = jnp.where(is_obj_appearing[:, :, None, None], low_res_multimasks, NO_OBJ_SCORE)
        low_res_multimasks = low_res_multimasks.astype(jnp.float32)
        high_res_multimasks = _resize_masks(low_res_multimasks, (self.image_size, self.image_size))

        sam_output_token = sam_output_tokens[:, 0]
        if multimask_output:
            best = jnp.argmax(ious, axis=-1) if choose is None else choose(ious, high_res_multimasks)  # (B,)
            take = lambda x: jnp.take_along_axis(x, best[:, None, None, None], axis=1)
            low_res_masks, high_res_masks = take(low_res_multimasks), take(high_res_multimasks)
            if sam_output_tokens.shape[1] > 1:
                sam_output_token = jnp.take_along_axis(sam_output_tokens, best[:, None, None], axis=1)[:, 0]
        else:
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks

        obj_ptr = self.obj_ptr_proj(sam_output_token)
        if c.pred_obj_scores:
            if c.soft_no_obj_ptr:
                lam = jax.nn.sigmoid(object_score_logits)
            else:
                lam = is_obj_appearing.astype(jnp.float32)
            obj_ptr = self._gate_obj_ptr(obj_ptr, lam)
        out = SamHeadsOutput(
            low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits
        )
        if not all_obj_ptrs:
            return out
        obj_ptrs = self.obj_ptr_proj(sam_output_tokens)  # (B, M, C)
        if c.pred_obj_scores:
            obj_ptrs = self._gate_obj_ptr(obj_ptrs, lam[:, :, None])
        return out, obj_ptrs

    def _gate_obj_ptr(self, obj_ptr: jax.Array, lam: jax.Array) -> jax.Array:
        """Blend in ``no_obj_ptr`` where the object is absent (lam (B, 1) = 1 present, 0 absent)."""
        if self.config.fixed_no_obj_ptr:
            obj_ptr = lam * obj_ptr
        return obj_ptr + (1 - lam) * self.no_obj_ptr

    def use_mask_as_output(
        self,
        backbone_features: jax.Array,
        high_res_features: list[jax.Array] | None,
        mask_inputs: jax.Array,
        obj_score_threshold: float = 0.0,
    ) -> SamHeadsOutput:
        """Official ``_use_mask_as_output``: a binary mask input (B, H, W, 1) at image size becomes the output logits
        (+-10), with a pointer from the SAM decoder run on the downsampled mask (``obj_score_threshold`` as in
        ``sam_heads``)."""
        c = self.config
        out_scale, out_bias = 20.0, -10.0  # sigmoid(-10) = 4.5e-5
        mask_f = mask_inputs.astype(jnp.float32)
        high_res_nhwc = mask_f * out_scale + out_bias
        H, W = high_res_nhwc.shape[1:3]
        low_res_nhwc = interpolate(high_res_nhwc, (H // 4, W // 4), "bilinear", antialias=True)
        # (B, H, W, 1) -> (B, 1, H, W)
        high_res_masks = high_res_nhwc.transpose(0, 3, 1, 2)
        low_res_masks = low_res_nhwc.transpose(0, 3, 1, 2)
        B = mask_f.shape[0]
        ious = jnp.ones((B, 1), jnp.float32)
        if not c.use_obj_ptrs_in_encoder:
            obj_ptr = jnp.zeros((B, self.hidden_dim), jnp.float32)
        else:
            obj_ptr = self.sam_heads(
                backbone_features,
                mask_inputs=self.mask_downsample(mask_f),
                high_res_features=high_res_features,
                obj_score_threshold=obj_score_threshold,
            ).obj_ptr
        # The mask input, not the object-score head, decides whether the object is present.
        lam = jnp.any(mask_f.reshape(B, -1) > 0.0, axis=1, keepdims=True).astype(jnp.float32)
        object_score_logits = out_scale * lam + out_bias
        if c.pred_obj_scores:
            obj_ptr = self._gate_obj_ptr(obj_ptr, lam)
        return SamHeadsOutput(
            low_res_masks, high_res_masks, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits
        )

    # --- memory -----------------------------------------------------------------------------------------------
    def encode_memory(
        self,
        pix_feat: jax.Array,
        pred_masks_high_res: jax.Array,
        object_score_logits: jax.Array,
        is_mask_from_pts: jax.Array | bool,
        training: bool = False,
    ) -> MemoryEncoding:
        """Official ``_encode_new_memory``: the memory of a frame from its top-level features (B, h, w, C) and its
        high-res mask logits (B, 1, H, W).

        ``is_mask_from_pts`` may be a traced bool (per batch or scalar); ``training`` is the official
        ``self.training`` (no binarization of click masks). Non-overlap constraints are the tracker's business.
        """
        c = self.config
        # (B, 1, H, W) -> (B, H, W, 1)
        masks = pred_masks_high_res.transpose(0, 2, 3, 1).astype(jnp.float32)
        soft = jax.nn.sigmoid(masks)
        if c.binarize_mask_from_pts_for_mem_enc and not training:
            binar = jnp.asarray(is_mask_from_pts).reshape(-1, 1, 1, 1)
            mask_for_mem = jnp.where(binar, (masks > 0).astype(jnp.float32), soft)
        else:
            mask_for_mem = soft
        if c.sigmoid_scale_for_mem_enc != 1.0:
            mask_for_mem = mask_for_mem * c.sigmoid_scale_for_mem_enc
        if c.sigmoid_bias_for_mem_enc != 0.0:
            mask_for_mem = mask_for_mem + c.sigmoid_bias_for_mem_enc
        out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        maskmem_features, maskmem_pos_enc = out["vision_features"], out["vision_pos_enc"][-1]
        if c.no_obj_embed_spatial:
            absent = 1.0 - (object_score_logits > 0).astype(jnp.float32)  # (B, 1)
            maskmem_features = maskmem_features + absent[:, None, None, :] * self.no_obj_embed_spatial
        return MemoryEncoding(maskmem_features, maskmem_pos_enc)

    def attend_memory(
        self,
        curr: jax.Array,
        curr_pos: jax.Array,
        memory: jax.Array,
        memory_pos: jax.Array,
        num_obj_ptr_tokens: int = 0,
        memory_mask: jax.Array | None = None,
        deterministic: bool = True,
        key_scale: jax.Array | None = None,
    ) -> jax.Array:
        """Memory attention of the current frame's top-level tokens (B, HW, C) to memories (B, Nm, mem_dim);
        ``key_scale (B, Nm)``: SAM2Long's per-token key weights (None: the official attention)."""
        return self.memory_attention(
            curr,
            memory,
            curr_pos,
            memory_pos,
            num_obj_ptr_tokens=num_obj_ptr_tokens,
            memory_mask=memory_mask,
            deterministic=deterministic,
            key_scale=key_scale,
        )

    def maskmem_tpos(self, idx: jax.Array) -> jax.Array:
        """Temporal encodings ``maskmem_tpos_enc[idx]``: idx (...) int -> (..., mem_dim)."""
        return self.maskmem_tpos_enc[idx, 0, 0]

    def no_mem(self) -> jax.Array:
        """The no-memory embedding (1, 1, C) added to the features of a frame without memory."""
        return self.no_mem_embed

    def obj_ptr_tpos(self, tpos_enc: jax.Array) -> jax.Array:
        """Projection of the temporal encoding of object pointers (identity when not configured)."""
        if self.config.proj_tpos_enc_in_obj_ptrs:
            return self.obj_ptr_tpos_proj(tpos_enc)
        return tpos_enc

    def __call__(self, img_batch: jax.Array) -> Any:
        """Touches every submodule so that ``init`` creates all params (use ``jax.eval_shape`` for shapes)."""
        c = self.config
        feats = self.encode_image(img_batch)
        B = img_batch.shape[0]
        hr = list(feats.high_res) or None
        outs = self.sam_heads(feats.vision_feat, high_res_features=hr, multimask_output=True)
        masks_hr = jnp.zeros((B, self.image_size, self.image_size, 1), jnp.float32)
        if c.use_mask_input_as_output_without_sam:
            self.use_mask_as_output(feats.vision_feat, hr, masks_hr)
        mem, mem_pos = self.encode_memory(feats.vision_feat, outs.high_res_masks, outs.object_score_logits, True)
        h, w = feats.vision_feat.shape[1:3]
        # (B, h, w, C) -> (B, h*w, C)
        curr = feats.vision_feat.reshape(B, h * w, -1)
        memory = mem.reshape(B, h * w, -1) + self.maskmem_tpos_enc[0, 0]
        tpos = self.obj_ptr_tpos(jnp.zeros((B, self.hidden_dim), jnp.float32))
        out = self.attend_memory(curr, feats.vision_pos.reshape(B, h * w, -1), memory, mem_pos.reshape(B, h * w, -1))
        return out, tpos, self.no_mem_embed, self.no_mem_pos_enc


def _resize_masks(masks: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear (align_corners=False) resize of (B, M, H, W) masks."""
    # (B, M, H, W) -> (B, H, W, M) -> resize -> (B, M, H', W')
    return interpolate(masks.transpose(0, 2, 3, 1), size, "bilinear").transpose(0, 3, 1, 2)
