"""Record SAM2Long's reference outputs (github Mark12Ding/SAM2Long, its code CC-BY-NC: run here as a reference only,
nothing of it is copied into sam2_jax) on random weights, for the parity test of our ``sam2long`` tracking policy
(``tests/test_tracker_policies.py``).

SAM2Long is a fork of sam2 with the same package name, so it runs in its own virtual environment:

    python3 -m venv /work/venv-sam2long && /work/venv-sam2long/bin/pip install torch==2.13.0  # the CPU build on disk
    /work/venv-sam2long/bin/pip install hydra-core iopath tqdm pillow numpy
    # the fork's tree at 7193b77 (git archive of the mirror; its LFS example video is not needed):
    git -C SAM2Long archive HEAD sam2 setup.py pyproject.toml README.md LICENSE.txt | tar -x -C /work/sam2long-src
    # one harness change: its _forward_ca hard-codes 4096 tokens per memory frame (64 x 64, image size 1024); the
    # constant becomes a module variable that this script sets to (image_size / 16) ** 2:
    sed -i 's/int(num_frame\\*4096)/int(num_frame*MEM_TOKENS_PER_FRAME)/;
        s/num_frame, 4096, -1/num_frame, MEM_TOKENS_PER_FRAME, -1/' /work/sam2long-src/sam2/modeling/memory_attention.py
    # ... and a line ``MEM_TOKENS_PER_FRAME = 4096`` after its imports
    cd /work/sam2long-src && SAM2_BUILD_CUDA=0 /work/venv-sam2long/bin/pip install --no-deps --no-build-isolation -e .
    # + the torchvision stand-in: a .pth file in its site-packages holding the path ../shared/reference/tvshim
    # 1. our deterministic random weights as an official state dict (project venv):
    .venv/bin/python scripts/sam2long_reference.py weights /tmp/s2l_weights.npz
    # 2. SAM2Long on the bedroom frames (SAM2Long venv):
    /work/venv-sam2long/bin/python scripts/sam2long_reference.py run /tmp/s2l_weights.npz \\
        tests/golden/sam2long_bedroom_sam2.1_hiera_t.npz --frames 13 --image-size 256
    # 3. 25 tracked frames with IoU threshold 0.5: the best pathway's candidates (IoU 0.502-0.511) are admitted, the
    #    others (<= 0.496) refused, so the pathways' rings differ; the best pathway's masks only (a small file):
    /work/venv-sam2long/bin/python scripts/sam2long_reference.py run /tmp/s2l_weights.npz \\
        tests/golden/sam2long_iou05_bedroom_sam2.1_hiera_t.npz --frames 26 --image-size 256 --iou-thre 0.5 \\
        --masks best
    # 4. the MP4 clip: 30 frames of 01_dog.mp4 saved as JPEG (PyAV + PIL, quality 95, as
    #    test_sam2long_matches_reference_on_mp4 writes them) in FRAMES, the dog's box, the README's thresholds, the
    #    best pathway's masks only (224 kB):
    .venv/bin/python -c "import av, sys; c = av.open('../shared/data/videos/01_dog.mp4'); [f.to_image().save(
        f'{sys.argv[1]}/{i:05d}.jpg', quality=95) for i, f in zip(range(30), c.decode(video=0))]" FRAMES
    /work/venv-sam2long/bin/python scripts/sam2long_reference.py run /tmp/s2l_weights.npz \\
        tests/golden/sam2long_dog_sam2.1_hiera_t.npz --frames 30 --image-size 256 --video FRAMES \\
        --box 480,380,700,540 --masks best

The run: ``configs/sam2.1/sam2.1_hiera_t.yaml`` at ``image_size``, ``fill_hole_area = 0``, the README's defaults
``num_pathway = 3``, ``iou_thre = 0.1``, ``uncertainty = 2`` (``tools/vos_inference.py``), a box on frame 0,
``propagate_in_video`` forward (it returns the masks along the final best pathway's lineage). Per tracked frame it
keeps every pathway's low-res logits, cumulative score (``acc_score``), predicted IoU and object score as stored in
``output_dict``, each pathway's parent (from the ``mem_pick_indexs`` lineages ``_run_single_frame_inference``
returns), and the final lineage's pathway per frame.
"""

import sys
from pathlib import Path

from fork_reference import dump_weights, parser  # noqa: E402  (scripts/ is on sys.path when run)


