"""``sam2-jax``: the jobs of the official notebooks (image predictor, automatic mask generator, video predictor),
one command each, plus checkpoint download and conversion.

  sam2-jax download --model sam2.1_hiera_t                 # official .pt into the cache ($SAM2_JAX_CACHE)
  sam2-jax convert ~/.cache/sam2_jax/sam2.1_hiera_tiny.pt  # -> orbax params in the cache (faster to load)
  sam2-jax image photo.jpg --point 450,330 --point 600,350,0 --box 400,250,900,700
  sam2-jax auto photo.jpg --points-per-side 32
  sam2-jax video frames_dir/ --obj 1 --frame 0 --point 210,350 --obj 2 --box 300,0,500,400 --max-frames 30

Every model command takes ``--model`` (default sam2.1_hiera_t) and ``--checkpoint`` (an official ``.pt`` or an
orbax directory; default: the cached official checkpoint of ``--model``). ``--random-weights`` runs the whole
pipeline with random weights (no checkpoint needed; the masks are meaningless: for trying the command and for
tests), and with it ``--image-size`` shrinks the model input (e.g. 256) for speed.

Bad input (an unreadable file, a point outside the image, a frame past the end, a mask of the wrong size, a
checkpoint that does not match the model) ends with one line ``sam2-jax <command>: error: ...`` on stderr and
exit code 2; ``--debug`` shows the traceback instead.
"""

import argparse
import functools
import itertools
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from sam2_jax.utils.prompts import parse_box, parse_point

EXIT_ERROR = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and the same exit code as other bad input."""

    def error(self, message):
        raise CliError(f"{message} (see {self.prog} --help)")


# --- argument types ------------------------------------------------------------------------------------------


def check_prompts_inside(points, box, hw: tuple[int, int], what: str) -> None:
    h, w = hw
    for x, y, _ in points or []:
        if not (0 <= x <= w and 0 <= y <= h):
            raise CliError(f"point ({x:g}, {y:g}) lies outside the {w}x{h} {what}")
    if box is not None and not (0 <= box[0] and 0 <= box[1] and box[2] <= w and box[3] <= h):
        raise CliError(f"box {list(box)} lies outside the {w}x{h} {what}")


def read_image(path: str) -> np.ndarray:
    """An image file as HWC uint8 RGB; CliError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if os.path.isdir(path):
        raise CliError(f"image {path!r} is a folder, not an image file (a folder of frames is for `sam2-jax video`)")
    if not os.path.isfile(path):
        raise CliError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise CliError(f"cannot read image {path!r}: {e}") from None


# --- models --------------------------------------------------------------------------------------------------


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", default="sam2.1_hiera_t", help="model config: sam2[.1]_hiera_{t,s,b+,l} (default %(default)s)"
    )
    g.add_argument("--checkpoint", help="official .pt or converted orbax directory (default: the cached official one)")
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="random weights instead of a checkpoint: every step runs, the masks are meaningless (for tests)",
    )
    g.add_argument("--image-size", type=int, help="model input size with --random-weights (e.g. 256, faster)")
    g.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="compute dtype (default float32)")
    g.add_argument("--seed", type=int, default=0, help="seed of --random-weights (default %(default)s)")


@functools.lru_cache(maxsize=2)
def _random_model(name: str, image_size: int | None, dtype: str | None, seed: int):
    """The model with ``checkpoints.random_params`` (the weights of ``random_checkpoint``, of the parity tests and
    of the demo's offline fallback), at the config's or the given input size. Cached: tests run many commands."""
    import jax
    import jax.numpy as jnp

    from sam2_jax.checkpoints import random_params
    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import SAM2Model, make_module

    cfg = get_config(name)
    if image_size is not None:
        cfg.model.image_size = image_size
    module = make_module(cfg.model, dtype or "float32")
    params = random_params(cfg, module, seed)
    return SAM2Model(module=module, params=jax.tree.map(jnp.asarray, params), config=cfg)


