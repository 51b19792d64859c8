"""Each recorded bound against the largest error measured across runs (``tests/measured.py``).

    scripts/test_isas.sh            # the default run on two sets of CPU kernels, then this script
    .venv/bin/python scripts/check_bounds.py /tmp/sam2_jax_isas/native.json /tmp/sam2_jax_isas/alt.json

A row is flagged ``LOOSE`` where the bound is more than 10x the largest error measured (and the error is not 0),
``OVER`` where an error passed its bound (a failed test), so that a bound tuned on one CPU kind's rounding is seen
before another kind crosses it. Exit status 1 on ``OVER``.
"""

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="JSON files written with SAM2_JAX_MEASURED")
    ap.add_argument("--factor", type=float, default=10.0, help="largest bound / error ratio not flagged")
    ap.add_argument("--all", action="store_true", help="print every row, not only the flagged ones")
    args = ap.parse_args(argv)
    runs = []
    for path in args.runs:
        with open(path) as f:
            runs.append(json.load(f))
    # One bound serves every parametrization of a test: group by the test function and take the largest error.
    grouped = []
    for run in runs:
        g: dict = {}
        for test, rec in run.items():
            for q, (err, bound) in rec.items():
                key = (test.split("[")[0], q)
                e0, b0 = g.get(key, (0.0, bound))
                g[key] = (max(e0, err), max(b0, bound))
        grouped.append(g)
    runs = [{t: {q: v for (t2, q), v in g.items() if t2 == t} for (t, _) in g} for g in grouped]
    keys = sorted({(t, q) for run in runs for t, rec in run.items() for q in rec})
    over = loose = 0
    print(f"{'test :: quantity':90s} " + " ".join(f"{'run ' + str(i):>9s}" for i in range(len(runs))) + "     bound")
    for test, q in keys:
        errs = [run.get(test, {}).get(q, (None, None)) for run in runs]
        bound = max(b for _, b in errs if b is not None)
        worst = max(e for e, _ in errs if e is not None)
        flag = ""
        if worst > bound:
            flag, over = "OVER", over + 1
        elif worst > 0 and bound > args.factor * worst:
            flag, loose = "LOOSE", loose + 1
        if flag or args.all:
            cells = " ".join("        -" if e is None else f"{e:9.2e}" for e, _ in errs)
            print(f"{(test + ' :: ' + q)[-90:]:90s} {cells} {bound:9.2e} {flag}")
    print(f"{len(keys)} bounds, {over} over, {loose} looser than {args.factor:g}x the largest error measured")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
