"""Hugging Face ``transformers``' SAM 2 format (``model.safetensors`` + ``config.json`` of ``Sam2VideoModel`` or
``Sam2Model``) read and written with ``safetensors.numpy``: no torch, no transformers.

Strict both ways, like the official converter: reading names every missing, unused and wrongly shaped key (and a
Gaussian matrix whose two stored copies differ); writing refuses params that do not match the config. The table is
``sam2_jax.convert_weights.hf_mapping.hf_table``; the tensors pass through the official state dict, so
``official .pt -> ours -> HF -> ours`` reuses the one tested official<->ours table.

A file of the image-only ``Sam2Model`` lacks the memory components our model needs: reading one is an error naming
them (nothing is filled in); write one with ``image_only=True`` for ``transformers``' image model.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from sam2_jax.convert_weights.hf_mapping import PROMPT_SHARED_EMBEDDING, SHARED_IMAGE_EMBEDDING, hf_table, is_image_key

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# Hiera trunk (embed dim, blocks) -> size letter, as convert.infer_config_name.
SIZES = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}


def names(keys, n: int = 12) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" … and {len(keys) - n} more" if len(keys) > n else "")


def hf_config(config, image_only: bool = False) -> dict:
    """``config.json`` of ``transformers``' ``Sam2VideoConfig`` (or ``Sam2Config``) for one of our model configs.

    Args:
      config: a model config (``configs.get_config``).
      image_only: the image model's config (``Sam2Model``) instead of the video model's.
    Returns:
      A JSON-able dict; unspecified fields take transformers' defaults, which are the official values.
    """
    m = config.model
    trunk = m.image_encoder.trunk
    backbone = dict(
        model_type="sam2_hiera_det_model",
        hidden_size=trunk.embed_dim,
        embed_dim_per_stage=[int(trunk.embed_dim * trunk.dim_mul**i) for i in range(len(trunk.stages))],
        num_attention_heads_per_stage=[int(trunk.num_heads * trunk.head_mul**i) for i in range(len(trunk.stages))],
        blocks_per_stage=list(trunk.stages),
        global_attention_blocks=list(trunk.global_att_blocks),
        window_positional_embedding_background_size=list(trunk.window_pos_embed_bkg_spatial_size),
        window_size_per_stage=list(trunk.window_spec),
    )
    vision = dict(
        model_type="sam2_vision_model",
        backbone_config=backbone,
        backbone_channel_list=list(m.image_encoder.neck.backbone_channel_list),
    )
    if image_only:
        return dict(model_type="sam2", architectures=["Sam2Model"], vision_config=vision)
    return dict(
        model_type="sam2_video",
        architectures=["Sam2VideoModel"],
        vision_config=vision,
        enable_temporal_pos_encoding_for_object_pointers=bool(m.proj_tpos_enc_in_obj_ptrs),
        enable_occlusion_spatial_embedding=bool(m.no_obj_embed_spatial),
    )


def hf_to_state_dict(hf: Mapping[str, np.ndarray], config, shapes: Mapping[str, tuple] | None = None) -> dict:
    """transformers' state dict -> the official one (numpy), strictly.

    Args:
      hf: HF key -> array (a ``Sam2VideoModel`` file).
      config: the model config the file must match.
      shapes: official key -> expected shape (torch layout); checked when given.
    Returns:
      Official key -> array.
    Raises:
      ValueError: naming missing HF keys (an image-only file is named as such), unused keys, wrong shapes, or
        two stored copies of the Gaussian matrix that differ.
    """
    table = hf_table(config)
    wanted = {k for k, _ in table}
    missing, unused = wanted - set(hf), set(hf) - wanted
    problems = []
    if missing and all(not is_image_key(k) for k in missing) and len(hf) > 0 and not unused:
        problems.append(
            f"this is an image-only (transformers Sam2Model) file: the {len(missing)} memory tensors our model "
            f"needs are missing ({names(missing, 6)}); use the video model's file (Sam2VideoModel), which has both"
        )
    elif missing:
        problems.append(f"{len(missing)} key(s) the model needs are missing from the file: {names(missing)}")
    if unused:
        problems.append(f"{len(unused)} key(s) in the file are not used by this model config: {names(unused)}")
    out: dict[str, np.ndarray] = {}
    bad = []
    for hf_key, keys in table:
        if hf_key not in hf:
            continue
        value = np.asarray(hf[hf_key])
        if shapes is not None:  # several official keys: their (1, C) rows concatenated on axis 0
            first = tuple(shapes[keys[0]])
            want = first if len(keys) == 1 else (sum(shapes[k][0] for k in keys), *first[1:])
            if value.shape != want:
                bad.append(f"{hf_key}: file shape {value.shape}, model expects {want}")
                continue
        if len(keys) > 1 and (value.ndim == 0 or value.shape[0] % len(keys)):
            bad.append(f"{hf_key}: file shape {value.shape} does not split into {len(keys)} tensors")
            continue
        for key, part in zip(keys, np.split(value, len(keys)) if len(keys) > 1 else [value], strict=True):
            if key in out and not np.array_equal(out[key], part):
                bad.append(f"{SHARED_IMAGE_EMBEDDING} differs from {PROMPT_SHARED_EMBEDDING} (they are one tensor)")
            out[key] = part
    if bad:
        problems.append(f"{len(bad)} shape mismatch(es): " + "; ".join(bad[:12]))
    if problems:
        raise ValueError("Hugging Face checkpoint does not match the model config: " + " | ".join(problems))
    return out


def state_dict_to_hf(state_dict: Mapping[str, np.ndarray], config, image_only: bool = False) -> dict:
    """The official state dict -> transformers' (``Sam2VideoModel``, or ``Sam2Model`` with ``image_only``).

    Raises:
      ValueError: the state dict lacks or has extra official keys for this config.
    """
    table = hf_table(config)
    wanted = {k for _, keys in table for k in keys}
    missing, extra = wanted - set(state_dict), set(state_dict) - wanted
    if missing or extra:
        raise ValueError(f"state dict does not match the config: missing {names(missing)}; unexpected {names(extra)}")
    out = {}
    for hf_key, keys in table:
        if image_only and not is_image_key(hf_key):
            continue
        arrays = [np.asarray(state_dict[k]) for k in keys]
        out[hf_key] = np.ascontiguousarray(np.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0])
    return out


def hf_shapes(config, shapes: Mapping[str, tuple], image_only: bool = False) -> dict[str, tuple[int, ...]]:
    """HF key -> shape, from the official shapes (``sam2_jax.checkpoints.official_shapes``).

    Args:
      config: a model config.
      shapes: official key -> shape.
      image_only: only ``Sam2Model``'s keys.
    """
    out = {}
    for hf_key, keys in hf_table(config):
        if image_only and not is_image_key(hf_key):
            continue
        first = tuple(shapes[keys[0]])
        out[hf_key] = first if len(keys) == 1 else (sum(shapes[k][0] for k in keys), *first[1:])
    return out


def key_digest(shapes: Mapping[str, tuple]) -> dict:
    """``{"count": n, "sha256": ...}`` of the sorted ``key [shape]`` lines: a few bytes that pin a key set and its
    shapes (``tests/golden/hf_keys.json``)."""
    lines = "".join(f"{k} {list(v)}\n" for k, v in sorted(shapes.items()))
    return {"count": len(shapes), "sha256": hashlib.sha256(lines.encode()).hexdigest()}


def weights_file(path: str | os.PathLike) -> Path:
    """The ``model.safetensors`` of an HF folder (or the file itself)."""
    path = Path(path)
    return path / WEIGHTS if path.is_dir() else path


def read_hf(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of an HF ``model.safetensors`` (or a folder holding one) as numpy.

    Raises:
      ValueError: no such file, a sharded checkpoint (not supported), or a file safetensors cannot read.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    file = weights_file(path)
    if not file.is_file():
        index = file.with_name(WEIGHTS + ".index.json")
        if index.is_file():
            raise ValueError(f"{str(index)!r}: sharded safetensors checkpoints are not supported (SAM 2 has one file)")
        raise ValueError(f"no {WEIGHTS} at {str(file)!r}")
    try:
        return load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{str(file)!r} could not be read as safetensors: {e}") from None


def write_hf(state_dict: Mapping[str, np.ndarray], config, folder: str | os.PathLike, image_only: bool = False) -> Path:
    """Write an official state dict as an HF folder (``model.safetensors`` + ``config.json``) that
    ``transformers``' ``Sam2VideoModel.from_pretrained`` (``Sam2Model`` with ``image_only``) loads.

    Args:
      state_dict: official key -> array (float32).
      config: its model config.
      folder: output folder (created; existing files of the same names are replaced).
      image_only: write ``Sam2Model``'s subset and config.
    Returns:
      The folder.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state_dict_to_hf(state_dict, config, image_only), folder / WEIGHTS, metadata={"format": "pt"})
    (folder / CONFIG).write_text(json.dumps(hf_config(config, image_only), indent=2) + "\n")
    return folder


def infer_config_name_hf(hf: Mapping[str, np.ndarray]) -> str:
    """Which official model an HF state dict holds: ``'sam2.1_hiera_t'`` etc., from its shapes and keys."""
    key = "vision_encoder.backbone.patch_embed.projection.weight"
    if key not in hf:
        raise ValueError(f"not a transformers SAM 2 checkpoint: no {key!r}")
    blocks = [k for k in hf if k.startswith("vision_encoder.backbone.blocks.")]
    depth = 1 + max(int(k.split(".")[3]) for k in blocks)
    size = SIZES.get((hf[key].shape[0], depth))
    if size is None:
        raise ValueError(f"unknown Hiera trunk: embed_dim {hf[key].shape[0]}, {depth} blocks")
    version = "2.1" if "occlusion_spatial_embedding_parameter" in hf else "2"
    if version == "2" and "memory_temporal_positional_encoding" not in hf:
        raise ValueError(
            "an image-only (transformers Sam2Model) file: SAM 2 and 2.1 cannot be told apart and the memory "
            "tensors are missing; use the video model's file (Sam2VideoModel)"
        )
    return f"sam{version}_hiera_{size}"
