"""Port of ``sam2/modeling/position_encoding.py``: sine and random-Fourier position embeddings, 2-D axial RoPE.

Deviations: embeddings are returned channels-last (``(B, H, W, C)`` / ``(H, W, C)``); the cache is dropped (under
``jit`` the encodings are constants folded at compile time); RoPE uses real ``(cos, sin)`` pairs instead of complex
tensors (``freqs_cis`` is ``(L, dim/2, 2)``) because complex arithmetic is slow or unsupported on some backends.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class PositionEmbeddingSine(nn.Module):
    """DETR-style 2-D sine embedding of an NHWC map; output ``(B, H, W, num_pos_feats)`` as ``[pos_y, pos_x]``."""

    num_pos_feats: int
    temperature: float = 10000.0
    normalize: bool = True
    scale: float | None = None

    def __post_init__(self):
        if self.num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {self.num_pos_feats}")
        if self.scale is not None and not self.normalize:
            raise ValueError("normalize should be True if scale is passed")
        super().__post_init__()

    def _scale(self) -> float:
        return 2 * math.pi if self.scale is None else self.scale

    def _dim_t(self) -> np.ndarray:
        npf = self.num_pos_feats // 2
        dim_t = np.arange(npf, dtype=np.float32)
        return (self.temperature ** (2 * (dim_t // 2) / npf)).astype(np.float32)

    def _interleave(self, pos: jax.Array) -> jax.Array:
        # (..., npf) -> stack(sin of even, cos of odd) interleaved -> (..., npf)
        s, c = jnp.sin(pos[..., 0::2]), jnp.cos(pos[..., 1::2])
        return jnp.stack([s, c], axis=-1).reshape(*pos.shape[:-1], -1)

    def encode_hw(self, H: int, W: int) -> jax.Array:
        """The embedding of an ``H x W`` grid: ``(H, W, num_pos_feats)``."""
        y = jnp.arange(1, H + 1, dtype=jnp.float32)[:, None] * jnp.ones((1, W), jnp.float32)
        x = jnp.arange(1, W + 1, dtype=jnp.float32)[None, :] * jnp.ones((H, 1), jnp.float32)
        if self.normalize:
            eps = 1e-6
            y = y / (y[-1:, :] + eps) * self._scale()
            x = x / (x[:, -1:] + eps) * self._scale()
        dim_t = jnp.asarray(self._dim_t())
        pos_x = self._interleave(x[..., None] / dim_t)
        pos_y = self._interleave(y[..., None] / dim_t)
        return jnp.concatenate([pos_y, pos_x], axis=-1)

    def _encode_xy(self, x: jax.Array, y: jax.Array):
        dim_t = jnp.asarray(self._dim_t())
        pos_x = self._interleave(x[..., None] * self._scale() / dim_t)
        pos_y = self._interleave(y[..., None] * self._scale() / dim_t)
        return pos_x, pos_y

    def encode_boxes(self, x: jax.Array, y: jax.Array, w: jax.Array, h: jax.Array) -> jax.Array:
        """(N,) normalised box centres and sizes -> (N, num_pos_feats + 2)."""
        pos_x, pos_y = self._encode_xy(x, y)
        return jnp.concatenate([pos_y, pos_x, h[:, None], w[:, None]], axis=1)

    def encode_points(self, x: jax.Array, y: jax.Array, labels: jax.Array) -> jax.Array:
        """(B, N) normalised points and labels -> (B, N, num_pos_feats + 1)."""
        pos_x, pos_y = self._encode_xy(x, y)
        return jnp.concatenate([pos_y, pos_x, labels[..., None].astype(pos_x.dtype)], axis=-1)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, C) -> (B, H, W, num_pos_feats); depends only on the shape of x."""
        B, H, W = x.shape[:3]
        return jnp.broadcast_to(self.encode_hw(H, W), (B, H, W, self.num_pos_feats))


