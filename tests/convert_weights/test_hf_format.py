"""transformers' SAM 2 format (``sam2_jax.convert_weights.hf_format`` / ``hf_mapping``): strict both ways, the identity
``official .pt -> ours -> HF -> ours``, and checked against ``transformers`` itself: its two models have exactly
our table's keys and shapes for all 8 configs (live, or from ``tests/golden/hf_keys.json`` without transformers),
it loads our export with nothing missing or unexpected, what it saves reads back through ours, and its forward
pass equals ours.

``transformers`` runs in a subprocess: the reference install puts a torchvision stand-in on ``sys.path`` that
``transformers`` would mistake for torchvision, so the child drops it first.
"""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sam2_jax import checkpoints
from sam2_jax.configs import NAMES, get_config
from sam2_jax.convert_weights.__main__ import main as convert_main
from sam2_jax.convert_weights.convert import flatten
from sam2_jax.convert_weights.hf_format import hf_shapes, hf_to_state_dict, infer_config_name_hf, key_digest, write_hf
from sam2_jax.convert_weights.hf_mapping import SHARED_IMAGE_EMBEDDING, is_image_key
from tests.reference import GOLDEN, REPO

NAME = "sam2.1_hiera_t"
TRANSFORMERS_VERSION = "5.24.0"  # the version these tests ran against (scripts/install_reference.sh pins it)
requires_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason=f"transformers=={TRANSFORMERS_VERSION} is not installed (scripts/install_reference.sh adds it)",
)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM2_JAX_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random official tiny .pt (our writer), its params, and their HF export (video and image)."""
    root = tmp_path_factory.mktemp("hf")
    pt = checkpoints.random_checkpoint(NAME, root / "tiny.pt", seed=5)
    sd = checkpoints.read_state_dict(pt)
    write_hf(sd, get_config(NAME), root / "video")
    write_hf(sd, get_config(NAME), root / "image", image_only=True)
    return root, pt, sd


def _assert_params_equal(a, b):
    fa, fb = flatten(a), flatten(b)
    assert set(fa) == set(fb)
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg="/".join(k))


@pytest.mark.parametrize(
    "name", [n if n in ("sam2.1_hiera_t", "sam2_hiera_b+") else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
)
def test_table_matches_transformers_golden(name):
    """Key names and shapes of ``Sam2VideoModel`` / ``Sam2Model`` per config, as transformers builds them."""
    golden = json.loads((GOLDEN / "hf_keys.json").read_text())
    config = get_config(name)
    shapes = checkpoints.official_shapes(config)
    for kind in ("video", "image"):
        assert key_digest(hf_shapes(config, shapes, kind == "image")) == golden["configs"][name][kind], (name, kind)


def test_official_to_hf_to_ours_is_the_identity(tiny):
    root, pt, sd = tiny
    from sam2_jax.build_sam import build_sam2

    ours_pt = checkpoints.random_params(NAME, seed=5)  # = converting the .pt (tests/test_checkpoints.py)
    _assert_params_equal(build_sam2(NAME, root / "video").params, ours_pt)  # an HF folder
    for source in (root / "video" / "model.safetensors", pt):
        assert all(np.array_equal(a, sd[k]) for k, a in checkpoints.read_state_dict(source).items())
    hf = load_file(root / "video" / "model.safetensors")
    assert len(hf) == 469 and infer_config_name_hf(hf) == NAME
    np.testing.assert_array_equal(
        hf["prompt_encoder.point_embed.weight"][2], sd["sam_prompt_encoder.point_embeddings.2.weight"][0]
    )
    # Converted into the cache by content like a .pt, and exported back from orbax: the same bytes.
    conv = checkpoints.convert_checkpoint(root / "video")
    assert conv.config_name == NAME and conv.num_tensors == 471
    again = checkpoints.export_hf_checkpoint(conv.path, NAME, root / "again")
    back = load_file(again / "model.safetensors")
    assert set(back) == set(hf) and all(back[k].tobytes() == hf[k].tobytes() for k in hf)
    assert json.loads((again / "config.json").read_text())["model_type"] == "sam2_video"
    # The same through the converter's command line, image model too.
    args = ["--export", str(conv.path), "--config", NAME, "--hf", "--image-only", "--out", str(root / "cli_image")]
    assert convert_main(args) == 0
    image = load_file(root / "cli_image" / "model.safetensors")
    assert set(image) == {k for k in hf if is_image_key(k)} and all(
        image[k].tobytes() == hf[k].tobytes() for k in image
    )
    assert json.loads((root / "cli_image" / "config.json").read_text())["architectures"] == ["Sam2Model"]


def test_hf_reader_is_strict(tiny, tmp_path):
    root, _, _ = tiny
    from sam2_jax.build_sam import build_sam2

    config = get_config(NAME)
    shapes = checkpoints.official_shapes(config)
    hf = load_file(root / "video" / "model.safetensors")
    cases = {
        "missing": ({k: v for k, v in hf.items() if k != "mask_decoder.iou_token.weight"}, r"missing .*iou_token"),
        "unused": (hf | {"memory_attention.layers.9.linear1.weight": np.zeros(2, np.float32)}, r"not used .*layers\.9"),
        "shape": (hf | {"memory_encoder.projection.bias": np.zeros(32, np.float32)}, r"projection\.bias: file shape"),
        "points": (hf | {"prompt_encoder.point_embed.weight": np.zeros((3, 256), np.float32)}, r"point_embed"),
        "copies": (hf | {SHARED_IMAGE_EMBEDDING: hf[SHARED_IMAGE_EMBEDDING] + 1}, r"differs from prompt_encoder"),
    }
    for tensors, pattern in cases.values():
        with pytest.raises(ValueError, match=pattern):
            hf_to_state_dict(tensors, config, shapes)
    (tmp_path / "missing").mkdir()  # through the real loading path too
    save_file(cases["missing"][0], tmp_path / "missing" / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing from the file: mask_decoder\.iou_token\.weight"):
        build_sam2(NAME, tmp_path / "missing")
    with pytest.raises(ValueError, match="image-only"):
        checkpoints.read_state_dict(root / "image")
    image = load_file(root / "image" / "model.safetensors")
    assert set(image) == {k for k in hf if is_image_key(k)} and len(image) == 309
    with pytest.raises(ValueError, match="is a sam2.1_hiera_t model, but config sam2.1_hiera_s"):
        build_sam2("sam2.1_hiera_s", root / "video")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="could not be read as safetensors"):
        checkpoints.read_state_dict(tmp_path / "garbage.safetensors")


# Run with transformers: load our exports strictly, forward the image model, save a random video model.
CHILD = r"""
import json, sys
sys.path[:] = [p for p in sys.path if "tvshim" not in p]
import numpy as np, torch, transformers
from transformers import Sam2Model, Sam2VideoModel
root = sys.argv[1]
out = {"version": transformers.__version__}
for cls, folder in ((Sam2VideoModel, "video"), (Sam2Model, "image")):
    model, info = cls.from_pretrained(f"{root}/{folder}", output_loading_info=True)
    out[folder] = {k: sorted(map(str, v)) for k, v in info.items()}
