"""The explicit table between the official PyTorch state dict and our Flax params.

Each entry is ``(our_path, torch_key, transform)``. The table is built per component with comprehensions over the
config's blocks and layers, and names every module with its kind (linear, conv, norm, ...). Our path is the torch
module path with list indices joined to their attribute the way Flax Linen names list submodules
(``blocks.3.attn.qkv`` -> ``blocks_3/attn/qkv``), so a reader finds each counterpart at once.

Transforms (forward = torch -> ours; each has an exact inverse):
- ``linear``:  (out, in) -> (in, out)
- ``conv``:    (out, in/groups, kh, kw) -> (kh, kw, in/groups, out)
- ``convt``:   ConvTranspose2d (in, out, kh, kw) -> (kh, kw, in, out)
- ``nchw``:    (1, C, H, W) -> (1, H, W, C)   (Hiera's absolute position embeddings)
- ``id``:      unchanged (biases, norm weights, embeddings, raw parameters)
"""

import math

import numpy as np

TRANSFORMS = {
    "linear": (lambda a: a.T, lambda a: a.T),
    "conv": (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)),
    "convt": (lambda a: a.transpose(2, 3, 0, 1), lambda a: a.transpose(2, 3, 0, 1)),
    "nchw": (lambda a: a.transpose(0, 2, 3, 1), lambda a: a.transpose(0, 3, 1, 2)),
    "id": (lambda a: a, lambda a: a),
}

Entry = tuple[tuple[str, ...], str, str]


def torch_to_path(module: str) -> tuple[str, ...]:
    """``'a.blocks.3.attn.qkv'`` -> ``('a', 'blocks_3', 'attn', 'qkv')``."""
    out: list[str] = []
    for part in module.split("."):
        if part.isdigit():
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(part)
    return tuple(out)


def _entries(module: str, kind: str) -> list[Entry]:
    p = torch_to_path(module)
    if kind == "linear":
        return [(p + ("kernel",), f"{module}.weight", "linear"), (p + ("bias",), f"{module}.bias", "id")]
    if kind == "conv":
        return [(p + ("kernel",), f"{module}.weight", "conv"), (p + ("bias",), f"{module}.bias", "id")]
    if kind == "convt":
        return [(p + ("kernel",), f"{module}.weight", "convt"), (p + ("bias",), f"{module}.bias", "id")]
    if kind == "norm":
        return [(p + ("scale",), f"{module}.weight", "id"), (p + ("bias",), f"{module}.bias", "id")]
    if kind == "embed":
        return [(p + ("embedding",), f"{module}.weight", "id")]
    if kind == "param":
        return [(p, module, "id")]
    if kind == "nchw_param":
        return [(p, module, "nchw")]
    raise ValueError(f"unknown module kind {kind!r}")


def _table(modules: list[tuple[str, str]]) -> list[Entry]:
    return [e for module, kind in modules for e in _entries(module, kind)]


def _mlp(prefix: str, num_layers: int) -> list[tuple[str, str]]:
    return [(f"{prefix}.layers.{i}", "linear") for i in range(num_layers)]


def _attention(prefix: str) -> list[tuple[str, str]]:
    return [(f"{prefix}.{n}_proj", "linear") for n in ("q", "k", "v", "out")]


def trunk_modules(trunk, prefix: str = "image_encoder.trunk") -> list[tuple[str, str]]:
    """Hiera: patch embed, the two position embeddings, and every block (with ``proj`` where the dim changes)."""
    stage_ends = np.cumsum(trunk.stages) - 1
    mods = [
        (f"{prefix}.pos_embed", "nchw_param"),
        (f"{prefix}.pos_embed_window", "nchw_param"),
        (f"{prefix}.patch_embed.proj", "conv"),
    ]
    for i in range(sum(trunk.stages)):
        b = f"{prefix}.blocks.{i}"
        mods += [
            (f"{b}.norm1", "norm"),
            (f"{b}.attn.qkv", "linear"),
            (f"{b}.attn.proj", "linear"),
            (f"{b}.norm2", "norm"),
        ] + _mlp(f"{b}.mlp", 2)
        if i - 1 in stage_ends:  # first block of a new stage changes the dim
            mods.append((f"{b}.proj", "linear"))
    return mods


def neck_modules(neck, prefix: str = "image_encoder.neck") -> list[tuple[str, str]]:
    return [(f"{prefix}.convs.{i}.conv", "conv") for i in range(len(neck.backbone_channel_list))]


def prompt_encoder_modules(prefix: str = "sam_prompt_encoder") -> list[tuple[str, str]]:
    return [
        (f"{prefix}.pe_layer.positional_encoding_gaussian_matrix", "param"),
        *[(f"{prefix}.point_embeddings.{i}", "embed") for i in range(4)],
        (f"{prefix}.not_a_point_embed", "embed"),
        (f"{prefix}.mask_downscaling.0", "conv"),
        (f"{prefix}.mask_downscaling.1", "norm"),
        (f"{prefix}.mask_downscaling.3", "conv"),
        (f"{prefix}.mask_downscaling.4", "norm"),
        (f"{prefix}.mask_downscaling.6", "conv"),
        (f"{prefix}.no_mask_embed", "embed"),
    ]