class PositionEmbeddingRandom(nn.Module):
    """Random-Fourier position encoding of SAM's prompt encoder.

    Param ``positional_encoding_gaussian_matrix (2, num_pos_feats)`` (a buffer in PyTorch, kept with the params so
    checkpoints round-trip; the trainer freezes it as the official optimizer never sees it).
    """

    num_pos_feats: int = 64
    scale: float | None = None

    def setup(self):
        scale = 1.0 if self.scale is None or self.scale <= 0.0 else self.scale
        self.positional_encoding_gaussian_matrix = self.param(
            "positional_encoding_gaussian_matrix",
            lambda rng, shape: scale * jax.random.normal(rng, shape),
            (2, self.num_pos_feats),
        )

    def _pe_encoding(self, coords: jax.Array) -> jax.Array:
        # (..., 2) in [0, 1] -> (..., 2 * num_pos_feats)
        coords = 2 * coords - 1
        coords = jnp.einsum(
            "...i,ij->...j",
            coords,
            self.positional_encoding_gaussian_matrix,
            preferred_element_type=jnp.float32,
        )
        coords = 2 * np.pi * coords
        return jnp.concatenate([jnp.sin(coords), jnp.cos(coords)], axis=-1)

    def __call__(self, size: tuple[int, int]) -> jax.Array:
        """Dense encoding of an ``h x w`` grid: ``(h, w, C)`` (PyTorch returns ``(C, h, w)``)."""
        h, w = size
        grid = jnp.ones((h, w), jnp.float32)
        y_embed = (jnp.cumsum(grid, axis=0) - 0.5) / h
        x_embed = (jnp.cumsum(grid, axis=1) - 0.5) / w
        return self._pe_encoding(jnp.stack([x_embed, y_embed], axis=-1))

    def forward_with_coords(self, coords_input: jax.Array, image_size: tuple[int, int]) -> jax.Array:
        """(B, N, 2) pixel coords (x, y) in an image of ``image_size = (H, W)`` -> (B, N, C)."""
        coords = coords_input.astype(jnp.float32)
        coords = jnp.stack([coords[..., 0] / image_size[1], coords[..., 1] / image_size[0]], axis=-1)
        return self._pe_encoding(coords)


# Rotary positional encoding (2-D axial), as in the official file.


def square_side(num_tokens: int, what: str = "RoPE attention") -> int:
    """Side of the square token grid of ``num_tokens`` tokens; ValueError when it is not a square."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{what} needs a square token grid, got {num_tokens} tokens")
    return side


def init_t_xy(end_x: int, end_y: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(end_x * end_y, dtype=np.float32)
    t_x = (t % end_x).astype(np.float32)
    t_y = np.floor_divide(t, end_x).astype(np.float32)
    return t_x, t_y


def compute_axial_cis(dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> jax.Array:
    """``(end_x * end_y, dim // 2, 2)`` array of ``(cos, sin)``: the official complex ``freqs_cis`` as real pairs.

    Angles are computed in float32 as in PyTorch (``torch.outer`` of float32 tensors), so cos/sin match it.
    """
    freqs = 1.0 / (jnp.float32(theta) ** (jnp.arange(0, dim, 4)[: dim // 4].astype(jnp.float32) / dim))
    t_x, t_y = init_t_xy(end_x, end_y)
    fx = jnp.outer(jnp.asarray(t_x), freqs)  # (L, dim/4)
    fy = jnp.outer(jnp.asarray(t_y), freqs)
    angles = jnp.concatenate([fx, fy], axis=-1)  # (L, dim/2)
    return jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def _rotate(x: jax.Array, freqs_cis: jax.Array) -> jax.Array:
    # x: (..., L, D) viewed as (..., L, D/2, 2) pairs (re, im); freqs_cis: (L, D/2, 2) (cos, sin)
    xr = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    re, im = xr[..., 0], xr[..., 1]
    c, s = freqs_cis[..., 0], freqs_cis[..., 1]
    out = jnp.stack([re * c - im * s, re * s + im * c], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


def apply_rotary_enc(
    xq: jax.Array, xk: jax.Array, freqs_cis: jax.Array, repeat_freqs_k: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Rotate queries ``(B, heads, Lq, D)`` and keys ``(B, heads, Lk, D)`` by ``freqs_cis (Lq, D/2, 2)``.

    With ``repeat_freqs_k`` the keys are ``r = Lk / Lq`` memories of ``Lq`` tokens each and every one gets the same
    rotation (the official ``rope_k_repeat``).
    """
    xq_out = _rotate(xq, freqs_cis)
    if xk.shape[-2] == 0:
        return xq_out, xk
    fk = freqs_cis
    if repeat_freqs_k:
        r = xk.shape[-2] // xq.shape[-2]
        fk = jnp.tile(freqs_cis, (r, 1, 1))
    return xq_out, _rotate(xk, fk)
