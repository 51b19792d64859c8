"""A ``SAM2Model`` from a config and a checkpoint: ``build_sam2`` and ``build_sam2_hf``, re-exported with the
official names by ``sam2_jax.build_sam`` (the top of the builder stack; see ``sam2_jax/modeling/sam2_model.py``).
The predictors' ``from_pretrained`` build through here, so nothing below ``build_sam`` imports it."""

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from sam2_jax.checkpoints import HF_MODEL_IDS, hub_checkpoint, init_params, load_params
from sam2_jax.modeling.sam2_model import SAM2Model, make_module, resolve_config
from sam2_jax.utils.compile_cache import enable_compilation_cache
from sam2_jax.utils.overrides import apply_overrides, parse_overrides


def build_sam2(
    config_file: Any = "sam2.1_hiera_t",
    ckpt_path: str | os.PathLike | None = None,
    device: Any = None,
    mode: str = "eval",
    hydra_overrides_extra: list[str] | tuple = (),
    apply_postprocessing: bool = True,
    dtype: str | Any = None,
    seed: int = 0,
    **kwargs,
) -> SAM2Model:
    """Build SAM 2 from a config and a checkpoint.

    Args:
      config_file: config name (``"sam2.1_hiera_t"``), official YAML name (``"configs/sam2.1/sam2.1_hiera_t.yaml"``),
        a ``sam2_jax/configs/*.py`` path, a ConfigDict, or a Hugging Face id (``"facebook/sam2.1-hiera-tiny"``: its
        checkpoint is fetched by ``checkpoints.hub_checkpoint`` when ``ckpt_path`` is None; ``revision=`` and
        ``token=`` go to the hub).
      ckpt_path: official ``.pt``, a transformers SAM 2 folder or ``.safetensors``, or an orbax params directory;
        None gives random params (for training from scratch), except with a hub id.
      device, mode: accepted for API compatibility with the official function; ignored.
      hydra_overrides_extra: official ``++model.<key>=<value>`` overrides, set on the config
        (see ``sam2_jax.build_sam``).
      apply_postprocessing: the official post-processing overrides (dynamic multimask via stability).
      dtype: compute dtype (``"float32"`` default, ``"bfloat16"``); params stay float32.
      seed: init seed when ``ckpt_path`` is None.
    Returns:
      ``SAM2Model`` (module + params + config).
    """
    del device, mode
    enable_compilation_cache()
    if isinstance(config_file, str) and config_file in HF_MODEL_IDS:  # a hub name: its file, unless one is given
        if ckpt_path is None:
            ckpt_path = hub_checkpoint(config_file, kwargs.get("revision"), kwargs.get("token"))
        config_file = HF_MODEL_IDS[config_file]
    config = resolve_config(config_file)
    configure(config, hydra_overrides_extra, apply_postprocessing)
    if dtype is None:
        dtype = config.get("dtype", "float32")
    module = make_module(config.model, dtype)
    params = init_params(module, seed) if ckpt_path is None else load_params(ckpt_path, config, module)
    params = jax.tree.map(jnp.asarray, params)
    return SAM2Model(module=module, params=params, config=config)


def configure(config: ml_collections.ConfigDict, hydra_overrides_extra, apply_postprocessing: bool) -> None:
    """The official builder's config steps on ``config`` in place: the user's overrides, then (with
    ``apply_postprocessing``) the official post-processing ones after them, as ``sam2.build_sam`` orders them."""
    extra = config.model.sam_mask_decoder_extra_args
    if not apply_postprocessing:  # the official MaskDecoder's defaults: no dynamic multimask
        extra.dynamic_multimask_via_stability = False
    apply_overrides(config.model, parse_overrides(hydra_overrides_extra))
    if apply_postprocessing:
        extra.dynamic_multimask_via_stability = True
        extra.dynamic_multimask_stability_delta = 0.05
        extra.dynamic_multimask_stability_thresh = 0.98


def build_sam2_hf(model_id: str, revision: str | None = None, token: str | bool | None = None, **kwargs) -> SAM2Model:
    """``build_sam2`` for an official Hugging Face id (official ``build_sam2_hf``), fetched by
    ``checkpoints.hub_checkpoint``.

    Args:
      model_id: ``facebook/sam2.1-hiera-tiny`` etc. (``checkpoints.HF_MODEL_IDS``).
      revision, token: passed to ``huggingface_hub``.
      **kwargs: passed to ``build_sam2``.
    Returns:
      ``SAM2Model``.
    """
    path = hub_checkpoint(model_id, revision=revision, token=token)
    return build_sam2(HF_MODEL_IDS[model_id], path, **kwargs)
