"""The explicit table between Hugging Face ``transformers``' SAM 2 names and the official state dict.

``transformers`` (``Sam2Model`` / ``Sam2VideoModel``, ``models/sam2*/convert_sam2_video_to_hf.py``) keeps every
tensor in the official (torch) layout and renames modules: ``image_encoder.trunk`` -> ``vision_encoder.backbone``,
``out_proj`` -> ``o_proj``, ``norm*`` -> ``layer_norm*``, 3-layer MLPs ``layers.{0,1,2}`` -> ``proj_in``,
``layers.0``, ``proj_out`` (2-layer ones ``proj_in``, ``proj_out``), ``maskmem_tpos_enc`` ->
``memory_temporal_positional_encoding``, ... Two entries are not one-to-one:
- ``prompt_encoder.point_embed.weight`` (4, 256) is the four official ``point_embeddings.{i}.weight`` (1, 256)
  concatenated on axis 0;
- the prompt encoder's Gaussian matrix is stored twice (``prompt_encoder.shared_embedding.positional_embedding`` and
  ``shared_image_embedding.positional_embedding``): both are written, and a file whose two copies differ is refused.

Each entry is ``(hf_key, official_keys)``: one official key is copied, several are concatenated on axis 0. The
table is built per component from the same module lists as ``convert_weights.mapping`` (so the two tables cover the
same tensors by construction), with the renames spelled out below. ``Sam2Model`` (image only) holds the subset
``IMAGE_PREFIXES``; ``Sam2VideoModel`` holds all.
"""

import re

from sam2_jax.convert_weights.mapping import model_modules, param_table

HFEntry = tuple[str, tuple[str, ...]]

# The keys an image-only ``Sam2Model`` has (all others belong to ``Sam2VideoModel``'s memory components).
IMAGE_PREFIXES = (
    "vision_encoder.",
    "prompt_encoder.",
    "mask_decoder.",
    "shared_image_embedding.",
    "no_memory_embedding",
)
# The Gaussian matrix's second copy in transformers' models.
SHARED_IMAGE_EMBEDDING = "shared_image_embedding.positional_embedding"
PROMPT_SHARED_EMBEDDING = "prompt_encoder.shared_embedding.positional_embedding"

# Whole official module names -> transformers' (SAM2Base's own tensors, prompt encoder parts).
RENAMED = {
    "maskmem_tpos_enc": "memory_temporal_positional_encoding",
    "no_mem_embed": "no_memory_embedding",
    "no_mem_pos_enc": "no_memory_positional_encoding",
    "no_obj_ptr": "no_object_pointer",
    "no_obj_embed_spatial": "occlusion_spatial_embedding_parameter",
    "obj_ptr_tpos_proj": "temporal_positional_encoding_projection_layer",
    "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": PROMPT_SHARED_EMBEDDING,
    "sam_prompt_encoder.mask_downscaling.0": "prompt_encoder.mask_embed.conv1",
    "sam_prompt_encoder.mask_downscaling.1": "prompt_encoder.mask_embed.layer_norm1",
    "sam_prompt_encoder.mask_downscaling.3": "prompt_encoder.mask_embed.conv2",
    "sam_prompt_encoder.mask_downscaling.4": "prompt_encoder.mask_embed.layer_norm2",
    "sam_prompt_encoder.mask_downscaling.6": "prompt_encoder.mask_embed.conv3",
    "sam_mask_decoder.output_upscaling.0": "mask_decoder.upscale_conv1",
    "sam_mask_decoder.output_upscaling.1": "mask_decoder.upscale_layer_norm",
    "sam_mask_decoder.output_upscaling.3": "mask_decoder.upscale_conv2",
    "memory_encoder.pix_feat_proj": "memory_encoder.feature_projection",
    "memory_encoder.out_proj": "memory_encoder.projection",
}
# Official component prefixes -> transformers'.
PREFIXES = {
    "image_encoder.trunk.": "vision_encoder.backbone.",
    "image_encoder.neck.": "vision_encoder.neck.",
    "sam_prompt_encoder.": "prompt_encoder.",
    "sam_mask_decoder.": "mask_decoder.",
    "obj_ptr_proj.": "object_pointer_proj.",
    "memory_encoder.fuser.": "memory_encoder.memory_fuser.",
}
# Last-part renames inside a module (attention output, norms, the fuser's CXBlock).
PARTS = {
    "out_proj": "o_proj",
    "norm": "layer_norm",
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "norm3": "layer_norm3",
    "norm4": "layer_norm4",
    "norm_final_attn": "layer_norm_final_attn",
    "dwconv": "depthwise_conv",
    "pwconv1": "pointwise_conv1",
    "pwconv2": "pointwise_conv2",
    "gamma": "scale",
    "proj": "projection",  # only patch_embed.proj (see hf_module)
}
# MLP layer index -> transformers' name, by the MLP's depth.
MLP_LAYERS = {2: ("proj_in", "proj_out"), 3: ("proj_in", "layers.0", "proj_out")}
# An official MLP layer: ``<prefix>.layers.<i>`` where the prefix is one of the MLPs ``mapping._mlp`` builds.
MLP_LAYER = re.compile(
    r"^(.*\.(?:mlp|iou_prediction_head|pred_obj_score_head|output_hypernetworks_mlps\.\d+)|obj_ptr_proj)\.layers\.(\d+)$"
)
DOWNSAMPLER = "memory_encoder.mask_downsampler.encoder."


