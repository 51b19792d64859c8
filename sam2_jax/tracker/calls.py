"""The model calls of the tracker: one public ``SAM2Base`` method each, applied with the caller's params.

The tracker's other modules (``memory.py``, ``engine.py``, the policies) and the image predictor reach the model only
through these functions (``module.apply`` of a method object, never a name).
"""

import jax
import jax.numpy as jnp

from sam2_jax.modeling.sam2_base import DecoderOutput, ImageEmbeddings, ImageFeatures, SAM2Base, SamHeadsOutput
from sam2_jax.utils.misc import fill_holes_in_mask_scores

Rngs = dict[str, jax.Array] | None


def call(module: SAM2Base, params, method, *args, rngs: Rngs = None, **kwargs):
    """``module.apply`` of one public ``SAM2Base`` method (a function, never a name)."""
    return module.apply({"params": params}, *args, method=method, rngs=rngs, **kwargs)


# --- image features -----------------------------------------------------------------------------------------------
def frame_features(
    module: SAM2Base, params, image: jax.Array, deterministic: bool = True, rngs: Rngs = None
) -> ImageFeatures:
    """image (B, S, S, 3) normalised -> ``ImageFeatures`` with a leading B (1 for a video frame)."""
    return call(module, params, SAM2Base.encode_image, image, deterministic, rngs=rngs)


def frame_at(feats: ImageFeatures, t: jax.Array) -> ImageFeatures:
    """Frame ``t`` (traced) of features computed for a stack of frames: (T, ...) -> (1, ...)."""
    take = lambda x: jax.lax.dynamic_index_in_dim(x, t, 0, keepdims=True)
    return ImageFeatures(take(feats.vision_feat), take(feats.vision_pos), tuple(take(x) for x in feats.high_res))


def broadcast_high_res(feats: ImageFeatures, num_objects: int) -> list[jax.Array] | None:
    """A frame's high-res features (1, ...) for each object (O, ...), or None without high-res features."""
    return [jnp.broadcast_to(x, (num_objects, *x.shape[1:])) for x in feats.high_res] or None


def image_embeddings(module: SAM2Base, params, images: jax.Array) -> ImageEmbeddings:
    """What the image predictor keeps per image: images (B, S, S, 3) normalised -> ``ImageEmbeddings``."""
    return call(module, params, SAM2Base.image_embeddings, images)


# --- heads --------------------------------------------------------------------------------------------------------
def sam_heads(module: SAM2Base, params, *args, **kwargs) -> SamHeadsOutput:
    """``SAM2Base.sam_heads`` (official ``_forward_sam_heads``): ``(backbone_features (O, h, w, C), point_coords,
    point_labels, mask_inputs, high_res_features, multimask_output)``, as its docstring says."""
    return call(module, params, SAM2Base.sam_heads, *args, **kwargs)


def decode_prompts(module: SAM2Base, params, *args, **kwargs) -> DecoderOutput:
    """``SAM2Base.decode_prompts``: prompt encoder + mask decoder on an image embedding, as the image predictor and
    the automatic mask generator call them (no object-score gating); arguments as its docstring says."""
    return call(module, params, SAM2Base.decode_prompts, *args, **kwargs)


def use_mask_as_output(
    module: SAM2Base,
    params,
    pix_feat: jax.Array,
    high_res: list[jax.Array] | None,
    mask: jax.Array,
    obj_score_threshold: float = 0.0,
) -> SamHeadsOutput:
    """``SAM2Base.use_mask_as_output``: a binary mask (O, S, S, 1) taken as the output."""
    return call(module, params, SAM2Base.use_mask_as_output, pix_feat, high_res, mask, obj_score_threshold)


def postprocess_pred_masks(pred_masks: jax.Array, fill_hole_area: int) -> jax.Array:
    """The predictor's ``fill_hole_area`` on low-res logits (O, 1, 4h, 4w); unchanged when 0."""
    if fill_hole_area > 0:
        return fill_holes_in_mask_scores(pred_masks, fill_hole_area)
    return pred_masks


# --- memory -------------------------------------------------------------------------------------------------------
def encode_memory(
    module: SAM2Base,
    params,
    feats: ImageFeatures,
    high_res_masks: jax.Array,
    object_score_logits: jax.Array,
    is_mask_from_pts: jax.Array | bool,
    training: bool = False,
) -> jax.Array:
    """The memory of a frame (1, h, w, C features) for each of O masks (O, 1, S, S): (O, hw, mem_dim) float32."""
    O = high_res_masks.shape[0]
    pix_feat = jnp.broadcast_to(feats.vision_feat, (O, *feats.vision_feat.shape[1:]))
    mem = call(
        module,
        params,
        SAM2Base.encode_memory,
        pix_feat,
        high_res_masks,
        object_score_logits,
        is_mask_from_pts,
        training,
    ).maskmem_features
    return mem.reshape(O, -1, mem.shape[-1])  # (O, h, w, m) -> (O, hw, m)
