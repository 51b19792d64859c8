"""The automatic mask generator, ours against the official, on the same photo and weights in the same run.

  python benchmarks/amg.py                        # official defaults (32x32 points), tiny, the truck photo
  python benchmarks/amg.py --points-per-side 8    # a reduced grid (say so when quoting it)

Each implementation runs in its own child process (so each peak RSS is its own: ``ru_maxrss`` of the child), the
children alternating ``--repeats`` times. Both load the same random-weight ``.pt`` written once by the parent
(``checkpoints.random_checkpoint``), build with the official call (``build_sam2(yaml, ckpt, device="cpu")``) and
construct ``SAM2AutomaticMaskGenerator(model, points_per_side=...)`` with every other argument at the official
default. A child times two ``generate`` calls on the photo: the first (ours: includes the jit compiles, partly served
from the persistent compilation cache) and the second (warm). Reported: seconds of both, the child's peak RSS, the
number of masks. Random weights make the filters keep few masks; the work before the filters (encoder, decoder
on every point, upsampling, stability) is what the official defaults cost either way.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--photo", default=None, help="default: the shared truck photo (or examples/truck.jpg)")
    p.add_argument("--points-per-side", type=int, default=32, help="official default 32")
    p.add_argument("--repeats", type=int, default=1, help="child runs per implementation, alternating")
    p.add_argument("--calls", type=int, default=2, choices=(1, 2), help="generate calls per child (1: first only)")
    p.add_argument("--child", choices=("ours", "official"), help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child(args) -> dict:
    """One implementation: build, generate twice, report seconds, peak RSS and mask count as one JSON line."""
    from benchmarks.image import load_photo
    from sam2_jax.reference import OFFICIAL_YAML

    image, _ = load_photo(args.photo)
    yaml = OFFICIAL_YAML[args.model]
    if args.child == "official":
        import torch
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
        from sam2.build_sam import build_sam2

        torch.set_grad_enabled(False)
    else:
        from sam2_jax.automatic_mask_generator import SAM2AutomaticMaskGenerator
        from sam2_jax.build_sam import build_sam2
    model = build_sam2(yaml, args.ckpt, device="cpu")
    gen = SAM2AutomaticMaskGenerator(model, points_per_side=args.points_per_side)
    seconds, counts = [], []
    for _ in range(args.calls):
        t0 = time.perf_counter()
        masks = gen.generate(image)
        seconds.append(time.perf_counter() - t0)
        counts.append(len(masks))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    warm = seconds[1] if len(seconds) > 1 else float("nan")
    return {"impl": args.child, "first_s": seconds[0], "warm_s": warm, "peak_rss_mb": peak_mb, "masks": counts}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    from sam2_jax.checkpoints import random_checkpoint

    print(common.environment_summary())
    print(f"model {args.model}, points_per_side {args.points_per_side} (official default 32), other args default")
    results = {"ours": [], "official": []}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint(args.model, Path(tmp) / "weights.pt")
        for _ in range(args.repeats):
            for impl in ("official", "ours"):
                cmd = [sys.executable, __file__, "--child", impl, "--ckpt", str(ckpt), "--model", args.model]
                cmd += ["--points-per-side", str(args.points_per_side), "--calls", str(args.calls)] + (
                    ["--photo", args.photo] if args.photo else []
                )
                run = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
                if run.returncode:
                    print(run.stderr[-3000:], file=sys.stderr)
                    return run.returncode
                results[impl].append(json.loads(run.stdout.strip().splitlines()[-1]))
                print(results[impl][-1], flush=True)
    print(
        "\n| impl | first generate (s) | warm generate (s) | peak RSS (MB) | masks |\n| --- | --- | --- | --- | --- |"
    )
    for impl, runs in results.items():
        for r in runs:
            print(f"| {impl} | {r['first_s']:.1f} | {r['warm_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['masks']} |")
    print(common.load_status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
