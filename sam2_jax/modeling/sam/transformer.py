"""Port of ``sam2/modeling/sam/transformer.py``: SAM's attention, RoPE attention and the two-way transformer.

Deviations from the official file:
- Batch-first ``(B, N, C)`` everywhere; ``dtype`` is the compute dtype (float32 accumulation, float32 softmax).
- Every attention runs through ``backend.dot_product_attention``; the static ``attention_impl`` field (from
  ``config.model.attention_impl``) picks the kernel (query-chunked on CPU, fused on GPU/TPU).
- ``Attention`` / ``RoPEAttention`` take an optional ``key_mask (B, Nk)``: keys where it is False get ``-inf``
  before the softmax. The video tracker uses it to attend to exactly the official memory set out of fixed slots.
- Attention dropout (``dropout_p`` of ``scaled_dot_product_attention``) runs only with ``deterministic=False`` and a
  ``'dropout'`` RNG.
- RoPE frequencies are computed from the actual query length at trace time (the official code caches the
  ``feat_sizes`` grid and recomputes when the length differs: same values).
- ``TwoWayTransformer`` takes the image embedding and its position encoding as NHWC ``(B, h, w, C)`` maps (the
  official takes NCHW) and flattens them row-major to ``(B, h*w, C)``, the token order of the official
  ``flatten(2).permute(0, 2, 1)``; the activation is given by name (``"relu"``/``"gelu"``).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.backend import dot_product_attention
from sam2_jax.modeling.layers import LayerNorm, Linear
from sam2_jax.modeling.position_encoding import apply_rotary_enc, compute_axial_cis, square_side
from sam2_jax.modeling.sam2_utils import MLP

Dtype = Any


def scaled_dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    dtype: Dtype = jnp.float32,
    key_mask: jax.Array | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
) -> jax.Array:
    """The ``"chunked"`` ``backend.dot_product_attention`` (the CPU path), for callers of the old name."""
    return dot_product_attention(
        q, k, v, impl="chunked", dtype=dtype, key_mask=key_mask, dropout_rate=dropout_rate, dropout_rng=dropout_rng
    )


class Attention(nn.Module):
    """Multi-head attention with optional down-projection of the internal dim (params q/k/v/out_proj)."""

    embedding_dim: int
    num_heads: int
    downsample_rate: int = 1
    dropout: float = 0.0
    kv_in_dim: int | None = None
    dtype: Dtype = jnp.float32
    # Which ``backend.dot_product_attention`` implementation runs (static; ``config.model.attention_impl``).
    attention_impl: str = "auto"

    def setup(self):
        self.internal_dim = self.embedding_dim // self.downsample_rate
        if self.internal_dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide internal dim {self.internal_dim}")
        self.q_proj = Linear(self.internal_dim, dtype=self.dtype)
        self.k_proj = Linear(self.internal_dim, dtype=self.dtype)
        self.v_proj = Linear(self.internal_dim, dtype=self.dtype)
        self.out_proj = Linear(self.embedding_dim, dtype=self.dtype)

    def _separate_heads(self, x: jax.Array) -> jax.Array:
        b, n, c = x.shape
        # (B, N, C) -> (B, heads, N, C/heads)
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(0, 2, 1, 3)

    def _recombine_heads(self, x: jax.Array) -> jax.Array:
        b, h, n, c = x.shape
        # (B, heads, N, C/heads) -> (B, N, C)
        return x.transpose(0, 2, 1, 3).reshape(b, n, h * c)

    def projects_values_after(self, kv_in_dim: int) -> bool:
        """Whether values of ``kv_in_dim`` features are cheaper projected after the attention than before: with one
        head, ``softmax(s) (m Wv + b) = (softmax(s) m) Wv + b`` as every softmax row sums to 1, and the second dot
        then has ``kv_in_dim`` columns instead of the internal dim (the memory attention: 64 instead of 256)."""
        return self.num_heads == 1 and kv_in_dim < self.internal_dim

    def _attend(self, q, k, v, key_mask, deterministic, value_input: bool = False):
        """Attention and ``out_proj``. ``value_input``: ``v`` is the value projection's input ``(B, 1, Nk, kv_in_dim)``
        (``projects_values_after``), projected after the attention, or before it when dropout is on (dropped
        probabilities no longer sum to 1 per row, and the bias would not factor out)."""
        use_dropout = not deterministic and self.dropout > 0.0
        rng = self.make_rng("dropout") if use_dropout else None
        if value_input and use_dropout:
            v = self._separate_heads(self.v_proj(self._recombine_heads(v)))
            value_input = False
        out = dot_product_attention(
            q,
            k,
            v,
            impl=self.attention_impl,
            dtype=self.dtype,
            key_mask=key_mask,
            dropout_rate=self.dropout if use_dropout else 0.0,
            dropout_rng=rng,
        )
        out = self._recombine_heads(out)
        if value_input:  # (B, Nq, kv_in_dim) -> (B, Nq, C)
            out = self.v_proj(out)
        return self.out_proj(out)

    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        key_mask: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """q (B, Nq, C), k/v (B, Nk, kv_in_dim) -> (B, Nq, C)."""
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        return self._attend(q, k, v, key_mask, deterministic)


class RoPEAttention(Attention):
    """Attention with 2-D axial rotary position encoding on queries and (all but the last excluded) keys."""

    rope_theta: float = 10000.0
    # With memories of several frames as keys, every frame's tokens get the queries' rotation.
    rope_k_repeat: bool = False
    feat_sizes: tuple[int, int] = (64, 64)

    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        num_k_exclude_rope: int = 0,
        key_mask: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """q (B, Nq, C), k/v (B, Nk, kv_in_dim); the last ``num_k_exclude_rope`` keys (object pointers) are not
        rotated. Nq must be a square number of tokens (a w x w feature map)."""
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        side = square_side(q.shape[-2], "RoPEAttention")
        freqs_cis = compute_axial_cis(self.internal_dim // self.num_heads, side, side, theta=self.rope_theta)
        num_k_rope = k.shape[-2] - num_k_exclude_rope
        if q.shape[-2] != num_k_rope and not self.rope_k_repeat:
            raise ValueError("keys and queries differ in length: RoPEAttention needs rope_k_repeat=True")
        q, k_rope = apply_rotary_enc(q, k[:, :, :num_k_rope], freqs_cis, repeat_freqs_k=self.rope_k_repeat)
        k = jnp.concatenate([k_rope, k[:, :, num_k_rope:]], axis=2)
        return self._attend(q, k, v, key_mask, deterministic)


class TwoWayAttentionBlock(nn.Module):
    """One two-way block: token self-attention, tokens -> image, token MLP, image -> tokens.

    Each sub-layer is residual and followed by a LayerNorm (post-norm). With ``skip_first_layer_pe`` the
    self-attention sees no position encoding and replaces the queries instead of adding to them (the first
    layer, whose queries are the raw prompt tokens).
    """

    embedding_dim: int
    num_heads: int
    mlp_dim: int = 2048
    activation: str = "relu"
    attention_downsample_rate: int = 2
    skip_first_layer_pe: bool = False
    dtype: Dtype = jnp.float32
    attention_impl: str = "auto"

    def setup(self):
        dim, heads, rate, impl = self.embedding_dim, self.num_heads, self.attention_downsample_rate, self.attention_impl
        self.self_attn = Attention(dim, heads, dtype=self.dtype, attention_impl=impl)
        self.norm1 = LayerNorm(epsilon=1e-5)
        self.cross_attn_token_to_image = Attention(
            dim, heads, downsample_rate=rate, dtype=self.dtype, attention_impl=impl
        )
        self.norm2 = LayerNorm(epsilon=1e-5)
        self.mlp = MLP(dim, self.mlp_dim, dim, num_layers=2, activation=self.activation, dtype=self.dtype)
        self.norm3 = LayerNorm(epsilon=1e-5)
        self.norm4 = LayerNorm(epsilon=1e-5)
        self.cross_attn_image_to_token = Attention(
            dim, heads, downsample_rate=rate, dtype=self.dtype, attention_impl=impl
        )

    def __call__(
        self,
        queries: jax.Array,
        keys: jax.Array,
        query_pe: jax.Array,
        key_pe: jax.Array,
        token_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """queries/query_pe (B, Nq, C), keys/key_pe (B, Nk, C) -> updated (queries, keys). ``token_mask (B, Nq)``:
        tokens that are read by nobody (False), or None for all."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries, key_mask=token_mask)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries, key_mask=token_mask)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))

        queries = self.norm3(queries + self.mlp(queries))

        # The image tokens are the queries here; the prompt tokens (with their PE) are keys and values.
        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries, key_mask=token_mask))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """SAM's mask-decoder transformer: ``depth`` two-way blocks, then a final token -> image attention."""

    depth: int
    embedding_dim: int
    num_heads: int
    mlp_dim: int
    activation: str = "relu"
    attention_downsample_rate: int = 2
    dtype: Dtype = jnp.float32
    attention_impl: str = "auto"

    def setup(self):
        self.layers = [
            TwoWayAttentionBlock(
                embedding_dim=self.embedding_dim,
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                activation=self.activation,
                attention_downsample_rate=self.attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
                dtype=self.dtype,
                attention_impl=self.attention_impl,
            )
            for i in range(self.depth)
        ]
        self.final_attn_token_to_image = Attention(
            self.embedding_dim,
            self.num_heads,
            downsample_rate=self.attention_downsample_rate,
            dtype=self.dtype,
            attention_impl=self.attention_impl,
        )
        self.norm_final_attn = LayerNorm(epsilon=1e-5)

    def __call__(
        self,
        image_embedding: jax.Array,
        image_pe: jax.Array,
        point_embedding: jax.Array,
        token_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Run the prompt tokens and the image tokens through each other.

        Args:
          image_embedding: (B, h, w, C) image features to attend to.
          image_pe: (B, h, w, C) position encoding of ``image_embedding``.
          point_embedding: (B, N, C) prompt and output tokens; also their position encoding at every layer.
          token_mask: (B, N) bool, False for tokens no other token or image cell may attend to (empty click slots of
            a bucket); their own outputs are meaningless. None: all tokens exist.
        Returns:
          ``(queries (B, N, C), keys (B, h*w, C))``: the processed tokens and image features.
        """
        if image_embedding.ndim != 4 or image_embedding.shape[-1] != self.embedding_dim:
            raise ValueError(f"image_embedding should be (B, h, w, {self.embedding_dim}), got {image_embedding.shape}")
        if image_pe.shape != image_embedding.shape:
            raise ValueError(f"image_pe shape {image_pe.shape} differs from image_embedding {image_embedding.shape}")
        b, h, w, c = image_embedding.shape
        # (B, h, w, C) -> (B, h*w, C)
        keys = image_embedding.reshape(b, h * w, c)
        # (B, h, w, C) -> (B, h*w, C)
        key_pe = image_pe.reshape(b, h * w, c)

        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe, token_mask)

        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
