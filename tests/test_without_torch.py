"""Nothing a user runs needs PyTorch: in a subprocess where ``import torch`` (and ``sam2``, ``torchvision``) is made
impossible by a ``sys.meta_path`` blocker, an official-format ``.pt`` is written, converted, loaded, and a photo is
segmented through the image predictor, a few frames through the video predictor and the ``sam2-jax image`` command.
The image result is compared with the same computation in this process from params made without any file."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.reference import REPO

NAME = "sam2.1_hiera_t"
SIZE = 256  # model input for speed (the weights do not depend on it)

CHILD = r"""
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "sam2"):
            raise ImportError(f"{name} is blocked: this process must not need it")
        return None

sys.meta_path.insert(0, NoTorch())
try:
    import torch  # noqa: F401
    raise SystemExit("the blocker failed: torch imported")
except ImportError:
    pass

from pathlib import Path
import numpy as np
from PIL import Image
from sam2_jax.configs import get_config
from sam2_jax import checkpoints, cli
from sam2_jax.build_sam import build_sam2
from sam2_jax.sam2_image_predictor import SAM2ImagePredictor
from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

out = Path(sys.argv[1])
pt = checkpoints.random_checkpoint("sam2.1_hiera_t", out / "w.pt", seed=3)  # official format, written without torch
conv = checkpoints.convert_checkpoint(pt)
config = get_config("sam2.1_hiera_t")
config.model.image_size = int(sys.argv[2])
model = build_sam2(config, pt)
photo = np.array(Image.open(sys.argv[3]).convert("RGB"))
predictor = SAM2ImagePredictor(model)
predictor.set_image(photo)
masks, scores, logits = predictor.predict(point_coords=np.array([[450, 330]]), point_labels=np.array([1]))
np.savez(out / "image.npz", scores=scores, logits=logits)

frames = np.stack([np.array(Image.fromarray(photo).rotate(a)) for a in (0, 2, 4)])
video = SAM2VideoPredictor(build_sam2(config, conv.path))
state = video.init_state(frames)
video.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=[[450, 330]], labels=[1])
tracked = [(int(f), np.asarray(m).shape) for f, _, m in video.propagate_in_video(state)]

# The CLI reads the .pt at the checkpoint's 1024 px (the slow variant) or runs random weights at the small size.
weights = ["--checkpoint", str(pt)] if sys.argv[4] == "1024" else ["--random-weights", "--image-size", sys.argv[2]]
code = cli.main(["image", sys.argv[3], *weights, "--point", "450,330", "--out", str(out / "cli")])
print(json.dumps({
    "torch_loaded": any(m.split(".")[0] in ("torch", "torchvision", "sam2") for m in sys.modules),
    "tracked": tracked, "cli": code, "cli_files": sorted(p.name for p in (out / "cli").iterdir()),
}))
"""


CHECKPOINT_CHILD = (
    CHILD[: CHILD.index("config = get_config")]
    + r"""
sd = checkpoints.read_state_dict(pt)
back = checkpoints.export_checkpoint(conv.path, "sam2.1_hiera_t", out / "back.pt")
again = checkpoints.read_state_dict(back)
same = set(again) == set(sd) and all(np.array_equal(a, again[k]) for k, a in sd.items())
print(json.dumps({"torch_loaded": any(m.split(".")[0] in ("torch", "sam2") for m in sys.modules),
                  "tensors": conv.num_tensors, "round_trip": same}))
"""
)


def test_checkpoints_without_torch(tmp_path):
    """The cheap half, in the default run: write, read, convert and export a .pt with torch blocked."""
    env = dict(os.environ, SAM2_JAX_CACHE=str(tmp_path / "cache"))
    r = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"torch_loaded": False, "tensors": 471, "round_trip": True}


@pytest.mark.parametrize("cli_size", [SIZE, pytest.param(1024, marks=pytest.mark.slow)])
def test_image_video_and_cli_run_without_torch(cli_size, tmp_path):
    import jax
    import jax.numpy as jnp

    from sam2_jax import checkpoints
    from sam2_jax.build_sam import SAM2Model
    from sam2_jax.modeling.sam2_model import make_module
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

    photo = REPO / "examples" / "truck.jpg"
    env = dict(os.environ, SAM2_JAX_CACHE=str(tmp_path / "cache"))
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(SIZE), str(photo), str(cli_size)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert not got["torch_loaded"]
    assert [f for f, _ in got["tracked"]] == [0, 1, 2] and all(s[0] == 1 for _, s in got["tracked"])
    assert got["cli"] == 0 and {"overlay.png", "scores.json"} <= set(got["cli_files"])

    # The same photo and click here, from params made without any file: the same numbers.
    from PIL import Image

    from sam2_jax.configs import get_config

    config = get_config(NAME)
    config.model.image_size = SIZE

    module = make_module(config.model)
    params = jax.tree.map(jnp.asarray, checkpoints.random_params(config, module, seed=3))
    model = SAM2Model(module=module, params=params, config=config)
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(np.array(Image.open(photo).convert("RGB")))
    _, scores, logits = predictor.predict(point_coords=np.array([[450, 330]]), point_labels=np.array([1]))
    child = np.load(tmp_path / "image.npz")
    np.testing.assert_array_equal(child["scores"], scores)
    np.testing.assert_array_equal(child["logits"], logits)
