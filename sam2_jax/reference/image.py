"""The official ``SAM2Base`` (``sam2/build_sam.py``) with deterministic random weights, and the same weights
converted by our strict converter, so each module (or the whole model) can be compared with ours.

The weights come from ``sam2_jax.utils.random_weights`` on the official state-dict shapes, which are read from the
official model or, without torch, from the golden shape file ``tests/golden/shapes_<model>.npz``.
"""

import functools

import numpy as np

from sam2_jax.configs import get_config
from sam2_jax.convert_weights.convert import convert_state_dict
from sam2_jax.convert_weights.mapping import component_table, param_table
from sam2_jax.reference import GOLDEN, OFFICIAL_YAML, ReferenceUnavailable, have_torch
from sam2_jax.utils.random_weights import random_state_dict


@functools.lru_cache(maxsize=4)
def official_model(name: str = "sam2.1_hiera_t", seed: int = 0):
    """The official SAM2Base (eval mode, CPU, float32) with our deterministic random weights."""
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    model = build_sam2(OFFICIAL_YAML[name], None, device="cpu", mode="eval")
    sd = reference_state_dict(name, seed)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    return model


@functools.lru_cache(maxsize=4)
def official_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Torch-layout shapes of every state-dict key (from the official model, or the golden shape file).

    Raises:
      ReferenceUnavailable: neither torch nor the golden shape file of ``name`` is there.
    """
    path = GOLDEN / f"shapes_{name}.npz"
    if have_torch():
        import torch
        from sam2.build_sam import build_sam2

        torch.manual_seed(0)
        m = build_sam2(OFFICIAL_YAML[name], None, device="cpu")
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}
    if path.exists():
        z = np.load(path)
        return {k: tuple(int(d) for d in z[k]) for k in z.files}
    raise ReferenceUnavailable(f"neither torch nor {path} is available to know the official shapes of {name}")


@functools.lru_cache(maxsize=4)
def reference_state_dict(name: str = "sam2.1_hiera_t", seed: int = 0) -> dict[str, np.ndarray]:
    """The deterministic random weights of ``name`` as an official state dict (numpy, torch layout)."""
    return random_state_dict(official_shapes(name), param_table(get_config(name)), seed)


def converted_params(name: str = "sam2.1_hiera_t", seed: int = 0) -> dict:
    """Our params for the whole model, converted from the reference weights by the strict converter."""
    return convert_state_dict(reference_state_dict(name, seed), param_table(get_config(name)))


def component_params(torch_prefix: str, name: str = "sam2.1_hiera_t", seed: int = 0) -> dict:
    """Our params of one submodule (e.g. ``'image_encoder.trunk'``), keys relative to it."""
    sd = reference_state_dict(name, seed)
    table = component_table(param_table(get_config(name)), torch_prefix)
    return convert_state_dict({k: sd[f"{torch_prefix}.{k}"] for _, k, _ in table}, table)
