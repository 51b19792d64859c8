import os

import jax
import pytest

# Parity runs in float32 with exact matmuls (XLA:CPU's default is already exact; TPU/GPU need this).
jax.config.update("jax_default_matmul_precision", "highest")
cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "jax"))
jax.config.update("jax_compilation_cache_dir", cache)
# Subprocesses (CLI, train.py, eval.py) share the same folder (sam2_jax.utils.compile_cache reads this variable).
os.environ.setdefault("SAM2_JAX_COMPILATION_CACHE", os.path.abspath(cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: all model sizes, long videos (deselected by default)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("-m") or os.environ.get("SAM2_JAX_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow test: run with -m slow or SAM2_JAX_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
