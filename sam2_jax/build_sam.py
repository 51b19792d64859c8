"""Port of ``sam2/build_sam.py``: build a model from a config and an official ``.pt`` or an orbax directory.

Deviations: configs are ml_collections files (``configs/``), not Hydra YAMLs, but the official YAML names
(``configs/sam2.1/sam2.1_hiera_t.yaml``) are accepted too so a user's script ports unchanged; ``device`` and
``mode`` are accepted and ignored (JAX places arrays itself; inference is always deterministic unless a caller asks
for dropout); the returned object carries the Flax module and its params instead of being an ``nn.Module`` (it
answers ``.eval()``, ``.to(device)`` and ``.device`` so official scripts run).

Every official builder argument works as in ``sam2.build_sam``:
- ``apply_postprocessing``: True appends the official overrides after the user's (dynamic multimask via stability,
  delta 0.05, thresh 0.98; for video also binarized click masks for memory and ``fill_hole_area=8``); False leaves
  them at the official class defaults (dynamic multimask off, no binarization, ``fill_hole_area=0``) unless an
  override sets them.
- ``hydra_overrides_extra``: ``[+|++]model.<key>=<value>`` set on our config's key of the same official name
  (``sam2_jax.utils.overrides``); a key with no counterpart raises ``ValueError``.
- ``vos_optimized=True`` (video): accepted; our propagation is always the compiled path (a jitted ``lax.scan``, the
  counterpart of the official ``SAM2VideoPredictorVOS``'s ``torch.compile``), so it changes nothing but a log line.
"""

import dataclasses
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from configs import get_config
from sam2_jax.checkpoints import HF_MODEL_IDS, hub_checkpoint, init_params, load_params
from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.utils.compile_cache import enable_compilation_cache
from sam2_jax.utils.config import copy_config, freeze_config
from sam2_jax.utils.overrides import apply_overrides, parse_overrides, split_video_overrides

logger = logging.getLogger(__name__)

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


def resolve_config(config: Any) -> ml_collections.ConfigDict:
    """A ConfigDict, a config name (``sam2.1_hiera_t``), an official YAML name or path, or a ``configs/*.py``.
    A given config is deep-copied: the builders' overrides never change the caller's."""
    if isinstance(config, ml_collections.ConfigDict | ml_collections.FrozenConfigDict):
        return copy_config(config)
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
    hydra_overrides_extra: list[str] | tuple = (),
    apply_postprocessing: bool = True,
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
      hydra_overrides_extra: official ``++model.<key>=<value>`` overrides, set on the config (see module docstring).
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
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    module = SAM2Base(config=freeze_config(config.model), dtype=dtype)
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


def _video_predictor(build, hydra_overrides_extra, apply_postprocessing: bool, vos_optimized: bool, kwargs: dict):
    """Split the video predictor's options out of ``kwargs`` and the overrides, build the model with ``build(**rest)``
    and wrap it, with the official precedence (``apply_postprocessing`` overrides come after the user's)."""
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    if vos_optimized:
        logger.info(
            "vos_optimized=True: propagation here is always the compiled path (a jitted lax.scan), the counterpart "
            "of the official SAM2VideoPredictorVOS; nothing else changes"
        )
    model_overrides, video = split_video_overrides(parse_overrides(hydra_overrides_extra))
    if video.pop("add_all_frames_to_correct_as_cond", True) is not True:
        raise ValueError(
            "add_all_frames_to_correct_as_cond=false is not supported: this predictor always keeps a correction "
            "click as a conditioning frame, so the next propagation never drops it (upstream #719, #731)"
        )
    if apply_postprocessing:
        video.pop("fill_hole_area", None)  # the official appends its own fill_hole_area=8 after the user's
    predictor_args = {k: kwargs.pop(k) for k in _PREDICTOR_ARGS if k in kwargs}
    for k, v in video.items():
        predictor_args.setdefault(k, v)
    model = build(hydra_overrides_extra=[f"++model.{k}={v}" for k, v in model_overrides], **kwargs)
    return SAM2VideoPredictor(model, apply_postprocessing=apply_postprocessing, **predictor_args)


_PREDICTOR_ARGS = (
    "fill_hole_area",
    "non_overlap_masks",
    "clear_non_cond_mem_around_input",
    "chunk_size",
    "store_budget_mb",
    "max_cond_slots",
    "mesh",
    "chunks_in_flight",
)


def build_sam2_video_predictor(
    config_file: Any = "sam2.1_hiera_t",
    ckpt_path: str | os.PathLike | None = None,
    device: Any = None,
    mode: str = "eval",
    hydra_overrides_extra: list[str] | tuple = (),
    apply_postprocessing: bool = True,
    vos_optimized: bool = False,
    **kwargs,
):
    """Official ``build_sam2_video_predictor``: the model with the video overrides wrapped in a
    ``SAM2VideoPredictor``.

    Args:
      config_file, ckpt_path, device, mode, dtype, seed: as ``build_sam2``.
      hydra_overrides_extra: official overrides; the video predictor's options among them (``model.fill_hole_area``
        ...) become its constructor arguments.
      apply_postprocessing: the official video post-processing (dynamic multimask, binarized click masks for
        memory, ``fill_hole_area=8``).
      vos_optimized: accepted (see module docstring).
      **kwargs: ``SAM2VideoPredictor`` options (``chunk_size`` ...) and ``build_sam2`` ones (``dtype``, ``seed``).
    Returns:
      ``SAM2VideoPredictor``.
    """

    def build(**rest):
        return build_sam2(config_file, ckpt_path, device, mode, apply_postprocessing=apply_postprocessing, **rest)

    return _video_predictor(build, hydra_overrides_extra, apply_postprocessing, vos_optimized, kwargs)


def build_sam2_video_predictor_hf(model_id: str, **kwargs):
    """Official ``build_sam2_video_predictor_hf``: ``build_sam2_video_predictor`` for a Hugging Face model id
    (``facebook/sam2.1-hiera-tiny`` ...), the weights found by ``sam2_jax.checkpoints.build_sam2_hf``."""
    from sam2_jax.checkpoints import build_sam2_hf

    overrides = kwargs.pop("hydra_overrides_extra", ())
    post = kwargs.pop("apply_postprocessing", True)
    vos = kwargs.pop("vos_optimized", False)

    def build(**rest):
        return build_sam2_hf(model_id, apply_postprocessing=post, **rest)

    return _video_predictor(build, overrides, post, vos, kwargs)
