"""Port of ``sam2/modeling/sam2_utils.py``: MLP, DropPath, 1-D sine embedding, conditioning-frame selection.

Deviations: ``DropPath`` takes an explicit ``deterministic`` flag and the ``'dropout'`` RNG stream (Flax style);
``get_clones`` has no counterpart (Linen builds each layer with its own params); the training-time prompt samplers
live with the trainer.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.layers import Linear, gelu

Dtype = Any

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": gelu,
}


def get_activation_fn(activation: str) -> Callable[[jax.Array], jax.Array]:
    """Activation by the official config's name (``relu`` / ``gelu``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation should be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


class MLP(nn.Module):
    """``MLP``: ``num_layers`` Linear layers (params ``layers_0 … layers_{n-1}``), activation between them."""

    input_dim: int
    hidden_dim: int
    output_dim: int
    num_layers: int
    activation: str = "relu"
    sigmoid_output: bool = False
    dtype: Dtype = jnp.float32

    def setup(self):
        h = [self.hidden_dim] * (self.num_layers - 1)
        self.layers = [Linear(k, dtype=self.dtype) for k in h + [self.output_dim]]

    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation_fn(self.activation)
        for i, layer in enumerate(self.layers):
            x = act(layer(x)) if i < self.num_layers - 1 else layer(x)
        if self.sigmoid_output:
            x = jax.nn.sigmoid(x)
        return x


class DropPath(nn.Module):
    """Stochastic depth per sample (``scale_by_keep=True``); identity when deterministic or rate 0."""

    drop_prob: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        if deterministic or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        rng = self.make_rng("dropout")
        mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return x * mask.astype(x.dtype) / keep


def get_1d_sine_pe(pos_inds: jax.Array, dim: int, temperature: float = 10000.0) -> jax.Array:
    """1-D sine embedding: (...,) positions -> (..., dim) as ``[sin, cos]`` halves."""
    pe_dim = dim // 2
    dim_t = jnp.arange(pe_dim, dtype=jnp.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / pe_dim)
    pos_embed = pos_inds.astype(jnp.float32)[..., None] / dim_t
    return jnp.concatenate([jnp.sin(pos_embed), jnp.cos(pos_embed)], axis=-1)
