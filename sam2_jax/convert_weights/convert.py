"""Strict conversion between official SAM 2 checkpoints and sam2_jax params, both ways.

Every torch key must be used, every param filled, every shape checked; any mismatch raises a ``ValueError`` that
names the keys. Nothing is filled in or dropped silently.
"""

import os
from typing import Any, Mapping

import ml_dtypes
import numpy as np

from sam2_jax.convert_weights.mapping import TRANSFORMS, Entry
from sam2_jax.convert_weights.pt_format import load_pt, save_pt


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _get(tree: Mapping, path: tuple[str, ...]):
    for p in path:
        tree = tree[p]
    return tree


def flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _fmt(keys, n: int = 12) -> str:
    keys = sorted(keys)
    more = f" … and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    table: list[Entry],
    expected_shapes: Mapping[tuple[str, ...], tuple[int, ...]] | None = None,
) -> dict:
    """Official state dict (numpy arrays) -> our nested params dict, by ``table``.

    Args:
      state_dict: torch key -> numpy array.
      table: entries from ``sam2_jax.convert_weights.mapping``.
      expected_shapes: our path -> shape (from ``jax.eval_shape`` of the model's init); checked when given.
    Returns:
      Nested dict of float32 numpy arrays.
    Raises:
      ValueError naming missing keys, unused keys and shape mismatches.
    """
    wanted = {k for _, k, _ in table}
    missing = wanted - set(state_dict)
    unused = set(state_dict) - wanted
    problems = []
    if missing:
        problems.append(f"{len(missing)} key(s) the model needs are missing from the checkpoint: {_fmt(missing)}")
    if unused:
        problems.append(f"{len(unused)} checkpoint key(s) are not used by this model config: {_fmt(unused)}")
    params: dict = {}
    bad_shapes = []
    for path, key, tf in table:
        if key not in state_dict:
            continue
        value = TRANSFORMS[tf][0](np.asarray(state_dict[key], dtype=np.float32))
        if expected_shapes is not None:
            want = tuple(expected_shapes.get(path, ()))
            if path not in expected_shapes:
                bad_shapes.append(f"{key} -> {'/'.join(path)}: no such param in the model")
                continue
            if value.shape != want:
                bad_shapes.append(
                    f"{key}: checkpoint shape {tuple(state_dict[key].shape)} gives {value.shape}, model expects {want}"
                )
                continue
        _set(params, path, value)
    if bad_shapes:
        problems.append(f"{len(bad_shapes)} shape mismatch(es): " + "; ".join(bad_shapes[:12]))
    if expected_shapes is not None:
        unfilled = set(expected_shapes) - {p for p, _, _ in table}
        if unfilled:
            problems.append(
                f"{len(unfilled)} model param(s) have no checkpoint entry: {_fmt('/'.join(p) for p in unfilled)}"
            )
    if problems:
        raise ValueError("checkpoint does not match the model config: " + " | ".join(problems))
    return params


def params_to_state_dict(params: Mapping, table: list[Entry]) -> dict[str, np.ndarray]:
    """Our params -> official state dict (numpy), by the inverse transforms. Strict both ways."""
    flat = flatten(params)
    wanted = {p for p, _, _ in table}
    missing = wanted - set(flat)
    extra = set(flat) - wanted
    if missing or extra:
        raise ValueError(
            "params do not match the model config: "
            + (f"missing {_fmt('/'.join(p) for p in missing)}" if missing else "")
            + (f" unexpected {_fmt('/'.join(p) for p in extra)}" if extra else "")
        )
    return {k: np.ascontiguousarray(TRANSFORMS[tf][1](np.asarray(flat[p]))) for p, k, tf in table}


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an official ``.pt`` checkpoint (``{"model": state_dict}``) into numpy arrays, without PyTorch.

    The archive is read by ``pt_format.load_pt`` (a restricted unpickler: a checkpoint that would
    run code is refused). Floating tensors (float16, bfloat16, float64 included) come back as float32.

    Raises:
      ValueError: an unreadable or truncated file, or one without a ``"model"`` state dict.
      UnsafeCheckpointError: a pickle naming anything but the tensor format's globals (nothing is executed).
    """
    ckpt = load_pt(path)
    if not isinstance(ckpt, Mapping) or "model" not in ckpt or not isinstance(ckpt["model"], Mapping):
        got = sorted(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"checkpoint {str(path)!r} has no 'model' state dict (found {got})")
    return {k: v.astype(np.float32) if is_float(v) else v for k, v in ckpt["model"].items()}


def is_float(a: np.ndarray) -> bool:
    """Whether ``a`` is a floating tensor (bfloat16 is not a numpy floating type, so it is named)."""
    return np.issubdtype(a.dtype, np.floating) or a.dtype == ml_dtypes.bfloat16


def save_torch_state_dict(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write ``{"model": state_dict}`` as ``torch.save`` does (``pt_format.save_pt``), without PyTorch."""
    save_pt({k: np.asarray(v) for k, v in state_dict.items()}, path)


def infer_config_name(state_dict: Mapping[str, np.ndarray]) -> str:
    """Which official model a state dict belongs to: ``'sam2.1_hiera_t'`` etc., from key counts and shapes."""
    key = "image_encoder.trunk.patch_embed.proj.weight"
    if key not in state_dict:
        raise ValueError(f"not a SAM 2 checkpoint: no {key!r}")
    dim = state_dict[key].shape[0]
    depth = 1 + max(int(k.split(".")[3]) for k in state_dict if k.startswith("image_encoder.trunk.blocks."))
    sizes = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}
    if (dim, depth) not in sizes:
        raise ValueError(f"unknown Hiera trunk: embed_dim {dim}, {depth} blocks")
    version = "2.1" if "no_obj_embed_spatial" in state_dict else "2"
    return f"sam{version}_hiera_{sizes[(dim, depth)]}"
