"""Deterministic random weights in the official state-dict layout, made with numpy alone.

Parity tests need weights that exercise every tensor (a fresh official model has constant LayerNorms, zero position
embeddings, 1e-6 layer scales and identical cloned layers, which hide bugs). These weights are drawn per key from a
seed and the key's name, so the same values come out with or without PyTorch installed: the PyTorch reference
loads them, and golden-output tests that run without torch rebuild them from the stored key shapes.

Scales follow PyTorch's default inits, so activations stay in realistic ranges:
- linear / conv / conv-transpose weights: U(-sqrt(3/fan_in), sqrt(3/fan_in)), i.e. std 1/sqrt(fan_in) (PyTorch's
  default bound times sqrt(3), see ``WEIGHT_GAIN``);
- biases: U(-b, b) with PyTorch's default bound 1/sqrt(fan_in) of their weight;
- norm weights 1 + 0.1 N(0, 1), norm biases 0.02 N(0, 1);
- embeddings and the prompt encoder's Gaussian matrix N(0, 1);
- every other raw parameter (position embeddings, no-memory tokens, layer scales) 0.02 N(0, 1).
"""

import zlib

import numpy as np

from sam2_jax.convert_weights.mapping import Entry

# sqrt(3): unit-variance-preserving uniform weights (std 1/sqrt(fan_in)). PyTorch's default bound 1/sqrt(fan_in)
# shrinks activations by sqrt(3) per layer: after the image encoder and the decoder the official model's outputs
# are then almost constant (mask logits within +-0.5, IoU predictions all ~0.5, object scores ~0), which would make
# a parity test blind to most errors.
WEIGHT_GAIN = float(np.sqrt(3.0))


def _fan_in(shape: tuple[int, ...], tf: str) -> int:
    if tf == "convt":  # (in, out, kh, kw): torch computes fan_in from dim 1
        return int(shape[1] * np.prod(shape[2:]))
    return int(shape[1] * np.prod(shape[2:])) if len(shape) > 1 else int(shape[0])


def random_state_dict(shapes: dict[str, tuple[int, ...]], table: list[Entry], seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 tensors for every key of ``table`` with the given official (torch-layout) shapes."""
    by_key = {k: (p, tf) for p, k, tf in table}
    missing = set(by_key) - set(shapes)
    if missing:
        raise ValueError(f"no shape given for {sorted(missing)[:8]}")
    out = {}
    for key in sorted(by_key):
        path, tf = by_key[key]
        shape = tuple(shapes[key])
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        leaf = path[-1]
        if leaf == "kernel":
            b = WEIGHT_GAIN / np.sqrt(_fan_in(shape, tf))
            v = rng.uniform(-b, b, shape)
        elif (
            leaf == "bias"
            and key.replace(".bias", ".weight") in by_key
            and by_key[key.replace(".bias", ".weight")][0][-1] == "kernel"
        ):
            wkey = key.replace(".bias", ".weight")
            b = 1.0 / np.sqrt(_fan_in(tuple(shapes[wkey]), by_key[wkey][1]))
            v = rng.uniform(-b, b, shape)
        elif leaf == "scale":
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif leaf == "bias":
            v = 0.02 * rng.standard_normal(shape)
        elif leaf in ("embedding", "positional_encoding_gaussian_matrix"):
            v = rng.standard_normal(shape)
        else:
            v = 0.02 * rng.standard_normal(shape)
        out[key] = v.astype(np.float32)
    return out
