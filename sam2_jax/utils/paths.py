"""The package's one cache folder, a leaf that both the checkpoint I/O and the compilation cache read."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """The checkpoint cache: ``$SAM2_JAX_CACHE`` or ``~/.cache/sam2_jax`` (the XLA cache is its ``xla`` folder).

    Returns:
      The directory (not created here).
    """
    return Path(os.environ.get("SAM2_JAX_CACHE", Path.home() / ".cache" / "sam2_jax"))
