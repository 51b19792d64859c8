"""Record SAMURAI's reference outputs (github yangchris11/samurai, Apache-2.0) on random weights, for the parity test
of our ``samurai`` tracking policy (``tests/test_tracker_policies.py``).

SAMURAI is a fork of sam2 with the same package name, so it runs in its own virtual environment:

    python3 -m venv /work/venv-samurai && /work/venv-samurai/bin/pip install torch==2.13.0 hydra-core iopath \
        tqdm pillow numpy scipy
    # the fork's sam2/ folder (from a checkout of yangchris11/samurai), no CUDA extension:
    SAM2_BUILD_CUDA=0 /work/venv-samurai/bin/pip install --no-deps --no-build-isolation -e samurai/sam2
    # + the torchvision stand-in: a .pth file in its site-packages holding the path ../shared/reference/tvshim
    # 1. our deterministic random weights as an official state dict (project venv):
    .venv/bin/python scripts/samurai_reference.py weights /tmp/samurai_weights.npz
    # 2. SAMURAI on the bedroom frames (SAMURAI venv):
    /work/venv-samurai/bin/python scripts/samurai_reference.py run /tmp/samurai_weights.npz \
        tests/golden/samurai_bedroom.npz --frames 24 --image-size 256 \
        --override ++model.memory_bank_obj_score_threshold=0.121
    # 3. the MP4 clip: 30 frames of 01_dog.mp4 saved as JPEG (PyAV + PIL, quality 95) in FRAMES, the dog's box:
    /work/venv-samurai/bin/python scripts/samurai_reference.py run /tmp/samurai_weights.npz \
        tests/golden/samurai_dog_sam2.1_hiera_t.npz --frames 30 --image-size 256 --video FRAMES --box 480,380,700,540

The run: ``configs/samurai/sam2.1_hiera_t.yaml`` at ``image_size``, ``fill_hole_area = 0`` (the CUDA hole filling
is skipped on CPU anyway), a box on frame 0 (as SAMURAI's demo prompts), forward propagation. Per tracked frame it
keeps the low-res mask logits, object score, predicted IoU of the kept mask, the Kalman IoU score, the Kalman box
after the frame (xyxy), ``stable_frames`` and the frame's memory admission (the reference's own test in
``_prepare_memory_conditioned_features``, evaluated on the stored output).
"""

import sys
from pathlib import Path

from fork_reference import dump_weights, parser  # noqa: E402  (scripts/ is on sys.path when run)


def run(weights: str, out: str, frames: int, image_size: int, video: str, extra: list[str], box) -> None:
    import shutil
    import tempfile

    import numpy as np
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    overrides = [f"++model.image_size={image_size}", *extra]
    pred = build_sam2_video_predictor("configs/samurai/sam2.1_hiera_t.yaml", None, device="cpu",
                                      hydra_overrides_extra=overrides)  # fmt: skip
    sd = dict(np.load(weights))
    pred.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    pred.fill_hole_area = 0
    tmp = Path(tempfile.mkdtemp())
    for name in sorted(Path(video).glob("*.jpg"))[:frames]:
        shutil.copy(name, tmp / name.name)
    rec = {k: [] for k in ("frame", "pred_masks", "obj_score", "best_iou", "kf_score", "kf_box", "stable", "admit")}
    with torch.inference_mode():
        state = pred.init_state(str(tmp), offload_video_to_cpu=True)
        pred.add_new_points_or_box(state, box=np.array(box, np.float32), frame_idx=0, obj_id=0)
        for t, _, _ in pred.propagate_in_video(state):
            if t == 0:
                continue
            o = state["output_dict"]["non_cond_frame_outputs"][t]
            kf = o.get("kf_score")
            rec["frame"].append(t)
            rec["pred_masks"].append(o["pred_masks"][0, 0].float().numpy())
            rec["obj_score"].append(float(o["object_score_logits"].item()))
            rec["best_iou"].append(float(o["best_iou_score"].item()))
            rec["kf_score"].append(np.nan if kf is None else float(kf.item()))
            rec["kf_box"].append(np.asarray(pred.kf.xyah_to_xyxy(pred.kf_mean[:4]), np.float64))
            rec["stable"].append(pred.stable_frames)
            rec["admit"].append(
                t >= 2
                and o["best_iou_score"].item() > pred.memory_bank_iou_threshold
                and o["object_score_logits"].item() > pred.memory_bank_obj_score_threshold
                and (kf is None or kf.item() > pred.memory_bank_kf_score_threshold)
            )
    arrays = {k: np.asarray(v) for k, v in rec.items()}
    arrays["pred_masks"] = arrays["pred_masks"].astype(np.float16)  # small golden file; logits within 1e-2
    np.savez_compressed(
        out, box=np.array(box), image_size=image_size, overrides=np.array(extra, dtype=str),
        obj_score_threshold=pred.memory_bank_obj_score_threshold, **arrays,
    )  # fmt: skip
    print("wrote", out, {k: v.shape for k, v in arrays.items()})


def main(argv: list[str]) -> None:
    p, r = parser(__doc__, frames=24)
    r.add_argument("--override", action="append", default=[], help="hydra override, e.g. ++model.x=1")
    a = p.parse_args(argv)
    if a.cmd == "weights":
        dump_weights(a.out)
    else:
        run(a.weights, a.out, a.frames, a.image_size, a.video, a.override, a.box)


if __name__ == "__main__":
    main(sys.argv[1:])
