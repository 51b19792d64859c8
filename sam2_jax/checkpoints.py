"""Official checkpoints: the local cache, Meta's download URLs, and a random-weight stand-in for offline machines.

The cache directory is ``$SAM2_JAX_CACHE`` or ``~/.cache/sam2_jax``. ``get_checkpoint`` returns the official
``.pt`` there, downloading it from Meta's published URL if it is missing; where there is no network it raises a
``CheckpointUnavailable`` that says where to put the file. ``random_checkpoint`` writes a ``.pt`` in the official
format with deterministic random weights (for demos and tests on machines that cannot download anything).
"""

import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from configs import get_config

HF_MODEL_IDS = {
    "facebook/sam2-hiera-tiny": "sam2_hiera_t",
    "facebook/sam2-hiera-small": "sam2_hiera_s",
    "facebook/sam2-hiera-base-plus": "sam2_hiera_b+",
    "facebook/sam2-hiera-large": "sam2_hiera_l",
    "facebook/sam2.1-hiera-tiny": "sam2.1_hiera_t",
    "facebook/sam2.1-hiera-small": "sam2.1_hiera_s",
    "facebook/sam2.1-hiera-base-plus": "sam2.1_hiera_b+",
    "facebook/sam2.1-hiera-large": "sam2.1_hiera_l",
}


class CheckpointUnavailable(RuntimeError):
    """The official checkpoint is neither cached nor downloadable here."""


def cache_dir() -> Path:
    return Path(os.environ.get("SAM2_JAX_CACHE", Path.home() / ".cache" / "sam2_jax"))


def get_checkpoint(config_name: str, download: bool = True, timeout: float = 20.0) -> Path:
    """Path of the official ``.pt`` of ``config_name`` in the cache, downloading it if needed."""
    config = get_config(config_name)
    path = cache_dir() / config.checkpoint_name
    if path.is_file():
        return path
    if not download:
        raise CheckpointUnavailable(f"{path} is not there and downloading is off")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    try:
        with urllib.request.urlopen(config.checkpoint_url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointUnavailable(
            f"could not download the official checkpoint {config.checkpoint_name} from {config.checkpoint_url} "
            f"({e}). Download it on a machine with internet and copy it to {path}, or pass its path with "
            "--checkpoint."
        ) from e
    tmp.rename(path)
    return path


def random_checkpoint(config_name: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Write an official-format ``.pt`` with deterministic random weights (see ``utils.random_weights``)."""
    import ml_collections

    from convert_weights.convert import save_torch_state_dict
    from convert_weights.mapping import TRANSFORMS, param_table
    from sam2_jax.build_sam import param_shapes
    from sam2_jax.modeling.sam2_base import SAM2Base
    from sam2_jax.utils.random_weights import random_state_dict

    config = get_config(config_name)
    table = param_table(config)
    ours = param_shapes(SAM2Base(config=ml_collections.FrozenConfigDict(config.model)))
    # Torch-layout shapes by running each inverse transform on a dummy of our shape.
    shapes = {k: TRANSFORMS[tf][1](np.empty(ours[p], np.float32)).shape for p, k, tf in table}
    save_torch_state_dict(random_state_dict(shapes, table, seed), path)
    return Path(path)


def build_sam2_hf(model_id: str, **kwargs):
    """``build_sam2`` for an official Hugging Face id, from the local cache (downloading from Meta if possible)."""
    from sam2_jax.build_sam import build_sam2

    if model_id not in HF_MODEL_IDS:
        raise ValueError(f"unknown model id {model_id!r}; expected one of {sorted(HF_MODEL_IDS)}")
    name = HF_MODEL_IDS[model_id]
    return build_sam2(name, get_checkpoint(name), **kwargs)
