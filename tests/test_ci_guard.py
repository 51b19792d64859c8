"""CI cannot go green by skipping: under ``SAM2_JAX_REQUIRE_REFERENCE=1`` (set by ``.ci/run``) a parity test whose
reference is missing fails, naming what is missing, and a reference that is installed but broken fails everywhere.

Each case runs one cheap parity test in a child pytest whose ``import torch`` is replaced by a stand-in package
first on ``PYTHONPATH``: one that is absent (``ImportError``), one that is broken (any other error).
"""

import os
import subprocess
import sys

import pytest

from tests.reference import REPO

TEST = "tests/modeling/test_memory.py::test_memory_attention_small_matches_official"


def _child_pytest(tmp_path, torch_init: str, require: bool) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(torch_init)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    env.pop("SAM2_JAX_REQUIRE_REFERENCE", None)
    if require:
        env["SAM2_JAX_REQUIRE_REFERENCE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", TEST]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("require", [False, True])
def test_missing_reference_skips_or_fails(tmp_path, require):
    r = _child_pytest(tmp_path, 'raise ImportError("no torch in this test")\n', require)
    out = r.stdout + r.stderr
    if require:
        assert r.returncode == 1, out
        assert "SAM2_JAX_REQUIRE_REFERENCE is set, so this test may not skip" in out, out
        # a skip in setup (a skipif marker) becomes an error, one in the test body a failure: both fail the run
        assert "torch==2.13.0 CPU + sam2==1.1.0" in out and "2 errors" in out and "skipped" not in out, out
    else:
        assert r.returncode == 0 and "2 skipped" in out and "torch==2.13.0 CPU + sam2==1.1.0" in out, out


def test_broken_reference_fails_instead_of_skipping(tmp_path):
    """``have_torch`` answers False only for an ``ImportError``: a torch that fails otherwise is an error."""
    r = _child_pytest(tmp_path, 'raise RuntimeError("a broken torch install")\n', require=False)
    out = r.stdout + r.stderr
    assert r.returncode not in (0, 5) and "a broken torch install" in out and "skipped" not in out, out
