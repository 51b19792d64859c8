"""The official metric code paths, run when they are available, for comparison tests and for the golden numbers.

Neither toolkit is a dependency: set ``DAVIS2017_EVALUATION_ROOT`` to a checkout of ``davis2017-evaluation`` and
``SAV_BENCHMARK_PY`` to the official ``sav_dataset/utils/sav_benchmark.py``, with ``cv2`` (opencv-python-headless)
and ``skimage`` importable. ``python -m tests.evaluation.official_metrics`` prints the values that
``test_metrics.py`` keeps as golden numbers.
"""

import importlib.util
import os
import sys

import numpy as np
import pytest

from tests.evaluation.sav_cases import sav_cases


def load_official():
    """(davis2017.metrics module, sav_benchmark module), or None when either is missing."""
    root, sav_path = os.environ.get("DAVIS2017_EVALUATION_ROOT"), os.environ.get("SAV_BENCHMARK_PY")
    if not root or not sav_path or not os.path.exists(sav_path):
        return None
    try:
        import cv2  # noqa: F401
        import skimage  # noqa: F401
    except ImportError:
        return None
    sys.path.insert(0, root)
    try:
        from davis2017 import metrics as davis_metrics
    finally:
        sys.path.remove(root)
    spec = importlib.util.spec_from_file_location("official_sav_benchmark", sav_path)
    sav = importlib.util.module_from_spec(spec)
    sys.modules["official_sav_benchmark"] = sav  # its Pool pickles classes by module name
    spec.loader.exec_module(sav)
    return davis_metrics, sav


def requires_toolkits(fn):
    """The live comparisons with the official toolkits: slow tier only, since the toolkits come from GitHub (CI
    reaches only package registries); the default run checks the golden numbers they printed
    (``test_metrics.py``). Where they are not set up the tests skip, and fail under SAM2_JAX_REQUIRE_REFERENCE."""
    skip = pytest.mark.skipif(
        load_official() is None,
        reason="official toolkits not set up: DAVIS2017_EVALUATION_ROOT, SAV_BENCHMARK_PY, cv2, skimage",
    )
    return pytest.mark.slow(skip(fn))


def official_case_values(davis_metrics, sav) -> dict[str, tuple[float, float, float, float]]:
    """Per case: (DAVIS mean J, DAVIS mean F over all frames and objects, SA-V J, SA-V F on the 0-100 scale)."""
    out = {}
    for name, (gt, pred) in sav_cases().items():
        # gt, pred: (T, O, H, W) bool
        j = np.stack([davis_metrics.db_eval_iou(gt[:, k], pred[:, k]) for k in range(gt.shape[1])])
        f = np.stack([davis_metrics.db_eval_boundary(gt[:, k], pred[:, k]) for k in range(gt.shape[1])])
        sj, sf = [], []
        for k in range(gt.shape[1]):
            ev = sav.Evaluator()
            for t in range(gt.shape[0]):
                ev.feed_frame(mask=pred[t, k], gt=gt[t, k])
            iou, bf = ev.conclude()
            if iou:
                sj.append(list(iou.values())[0])
                sf.append(list(bf.values())[0])
        out[name] = (float(j.mean()), float(f.mean()), float(np.mean(sj)), float(np.mean(sf)))
    return out


if __name__ == "__main__":
    loaded = load_official()
    if loaded is None:
        raise SystemExit("set DAVIS2017_EVALUATION_ROOT and SAV_BENCHMARK_PY, and install cv2 and skimage")
    for name, vals in official_case_values(*loaded).items():
        print(f"    {name!r}: ({', '.join(repr(v) for v in vals)}),")
