"""Command line: official SAM 2 ``.pt`` or transformers SAM 2 folder <-> sam2_jax params (orbax).

  python -m sam2_jax.convert_weights --checkpoint sam2.1_hiera_tiny.pt --out DIR [--config sam2.1_hiera_t]
  python -m sam2_jax.convert_weights --checkpoint hf_folder/ --out DIR          # transformers' model.safetensors
  python -m sam2_jax.convert_weights --export DIR --config sam2.1_hiera_t --out model.pt
  python -m sam2_jax.convert_weights --export DIR --config sam2.1_hiera_t --out hf_folder/ --hf [--image-only]

The first converts strictly (every key used, every shape checked; the model is inferred from the keys unless
``--config`` is given) and writes an orbax directory. The second writes our params back to an official-format
``.pt`` that the official ``build_sam2`` loads (the round trip is bit-exact), or with ``--hf`` a folder that
``transformers``' ``Sam2VideoModel.from_pretrained`` (``Sam2Model`` with ``--image-only``) loads. None needs torch.
They are ``sam2_jax.checkpoints.convert_checkpoint`` / ``export_checkpoint`` / ``export_hf_checkpoint``.
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sam2_jax.convert_weights",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="official .pt, transformers SAM 2 folder or .safetensors to convert")
    src.add_argument("--export", metavar="ORBAX_DIR", help="our params directory to write back as an official .pt")
    p.add_argument("--out", required=True, help="output orbax directory (convert) or .pt file (export)")
    p.add_argument("--config", help="model config name, e.g. sam2.1_hiera_t (inferred from the keys if omitted)")
    p.add_argument("--hf", action="store_true", help="--export as a transformers SAM 2 folder instead of a .pt")
    p.add_argument("--image-only", action="store_true", help="with --hf: transformers' image model (Sam2Model)")
    args = p.parse_args(argv)
    if args.export and not args.config:
        p.error("--export needs --config")
    from sam2_jax.checkpoints import (  # heavy import after parsing
        convert_checkpoint,
        export_checkpoint,
        export_hf_checkpoint,
    )

    try:
        if args.checkpoint:
            c = convert_checkpoint(args.checkpoint, args.out, args.config)
            print(f"converted {args.checkpoint} ({c.config_name}, {c.num_tensors} tensors) -> {c.path}")
        elif args.hf:
            export_hf_checkpoint(args.export, args.config, args.out, args.image_only)
            print(f"exported {args.export} ({args.config}) -> {args.out} (transformers' SAM 2 format)")
        else:
            export_checkpoint(args.export, args.config, args.out)
            print(f"exported {args.export} ({args.config}) -> {args.out}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
