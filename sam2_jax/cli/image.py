"""``sam2-jax image`` (the image predictor notebook) and ``sam2-jax auto`` (the automatic mask generator)."""

import time
from pathlib import Path

import numpy as np

from sam2_jax.cli.common import (
    CliError,
    add_model_args,
    add_output_args,
    check_prompts_inside,
    load_model,
    random_weights_note,
    read_image,
    wrap,
    write_json,
)
from sam2_jax.utils.prompts import parse_box, parse_point

EPILOGS_IMAGE = "example:\n  sam2-jax image truck.jpg --point 500,375 --point 1125,625,0 --out out/truck"
EPILOGS_AUTO = "example:\n  sam2-jax auto groceries.jpg --points-per-side 32 --out out/groceries"


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
    write_json(out / "scores.json", result)
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
        f"{', '.join(f'{s:.3f}' for s in res['iou_predictions'])})" + random_weights_note(meta)
    )
    return 0


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
    write_json(out / "masks.json", doc)
    overlay_auto(image, [rle_to_mask(r["segmentation"]) for r in records]).save(out / "overlay.png")
    print(
        f"{len(records)} masks in {seconds:.1f}s; wrote masks.json (COCO RLE) and overlay.png to {out}"
        + random_weights_note(meta)
    )
    return 0


def add_parsers(sub, fmt) -> None:
    """``image`` and ``auto``."""
    sp = sub.add_parser(
        "image",
        help="masks for clicks / a box on a photo",
        description=wrap(
            "Segment a photo from clicks and/or a box (the official image predictor notebook): writes "
            "mask_<rank>.png (best first), overlay.png and scores.json to --out."
        ),
        epilog=EPILOGS_IMAGE,
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
    add_output_args(sp, "out/image")
    sp.set_defaults(func=cmd_image)

    sp = sub.add_parser(
        "auto",
        help="all masks of a photo (automatic mask generator)",
        description=wrap(
            "All masks of a photo from a grid of clicks (the official automatic mask generator, same "
            "parameters): writes masks.json (records with COCO RLE segmentations) and overlay.png to --out."
        ),
        epilog=EPILOGS_AUTO,
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
    add_output_args(sp, "out/auto")
    sp.set_defaults(func=cmd_auto)
