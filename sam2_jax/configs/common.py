"""Shared builder for the SAM 2 / SAM 2.1 model configs.

Every field of the official YAMLs (``sam2/configs/sam2/*.yaml``, ``sam2/configs/sam2.1/*.yaml``, sam2 1.1.0) with
the same nesting and names, plus the post-processing overrides that the official ``build_sam2`` appends
(``dynamic_multimask_via_stability`` etc.) and those that ``build_sam2_video_predictor`` adds for video.
"""

import ml_collections

from sam2_jax.tracker.policies import policy_config

# Trunk shapes per size, from the official YAMLs (identical for SAM 2 and 2.1).
TRUNKS = {
    "tiny": dict(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 7, 2),
        global_att_blocks=(5, 7, 9),
        window_pos_embed_bkg_spatial_size=(7, 7),
        window_spec=(8, 4, 14, 7),
    ),
    "small": dict(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 11, 2),
        global_att_blocks=(7, 10, 13),
        window_pos_embed_bkg_spatial_size=(7, 7),
        window_spec=(8, 4, 14, 7),
    ),
    "base_plus": dict(
        embed_dim=112,
        num_heads=2,
        stages=(2, 3, 16, 3),
        global_att_blocks=(12, 16, 20),
        window_pos_embed_bkg_spatial_size=(14, 14),
        window_spec=(8, 4, 14, 7),
    ),
    "large": dict(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_pos_embed_bkg_spatial_size=(7, 7),
        window_spec=(8, 4, 16, 8),
    ),
}

SIZE_LETTER = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
CHECKPOINT_NAMES = {
    ("2", "tiny"): "sam2_hiera_tiny.pt",
    ("2", "small"): "sam2_hiera_small.pt",
    ("2", "base_plus"): "sam2_hiera_base_plus.pt",
    ("2", "large"): "sam2_hiera_large.pt",
    ("2.1", "tiny"): "sam2.1_hiera_tiny.pt",
    ("2.1", "small"): "sam2.1_hiera_small.pt",
    ("2.1", "base_plus"): "sam2.1_hiera_base_plus.pt",
    ("2.1", "large"): "sam2.1_hiera_large.pt",
}
# Meta's published download locations (sam2 repo, checkpoints/download_ckpts.sh).
CHECKPOINT_URLS = {
    ("2", s): f"https://dl.fbaipublicfiles.com/segment_anything_2/072824/{n}"
    for (v, s), n in CHECKPOINT_NAMES.items()
    if v == "2"
} | {
    ("2.1", s): f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{n}"
    for (v, s), n in CHECKPOINT_NAMES.items()
    if v == "2.1"
}


