"""``sam2-jax video``: track objects through a video (the video predictor notebook)."""

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np

from sam2_jax.cli.common import (
    CliError,
    add_model_args,
    add_output_args,
    check_prompts_inside,
    load_model,
    progress,
    random_weights_note,
    wrap,
    write_json,
)
from sam2_jax.tracker.policies import POLICIES
from sam2_jax.utils.prompts import parse_box, parse_point

EPILOGS_VIDEO = (
    "examples:\n"
    "  sam2-jax video bedroom/ --obj 1 --frame 0 --point 210,350 --point 250,220 --obj 2 --box 600,0,800,250\n"
    "  sam2-jax video clip.mp4 --obj 1 --mask first_frame_mask.png --max-frames 50 --overlay out/clip.gif\n"
    "writes OUT/masks/<frame>.png (palette PNGs, pixel = object id, DAVIS layout), OUT/overlay.mp4 (or\n"
    "--overlay PATH.gif), OUT/contact_sheet.png and OUT/video.json"
)


class _PromptAction(argparse.Action):
    """Collects ``--obj``, ``--frame``, ``--point``, ``--box``, ``--mask`` in command-line order: a point, box or
    mask belongs to the object and frame named last before it (object 1, frame 0 by default)."""

    def __call__(self, parser, namespace, value, option_string=None):
        events = getattr(namespace, "prompt_events", None) or []
        events.append((self.dest, value))
        namespace.prompt_events = events


def collect_prompts(events) -> dict[tuple[int, int], dict]:
    """``{(obj_id, frame): {"points": [...], "box": ..., "mask": path}}`` from the ordered events."""
    obj, frame, prompts = 1, 0, {}
    for kind, value in events or []:
        if kind == "obj":
            if not 1 <= value <= 255:
                raise CliError(f"--obj must be an object id in 1..255 (a palette index), got {value}")
            obj = value
            continue
        if kind == "frame":
            if value < 0:
                raise CliError(f"--frame must be >= 0, got {value}")
            frame = value
            continue
        p = prompts.setdefault((obj, frame), {"points": [], "box": None, "mask": None})
        if kind == "point":
            p["points"].append(value)
        elif kind == "box":
            if p["box"] is not None:
                raise CliError(f"object {obj} has two --box prompts on frame {frame}")
            p["box"] = value
        else:
            p["mask"] = value
        if p["mask"] is not None and (p["points"] or p["box"] is not None):
            raise CliError(f"object {obj} on frame {frame}: a --mask cannot be combined with --point/--box")
    if not prompts:
        raise CliError("give at least one prompt: --obj ID --frame N then --point x,y[,label], --box or --mask PNG")
    return prompts


