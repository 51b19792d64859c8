"""Training defaults shared by the ``sam2_jax/configs/train_*.py`` configs: a model config plus a ``train`` section.

The values follow the official fine-tuning config ``sam2/configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml``
(sam2 1.1.0): its ``scratch``, ``optim`` and ``loss`` sections and the ``SAM2Train`` training arguments.
"""

import ml_collections

from sam2_jax import configs


def train_config(model_name: str = "sam2.1_hiera_t") -> ml_collections.ConfigDict:
    """The model config ``model_name`` with the official fine-tuning recipe in ``config.train``.

    Long because it is the table itself: one line per setting of the official training YAML, each with its why."""
    c = configs.get_config(model_name)
    c.model.image_encoder.trunk.drop_path_rate = 0.1  # the MOSE config's trunk drop path (stochastic depth)
    t = c.train = ml_collections.ConfigDict()
    t.seed = 123
    t.total_steps = 1000
    t.batch_size = 1  # clips per step (global)
    t.num_frames = 8
    t.max_num_objects = 3
    t.freeze_image_encoder = False
    t.compute_dtype = "float32"  # "bfloat16" for GPU/TPU; params stay float32
    t.dropout = True  # the official train mode: memory-attention dropout and trunk drop path as configured
    t.init_checkpoint = ""  # official .pt or orbax params directory; empty: random init (seed)
    # What the backward pass recomputes instead of storing (sam2_train.REMAT_POLICIES): "none", "frames" (each
    # frame's tracking step), "encoder" (the image encoder), "full" (both). Same numbers; less memory, more time.
    t.remat = "full"
    t.compilation_cache = True  # persistent XLA cache in $SAM2_JAX_CACHE/xla (SAM2_JAX_COMPILATION_CACHE=0: off)
    t.optim = ml_collections.ConfigDict(
        dict(
            base_lr=5.0e-6,
            vision_lr=3.0e-6,
            vision_lr_param_names=("image_encoder.*",),
            weight_decay=0.1,
            no_weight_decay_param_names=("*bias*",),  # and torch.nn.LayerNorm params
            layer_decay=0.9,
            layer_decay_apply_to="image_encoder.trunk",
            layer_decay_overrides=(("*pos_embed*", 1.0),),
            grad_clip=0.1,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            # fvcore CosineParamScheduler(start, start * end_factor) over where = step / total_steps; "rsqrt" uses
            # warmup / cooldown / timescale (fractions of training).
            schedule=dict(kind="cosine", end_factor=0.1, warmup=0.0, cooldown=0.0, timescale=0.1),
        )
    )
    t.loss = ml_collections.ConfigDict(
        dict(
            loss_mask=20.0,
            loss_dice=1.0,
            loss_iou=1.0,
            loss_class=1.0,
            supervise_all_iou=True,
            iou_use_l1_loss=True,
            pred_obj_scores=True,
            focal_gamma_obj_score=0.0,
            focal_alpha_obj_score=-1.0,
        )
    )
    # SAM2Train's prompt arguments in the official config.
    t.prompts = ml_collections.ConfigDict(
        dict(
            prob_to_use_pt_input=0.5,
            prob_to_use_box_input=0.5,  # of the point inputs: 0.25 overall
            prob_to_sample_from_gt=0.1,
            num_frames_to_correct=2,
            rand_frames_to_correct=True,
            add_all_frames_to_correct_as_cond=True,
            num_init_cond_frames=2,
            rand_init_cond_frames=True,
            num_correction_pt_per_frame=7,
            reverse_time_prob=0.5,
            point_sampling="uniform",  # "center" is the official eval sampler (deterministic)
            box_noise=0.1,
        )
    )
    t.data = ml_collections.ConfigDict(
        dict(
            seed=1000,
            workers=2,  # threads making batches ahead (grain ReadOptions.num_threads; data.batch_iterator)
            # batches made ahead (at least `workers`); 2 cost grain ~5% at 64 px (benchmarks/data_pipeline.py)
            prefetch=4,
            # worker processes (grain mp_prefetch), each with `workers` threads; 0: threads in the trainer's process
            processes=0,
            # The synthetic source's videos (kind "synthetic").
            num_videos=1000,
            video_frames=16,
            hide_prob=0.5,
            late_start_prob=0.25,
            # The official vos.train_transforms (sam2_jax/training/transforms.py), then the mosaic of the issue.
            hflip_prob=0.5,
            degrees=25.0,
            shear=20.0,
            translate=None,
            scale=None,
            affine_tentatives=1,
            affine_interpolation="bilinear",
            jitter=(0.1, 0.03, 0.03),  # consistent ColorJitter (brightness, contrast, saturation)
            grayscale_prob=0.05,
            frame_jitter=(0.1, 0.05, 0.05),  # per-frame ColorJitter
            mosaic_prob=0.1,
            mosaic_grid=(2, 2),
            mosaic_hflip=False,
            # Named sources, mixed step by step (sam2_jax/training/data.py). Per source: kind (synthetic,
            # vos_folder, sav, sav_train, sa1b), root, split / resolution (vos_folder, sav), annotation (sav_train),
            # mask_area_frac_thresh (sa1b), batch_size / num_frames / max_num_objects (0: train.batch_size,
            # train.num_frames or 1 for sa1b, train.max_num_objects), multiplier, prob (0: by size).
            sources=dict(synthetic=dict(kind="synthetic", batch_size=0, num_frames=0, max_num_objects=0)),
        )
    )
    t.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, fsdp_min_size=2**18))
    # Several hosts: jax.distributed.initialize when an address, num_processes > 1 or auto (cluster detection) is set.
    t.distributed = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=0, process_id=-1, auto=False))
    t.log_every = 10
    t.checkpoint_every = 100
    t.keep_checkpoints = 3
    t.async_checkpointing = True
    t.stop_after = 0  # stop this run after so many steps (0: run to total_steps); a later run resumes
    t.eval_videos = 0  # held-out synthetic clips (seed eval_seed) scored by loss and J; 0: no evaluation
    t.eval_seed = 0
    t.eval_every = 0
    t.eval_at_start = True
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Entry point for ``--config sam2_jax/configs/train_common.py[:model_name]``."""
    return train_config(arg or "sam2.1_hiera_t")
