import glob
import json
import os

import jax
import pytest

from tests import measured

# Parity runs in float32 with exact matmuls (XLA:CPU's default is already exact; TPU/GPU need this).
jax.config.update("jax_default_matmul_precision", "highest")
cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "jax"))
jax.config.update("jax_compilation_cache_dir", cache)
# Subprocesses (CLI, train.py, eval.py) share the same folder (sam2_jax.utils.compile_cache reads this variable).
os.environ.setdefault("SAM2_JAX_COMPILATION_CACHE", os.path.abspath(cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


SLOW_REASON = "slow test: run with -m slow or SAM2_JAX_SLOW=1"
# CI sets this: a test that would skip for want of the reference (torch, sam2, transformers, onnxruntime, the
# ../shared data, a golden file) fails instead, naming what is missing, so CI cannot go green by skipping. Only the
# slow tier's own skip stays a skip.
REQUIRE_REFERENCE = os.environ.get("SAM2_JAX_REQUIRE_REFERENCE", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: all model sizes, long videos (deselected by default)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("-m") or os.environ.get("SAM2_JAX_SLOW"):
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if "slow" in item.keywords:
            # pytest evaluates skipif before skip: drop a slow test's own skipif (toolkits not set up, ...) so that
            # outside the slow tier it skips for being slow, whatever else it would need
            item.own_markers = [m for m in item.own_markers if m.name != "skipif"]
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_REFERENCE and report.skipped) or hasattr(report, "wasxfail"):
        return
    # A slow test outside the slow tier skips, whatever marker fires first (a skipif may be evaluated before ours).
    if any(m.kwargs.get("reason") == SLOW_REASON for m in item.iter_markers(name="skip")):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"SAM2_JAX_REQUIRE_REFERENCE is set, so this test may not skip; it would have: {reason}"


@pytest.fixture(autouse=True)
def _measured_test(request):
    """Errors recorded by ``tests.measured.check`` belong to the running test."""
    measured.CURRENT[0] = request.node.nodeid
    yield
    measured.CURRENT[0] = ""


def pytest_sessionfinish(session, exitstatus):
    """With ``SAM2_JAX_MEASURED=FILE``, every recorded error goes to FILE; under pytest-xdist each worker writes
    ``FILE.<worker>`` and the controller, which finishes last, merges them."""
    out = os.environ.get("SAM2_JAX_MEASURED")
    if not out:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        with open(f"{out}.{worker}", "w") as f:
            json.dump(measured.RECORDS, f)
        return
    records = dict(measured.RECORDS)
    for part in glob.glob(f"{glob.escape(out)}.gw*"):
        with open(part) as f:
            records.update(json.load(f))
        os.remove(part)
    if records:
        with open(out, "w") as f:
            json.dump(records, f, indent=1, sort_keys=True)


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs():
    """Drop every compiled program after each test module (``jax.clear_caches``). XLA:CPU maps about six memory
    regions per executable and frees them only with the executable; the whole suite in one process compiles enough
    programs to reach the kernel's limit of 65,530 mappings (``vm.max_map_count``), and the next compile then
    crashes (a segmentation fault in the executable's serialization for the persistent cache). Programs a later
    module needs again come back from the persistent cache."""
    yield
    jax.clear_caches()