def sam2_config(version: str, size: str) -> ml_collections.ConfigDict:
    """The model config of SAM ``version`` ("2" or "2.1") at ``size`` (tiny/small/base_plus/large).

    Long because it is the table itself: one line per field of the official YAML, in its order, so that the two
    read side by side; splitting it would only scatter the table."""
    if version not in ("2", "2.1"):
        raise ValueError(f"version must be '2' or '2.1', got {version!r}")
    if size not in TRUNKS:
        raise ValueError(f"size must be one of {sorted(TRUNKS)}, got {size!r}")
    t = TRUNKS[size]
    dim = t["embed_dim"]
    v21 = version == "2.1"

    c = ml_collections.ConfigDict()
    c.name = f"sam{version}_hiera_{SIZE_LETTER[size]}"
    c.version = version
    c.size = size
    c.checkpoint_name = CHECKPOINT_NAMES[(version, size)]
    c.checkpoint_url = CHECKPOINT_URLS[(version, size)]

    m = c.model = ml_collections.ConfigDict()
    ie = m.image_encoder = ml_collections.ConfigDict()
    ie.scalp = 1
    ie.trunk = ml_collections.ConfigDict(
        dict(
            embed_dim=dim,
            num_heads=t["num_heads"],
            drop_path_rate=0.0,
            q_pool=3,
            q_stride=(2, 2),
            stages=t["stages"],
            dim_mul=2.0,
            head_mul=2.0,
            window_pos_embed_bkg_spatial_size=t["window_pos_embed_bkg_spatial_size"],
            window_spec=t["window_spec"],
            global_att_blocks=t["global_att_blocks"],
            return_interm_layers=True,
        )
    )
    ie.neck = ml_collections.ConfigDict(
        dict(
            position_encoding=dict(num_pos_feats=256, normalize=True, scale=None, temperature=10000),
            d_model=256,
            backbone_channel_list=(dim * 8, dim * 4, dim * 2, dim),
            kernel_size=1,
            stride=1,
            padding=0,
            fpn_top_down_levels=(2, 3),
            fpn_interp_model="nearest",
            fuse_type="sum",
        )
    )

    m.memory_attention = ml_collections.ConfigDict(
        dict(
            d_model=256,
            pos_enc_at_input=True,
            num_layers=4,
            layer=dict(
                activation="relu",
                dim_feedforward=2048,
                dropout=0.1,
                pos_enc_at_attn=False,
                d_model=256,
                pos_enc_at_cross_attn_keys=True,
                pos_enc_at_cross_attn_queries=False,
                self_attention=dict(
                    rope_theta=10000.0,
                    feat_sizes=(64, 64),
                    embedding_dim=256,
                    num_heads=1,
                    downsample_rate=1,
                    dropout=0.1,
                    rope_k_repeat=False,
                    kv_in_dim=None,
                ),
                cross_attention=dict(
                    rope_theta=10000.0,
                    feat_sizes=(64, 64),
                    rope_k_repeat=True,
                    embedding_dim=256,
                    num_heads=1,
                    downsample_rate=1,
                    dropout=0.1,
                    kv_in_dim=64,
                ),
            ),
        )
    )

    m.memory_encoder = ml_collections.ConfigDict(
        dict(
            out_dim=64,
            in_dim=256,
            position_encoding=dict(num_pos_feats=64, normalize=True, scale=None, temperature=10000),
            mask_downsampler=dict(kernel_size=3, stride=2, padding=1, total_stride=16, embed_dim=256),
            fuser=dict(
                layer=dict(
                    dim=256, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True, drop_path=0.0
                ),
                num_layers=2,
                input_projection=False,
            ),
        )
    )

    m.num_maskmem = 7
    m.image_size = 1024
    m.backbone_stride = 16
    m.sigmoid_scale_for_mem_enc = 20.0
    m.sigmoid_bias_for_mem_enc = -10.0
    m.use_mask_input_as_output_without_sam = True
    m.directly_add_no_mem_embed = True
    m.no_obj_embed_spatial = v21
    m.use_high_res_features_in_sam = True
    m.multimask_output_in_sam = True
    m.iou_prediction_use_sigmoid = True
    m.use_obj_ptrs_in_encoder = True
    m.add_tpos_enc_to_obj_ptrs = v21
    m.proj_tpos_enc_in_obj_ptrs = v21
    m.use_signed_tpos_enc_to_obj_ptrs = v21
    m.only_obj_ptrs_in_the_past_for_eval = True
    m.pred_obj_scores = True
    m.pred_obj_scores_mlp = True
    m.fixed_no_obj_ptr = True
    m.multimask_output_for_tracking = True
    m.use_multimask_token_for_obj_ptr = True
    m.multimask_min_pt_num = 0
    m.multimask_max_pt_num = 1
    m.use_mlp_for_obj_ptr_proj = True
    m.compile_image_encoder = False
    # Not an official field: the attention kernel of every layer (sam2_jax/modeling/backend.py). "auto" is the
    # online-softmax "fused" path on CPU, cuDNN flash attention (bf16/fp16) or XLA on GPU, XLA on TPU; "fused",
    # "chunked", "xla" and "cudnn" force one. Set it explicitly for a jax.export to another platform.
    m.attention_impl = "auto"
    # Not an official field: whether the tracking step attends only to the memory slots in use (``memory.slot_buckets``,
    # a lax.switch over two copies of the memory attention in the compiled step; backend.py). "auto" is on for CPU
    # (the first frames of a propagation cost what they cost the official code, for 5-25% more compile time), off on
    # GPU/TPU (compile time per object count weighs more there than milliseconds on the first frames); "on" / "off".
    m.compact_memory = "auto"
    # SAM2Base defaults that the YAMLs leave implicit.
    m.binarize_mask_from_pts_for_mem_enc = False
    m.max_cond_frames_in_attn = -1
    m.memory_temporal_stride_for_eval = 1
    m.non_overlap_masks_for_mem_enc = False
    m.max_obj_ptrs_in_encoder = 16
    m.soft_no_obj_ptr = False
    # Post-processing overrides appended by the official build_sam2 (apply_postprocessing=True).
    m.sam_mask_decoder_extra_args = ml_collections.ConfigDict(
        dict(
            dynamic_multimask_via_stability=True,
            dynamic_multimask_stability_delta=0.05,
            dynamic_multimask_stability_thresh=0.98,
        )
    )

    # Extra overrides of build_sam2_video_predictor (used by the video predictor, not the image one).
    c.video = ml_collections.ConfigDict(
        dict(
            binarize_mask_from_pts_for_mem_enc=True,
            fill_hole_area=8,
            non_overlap_masks=False,
            clear_non_cond_mem_around_input=False,
            add_all_frames_to_correct_as_cond=True,
        )
    )
    # Not an official field: the tracking policy of the video predictor and its thresholds (sam2 | samurai |
    # sam3_selection | sam2long; sam2_jax/tracker/policies/). --config.tracker.policy=samurai selects one.
    c.tracker = policy_config()
    c.dtype = "float32"
    return c
