"""Port of ``sam2/build_sam.py``: build a model from a config and an official ``.pt`` or an orbax directory.

Deviations: configs are ml_collections files (``sam2_jax/configs/``), not Hydra YAMLs, but the official YAML names
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

Layers: this module is the top of the builder stack (``sam2_jax/modeling/sam2_model.py`` draws it): ``build_sam2``
and ``build_sam2_hf`` live in ``sam2_jax/modeling/build.py`` so that the predictors' ``from_pretrained`` can build
without importing this module; they and the model type are re-exported here under the official names.
"""

import os
from typing import Any

from sam2_jax.modeling.build import build_sam2, build_sam2_hf, configure
from sam2_jax.modeling.sam2_model import DTYPES, SAM2Model, resolve_config
from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
from sam2_jax.sam2_video_predictor import SAM2VideoPredictor, video_predictor_from

__all__ = [
    "DTYPES",
    "SAM2ImagePredictor",
    "SAM2Model",
    "SAM2VideoPredictor",
    "build_sam2",
    "build_sam2_hf",
    "build_sam2_video_predictor",
    "build_sam2_video_predictor_hf",
    "configure",
    "resolve_config",
]


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

    return video_predictor_from(build, hydra_overrides_extra, apply_postprocessing, vos_optimized, kwargs)


def build_sam2_video_predictor_hf(model_id: str, **kwargs):
    """Official ``build_sam2_video_predictor_hf``: ``build_sam2_video_predictor`` for a Hugging Face model id
    (``facebook/sam2.1-hiera-tiny`` ...), the weights found by ``build_sam2_hf``."""
    return SAM2VideoPredictor.from_pretrained(model_id, **kwargs)