model = Sam2Model.from_pretrained(f"{root}/image").eval()
x = np.load(f"{root}/inputs.npz")
with torch.no_grad():
    o = model(pixel_values=torch.from_numpy(x["pixel_values"]), input_points=torch.from_numpy(x["points"]),
              input_labels=torch.from_numpy(x["labels"]), multimask_output=True)
np.savez(f"{root}/theirs.npz", image_embed=o.image_embeddings[-1].numpy(), high_res_0=o.image_embeddings[0].numpy(),
         masks=o.pred_masks.numpy(), iou=o.iou_scores.numpy(), obj=o.object_score_logits.numpy())
torch.manual_seed(0)
video = Sam2VideoModel(Sam2VideoModel.config_class.from_pretrained(f"{root}/video"))
with torch.no_grad():
    for p in video.parameters():
        p.add_(torch.randn_like(p) * 0.05)  # every tensor distinct (init leaves zeros, ones and copies)
    video.shared_image_embedding.positional_embedding.copy_(video.prompt_encoder.shared_embedding.positional_embedding)
video.save_pretrained(f"{root}/saved")

# A few video frames with transformers' inference session on our video export (the frames already normalised).
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession
import torch.nn.functional as F
model = Sam2VideoModel.from_pretrained(f"{root}/video").eval()
frames = torch.from_numpy(x["video"])  # (T, 3, S, S)
session = Sam2VideoInferenceSession(
    video=frames, video_height=frames.shape[2], video_width=frames.shape[3], dtype=torch.float32
)
click = {"point_coords": torch.from_numpy(x["points"][:, :, :1]),
         "point_labels": torch.from_numpy(x["labels"][:, :, :1].astype(np.int32))}