def load_model(args) -> tuple[object, dict]:
    """The model the arguments ask for, and a description of where its weights came from (the checkpoint, the
    SHA-256 of its content, and what was read: the file or its cached conversion)."""
    from sam2_jax.build_sam import build_sam2
    from sam2_jax.checkpoints import official_checkpoint_path, resolve_checkpoint
    from sam2_jax.configs import get_config

    try:
        config = get_config(args.model)
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.image_size is not None:
        if not args.random_weights:
            raise CliError("--image-size only works with --random-weights (checkpoints are trained at 1024)")
        if args.image_size < 64 or args.image_size % 64:
            raise CliError(f"--image-size must be a positive multiple of 64, got {args.image_size}")
    if args.random_weights:
        if args.checkpoint:
            raise CliError("give either --checkpoint or --random-weights, not both")
        model = _random_model(config.name, args.image_size, args.dtype, args.seed)
        return model, {
            "model": config.name,
            "checkpoint": None,
            "checkpoint_sha256": None,
            "loaded_from": None,
            "random_weights": True,
        }
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
        if not ckpt.exists():
            raise CliError(f"checkpoint {str(ckpt)!r} does not exist")
    else:
        ckpt = official_checkpoint_path(config.name)
        if not ckpt.is_file():
            raise CliError(
                f"no checkpoint for {config.name} at {ckpt}: run `sam2-jax download --model {config.name}` (or copy "
                "the official file there), pass --checkpoint PATH, or try the pipeline with --random-weights"
            )
    # A .pt converted before by `sam2-jax convert` (same content, by hash) loads from orbax: no torch, faster.
    source = resolve_checkpoint(ckpt)
    try:
        model = build_sam2(config, source.load_path, dtype=args.dtype)
    except ValueError as e:
        raise CliError(
            f"checkpoint {str(ckpt)!r} does not fit model {config.name}: {_short(e, ckpt, source)}"
        ) from e  # --debug shows the whole message as the cause
    except ImportError as e:
        raise CliError(
            f"reading {str(ckpt)!r} needs PyTorch ({e}); convert it elsewhere with `sam2-jax convert`"
        ) from None
    except Exception as e:  # a corrupt file: pickle / zip / orbax errors of many kinds
        raise CliError(f"cannot load checkpoint {str(ckpt)!r}: {type(e).__name__}: {e}") from None
    return model, {
        "model": config.name,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": source.sha256,
        "loaded_from": str(source.load_path),
        "random_weights": False,
    }


def _short(e: BaseException, ckpt: Path, source) -> str:
    """A load error about the file the user gave: the cache folder of its conversion is named as such, and a long
    list of parameter names is cut (``--debug`` shows the whole error)."""
    text = str(e)
    if source.load_path != ckpt:
        text = text.replace(repr(str(source.load_path)), "its cached conversion").replace(
            str(source.load_path), "its cached conversion"
        )
    limit = 300
    return text if len(text) <= limit else text[:limit].rstrip() + " ... (--debug shows the whole message)"


def _progress(iterable, quiet: bool, **kwargs):
    if quiet:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, **kwargs)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1))


# --- image ---------------------------------------------------------------------------------------------------


def segment_image(model, image: np.ndarray, points, box, multimask: bool, out: Path, meta: dict) -> dict:
    """Predict masks for clicks / a box and write ``mask_<rank>.png`` (best first), ``overlay.png`` and
    ``scores.json`` to ``out``. Returns what ``scores.json`` holds. Shared with ``python -m sam2_jax.demo``."""
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
    from sam2_jax.utils.visualize import mask_png, overlay

    if not points and box is None:
        raise CliError("give at least one --point x,y[,label] or a --box x0,y0,x1,y1")
    check_prompts_inside(points, box, image.shape[:2], "image")
    predictor = SAM2ImagePredictor(model)
    t0 = time.perf_counter()
    predictor.set_image(image)
    t1 = time.perf_counter()
    coords = np.array([p[:2] for p in points], np.float32) if points else None
    labels = np.array([p[2] for p in points], np.int32) if points else None
    box_arr = np.array(box, np.float32) if box is not None else None
    try:
        masks, scores, _ = predictor.predict(coords, labels, box=box_arr, multimask_output=multimask)
    except ValueError as e:
        raise CliError(str(e)) from None
    t2 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    order = np.argsort(-scores)
    for rank, i in enumerate(order):
        mask_png(masks[i]).save(out / f"mask_{rank}.png")
    overlay(image, [masks[order[0]]], coords, labels, box_arr).save(out / "overlay.png")
    result = dict(
        meta,
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        points=coords.tolist() if coords is not None else None,
        labels=labels.tolist() if labels is not None else None,
        box=box_arr.tolist() if box_arr is not None else None,
        iou_predictions=[float(scores[i]) for i in order],
        mask_area=[int(masks[i].sum()) for i in order],
        masks=[f"mask_{r}.png" for r in range(len(order))],
        seconds={"set_image": round(t1 - t0, 3), "predict": round(t2 - t1, 3)},
    )
    _write_json(out / "scores.json", result)
    return result


