"""Inputs of the golden-output checks, shared by scripts/make_golden.py (which runs the official code and writes
``tests/golden/*.npz``) and tests/test_golden.py (which runs ours on them without torch)."""

import numpy as np

from sam2_jax.reference import REPO

MODEL = "sam2.1_hiera_t"

IMAGE_CASES = {
    "point": dict(point_coords=np.array([[450, 330]]), point_labels=np.array([1])),
    "box": dict(box=np.array([210, 300, 350, 440]), multimask_output=False),
    "points_and_box": dict(
        box=np.array([210, 300, 350, 440]),
        point_coords=np.array([[280, 370], [600, 200]]),
        point_labels=np.array([1, 0]),
        multimask_output=False,
    ),
}


def shipped_photo() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(REPO / "examples" / "truck.jpg").convert("RGB"))


def memory_encoder_inputs():
    rng = np.random.default_rng(11)
    pix = rng.standard_normal((2, 16, 16, 256)).astype(np.float32)  # (B, h, w, C)
    masks = (rng.standard_normal((2, 256, 256, 1)) * 4).astype(np.float32)  # (B, 16h, 16w, 1) logits
    return pix, masks


def memory_attention_inputs():
    rng = np.random.default_rng(12)
    side, frames, num_ptr = 8, 3, 8
    hw, nm = side * side, frames * side * side + num_ptr
    curr = rng.standard_normal((2, hw, 256)).astype(np.float32)
    curr_pos = rng.uniform(-1, 1, (2, hw, 256)).astype(np.float32)
    memory = rng.standard_normal((2, nm, 64)).astype(np.float32)
    memory_pos = rng.uniform(-1, 1, (2, nm, 64)).astype(np.float32)
    return curr, memory, curr_pos, memory_pos, num_ptr
