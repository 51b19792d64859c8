"""Bounds that record what they measured.

A parity test states its bound and the error it sees through ``check`` (or ``max_abs``): the assertion is the
test's, and the measured error is kept per test (``tests/conftest.py`` sets the current test). With
``SAM2_JAX_MEASURED=FILE`` the session writes every record to FILE as JSON; ``scripts/check_bounds.py`` reads the
files of runs on two sets of CPU kernels (``scripts/test_isas.sh``) and reports each bound against the largest error
measured, so a bound comes from the spread across machines and stays within 10x of it.
"""

import numpy as np

RECORDS: dict[str, dict[str, tuple[float, float]]] = {}
CURRENT: list[str] = [""]


def forget() -> None:
    """Drop the current test's records (a check that is meant to fail, inside ``pytest.raises``)."""
    RECORDS.pop(CURRENT[0], None)


def check(name: str, err: float, bound: float) -> float:
    """Record ``err`` (a measured error, >= 0) against ``bound`` for the current test and assert ``err <= bound``.
    Several checks of one name keep the largest error."""
    err = float(err)
    rec = RECORDS.setdefault(CURRENT[0], {})
    prev = rec.get(name, (0.0, bound))[0]
    rec[name] = (max(prev, err), float(bound))
    assert err <= bound, f"{name}: measured {err:.3g} > bound {bound:.3g}"
    return err


def max_abs(name: str, actual, expected, bound: float) -> float:
    """``check`` of the largest absolute difference between two arrays (of equal shape)."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert a.shape == b.shape, f"{name}: shape {a.shape} against {b.shape}"
    return check(name, np.abs(a - b).max() if a.size else 0.0, bound)


def max_rel(name: str, actual, expected, bound: float) -> float:
    """``check`` of the largest difference relative to the largest magnitude of ``expected``."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert a.shape == b.shape, f"{name}: shape {a.shape} against {b.shape}"
    scale = np.abs(b).max() if b.size else 0.0
    return check(name, np.abs(a - b).max() / scale if scale else 0.0, bound)


def min_value(name: str, value: float, floor: float) -> float:
    """A figure that must stay high (an IoU, an agreement fraction): recorded as its shortfall ``1 - value``
    against ``1 - floor``."""
    check(name, 1.0 - float(value), 1.0 - floor)
    return float(value)
