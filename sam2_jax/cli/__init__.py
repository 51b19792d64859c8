"""``sam2-jax``: the jobs of the official notebooks (image predictor, automatic mask generator, video predictor),
one command each, plus checkpoint download and conversion.

  sam2-jax download --model sam2.1_hiera_t                 # official .pt into the cache ($SAM2_JAX_CACHE)
  sam2-jax convert ~/.cache/sam2_jax/sam2.1_hiera_tiny.pt  # -> orbax params in the cache (faster to load)
  sam2-jax image photo.jpg --point 450,330 --point 600,350,0 --box 400,250,900,700
  sam2-jax auto photo.jpg --points-per-side 32
  sam2-jax video frames_dir/ --obj 1 --frame 0 --point 210,350 --obj 2 --box 300,0,500,400 --max-frames 30
  sam2-jax serve --allow-dir examples                      # the interactive demo at http://127.0.0.1:8000

Every model command takes ``--model`` (default sam2.1_hiera_t) and ``--checkpoint`` (an official ``.pt`` or an
orbax directory; default: the cached official checkpoint of ``--model``). ``--random-weights`` runs the whole
pipeline with random weights (no checkpoint needed; the masks are meaningless: for trying the command and for
tests), and with it ``--image-size`` shrinks the model input (e.g. 256) for speed.

Bad input (an unreadable file, a point outside the image, a frame past the end, a mask of the wrong size, a
checkpoint that does not match the model) ends with one line ``sam2-jax <command>: error: ...`` on stderr and
exit code 2; ``--debug`` shows the traceback instead.
"""

import argparse
import sys

from sam2_jax.cli import checkpoints, export, image, serve, video
from sam2_jax.cli.common import EXIT_ERROR, CliError, Parser, one_line

COMMANDS = ("image", "auto", "video", "download", "convert", "export", "serve")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = Parser(prog="sam2-jax", description=__doc__, formatter_class=fmt)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    image.add_parsers(sub, fmt)
    video.add_parsers(sub, fmt)
    checkpoints.add_parsers(sub, fmt)
    export.add_parsers(sub, fmt)
    serve.add_parsers(sub, fmt)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    prog = f"sam2-jax {command}" if command in COMMANDS else "sam2-jax"
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_ERROR
        return args.func(args)
    except CliError as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
    except Exception as e:  # never a traceback for the user; --debug shows it
        if debug:
            raise
        print(
            f"{prog}: error: {type(e).__name__}: {one_line(e)} (rerun with --debug for the traceback)", file=sys.stderr
        )
    return EXIT_ERROR