def cmd_image(args) -> int:
    image = read_image(args.photo)
    check_prompts_inside(args.point, args.box, image.shape[:2], f"image {args.photo!r}")
    if not args.point and args.box is None:
        raise CliError("give at least one --point x,y[,label] or a --box x0,y0,x1,y1")
    model, meta = load_model(args)
    out = Path(args.out)
    res = segment_image(model, image, args.point, args.box, args.multimask, out, dict(meta, image=args.photo))
    print(
        f"wrote {len(res['masks'])} mask(s), overlay.png, scores.json to {out} (IoU predictions "
        f"{', '.join(f'{s:.3f}' for s in res['iou_predictions'])})" + _rw(meta)
    )
    return 0


def _rw(meta) -> str:
    return " [RANDOM WEIGHTS: masks are meaningless]" if meta.get("random_weights") else ""


# --- auto ----------------------------------------------------------------------------------------------------

AMG_FLAGS = [
    # flag, type, default, help
    ("points_per_side", int, 32, "grid points along one side (points_per_side**2 prompts)"),
    ("points_per_batch", int, 64, "points decoded together in one jitted call"),
    ("pred_iou_thresh", float, 0.8, "keep masks with predicted IoU above this"),
    ("stability_score_thresh", float, 0.95, "keep masks with stability score at least this"),
    ("stability_score_offset", float, 1.0, "logit offset of the stability score"),
    ("mask_threshold", float, 0.0, "logit threshold of a binary mask"),
    ("box_nms_thresh", float, 0.7, "box IoU of duplicates within a crop"),
    ("crop_n_layers", int, 0, "also run on 4, 16, ... crops (layers of crops)"),
    ("crop_nms_thresh", float, 0.7, "box IoU of duplicates between crops"),
    ("crop_overlap_ratio", float, 512 / 1500, "overlap of first-layer crops (fraction of the short side)"),
    ("crop_n_points_downscale_factor", int, 1, "fewer points per side in deeper crop layers"),
    ("min_mask_region_area", int, 0, "fill holes / remove islands up to this area"),
]


def cmd_auto(args) -> int:
    from sam2_jax.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2_jax.utils.amg import rle_to_mask
    from sam2_jax.utils.visualize import overlay_auto

    image = read_image(args.photo)
    settings = {name: getattr(args, name) for name, *_ in AMG_FLAGS}
    settings.update(use_m2m=args.use_m2m, multimask_output=not args.single_mask)
    if settings["points_per_side"] < 1 or settings["points_per_batch"] < 1:
        raise CliError("--points-per-side and --points-per-batch must be >= 1")
    if settings["crop_n_layers"] < 0 or settings["crop_n_points_downscale_factor"] < 1:
        raise CliError(
            f"--crop-n-layers must be >= 0 and --crop-n-points-downscale-factor >= 1, got "
            f"{settings['crop_n_layers']} and {settings['crop_n_points_downscale_factor']}"
        )
    model, meta = load_model(args)
    try:
        gen = SAM2AutomaticMaskGenerator(model, output_mode="coco_rle", progress=not args.quiet, **settings)
    except ValueError as e:
        raise CliError(str(e)) from None
    t0 = time.perf_counter()
    records = gen.generate(image)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = dict(
        meta,
        image=args.photo,
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        settings=settings,
        seconds=round(seconds, 3),
        annotations=records,
    )
    _write_json(out / "masks.json", doc)
    overlay_auto(image, [rle_to_mask(r["segmentation"]) for r in records]).save(out / "overlay.png")
    print(f"{len(records)} masks in {seconds:.1f}s; wrote masks.json (COCO RLE) and overlay.png to {out}" + _rw(meta))
    return 0


# --- video ---------------------------------------------------------------------------------------------------


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
        from sam2_jax.utils.video_io import FRAME_EXTENSIONS

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
    from sam2_jax.utils.video_io import VideoSource

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
    from sam2_jax.utils.visualize import contact_sheet, overlay_objects, palette_png, write_video

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
    for t, obj_ids, logits in _progress(frames, args.quiet, total=total, desc="frames", unit="frame", smoothing=0):
        masks = {int(o): logits[k, 0] > 0 for k, o in enumerate(obj_ids)}
        label_map = np.zeros(hw, np.uint8)
        for o in sorted(masks, reverse=True):  # lower ids win where objects overlap (as the official VOS writer)
            label_map[masks[o]] = o
        palette_png(label_map).save(mask_dir / f"{names[t]}.png")
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
    _write_json(
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
        f"(palette PNGs), {overlay_path.name}, contact_sheet.png, video.json to {out}" + _rw(meta)
    )
    return 0