def mask_decoder_modules(model, prefix: str = "sam_mask_decoder", depth: int = 2) -> list[tuple[str, str]]:
    t = f"{prefix}.transformer"
    mods = []
    for i in range(depth):
        layer = f"{t}.layers.{i}"
        mods += [
            *_attention(f"{layer}.self_attn"),
            (f"{layer}.norm1", "norm"),
            *_attention(f"{layer}.cross_attn_token_to_image"),
            (f"{layer}.norm2", "norm"),
            *_mlp(f"{layer}.mlp", 2),
            (f"{layer}.norm3", "norm"),
            (f"{layer}.norm4", "norm"),
            *_attention(f"{layer}.cross_attn_image_to_token"),
        ]
    mods += [*_attention(f"{t}.final_attn_token_to_image"), (f"{t}.norm_final_attn", "norm")]
    mods += [(f"{prefix}.iou_token", "embed"), (f"{prefix}.mask_tokens", "embed")]
    if model.pred_obj_scores:
        mods.append((f"{prefix}.obj_score_token", "embed"))
    mods += [
        (f"{prefix}.output_upscaling.0", "convt"),
        (f"{prefix}.output_upscaling.1", "norm"),
        (f"{prefix}.output_upscaling.3", "convt"),
    ]
    if model.use_high_res_features_in_sam:
        mods += [(f"{prefix}.conv_s0", "conv"), (f"{prefix}.conv_s1", "conv")]
    for i in range(4):  # num_multimask_outputs + 1 mask tokens, one hypernetwork MLP each
        mods += _mlp(f"{prefix}.output_hypernetworks_mlps.{i}", 3)
    mods += _mlp(f"{prefix}.iou_prediction_head", 3)
    if model.pred_obj_scores:
        if model.pred_obj_scores_mlp:
            mods += _mlp(f"{prefix}.pred_obj_score_head", 3)
        else:
            mods.append((f"{prefix}.pred_obj_score_head", "linear"))
    return mods


def memory_attention_modules(ma, prefix: str = "memory_attention") -> list[tuple[str, str]]:
    mods = []
    for i in range(ma.num_layers):
        layer = f"{prefix}.layers.{i}"
        mods += [
            *_attention(f"{layer}.self_attn"),
            *_attention(f"{layer}.cross_attn_image"),
            (f"{layer}.linear1", "linear"),
            (f"{layer}.linear2", "linear"),
            (f"{layer}.norm1", "norm"),
            (f"{layer}.norm2", "norm"),
            (f"{layer}.norm3", "norm"),
        ]
    mods.append((f"{prefix}.norm", "norm"))
    return mods


def memory_encoder_modules(me, prefix: str = "memory_encoder") -> list[tuple[str, str]]:
    md = me.mask_downsampler
    num_layers = int(math.log2(md.total_stride) // math.log2(md.stride))
    mods = []
    for j in range(num_layers):  # Sequential of (conv, LayerNorm2d, GELU) per layer, then a 1x1 conv
        mods += [
            (f"{prefix}.mask_downsampler.encoder.{3 * j}", "conv"),
            (f"{prefix}.mask_downsampler.encoder.{3 * j + 1}", "norm"),
        ]
    mods.append((f"{prefix}.mask_downsampler.encoder.{3 * num_layers}", "conv"))
    mods.append((f"{prefix}.pix_feat_proj", "conv"))
    if me.fuser.input_projection:
        mods.append((f"{prefix}.fuser.proj", "conv"))
    for i in range(me.fuser.num_layers):
        layer = f"{prefix}.fuser.layers.{i}"
        mods += [
            (f"{layer}.dwconv", "conv"),
            (f"{layer}.norm", "norm"),
            (f"{layer}.pwconv1", "linear"),
            (f"{layer}.pwconv2", "linear"),
        ]
        if me.fuser.layer.layer_scale_init_value > 0:
            mods.append((f"{layer}.gamma", "param"))
    if me.out_dim != me.in_dim:
        mods.append((f"{prefix}.out_proj", "conv"))
    return mods


def base_modules(model) -> list[tuple[str, str]]:
    """SAM2Base's own tensors."""
    mods = [("maskmem_tpos_enc", "param"), ("no_mem_embed", "param"), ("no_mem_pos_enc", "param")]
    if model.pred_obj_scores and model.use_obj_ptrs_in_encoder:
        mods.append(("no_obj_ptr", "param"))
    if model.no_obj_embed_spatial:
        mods.append(("no_obj_embed_spatial", "param"))
    if model.use_obj_ptrs_in_encoder:
        mods.append(("mask_downsample", "conv"))
        if model.use_mlp_for_obj_ptr_proj:
            mods += _mlp("obj_ptr_proj", 3)
        else:
            mods.append(("obj_ptr_proj", "linear"))
    if model.proj_tpos_enc_in_obj_ptrs:
        mods.append(("obj_ptr_tpos_proj", "linear"))
    return mods


def model_modules(config) -> list:
    """Every official module (or raw parameter) of a model config with its kind, in table order."""
    m = config.model
    return (
        trunk_modules(m.image_encoder.trunk)
        + neck_modules(m.image_encoder.neck)
        + memory_attention_modules(m.memory_attention)
        + memory_encoder_modules(m.memory_encoder)
        + prompt_encoder_modules()
        + mask_decoder_modules(m)
        + base_modules(m)
    )


def param_table(config) -> list[Entry]:
    """The full table for a model config (``sam2_jax/configs/*.py``'s ``get_config()``)."""
    return _table(model_modules(config))


def component_table(entries: list[Entry], torch_prefix: str) -> list[Entry]:
    """The entries of one submodule, with both sides made relative to it (for per-module parity tests)."""
    n = len(torch_to_path(torch_prefix))
    return [(p[n:], k[len(torch_prefix) + 1 :], t) for p, k, t in entries if k.startswith(torch_prefix + ".")]
