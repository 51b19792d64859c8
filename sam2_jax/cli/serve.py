"""``sam2-jax serve``: the interactive demo in a browser (``sam2_jax/serve/``)."""

import os
import sys

from sam2_jax.cli.common import CliError, add_model_args, load_model, random_weights_note, wrap

EPILOG = (
    "examples:\n"
    "  sam2-jax serve --allow-dir examples                      # http://127.0.0.1:8000, the shipped samples\n"
    "  sam2-jax serve --checkpoint sam2.1_hiera_large.pt --model sam2.1_hiera_l --port 9000\n"
    "  sam2-jax serve --random-weights --image-size 256          # try the page without a checkpoint\n"
    "Without --checkpoint the cached official checkpoint of --model is used; where there is none the server says so\n"
    "and runs with random weights (masks meaningless) unless --no-random-fallback."
)


def load_or_random(args):
    """The model of the arguments; where no checkpoint is given and none is in the cache, random weights with a NOTE
    (as the demo), unless ``--no-random-fallback``."""
    from sam2_jax.checkpoints import official_checkpoint_path
    from sam2_jax.configs import get_config

    if not (args.checkpoint or args.random_weights or args.no_random_fallback):
        try:
            name = get_config(args.model).name
        except ValueError:
            name = None  # load_model names the bad --model
        if name is not None and not official_checkpoint_path(name).is_file():
            print(
                f"NOTE: no checkpoint for {name} at {official_checkpoint_path(name)} (`sam2-jax download --model "
                f"{name}`, or --checkpoint PATH); serving RANDOM WEIGHTS (masks are meaningless)",
                file=sys.stderr,
            )
            args.random_weights = True
    return load_model(args)


def cmd_serve(args) -> int:
    from werkzeug.serving import make_server

    from sam2_jax.serve.app import Server, create_app
    from sam2_jax.utils.compile_cache import enable_compilation_cache

    if args.allow_dir is not None and not os.path.isdir(args.allow_dir):
        raise CliError(f"--allow-dir {args.allow_dir!r} is not a folder")
    for name in ("max_sessions", "max_frames", "chunk_size"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1")
    enable_compilation_cache()
    model, meta = load_or_random(args)
    server = Server(
        model,
        allow_dir=args.allow_dir,
        max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout,
        max_upload_mb=args.max_upload_mb,
        max_frames=args.max_frames,
        session_memory_mb=args.session_memory_mb,
        tracker_policy=args.tracker,
        chunk_size=args.chunk_size,
    )
    if not args.no_warm_up:
        print("compiling (once per process; the persistent cache makes the next start faster) ...", file=sys.stderr)
        server.warm_up()
    try:
        httpd = make_server(args.host, args.port, create_app(server), threaded=True)
    except OSError as e:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"WARNING: listening on {args.host}: anyone who can reach this port can use the model"
            + (f" and read {args.allow_dir}" if args.allow_dir else ""),
            file=sys.stderr,
        )
    print(f"sam2-jax serve: http://{args.host}:{httpd.server_port}/{random_weights_note(meta)}", flush=True)
    try:
        httpd.serve_forever()
    finally:
        server.shutdown()
    return 0


def add_parsers(sub, fmt) -> None:
    """``serve``."""
    sp = sub.add_parser(
        "serve",
        help="the interactive demo in a browser",
        description=wrap(
            "Serve the interactive demo: open an image or a video, click or drag a box on any frame, track the "
            "objects through the video with live progress, correct, add and remove objects, download the masks. "
            "One model per process; each browser tab is a session with its own state."
        ),
        epilog=EPILOG,
        formatter_class=fmt,
    )
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    sp.add_argument("--port", type=int, default=8000, help="port (default %(default)s; 0: a free one)")
    sp.add_argument("--allow-dir", help="a folder whose images, videos and frame folders the page may open by path")
    sp.add_argument("--max-sessions", type=int, default=8, help="sessions open at once (default %(default)s)")
    sp.add_argument(
        "--idle-timeout", type=float, default=900.0, help="seconds until an idle session closes (default %(default)s)"
    )
    sp.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload (default %(default)s)")
    sp.add_argument("--max-frames", type=int, default=1000, help="longest video a session opens (default %(default)s)")
    sp.add_argument(
        "--session-memory-mb",
        type=float,
        default=512.0,
        help="host memory for each session's tracked outputs, the video predictor's store budget (default %(default)s)",
    )
    from sam2_jax.tracker.policies import POLICIES

    sp.add_argument(
        "--chunk-size",
        type=int,
        default=1,
        help="frames per device turn while tracking (default %(default)s: every frame shown as it is tracked)",
    )
    sp.add_argument("--tracker", default="sam2", choices=list(POLICIES), help="tracking policy (default %(default)s)")
    sp.add_argument(
        "--no-random-fallback", action="store_true", help="fail instead of serving random weights without a checkpoint"
    )
    sp.add_argument("--no-warm-up", action="store_true", help="start listening before compiling")
    sp.add_argument("--debug", action="store_true", help="show the traceback of an error")
    add_model_args(sp)
    sp.set_defaults(func=cmd_serve)
