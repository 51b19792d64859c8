"""The persistent compilation cache: a second process running the same session compiles nothing."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from sam2_jax.utils.compile_cache import CompileCounter, enable_compilation_cache

REPO = Path(__file__).resolve().parents[2]

SESSION = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from sam2_jax.configs import get_config
    from sam2_jax import build_sam2
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
    from sam2_jax.utils.compile_cache import CompileCounter

    with CompileCounter() as c:
        cfg = get_config("sam2.1_hiera_t")
        cfg.model.image_size = 128
        predictor = SAM2ImagePredictor(build_sam2(cfg, None))
        predictor.set_image(np.full((96, 128, 3), 100, np.uint8))
        masks, scores, _ = predictor.predict(point_coords=np.array([[40, 30]]), point_labels=np.array([1]))
    print(json.dumps(dict(compiles=c.compiles, hits=c.cache_hits, fresh=c.fresh, score=float(scores[0]))))
    """
)


def _run_session(cache: Path, enabled: str | None = None) -> dict:
    env = dict(os.environ, SAM2_JAX_COMPILATION_CACHE=enabled or str(cache), JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", SESSION], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing(tmp_path):
    cache = tmp_path / "xla"
    cold = _run_session(cache)
    warm = _run_session(cache)
    assert cold["fresh"] > 0 and cold["hits"] == 0, cold
    assert warm["compiles"] == cold["compiles"] and warm["fresh"] == 0, (cold, warm)
    assert warm["score"] == cold["score"]  # the same executable, the same numbers


@pytest.mark.slow  # a third fresh process (35 s); test_disabled_by_environment checks the switch in-process
def test_cache_off_compiles_everything(tmp_path):
    cache = tmp_path / "xla"
    cold = _run_session(cache)
    off = _run_session(cache, enabled="0")
    assert off["hits"] == 0 and off["fresh"] == cold["compiles"], off


def test_counter_counts_fresh_compiles():
    x7, x9 = jnp.ones(7), jnp.ones(9)  # made outside: creating an array compiles too
    f = jax.jit(lambda x: x * 3.0 + 1.0)
    with CompileCounter() as c:
        f(x7).block_until_ready()
        f(x7).block_until_ready()  # cached in memory: no compile
    assert c.compiles == 1 and c.fresh + c.cache_hits == 1
    with CompileCounter() as c2:
        f(x9).block_until_ready()  # a new shape
    assert c2.compiles == 1
    f(x7).block_until_ready()  # the counter is stopped: not counted
    assert c2.compiles == 1


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("SAM2_JAX_COMPILATION_CACHE", "0")
    assert enable_compilation_cache() is None
