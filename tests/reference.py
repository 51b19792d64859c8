"""Harness for parity with the official PyTorch SAM 2 (sam2==1.1.0 on CPU, see ../shared/REFERENCE.md).

Builds official models with deterministic random weights (``sam2_jax.utils.random_weights``), converts them with our
converter, and gives per-component params so each module can be compared alone. Tests that need torch use the
``requires_torch`` marker and skip with the reason when the reference is not installed.
"""

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from configs import get_config
from convert_weights.convert import convert_state_dict
from convert_weights.mapping import component_table, param_table
from sam2_jax.utils.random_weights import random_state_dict

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SAM2_JAX_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
GOLDEN = REPO / "tests" / "golden"

OFFICIAL_YAML = {
    name: f"configs/sam{name[3:].split('_')[0]}/{name}.yaml"
    for name in [f"sam{v}_hiera_{s}" for v in ("2", "2.1") for s in ("t", "s", "b+", "l")]
}


def have_torch() -> bool:
    try:
        import sam2  # noqa: F401
        import torch  # noqa: F401
    except Exception:
        return False
    return True


requires_torch = pytest.mark.skipif(
    not have_torch(),
    reason="the PyTorch reference (torch==2.13.0 CPU + sam2==1.1.0) is not installed; see ../shared/REFERENCE.md",
)
requires_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA} (set SAM2_JAX_SHARED)")


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
    """Torch-layout shapes of every state-dict key (from the official model, or the golden shape file)."""
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
    pytest.skip(f"neither torch nor {path} is available to know the official shapes of {name}")


@functools.lru_cache(maxsize=4)
def reference_state_dict(name: str = "sam2.1_hiera_t", seed: int = 0) -> dict[str, np.ndarray]:
    return random_state_dict(official_shapes(name), param_table(get_config(name)), seed)


def converted_params(name: str = "sam2.1_hiera_t", seed: int = 0) -> dict:
    """Our params for the whole model, converted from the reference weights by the strict converter."""
    return convert_state_dict(reference_state_dict(name, seed), param_table(get_config(name)))


def component_params(torch_prefix: str, name: str = "sam2.1_hiera_t", seed: int = 0) -> dict:
    """Our params of one submodule (e.g. ``'image_encoder.trunk'``), keys relative to it."""
    sd = reference_state_dict(name, seed)
    table = component_table(param_table(get_config(name)), torch_prefix)
    return convert_state_dict({k: sd[f"{torch_prefix}.{k}"] for _, k, _ in table}, table)


def to_torch(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def nchw_to_nhwc(x) -> np.ndarray:
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else x).transpose(0, 2, 3, 1)
