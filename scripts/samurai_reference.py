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
    # 4. the Kalman filter seeing motion: 41 synthetic frames of a moving disk (fork_reference.disk_frames, written
    #    by the project venv), the IoU head's bias of the third candidate raised by 1 (the disk-only candidate then
    #    wins, IoU 0.71 against 0.60), the stable phase from frame 6 (stable_frames_threshold 5):
    .venv/bin/python scripts/samurai_reference.py frames /tmp/disk --frames 41
    /work/venv-samurai/bin/python scripts/samurai_reference.py run /tmp/samurai_weights.npz \
        tests/golden/samurai_disk_sam2.1_hiera_t.npz --frames 41 --image-size 256 --video /tmp/disk \
        --box 32,100,88,156 --override ++model.stable_frames_threshold=5 \
        --weight sam_mask_decoder.iou_prediction_head.layers.2.bias:3:1.0
    #    (the same with --override ++model.samurai_mode=false records the golden of the Kalman-disabled code)
    # 5. SAMURAI's Kalman filter and candidate choice on synthetic candidates (its _forward_sam_heads with a stub
    #    mask decoder that returns recorded candidates; no weights needed):
    /work/venv-samurai/bin/python scripts/samurai_reference.py kalman tests/golden/samurai_kalman.npz

The run: ``configs/samurai/sam2.1_hiera_t.yaml`` at ``image_size``, ``fill_hole_area = 0`` (the CUDA hole filling
is skipped on CPU anyway), a box on frame 0 (as SAMURAI's demo prompts), forward propagation. Per tracked frame it
keeps the low-res mask logits, object score, predicted IoU of the kept mask, the Kalman IoU score, the Kalman box
after the frame (xyxy), ``stable_frames`` and the frame's memory admission (the reference's own test in
``_prepare_memory_conditioned_features``, evaluated on the stored output).
"""

import sys
from pathlib import Path

from fork_reference import disk_frames, dump_weights, parser  # noqa: E402  (scripts/ is on sys.path when run)


def run(weights: str, out: str, frames: int, image_size: int, video: str, extra: list[str], box, edits=()) -> None:
    import shutil
    import tempfile

    import numpy as np
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    overrides = [f"++model.image_size={image_size}", *extra]
    pred = build_sam2_video_predictor(
        "configs/samurai/sam2.1_hiera_t.yaml", None, device="cpu", hydra_overrides_extra=overrides
    )
    sd = dict(np.load(weights))
    for e in edits:  # KEY:INDEX:DELTA, the same edit the test makes to our params
        key, index, delta = e.split(":")
        sd[key] = sd[key].copy()
        sd[key][int(index)] += float(delta)
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
            kf_mean = pred.kf_mean if pred.samurai_mode else np.full(8, np.nan)  # no filter: NaN
            rec["kf_box"].append(np.asarray(pred.kf.xyah_to_xyxy(kf_mean[:4]), np.float64))
            rec["stable"].append(pred.stable_frames)
            rec["admit"].append(
                t >= 2
                and o["best_iou_score"].item() > pred.memory_bank_iou_threshold
                and o["object_score_logits"].item() > pred.memory_bank_obj_score_threshold
                and (kf is None or kf.item() > pred.memory_bank_kf_score_threshold)
            )
            if not pred.samurai_mode:  # SAM 2's own rule: every frame enters the memory
                rec["admit"][-1] = True
    arrays = {k: np.asarray(v) for k, v in rec.items()}
    arrays["pred_masks"] = arrays["pred_masks"].astype(np.float16)  # small golden file; logits within 1e-2
    np.savez_compressed(
        out,
        box=np.array(box),
        image_size=image_size,
        overrides=np.array(extra, dtype=str),
        obj_score_threshold=pred.memory_bank_obj_score_threshold,
        weight_edits=np.array(list(edits), dtype=str),
        stable_frames_threshold=pred.stable_frames_threshold,
        num_frames=frames,
        **arrays,
    )
    print("wrote", out, {k: v.shape for k, v in arrays.items()})


def kalman(out: str, objects: int = 8, frames: int = 40, size: int = 128, stable_frames: int = 4) -> None:
    """SAMURAI's own ``_forward_sam_heads`` (samurai branch) and ``KalmanFilter`` on synthetic candidates, one object
    at a time (its filter lives on the model): a stub mask decoder returns, per frame, three low-res candidate masks
    (rectangles, logits +-1), their predicted IoUs and the object score; per frame we keep the kept candidate, the
    filter's mean and covariance, ``stable_frames`` and the Kalman IoU score. Candidate 0 follows a box moving at
    constant velocity, candidate 1 a distractor elsewhere (its IoU sometimes the highest, so the stable phase's
    weighted choice departs from the best IoU), candidate 2 a larger box or nothing; every predicted IoU falls
    below ``stable_ious_threshold`` on some frames (a refused update in the warm-up, a reset in the stable phase) and
    some objects are lost for a few frames (object score -2 <= -1: every candidate empty)."""
    import numpy as np
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2(
        "configs/samurai/sam2.1_hiera_t.yaml",
        None,
        device="cpu",
        hydra_overrides_extra=[f"++model.image_size={size}", f"++model.stable_frames_threshold={stable_frames}"],
    )
    rng = np.random.default_rng(0)
    L = size // 4  # low-res mask side
    masks = np.full((objects, frames, 3, L, L), -1.0, np.float32)
    ious = rng.uniform(0.3, 0.9, (objects, frames, 3)).astype(np.float32)
    obj = rng.uniform(0.2, 2.0, (objects, frames)).astype(np.float32)
    for o in range(objects):
        x, y = rng.uniform(4, L - 16, 2)
        vx, vy = rng.uniform(-0.6, 0.6, 2)
        w, h = rng.uniform(5, 10, 2)
        for t in range(frames):
            cx, cy = np.clip(x + vx * t, 0, L - w - 1), np.clip(y + vy * t, 0, L - h - 1)
            masks[o, t, 0, int(cy) : int(cy + h), int(cx) : int(cx + w)] = 1.0
            dx, dy = rng.integers(0, L - 8, 2)
            masks[o, t, 1, dy : dy + rng.integers(3, 8), dx : dx + rng.integers(3, 8)] = 1.0
            if rng.random() < 0.8:
                masks[o, t, 2, max(int(cy) - 3, 0) : int(cy + h) + 3, max(int(cx) - 3, 0) : int(cx + w) + 3] = 1.0
        ious[o, :, 0] = rng.uniform(0.5, 0.8, frames)  # the tracked box: usually, not always, the best IoU
        low = rng.random(frames) < 0.12
        ious[o, low] = rng.uniform(0.05, 0.29, (low.sum(), 3))  # no candidate passes stable_ious_threshold
        if o % 2:
            lost = rng.integers(8, frames - 6)
            obj[o, lost : lost + 3] = -2.0

    class Decoder(torch.nn.Module):  # stands in for the SAM mask decoder: the frame's recorded candidates
        def forward(self, **kwargs):
            return (
                torch.from_numpy(self.masks)[None],
                torch.from_numpy(self.ious)[None],
                torch.zeros(1, 4, 256),
                torch.tensor([[self.obj]]),
            )

    model.sam_mask_decoder = Decoder()
    feats = torch.zeros(1, 256, size // 16, size // 16)
    rec = {
        k: np.zeros((objects, frames) + s)
        for k, s in (("best", ()), ("stable", ()), ("mean", (8,)), ("cov", (8, 8)), ("kf_score", ()))
    }
    with torch.inference_mode():
        for o in range(objects):
            model.kf_mean, model.kf_covariance, model.stable_frames = None, None, 0  # a new object
            for t in range(frames):
                model.sam_mask_decoder.masks, model.sam_mask_decoder.ious = masks[o, t], ious[o, t]
                model.sam_mask_decoder.obj = float(obj[o, t])
                res = model._forward_sam_heads(backbone_features=feats, multimask_output=True)
                best_iou, kf_score = float(res[7]), res[8]
                rec["best"][o, t] = np.flatnonzero(ious[o, t] == np.float32(best_iou))[0]  # the IoUs are distinct
                rec["stable"][o, t] = model.stable_frames
                rec["mean"][o, t], rec["cov"][o, t] = model.kf_mean, model.kf_covariance
                rec["kf_score"][o, t] = np.nan if kf_score is None else float(kf_score)
    scored = ~np.isnan(rec["kf_score"])
    departs = (rec["best"] != ious.argmax(-1))[scored].sum()
    resets = ((rec["stable"][:, 1:] == 0) & (rec["stable"][:, :-1] > 0)).sum()
    print("frames scored", scored.sum(), "choice != best IoU", departs, "resets", resets, "lost", (obj < -1).sum())
    np.savez_compressed(
        out,
        masks=(masks > 0),
        ious=ious,
        obj_score=obj,
        size=size,
        stable_frames_threshold=stable_frames,
        best=rec["best"].astype(np.int8),
        stable=rec["stable"].astype(np.int8),
        mean=rec["mean"],
        cov=rec["cov"],
        kf_score=rec["kf_score"],
    )
    print("wrote", out)


def main(argv: list[str]) -> None:
    p, r, sub = parser(__doc__, frames=24)
    r.add_argument("--override", action="append", default=[], help="hydra override, e.g. ++model.x=1")
    r.add_argument("--weight", action="append", default=[], help="KEY:INDEX:DELTA: add DELTA to KEY[INDEX]")
    sub.add_parser("kalman").add_argument("out")
    f = sub.add_parser("frames")
    f.add_argument("out")
    f.add_argument("--frames", type=int, default=41)
    a = p.parse_args(argv)
    if a.cmd == "weights":
        dump_weights(a.out)
    elif a.cmd == "kalman":
        kalman(a.out)
    elif a.cmd == "frames":
        disk_frames(a.out, a.frames)
    else:
        run(a.weights, a.out, a.frames, a.image_size, a.video, a.override, a.box, a.weight)


if __name__ == "__main__":
    main(sys.argv[1:])