# --- download / convert --------------------------------------------------------------------------------------


def download_checkpoint(name: str, timeout: float, quiet: bool) -> Path:
    """``checkpoints.get_checkpoint`` with a progress bar and a line saying what happened."""
    from sam2_jax.checkpoints import CheckpointUnavailable, get_checkpoint, official_checkpoint_path

    path = official_checkpoint_path(name)
    if path.is_file():
        print(f"{name}: already in the cache: {path}")
        return path
    try:
        path = get_checkpoint(name, timeout=timeout, progress=not quiet)
    except CheckpointUnavailable as e:
        raise CliError(str(e)) from None
    print(f"{name}: downloaded {path}")
    return path


def convert_checkpoint(ckpt: Path, out: Path | None, config_name: str | None) -> Path:
    """``checkpoints.convert_checkpoint`` (default output: the cache, keyed by the file's content, which the model
    commands use) with one-line errors."""
    from sam2_jax.checkpoints import convert_checkpoint as convert

    if not ckpt.is_file():
        raise CliError(f"checkpoint {str(ckpt)!r} does not exist")
    try:
        c = convert(ckpt, out, config_name)
    except ImportError as e:
        raise CliError(f"reading {str(ckpt)!r} needs PyTorch: {e}") from None
    except ValueError as e:
        raise CliError(f"checkpoint {str(ckpt)!r} does not convert: {e}") from None
    except Exception as e:  # a file that is not a checkpoint
        raise CliError(f"cannot read checkpoint {str(ckpt)!r}: {type(e).__name__}: {e}") from None
    done = "already converted (same sha256)" if c.cached else f"converted ({c.config_name}, {c.num_tensors} tensors)"
    print(f"{ckpt}: {done} -> {c.path}")
    return c.path


def cmd_download(args) -> int:
    from sam2_jax.checkpoints import HF_MODEL_IDS
    from sam2_jax.configs import NAMES

    names = NAMES if args.all else (args.model or ["sam2.1_hiera_t"])
    for name in names:
        if name not in NAMES and name not in HF_MODEL_IDS:
            raise CliError(f"unknown model {name!r}; expected one of {NAMES} or {sorted(HF_MODEL_IDS)}")
    for name in names:
        if name in HF_MODEL_IDS:  # through huggingface_hub (its cache, HF_HUB_OFFLINE, HF_TOKEN)
            path = download_from_hub(name, args.revision)
            name = HF_MODEL_IDS[name]
        else:
            path = download_checkpoint(name, args.timeout, args.quiet)
        if args.convert:
            convert_checkpoint(path, None, name)
    return 0


def download_from_hub(model_id: str, revision: str | None) -> Path:
    """``checkpoints.hub_checkpoint`` with a line saying which file it got."""
    from sam2_jax.checkpoints import CheckpointUnavailable, hub_checkpoint

    try:
        path = hub_checkpoint(model_id, revision=revision)
    except CheckpointUnavailable as e:
        raise CliError(str(e)) from None
    print(f"{model_id}: {path}")
    return path


def cmd_convert(args) -> int:
    out = convert_checkpoint(Path(args.checkpoint), Path(args.out) if args.out else None, args.config)
    # Only a conversion in the cache is found from the .pt; one written elsewhere is passed by its own path.
    given = args.out or args.checkpoint
    print(f"`sam2-jax image/auto/video --checkpoint {given}` now loads {out}")
    return 0


def cmd_export(args) -> int:
    """``export``: the model as StableHLO + params + manifest (``sam2_jax.export.stablehlo``), or ``--check`` an
    export."""
    from sam2_jax.export.names import MANIFEST
    from sam2_jax.export.stablehlo import check_platforms, export_model

    try:
        platforms = check_platforms(p.strip() for p in args.platforms.split(",") if p.strip())
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.check:
        return check_export(args.check, args.model)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise CliError(f"--out {str(out)!r} is a non-empty folder that is not an export: choose an empty one")
    args.model = args.model or "sam2.1_hiera_t"
    model, meta = load_model(args)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    try:
        m = export_model(model, out, platforms, args.chunk_size, only=args.only, source=meta, log=log)
    except ValueError as e:
        raise CliError(str(e)) from None
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"{out}: {len(m['functions'])} functions for {','.join(platforms)}, {m['dtype']}, {size:.0f} MB")
    return 0


