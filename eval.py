"""Evaluate SAM 2 (JAX) with the paper's protocols: flags, then ``sam2_jax.evaluation.run.run``.

    python eval.py --dataset_format davis --data_root /data/DAVIS --split val --prompt mask \
        --model sam2.1_hiera_t --checkpoint sam2.1_hiera_tiny.pt --output_dir out/davis_val
    python eval.py --task score --gt_root /data/DAVIS/Annotations/480p --pred_root out/davis_val/pred
    python eval.py --dataset_format synthetic --num_synthetic 20 --image_size 256   # no data, random weights
    python eval.py --task image --data_root /data/sa1b_sample --prompt click5
    python eval.py --task interactive --interactive_mode online --dataset_format davis --data_root /data/DAVIS
    python eval.py --dataset_format davis --data_root /data/DAVIS --devices_per_video 2   # 8 GPUs: 4 videos at once

Every field of ``RunConfig`` is a flag of the same name (``--help`` lists them); booleans take true/false.

Several devices (``vos`` and ``interactive`` tasks): the local devices are split into groups of
``--devices_per_video`` (default 1 when there are at least as many videos as devices), each group with its own
predictor (params replicated on the group, each video's object batch sharded over it when the object count divides
the group size), and a host thread per group takes the next video when idle (``sam2_jax.evaluation.parallel``).
Results are assembled in the dataset's order, so the CSVs and PNGs equal a one-device run's byte for byte
(``tests/test_eval.py``, four forced host devices). ``--devices_per_video`` = the device count runs one video at a
time with its objects sharded over all devices.
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
        choices = f.metadata.get("choices")  # e.g. the tracker policies' registry
        p.add_argument(f"--{f.name}", type=kind, default=f.default, choices=choices, help=f"default {f.default!r}")
    p.epilog = "fields:" + doc
    return RunConfig(**vars(p.parse_args(argv)))


if __name__ == "__main__":
    run(parse(sys.argv[1:]))
