"""Command line: official SAM 2 ``.pt`` <-> sam2_jax params (orbax).

  python -m convert_weights --checkpoint sam2.1_hiera_tiny.pt --out DIR [--config sam2.1_hiera_t]
  python -m convert_weights --export DIR --config sam2.1_hiera_t --out model.pt

The first converts strictly (every key used, every shape checked; the model is inferred from the keys unless
``--config`` is given) and writes an orbax directory. The second writes our params back to an official-format
``.pt`` that the official ``build_sam2`` loads (the round trip is bit-exact).
"""

import argparse
import sys

from configs import get_config
from convert_weights.convert import (
    convert_state_dict,
    infer_config_name,
    load_torch_state_dict,
    params_to_state_dict,
    save_torch_state_dict,
)
from convert_weights.mapping import param_table
from convert_weights.orbax_io import restore_params, save_params


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m convert_weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="official .pt checkpoint to convert")
    src.add_argument("--export", metavar="ORBAX_DIR", help="our params directory to write back as an official .pt")
    p.add_argument("--out", required=True, help="output orbax directory (convert) or .pt file (export)")
    p.add_argument("--config", help="model config name, e.g. sam2.1_hiera_t (inferred from the keys if omitted)")
    args = p.parse_args(argv)
    try:
        if args.checkpoint:
            sd = load_torch_state_dict(args.checkpoint)
            name = args.config or infer_config_name(sd)
            config = get_config(name)
            import ml_collections

            from sam2_jax.build_sam import SAM2Base, param_shapes  # heavy import only when needed

            shapes = param_shapes(SAM2Base(config=ml_collections.FrozenConfigDict(config.model)))
            params = convert_state_dict(sd, param_table(config), shapes)
            save_params(params, args.out)
            n = sum(v.size for v in _leaves(params))
            print(f"converted {args.checkpoint} ({config.name}, {len(sd)} tensors, {n:,} params) -> {args.out}")
        else:
            if not args.config:
                p.error("--export needs --config")
            config = get_config(args.config)
            sd = params_to_state_dict(restore_params(args.export), param_table(config))
            save_torch_state_dict(sd, args.out)
            print(f"exported {args.export} ({config.name}, {len(sd)} tensors) -> {args.out}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _leaves(tree):
    for v in tree.values():
        if isinstance(v, dict):
            yield from _leaves(v)
        else:
            yield v


if __name__ == "__main__":
    sys.exit(main())