def check_export(folder: str, model: str | None) -> int:
    """Load an export with the runtime (no model code) and encode a blank image: prints what it holds."""
    from sam2_jax.export.runtime import ExportedModel

    try:
        exp = ExportedModel(folder, model=model)
    except ValueError as e:
        raise CliError(str(e)) from None
    m = exp.manifest
    if "frame_features" in m["functions"]:
        S = exp.image_size
        exp("frame_features", np.zeros((1, S, S, 3), np.float32))
    print(
        f"{folder}: {m['model']} at {m['image_size']} px, {m['dtype']}, platforms {m['platforms']}, "
        f"functions {sorted(m['functions'])}"
    )
    return 0


# --- parser --------------------------------------------------------------------------------------------------

EPILOGS = {
    "image": "example:\n  sam2-jax image truck.jpg --point 500,375 --point 1125,625,0 --out out/truck",
    "auto": "example:\n  sam2-jax auto groceries.jpg --points-per-side 32 --out out/groceries",
    "video": (
        "examples:\n"
        "  sam2-jax video bedroom/ --obj 1 --frame 0 --point 210,350 --point 250,220 --obj 2 --box 600,0,800,250\n"
        "  sam2-jax video clip.mp4 --obj 1 --mask first_frame_mask.png --max-frames 50 --overlay out/clip.gif\n"
        "writes OUT/masks/<frame>.png (palette PNGs, pixel = object id, DAVIS layout), OUT/overlay.mp4 (or\n"
        "--overlay PATH.gif), OUT/contact_sheet.png and OUT/video.json"
    ),
    "download": (
        "examples:\n  sam2-jax download --model sam2.1_hiera_t --model sam2.1_hiera_l --convert\n"
        "  sam2-jax download --model facebook/sam2.1-hiera-large   # via huggingface_hub (HF_HUB_OFFLINE, HF_TOKEN)"
    ),
    "convert": "example:\n  sam2-jax convert ~/.cache/sam2_jax/sam2.1_hiera_tiny.pt",
    "export": (
        "examples:\n  sam2-jax export --model sam2.1_hiera_t --out export/tiny            # cpu,cuda,tpu, float32\n"
        "  sam2-jax export --random-weights --image-size 256 --platforms cpu --dtype bfloat16 --out /tmp/e\n"
        "  sam2-jax export --check export/tiny --model sam2.1_hiera_t   # load it without the model code\n"
        "run it with sam2_jax.export.runtime (ExportedImagePredictor, ExportedVideoPredictor); see README, Deploy"
    ),
}


def _wrap(text: str) -> str:
    return textwrap.fill(text, 100)


def _add_output_args(sp: argparse.ArgumentParser, out: str) -> None:
    sp.add_argument("--out", default=out, help="output directory (default %(default)s)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _add_image_parsers(sub, fmt) -> None:
    """``image`` and ``auto``."""
    sp = sub.add_parser(
        "image",
        help="masks for clicks / a box on a photo",
        description=_wrap(
            "Segment a photo from clicks and/or a box (the official image predictor notebook): writes "
            "mask_<rank>.png (best first), overlay.png and scores.json to --out."
        ),
        epilog=EPILOGS["image"],
        formatter_class=fmt,
    )
    sp.add_argument("photo", help="image file (JPEG, PNG, ...)")
    sp.add_argument(
        "--point",
        type=parse_point,
        action="append",
        metavar="X,Y[,L]",
        help="click x,y in pixels; label L 1 (default) positive, 0 negative; repeatable",
    )
    sp.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="box in pixels")
    sp.add_argument("--multimask", action="store_true", help="write the three candidate masks (best first)")
    add_model_args(sp)
    _add_output_args(sp, "out/image")
    sp.set_defaults(func=cmd_image)

    sp = sub.add_parser(
        "auto",
        help="all masks of a photo (automatic mask generator)",
        description=_wrap(
            "All masks of a photo from a grid of clicks (the official automatic mask generator, same "
            "parameters): writes masks.json (records with COCO RLE segmentations) and overlay.png to --out."
        ),
        epilog=EPILOGS["auto"],
        formatter_class=fmt,
    )
    sp.add_argument("photo", help="image file")
    for name, typ, default, help_ in AMG_FLAGS:
        sp.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=typ, default=default, help=f"{help_} (default {default:.4g})"
        )
    sp.add_argument("--use-m2m", action="store_true", help="refine each mask once with its own logits")
    sp.add_argument("--single-mask", action="store_true", help="one mask per point instead of three")
    add_model_args(sp)
    _add_output_args(sp, "out/auto")
    sp.set_defaults(func=cmd_auto)


