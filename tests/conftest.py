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


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs():
    """Drop every compiled program after each test module (``jax.clear_caches``). XLA:CPU maps about six memory
    regions per executable and frees them only with the executable; the whole suite in one process compiles enough
    programs to reach the kernel's limit of 65,530 mappings (``vm.max_map_count``), and the next compile then
    crashes (a segmentation fault in the executable's serialization for the persistent cache). Programs a later
    module needs again come back from the persistent cache."""
    yield
    jax.clear_caches()
