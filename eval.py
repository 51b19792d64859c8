"""Evaluate SAM 2 (JAX) with the paper's protocols: flags, then ``sam2_jax.evaluation.run.run``.

    python eval.py --dataset_format davis --data_root /data/DAVIS --split val --prompt mask \
        --model sam2.1_hiera_t --checkpoint sam2.1_hiera_tiny.pt --output_dir out/davis_val
    python eval.py --task score --gt_root /data/DAVIS/Annotations/480p --pred_root out/davis_val/pred
    python eval.py --dataset_format synthetic --num_synthetic 20 --image_size 256   # no data, random weights
    python eval.py --task image --data_root /data/sa1b_sample --prompt click5
    python eval.py --task interactive --interactive_mode online --dataset_format davis --data_root /data/DAVIS

Every field of ``RunConfig`` is a flag of the same name (``--help`` lists them); booleans take true/false.

Several devices: videos run one after another, and each video's batch of objects is spread over all local devices
by ``SAM2VideoPredictor`` (the object axis of its tracker state sharded over a one-axis mesh; replicated, so not
spread, when the object count does not divide the device count). The numbers equal a one-device run's
(``tests/test_eval.py``, two forced host devices).
"""

import argparse
import dataclasses
import sys

from sam2_jax.evaluation.run import RunConfig, run


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "y"):
        return True
    if s.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def parse(argv: list[str] | None = None) -> RunConfig:
    """Flags -> ``RunConfig``: one flag per field, with the field's default."""
    doc = (RunConfig.__doc__ or "").split("Attributes:")[-1]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(RunConfig):
        kind = _bool if f.type in (bool, "bool") else {"int": int, "float": float}.get(str(f.type), f.type)
        if kind not in (int, float, _bool):
            kind = str
        p.add_argument(f"--{f.name}", type=kind, default=f.default, help=f"default {f.default!r}")
    p.epilog = "fields:" + doc
    return RunConfig(**vars(p.parse_args(argv)))


if __name__ == "__main__":
    run(parse(sys.argv[1:]))