session.add_point_inputs(session.obj_id_to_idx(1), 0, click)
session.obj_with_new_inputs = [1]
masks = {}
with torch.no_grad():
    model(inference_session=session, frame_idx=0)
    for o in model.propagate_in_video_iterator(session):
        up = F.interpolate(o.pred_masks.float(), size=frames.shape[2:], mode="bilinear", align_corners=False)
        masks[f"frame_{o.frame_idx}"] = up.numpy()
np.savez(f"{root}/theirs_video.npz", **masks)
print(json.dumps(out))
"""


@requires_transformers
@pytest.mark.slow  # about 3.5 minutes on 2 cores: transformers' and our tiny model at 1024 px, image and video
def test_transformers_loads_our_export_and_agrees(tiny):
    import jax

    from sam2_jax.build_sam import build_sam2
    from sam2_jax.tracker import calls, compiled

    root, pt, _ = tiny
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 1024, 1024, 3)).astype(np.float32)
    points = np.array([[[[300.0, 420.0], [610.0, 200.0]]]], np.float32)  # (B, point batch, N, 2) in 1024 px
    labels = np.array([[[1, 0]]], np.int64)
    # Video: three rotations of the truck photo at the model's size (no resize on either side), normalised as ours.
    from PIL import Image

    photo = Image.open(REPO / "examples" / "truck.jpg").convert("RGB").resize((1024, 1024))
    frames = np.stack([np.array(photo.rotate(a)) for a in (0, 3, 6)])
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    video = ((frames.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    np.savez(root / "inputs.npz", pixel_values=image.transpose(0, 3, 1, 2), points=points, labels=labels, video=video)
    r = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    for kind in ("video", "image"):  # strict load: nothing missing, unexpected or mismatched
        assert all(not v for v in info[kind].values()), (kind, info[kind])

    model = build_sam2(NAME, pt)
    emb = compiled.jit_image_embeddings(model.module, model.params, image)
    decode = jax.jit(lambda e, h, c, l: calls.decode_prompts(model.module, model.params, e, h, c, l, None, True))
    out = decode(emb.image_embed, emb.high_res_feats, points[:, 0], labels[:, 0].astype(np.int32))
    theirs = np.load(root / "theirs.npz")
    pairs = {
        "image_embed": (np.asarray(emb.image_embed), theirs["image_embed"].transpose(0, 2, 3, 1)),
        "high_res_0": (np.asarray(emb.high_res_feats[0]), theirs["high_res_0"].transpose(0, 2, 3, 1)),
        "masks": (np.asarray(out.low_res_masks), theirs["masks"][:, 0]),
        "iou": (np.asarray(out.iou_predictions), theirs["iou"][:, 0]),
        "obj": (np.asarray(out.object_score_logits), theirs["obj"][:, 0]),
    }
    for what, (a, b) in pairs.items():
        assert a.shape == b.shape, what
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, atol=1e-4 * scale, rtol=0, err_msg=what)

    # The video frames: our predictor (hole filling off: transformers has none) against its inference session.
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    theirs_video = np.load(root / "theirs_video.npz")
    predictor = SAM2VideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=points[0, 0, :1], labels=[1])
    seen = []
    for f, _, logits in predictor.propagate_in_video(state):
        b = theirs_video[f"frame_{f}"]
        np.testing.assert_allclose(np.asarray(logits), b, atol=1e-4 * max(1.0, float(np.abs(b).max())), rtol=0)
        seen.append(f)
    assert seen == [0, 1, 2]

    # What transformers saves (its own random video model) reads through ours and writes back byte for byte.
    saved = load_file(root / "saved" / "model.safetensors")
    name = infer_config_name_hf(saved)
    assert name == NAME
    sd = checkpoints.read_state_dict(root / "saved")
    write_hf(sd, get_config(NAME), root / "resaved")
    again = load_file(root / "resaved" / "model.safetensors")
    assert set(again) == set(saved) and all(again[k].tobytes() == saved[k].tobytes() for k in saved)
