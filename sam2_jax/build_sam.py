"""Port of ``sam2/build_sam.py``: build a model from a config and an official ``.pt`` or an orbax directory.

Deviations: configs are ml_collections files (``configs/``), not Hydra YAMLs, but the official YAML names
(``configs/sam2.1/sam2.1_hiera_t.yaml``) are accepted too so a user's script ports unchanged; ``device`` and
``mode`` are accepted and ignored (JAX places arrays itself; inference is always deterministic unless a caller asks
for dropout); the returned object carries the Flax module and its params instead of being an ``nn.Module``.
"""

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from configs import get_config
from sam2_jax.checkpoints import HF_MODEL_IDS, hub_checkpoint, init_params, load_params
from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.utils.compile_cache import enable_compilation_cache

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass
class SAM2Model:
    """A SAM 2 model: the Flax module, its params (a plain nested dict) and the config it was built from.

    Every computation is a pure function of ``(params, inputs)``: the drivers call the module's public per-frame
    methods through ``sam2_jax/tracker/engine.py`` (``engine.frame_features(model.module, model.params, images)``
    …), which also holds the package's one jit-caching policy.
    """

    module: SAM2Base
    params: dict
    config: ml_collections.ConfigDict

    @property
    def image_size(self) -> int:
        return self.config.model.image_size

    @property
    def dtype(self):
        return self.module.dtype


def resolve_config(config: Any) -> ml_collections.ConfigDict:
    """A ConfigDict, a config name (``sam2.1_hiera_t``), an official YAML name or path, or a ``configs/*.py``."""
    if isinstance(config, ml_collections.ConfigDict | ml_collections.FrozenConfigDict):
        return ml_collections.ConfigDict(config)
    if not isinstance(config, str | os.PathLike):
        raise ValueError(f"config must be a name, a path or a ConfigDict, got {type(config).__name__}")
    name = str(config)
    if name.endswith(".yaml"):
        name = os.path.basename(name)[: -len(".yaml")]
    return get_config(name)


def build_sam2(
    config_file: Any = "sam2.1_hiera_t",
    ckpt_path: str | os.PathLike | None = None,
    device: Any = None,
    mode: str = "eval",
    dtype: str | Any = None,
    seed: int = 0,
    **kwargs,
) -> SAM2Model:
    """Build SAM 2 from a config and a checkpoint.

    Args:
      config_file: config name (``"sam2.1_hiera_t"``), official YAML name (``"configs/sam2.1/sam2.1_hiera_t.yaml"``),
        a ``configs/*.py`` path, a ConfigDict, or a Hugging Face id (``"facebook/sam2.1-hiera-tiny"``: its
        checkpoint is fetched by ``checkpoints.hub_checkpoint`` when ``ckpt_path`` is None; ``revision=`` and
        ``token=`` go to the hub).
      ckpt_path: official ``.pt``, a transformers SAM 2 folder or ``.safetensors``, or an orbax params directory;
        None gives random params (for training from scratch), except with a hub id.
      device, mode: accepted for API compatibility with the official function; ignored.
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
    if dtype is None:
        dtype = config.get("dtype", "float32")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    module = SAM2Base(config=ml_collections.FrozenConfigDict(config.model), dtype=dtype)
    params = init_params(module, seed) if ckpt_path is None else load_params(ckpt_path, config, module)
    params = jax.tree.map(jnp.asarray, params)
    return SAM2Model(module=module, params=params, config=config)


def build_sam2_video_predictor(config_file: Any = "sam2.1_hiera_t", ckpt_path=None, **kwargs):
    """Official ``build_sam2_video_predictor`` (same import path as in ``sam2.build_sam``)."""
    from sam2_jax.sam2_video_predictor import build_sam2_video_predictor as build

    return build(config_file, ckpt_path, **kwargs)