def run(
    weights, out, frames, image_size, video, box, num_pathway, iou_thre, uncertainty, mask_dtype="float16", masks="all"
):
    import shutil
    import tempfile

    import numpy as np
    import torch
    from sam2.build_sam import build_sam2_video_predictor
    from sam2.modeling import memory_attention

    memory_attention.MEM_TOKENS_PER_FRAME = (image_size // 16) ** 2
    torch.manual_seed(0)
    pred = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        None,
        device="cpu",
        hydra_overrides_extra=[f"++model.image_size={image_size}"],
    )
    sd = dict(np.load(weights))
    pred.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    pred.fill_hole_area = 0
    lineages = []  # the mem_pick_indexs after each tracked frame
    inner = pred._run_single_frame_inference

    def spy(*args, **kwargs):
        res = inner(*args, **kwargs)
        if "mem_pick_indexs" in kwargs:  # a propagated frame (not a prompt)
            lineages.append((kwargs["frame_idx"], [dict(d) for d in res[2]]))
        return res

    pred._run_single_frame_inference = spy
    tmp = Path(tempfile.mkdtemp())
    for name in sorted(Path(video).glob("*.jpg"))[:frames]:
        shutil.copy(name, tmp / name.name)
    P = num_pathway
    with torch.inference_mode():
        state = pred.init_state(str(tmp), offload_video_to_cpu=True)
        state["num_pathway"], state["iou_thre"], state["uncertainty"] = num_pathway, iou_thre, uncertainty
        pred.add_new_points_or_box(state, box=np.array(box, np.float32), frame_idx=0, obj_id=0)
        _, video_masks = pred.propagate_in_video(state)
        rec = {k: [] for k in ("frame", "path_masks", "path_score", "path_iou", "path_obj", "parent")}
        for t, lin in lineages:
            o = state["output_dict"]["non_cond_frame_outputs"][t]
            m = o["pred_masks"].float()  # (1, 1, h, w, P) (P = 1 on the first frame)
            k = m.shape[-1]
            rep = lambda x, k=k: np.repeat(np.asarray(x, np.float64).reshape(-1)[:k], P // k)  # noqa: E731
            rec["frame"].append(t)
            rec["path_masks"].append(np.repeat(m[0, 0].permute(2, 0, 1).numpy(), P // k, axis=0))
            rec["path_score"].append(rep(o.get("acc_score", [0.0] * P) if k > 1 else [0.0]))
            rec["path_iou"].append(rep(o["ious"].float().numpy()))
            rec["path_obj"].append(rep(o["object_score_logits"].float().numpy()))
            rec["parent"].append([d.get(t - 1, 0) for d in lin])
        final = lineages[-1][1][0]
        rec["lineage"] = [final[t] for t, _ in lineages]
        # the reference's own returned masks (video resolution) against the lineage's stored low-res masks
        rec["returned_mean"] = [float(video_masks[i + 1].float().mean()) for i in range(len(lineages))]
    arrays = {k: np.asarray(v) for k, v in rec.items()}
    arrays["path_masks"] = arrays["path_masks"].astype(mask_dtype)  # float16: a small golden file (logits to 4e-3)
    if masks == "best":  # only the best pathway's masks (pathway 0), for a longer run in a small file
        arrays["path_masks"] = arrays["path_masks"][:, :1]
    np.savez_compressed(
        out,
        box=np.array(box),
        image_size=image_size,
        num_pathway=num_pathway,
        iou_thre=iou_thre,
        uncertainty=uncertainty,
        **arrays,
    )
    print("wrote", out, {k: v.shape for k, v in arrays.items()})


def main(argv: list[str]) -> None:
    p, r, _ = parser(__doc__, frames=13)
    r.add_argument("--num-pathway", type=int, default=3)
    r.add_argument("--iou-thre", type=float, default=0.1)
    r.add_argument("--uncertainty", type=float, default=2.0)
    r.add_argument("--mask-dtype", default="float16", help="float32 to measure logit differences finer than float16")
    r.add_argument("--masks", choices=("all", "best"), default="all", help="keep every pathway's masks or pathway 0's")
    a = p.parse_args(argv)
    if a.cmd == "weights":
        dump_weights(a.out)
    else:
        rule = (a.num_pathway, a.iou_thre, a.uncertainty)
        run(a.weights, a.out, a.frames, a.image_size, a.video, a.box, *rule, a.mask_dtype, a.masks)


if __name__ == "__main__":
    main(sys.argv[1:])