def _add_video_parser(sub, fmt) -> None:
    """``video``."""
    sp = sub.add_parser(
        "video",
        help="track objects through a video",
        description=_wrap(
            "Track objects through a video (the official video predictor notebook). Prompts are read in "
            "order: --point/--box/--mask belong to the object and frame named last before them (--obj 1 and --frame 0 "
            "until given). The whole video is tracked (a reverse pass covers the frames before the first prompt); "
            "--max-frames tracks forward from the first prompted frame only."
        ),
        epilog=EPILOGS["video"],
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
        choices=["sam2", "samurai", "sam3_selection", "sam2long"],
        help="tracking policy: which mask and which frames enter the memory (default %(default)s)",
    )
    sp.add_argument("--overlay", help="overlay video path, .mp4 or .gif (default OUT/overlay.mp4)")
    sp.add_argument("--fps", type=float, default=10.0, help="overlay frame rate (default %(default)s)")
    sp.add_argument("--sheet-frames", type=int, default=6, help="frames on the contact sheet (default %(default)s)")
    add_model_args(sp)
    _add_output_args(sp, "out/video")
    sp.set_defaults(func=cmd_video)


def _add_checkpoint_parsers(sub, fmt) -> None:
    """``download`` and ``convert``."""
    sp = sub.add_parser(
        "download", help="download official checkpoints into the cache", epilog=EPILOGS["download"], formatter_class=fmt
    )
    sp.add_argument(
        "--model",
        action="append",
        help="config name or hub id facebook/sam2.1-hiera-tiny (repeatable; default sam2.1_hiera_t)",
    )
    sp.add_argument("--all", action="store_true", help="all 8 official checkpoints")
    sp.add_argument("--revision", help="hub branch, tag or commit for Hugging Face ids (default main)")
    sp.add_argument("--timeout", type=float, default=15.0, help="network timeout in seconds (default %(default)s)")
    sp.add_argument("--convert", action="store_true", help="also convert each to orbax params in the cache")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sp.set_defaults(func=cmd_download)

    sp = sub.add_parser(
        "convert", help="convert an official .pt to orbax params", epilog=EPILOGS["convert"], formatter_class=fmt
    )
    sp.add_argument("checkpoint", help="official .pt")
    sp.add_argument(
        "--out",
        help="orbax directory (default: in the cache, keyed by the sha256 of the file; the other commands use it)",
    )
    sp.add_argument("--config", help="model config (default: inferred from the keys)")
    sp.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sp.set_defaults(func=cmd_convert)


def _add_export_parser(sub, fmt) -> None:
    """``export``."""
    sp = sub.add_parser(
        "export",
        help="export the model as portable StableHLO (jax.export) with its params",
        description=_wrap(
            "Write the image encoder, the prompt steps, a prompted frame's memory and the propagation step and "
            "chunk as serialized StableHLO (jax.export), the params (params.npz) and manifest.json to --out. "
            "sam2_jax.export.runtime runs them with jax and numpy only."
        ),
        epilog=EPILOGS["export"],
        formatter_class=fmt,
    )
    sp.add_argument("--platforms", default="cpu,cuda,tpu", help="comma-separated: cpu, cuda, tpu (default %(default)s)")
    sp.add_argument("--chunk-size", type=int, default=4, help="frames of the propagation chunk (default %(default)s)")
    sp.add_argument("--only", action="append", metavar="NAME", help="export only this function (repeatable)")
    sp.add_argument("--check", metavar="FOLDER", help="load an export with the runtime instead of writing one")
    add_model_args(sp)
    sp.set_defaults(model=None)  # --check compares with --model only when given
    _add_output_args(sp, "export")
    sp.set_defaults(func=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog="sam2-jax", description=__doc__, formatter_class=fmt)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_image_parsers(sub, fmt)
    _add_video_parser(sub, fmt)
    _add_checkpoint_parsers(sub, fmt)
    _add_export_parser(sub, fmt)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    prog = f"sam2-jax {command}" if command in EPILOGS else "sam2-jax"
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_ERROR
        return args.func(args)
    except CliError as e:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
    except Exception as e:  # never a traceback for the user; --debug shows it
        if debug:
            raise
        print(
            f"{prog}: error: {type(e).__name__}: {_one_line(e)} (rerun with --debug for the traceback)", file=sys.stderr
        )
    return EXIT_ERROR


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


if __name__ == "__main__":
    sys.exit(main())