def _read_mask_png(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise CliError(f"mask {path!r} does not exist")
    try:
        with Image.open(path) as im:
            m = np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise CliError(f"cannot read mask {path!r}: {e}") from None
    if m.ndim == 3:
        m = m[..., :3].max(axis=-1)
    return m > 0


def _frame_names(video: str, n: int) -> list[str]:
    """Output names of the frames: a folder's frame stems (as DAVIS), else zero-padded indices."""
    if os.path.isdir(video):
        from sam2_jax.video.video_io import FRAME_EXTENSIONS

        stems = sorted((Path(f).stem for f in os.listdir(video) if Path(f).suffix.lower() in FRAME_EXTENSIONS), key=int)
        if len(stems) == n:
            return stems
    return [f"{i:05d}" for i in range(n)]


def check_video_input(args, prompts) -> tuple[int, tuple[int, int], dict, Path]:
    """Check the video, the prompts and ``--overlay`` before the model is built, so bad input fails in a second.

    Returns:
      ``(num_frames, (height, width), {(obj, frame): mask} of the --mask prompts, overlay path)``.
    """
    if not os.path.exists(args.video):
        raise CliError(f"video {args.video!r} does not exist")
    if args.max_frames is not None and args.max_frames < 1:
        raise CliError(f"--max-frames must be >= 1, got {args.max_frames}")
    overlay_path = Path(args.overlay) if args.overlay else Path(args.out) / "overlay.mp4"
    if overlay_path.suffix.lower() not in (".mp4", ".gif"):
        raise CliError(f"--overlay must end in .mp4 or .gif, got {str(overlay_path)!r}")
    from sam2_jax.video.video_io import VideoSource

    try:
        with VideoSource(args.video, image_size=64, cache_size=1) as src:
            n, hw = src.num_frames, (src.video_height, src.video_width)
            src.check_frames()  # headers, sizes, truncation: a bad frame fails now, not minutes into tracking
    except ValueError as e:
        raise CliError(f"cannot read video {args.video!r}: {e}") from None
    masks_in = {}
    for (obj, frame), p in prompts.items():
        if frame >= n:
            raise CliError(f"--frame {frame} (object {obj}) is past the end of the video ({n} frames: 0..{n - 1})")
        if p["mask"] is not None:
            m = _read_mask_png(p["mask"])
            if m.shape != hw:
                raise CliError(f"mask {p['mask']!r} is {m.shape[1]}x{m.shape[0]}, the video is {hw[1]}x{hw[0]}")
            masks_in[(obj, frame)] = m
        else:
            check_prompts_inside(p["points"], p["box"], hw, f"video frame {frame}")
    return n, hw, masks_in, overlay_path


def add_video_prompts(predictor, state, prompts: dict, masks_in: dict) -> dict:
    """Give the predictor every prompt (frame by frame). Returns ``{frame: {obj: drawing}}`` for the overlays."""
    drawn = {}
    for (obj, frame), p in sorted(prompts.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        try:
            if p["mask"] is not None:
                predictor.add_new_mask(state, frame, obj, masks_in[(obj, frame)])
                continue
            pts = np.array([q[:2] for q in p["points"]], np.float32) if p["points"] else None
            labs = np.array([q[2] for q in p["points"]], np.int32) if p["points"] else None
            box = np.array(p["box"], np.float32) if p["box"] is not None else None
            predictor.add_new_points_or_box(state, frame, obj, points=pts, labels=labs, box=box)
            drawn.setdefault(frame, {})[obj] = {"points": pts, "labels": labs, "box": box}
        except ValueError as e:
            raise CliError(f"object {obj} frame {frame}: {e}") from None
    return drawn


def cmd_video(args) -> int:
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor
    from sam2_jax.utils.visualize import contact_sheet, label_map, overlay_objects, palette_png, write_video

    prompts = collect_prompts(getattr(args, "prompt_events", None))
    n, hw, masks_in, overlay_path = check_video_input(args, prompts)
    model, meta = load_model(args)
    predictor = SAM2VideoPredictor(model, tracker_policy=args.tracker)
    predictor.progress = False  # one bar: the command's own, over both passes
    try:
        state = predictor.init_state(args.video)
    except ValueError as e:
        raise CliError(f"cannot read video {args.video!r}: {e}") from None
    drawn = add_video_prompts(predictor, state, prompts, masks_in)
    start = min(f for _, f in prompts)
    last = n - 1 if args.max_frames is None else min(n - 1, start + args.max_frames - 1)
    out = Path(args.out)
    mask_dir = out / "masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    names = _frame_names(args.video, n)
    images = state["images"]
    overlays, sheet_idx, obj_stats, frame_of = [], [], {}, {}
    t0 = time.perf_counter()
    frames = predictor.propagate_in_video(state, start_frame_idx=start, max_frame_num_to_track=last - start)
    total = last - start + 1
    if args.max_frames is None and start > 0:
        # frames before the first prompt: the official notebooks' reverse pass (its first frame is already done)
        backward = predictor.propagate_in_video(state, start_frame_idx=start, reverse=True)
        frames = itertools.chain(frames, itertools.islice(backward, 1, None))
        total = n
    # smoothing=0: the remaining time from the mean rate so far (the first frames pay the compiles)
    for t, obj_ids, logits in progress(frames, args.quiet, total=total, desc="frames", unit="frame", smoothing=0):
        masks = {int(o): logits[k, 0] > 0 for k, o in enumerate(obj_ids)}
        palette_png(label_map(masks, hw)).save(mask_dir / f"{names[t]}.png")
        for o, m in masks.items():
            obj_stats.setdefault(o, []).append(int(m.sum()))
            frame_of.setdefault(o, []).append(t)
        overlays.append(overlay_objects(images.original_frame(t), masks, drawn.get(t)))
        sheet_idx.append(t)
    seconds = time.perf_counter() - t0
    order = np.argsort(sheet_idx, kind="stable")  # the reverse pass's frames come last: put them in video order
    overlays, sheet_idx = [overlays[i] for i in order], [sheet_idx[i] for i in order]
    obj_stats = {o: [a for _, a in sorted(zip(frame_of[o], areas, strict=True))] for o, areas in obj_stats.items()}
    write_video(overlays, overlay_path, fps=args.fps)
    k = min(args.sheet_frames, len(overlays))
    pick = sorted({round(i * (len(overlays) - 1) / max(k - 1, 1)) for i in range(k)})
    contact_sheet([overlays[i] for i in pick], [f"frame {sheet_idx[i]}" for i in pick]).save(out / "contact_sheet.png")
    write_json(
        out / "video.json",
        dict(
            meta,
            tracker=args.tracker,
            video=args.video,
            height=hw[0],
            width=hw[1],
            num_frames=n,
            frames=[names[t] for t in sheet_idx],
            objects={str(o): {"area_per_frame": a} for o, a in sorted(obj_stats.items())},
            overlay=str(overlay_path),
            seconds=round(seconds, 3),
        ),
    )
    print(
        f"tracked {len(obj_stats)} object(s) over {len(overlays)} frames in {seconds:.1f}s; wrote masks/ "
        f"(palette PNGs), {overlay_path.name}, contact_sheet.png, video.json to {out}" + random_weights_note(meta)
    )
    return 0


def add_parsers(sub, fmt) -> None:
    """``video``."""
    sp = sub.add_parser(
        "video",
        help="track objects through a video",
        description=wrap(
            "Track objects through a video (the official video predictor notebook). Prompts are read in "
            "order: --point/--box/--mask belong to the object and frame named last before them (--obj 1 and --frame 0 "
            "until given). The whole video is tracked (a reverse pass covers the frames before the first prompt); "
            "--max-frames tracks forward from the first prompted frame only."
        ),
        epilog=EPILOGS_VIDEO,
        formatter_class=fmt,
    )
    sp.add_argument("video", help="folder of frames (00000.jpg, ...) or a video file (MP4, ...)")
    sp.add_argument(
        "--obj", type=int, action=_PromptAction, metavar="ID", help="object id (1..255) of the prompts that follow"
    )
    sp.add_argument(
        "--frame", type=int, action=_PromptAction, metavar="N", help="frame index of the prompts that follow"
    )
    sp.add_argument(
        "--point", type=parse_point, action=_PromptAction, metavar="X,Y[,L]", help="x,y[,label] click (repeatable)"
    )
    sp.add_argument("--box", type=parse_box, action=_PromptAction, metavar="X0,Y0,X1,Y1", help="x0,y0,x1,y1 box")
    sp.add_argument(
        "--mask", action=_PromptAction, metavar="PNG", help="PNG mask (nonzero = object) of the video's size"
    )
    sp.add_argument(
        "--max-frames",
        type=int,
        help=(
            "track at most this many frames forward from the first prompted one; without it the whole video "
            "is tracked (frames before the first prompt by a reverse pass)"
        ),
    )
    sp.add_argument(
        "--tracker",
        default="sam2",
        choices=list(POLICIES),
        help="tracking policy: which mask and which frames enter the memory (default %(default)s)",
    )
    sp.add_argument("--overlay", help="overlay video path, .mp4 or .gif (default OUT/overlay.mp4)")
    sp.add_argument("--fps", type=float, default=10.0, help="overlay frame rate (default %(default)s)")
    sp.add_argument("--sheet-frames", type=int, default=6, help="frames on the contact sheet (default %(default)s)")
    add_model_args(sp)
    add_output_args(sp, "out/video")
    sp.set_defaults(func=cmd_video)