def official_modules(config) -> list[str]:
    """Every official module (or raw parameter) name of the config, in ``convert_weights.mapping`` order."""
    return [name for name, _ in model_modules(config)]


def module_renames(modules: list[str]) -> dict[str, str]:
    """Official module name -> transformers' module name, for every module of one config."""
    depths: dict[str, int] = {}
    for name in modules:
        if match := MLP_LAYER.match(name):
            depths[match[1]] = max(depths.get(match[1], 0), int(match[2]) + 1)
    final_conv = max(int(n[len(DOWNSAMPLER) :]) for n in modules if n.startswith(DOWNSAMPLER))
    return {name: hf_module(name, depths, final_conv) for name in modules}


def hf_module(module: str, depths: dict[str, int], final_conv: int) -> str:
    """One official module name -> transformers' (``image_encoder.trunk.blocks.3.mlp.layers.1`` ->
    ``vision_encoder.backbone.blocks.3.mlp.proj_out``).

    Args:
      module: official module or raw parameter name.
      depths: official MLP prefix -> its number of layers (``module_renames``).
      final_conv: index of the mask downsampler's last conv in its ``Sequential`` (12 for the shipped configs).
    """
    if module in RENAMED:
        return RENAMED[module]
    if match := MLP_LAYER.match(module):
        module = f"{match[1]}.{MLP_LAYERS[depths[match[1]]][int(match[2])]}"
    elif module.startswith(DOWNSAMPLER):  # Sequential of (conv, LayerNorm2d, GELU) per layer, then a 1x1 conv
        i = int(module[len(DOWNSAMPLER) :])
        part = "final_conv" if i == final_conv else f"layers.{i // 3}." + ("conv" if i % 3 == 0 else "layer_norm")
        return "memory_encoder.mask_downsampler." + part
    elif module.startswith("image_encoder.neck.convs."):  # convs.{i}.conv -> convs.{i}
        module = module.removesuffix(".conv")
    elif module.startswith("sam_prompt_encoder.point_embeddings."):  # four (1, C) -> one (4, C)
        return "prompt_encoder.point_embed"
    for old, new in PREFIXES.items():
        if module.startswith(old):
            module = new + module[len(old) :]
            break
    head, _, last = module.rpartition(".")
    if last == "proj" and not head.endswith("patch_embed"):
        return module  # Hiera's attn.proj and the stage-change block.proj keep their names
    return f"{head}.{PARTS.get(last, last)}" if head else module


def hf_table(config) -> list[HFEntry]:
    """The full table for a model config: ``(hf_key, official_keys)`` per ``Sam2VideoModel`` tensor.

    Args:
      config: a model config (``configs.get_config``).
    Returns:
      Entries in the official table's order; several official keys mean concatenation on axis 0.
    """
    renames = module_renames(official_modules(config))
    entries: dict[str, list[str]] = {}
    for _, key, _ in param_table(config):
        module, dot, suffix = key.rpartition(".")
        if suffix not in ("weight", "bias") or module not in renames:  # a raw parameter: the key is the module
            module, dot, suffix = key, "", ""
        entries.setdefault(renames[module] + dot + suffix, []).append(key)
    entries[SHARED_IMAGE_EMBEDDING] = list(entries[PROMPT_SHARED_EMBEDDING])
    return [(k, tuple(v)) for k, v in entries.items()]


def is_image_key(hf_key: str) -> bool:
    """Whether ``Sam2Model`` (image only) has this key."""
    return hf_key.startswith(IMAGE_PREFIXES)
