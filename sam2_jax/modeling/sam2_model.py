"""The model type and the one way to make a module from a config: the leaf of the builder stack.

Layers, each importing only those below it (``tests/test_import_graph.py`` fails on any cycle):
  1. ``configs``, this module (``SAM2Model``, ``make_module``, ``resolve_config``);
  2. ``sam2_jax.checkpoints``: checkpoint I/O (official ``.pt``, transformers files, orbax, the hub);
  3. ``sam2_jax.modeling.build``: a ``SAM2Model`` from a config and a checkpoint (``build_sam2``, ``build_sam2_hf``);
  4. the predictors (``from_pretrained`` builds through layer 3);
  5. ``sam2_jax.build_sam``: the official builder names, predictors included.
"""

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from sam2_jax.configs import get_config
from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.utils.config import copy_config, freeze_config

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def make_module(model_config: ml_collections.ConfigDict, dtype: Any = jnp.float32) -> SAM2Base:
    """The Flax module of a model config (a config's ``model`` section), frozen so that it hashes as a jit static.

    Args:
      model_config: the ``model`` section (a ConfigDict or FrozenConfigDict; copied, never changed).
      dtype: compute dtype, a ``DTYPES`` name or a jnp dtype; params stay float32.
    Returns:
      ``SAM2Base``.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    return SAM2Base(config=freeze_config(model_config), dtype=dtype)


def resolve_config(config: Any) -> ml_collections.ConfigDict:
    """A ConfigDict, a config name (``sam2.1_hiera_t``), an official YAML name or path, or a ``sam2_jax/configs/*.py``.
    A given config is deep-copied: the builders' overrides never change the caller's."""
    if isinstance(config, ml_collections.ConfigDict | ml_collections.FrozenConfigDict):
        return copy_config(config)
    if not isinstance(config, str | os.PathLike):
        raise ValueError(f"config must be a name, a path or a ConfigDict, got {type(config).__name__}")
    name = str(config)
    if name.endswith(".yaml"):
        name = os.path.basename(name)[: -len(".yaml")]
    return get_config(name)


@dataclasses.dataclass
class SAM2Model:
    """A SAM 2 model: the Flax module, its params (a plain nested dict) and the config it was built from.

    Every computation is a pure function of ``(params, inputs)``: the drivers call the module's public per-frame
    methods through ``sam2_jax/tracker/calls.py`` (``calls.frame_features(model.module, model.params, images)``
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

    @property
    def device(self) -> jax.Device:
        """The device holding the params (the official ``model.device``)."""
        leaf = jax.tree.leaves(self.params)[0]
        return next(iter(leaf.devices())) if isinstance(leaf, jax.Array) else jax.devices()[0]

    def eval(self) -> "SAM2Model":
        """The official ``nn.Module.eval()``: inference is always in eval mode here; returns the model."""
        return self

    def to(self, device: Any = None, dtype: Any = None) -> "SAM2Model":
        """The official ``nn.Module.to(...)``: accepted and ignored (JAX places arrays); returns the model."""
        del device, dtype
        return self
