"""Writes tests/golden/*.npz: outputs of the official PyTorch SAM 2 on fixed inputs, so that tests can check our
numbers on machines without torch. Needs the reference (scripts/install_reference.sh).

  .venv/bin/python scripts/make_golden.py

Files (all float32, a few hundred KB in all):
- shapes_<model>.npz: the official state-dict key -> shape (our random weights are rebuilt from it with numpy);
- image_predictor_<model>.npz: SAM2ImagePredictor on examples/truck.jpg (shipped with the repo) for a click, a box
  and clicks + box: IoU predictions and the low-res logits subsampled every 4th pixel;
- memory_<model>.npz: the memory encoder and memory attention on small seeded random inputs.
"""

import numpy as np

from sam2_jax.reference import GOLDEN, REPO
from sam2_jax.reference.golden import IMAGE_CASES, MODEL, memory_attention_inputs, memory_encoder_inputs, shipped_photo
from sam2_jax.reference.image import official_model, official_shapes


def main() -> None:
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    torch.set_num_threads(2)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    shapes = official_shapes(MODEL)
    np.savez_compressed(GOLDEN / f"shapes_{MODEL}.npz", **{k: np.array(v, np.int64) for k, v in shapes.items()})

    model = official_model(MODEL)
    pred = SAM2ImagePredictor(model)
    pred.set_image(shipped_photo())
    out = {}
    for name, kw in IMAGE_CASES.items():
        _, iou, low = pred.predict(**kw, return_logits=True)
        out[f"{name}/iou"] = iou.astype(np.float32)
        out[f"{name}/low_res"] = low[..., ::4, ::4].astype(np.float32)
    np.savez_compressed(GOLDEN / f"image_predictor_{MODEL}.npz", **out)

    with torch.no_grad():
        pix, masks = memory_encoder_inputs()
        enc = model.memory_encoder(
            torch.from_numpy(pix.transpose(0, 3, 1, 2)), torch.from_numpy(masks.transpose(0, 3, 1, 2))
        )
        curr, memory, curr_pos, memory_pos, num_ptr = memory_attention_inputs()
        seq = [torch.from_numpy(a.transpose(1, 0, 2)) for a in (curr, memory, curr_pos, memory_pos)]
        att = model.memory_attention(
            curr=seq[0], memory=seq[1], curr_pos=seq[2], memory_pos=seq[3], num_obj_ptr_tokens=num_ptr
        )
    np.savez_compressed(
        GOLDEN / f"memory_{MODEL}.npz",
        encoder_features=enc["vision_features"].numpy().transpose(0, 2, 3, 1),
        attention=att.numpy().transpose(1, 0, 2),
    )
    for f in sorted(GOLDEN.glob("*.npz")):
        print(f"{f.relative_to(REPO)}: {f.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
