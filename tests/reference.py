"""Test side of the parity harness with the official PyTorch SAM 2 (``sam2_jax.reference``, see
../shared/REFERENCE.md): its names, the ``requires_torch`` / ``requires_data`` markers, and a skip (instead of an
error) where neither torch nor a golden shape file can give the official shapes.
"""

import functools

import numpy as np
import pytest

from sam2_jax.reference import DATA, GOLDEN, OFFICIAL_YAML, REPO, SHARED, ReferenceUnavailable, have_torch
from sam2_jax.reference import image as _image
from sam2_jax.reference.image import official_model

__all__ = [
    "DATA",
    "GOLDEN",
    "OFFICIAL_YAML",
    "REPO",
    "SHARED",
    "have_torch",
    "official_model",
    "official_shapes",
    "reference_state_dict",
    "converted_params",
    "component_params",
    "requires_torch",
    "requires_data",
    "to_torch",
    "nchw_to_nhwc",
]

requires_torch = pytest.mark.skipif(
    not have_torch(),
    reason="the PyTorch reference (torch==2.13.0 CPU + sam2==1.1.0) is not installed; see ../shared/REFERENCE.md",
)
requires_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA} (set SAM2_JAX_SHARED)")


def _skip_without_reference(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ReferenceUnavailable as e:
            pytest.skip(str(e))

    return wrapper


official_shapes = _skip_without_reference(_image.official_shapes)
reference_state_dict = _skip_without_reference(_image.reference_state_dict)
converted_params = _skip_without_reference(_image.converted_params)
component_params = _skip_without_reference(_image.component_params)


def to_torch(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def nchw_to_nhwc(x) -> np.ndarray:
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else x).transpose(0, 2, 3, 1)
