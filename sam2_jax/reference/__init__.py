"""The official PyTorch SAM 2 (``sam2==1.1.0`` on CPU) as a numerical reference, shared by ``tests/``,
``benchmarks/`` and ``scripts/make_golden.py``.

Needs the optional reference install (``torch`` + ``sam2``: ``scripts/install_reference.sh``, see
../shared/REFERENCE.md) and a source checkout (the golden files and the shared data are found next to it).
``torch`` and ``sam2`` are imported only inside the functions that use them, and ``import sam2_jax`` never imports
this package.

- ``sam2_jax.reference.image``: the official ``SAM2Base`` with our deterministic random weights, and those weights
  converted to our params (whole model or one component);
- ``sam2_jax.reference.video``: the official ``SAM2VideoPredictor`` set up for parity, and a recorder of its
  per-frame outputs;
- ``sam2_jax.reference.training``: the official ``SAM2Train`` and its loss on one clip;
- ``sam2_jax.reference.golden``: the inputs of the golden-output files.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SAM2_JAX_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
GOLDEN = REPO / "tests" / "golden"

# Our model names -> the official Hydra config of each (``configs/sam2.1/sam2.1_hiera_t.yaml`` …).
OFFICIAL_YAML = {
    name: f"configs/sam{name[3:].split('_')[0]}/{name}.yaml"
    for name in [f"sam{v}_hiera_{s}" for v in ("2", "2.1") for s in ("t", "s", "b+", "l")]
}


class ReferenceUnavailable(RuntimeError):
    """Neither the PyTorch reference nor a golden file can answer (tests turn this into a skip)."""


def have_torch() -> bool:
    """Whether ``torch`` and ``sam2`` are installed. Only their absence (``ImportError``) answers False: a reference
    that is installed but fails to import raises, so the parity tests fail instead of skipping."""
    try:
        import sam2  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
