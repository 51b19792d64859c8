"""Port of ``sam2/modeling/memory_attention.py``: the transformer that conditions a frame on its memories.

Deviations from the official file:
- Batch-first ``(B, N, C)`` in and out; the official takes sequence-first ``(N, B, C)`` and transposes.
- The cross-attention keys and values depend only on the memory, so they are computed by ``project_memory``
  (for all layers at once, already split into heads and rotated) and consumed by ``attend``; ``__call__`` is
  the two in a row. A tracker can thus project each memory once and reuse it. The cross-attention must be a
  ``RoPEAttention`` (as in every official config); its query path runs here on that module's projections.
- The cross attention's values are projected after attending (``v_proj`` on the ``(B, HW, 64)`` weighted memory):
  with one head the softmax's rows sum to 1, so ``P (m Wv + b) = (P m) Wv + b``, equal to float32 rounding, and
  the second dot of every layer has 64 columns instead of 256 (a quarter of its FLOPs). With dropout on (training)
  the values are projected first, as in the official.
- ``memory_mask (B, Nm)`` (True = valid) is the cross attention's ``key_mask``: masked slots get zero weight,
  exactly as if they were absent. At least one slot per row must be valid (else the softmax is NaN; with the
  ``"cudnn"`` attention, a uniform average).
- ``attention_impl`` (static, ``config.model.attention_impl``) picks the attention kernel of every layer
  (``backend.py``).
- Dropout layers run only with ``deterministic=False`` and a ``'dropout'`` RNG. The feed-forward dropout is
  ``ff_dropout`` (``dropout`` is the rate field, as the official ``dropout_value``); dropouts have no params.
- Nested configs are mappings of constructor fields (``layer``, ``self_attention``, ``cross_attention``);
  ``MemoryAttention.from_config`` builds the module from ``config.model.memory_attention``. ``get_clones`` has
  no counterpart: each layer has its own params.
"""

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from sam2_jax.modeling.layers import LayerNorm, Linear
from sam2_jax.modeling.position_encoding import apply_rotary_enc, compute_axial_cis, square_side
from sam2_jax.modeling.sam.transformer import RoPEAttention
from sam2_jax.modeling.sam2_utils import get_activation_fn

Dtype = Any
# Per layer: cross-attention keys (B, heads, Nm, C/heads) and values, the same or the memory (B, 1, Nm, kv_in_dim)
# (MemoryAttentionLayer.project_memory), in the compute dtype.
MemoryKV = tuple[tuple[jax.Array, jax.Array], ...]


def freeze_config(cfg: Any) -> Any:
    """A (Config)dict of module fields -> a hashable ``FrozenDict`` (lists become tuples) for Linen fields."""
    if hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    if isinstance(cfg, Mapping):
        return FrozenDict({k: freeze_config(v) for k, v in cfg.items()})
    if isinstance(cfg, list | tuple):
        return tuple(freeze_config(v) for v in cfg)
    return cfg


def _rotate(x: jax.Array, freqs_cis: jax.Array) -> jax.Array:
    """Rotate ``x (B, heads, L, D)`` by ``freqs_cis (L, D/2, 2)``."""
    # apply_rotary_enc rotates its first argument by freqs of the same length; an empty key set rides along.
    return apply_rotary_enc(x, x[..., :0, :], freqs_cis)[0]


class MemoryAttentionLayer(nn.Module):
    """Pre-norm block: RoPE self-attention, RoPE cross-attention to the memory, feed-forward.

    ``self_attention`` / ``cross_attention`` are the fields of their ``RoPEAttention`` (``embedding_dim``,
    ``num_heads``, ``downsample_rate``, ``dropout``, ``kv_in_dim``, ``rope_theta``, ``rope_k_repeat``,
    ``feat_sizes``).
    """

    activation: str
    d_model: int
    dim_feedforward: int
    dropout: float
    pos_enc_at_attn: bool
    pos_enc_at_cross_attn_keys: bool
    pos_enc_at_cross_attn_queries: bool
    self_attention: Mapping[str, Any]
    cross_attention: Mapping[str, Any]
    dtype: Dtype = jnp.float32
    # Which ``backend.dot_product_attention`` implementation runs (static; ``config.model.attention_impl``).
    attention_impl: str = "auto"

    def setup(self):
        impl = self.attention_impl
        self.self_attn = RoPEAttention(**self.self_attention, dtype=self.dtype, attention_impl=impl)
        self.cross_attn_image = RoPEAttention(**self.cross_attention, dtype=self.dtype, attention_impl=impl)
        self.linear1 = Linear(self.dim_feedforward, dtype=self.dtype)
        self.ff_dropout = nn.Dropout(self.dropout)
        self.linear2 = Linear(self.d_model, dtype=self.dtype)
        self.norm1 = LayerNorm(epsilon=1e-5)
        self.norm2 = LayerNorm(epsilon=1e-5)
        self.norm3 = LayerNorm(epsilon=1e-5)
        self.dropout1 = nn.Dropout(self.dropout)
        self.dropout2 = nn.Dropout(self.dropout)
        self.dropout3 = nn.Dropout(self.dropout)

    def _cross_freqs(self, num_queries: int) -> jax.Array:
        attn = self.cross_attn_image
        side = square_side(num_queries)
        return compute_axial_cis(attn.internal_dim // attn.num_heads, side, side, theta=attn.rope_theta)

    def project_memory(
        self,
        memory: jax.Array,
        pos: jax.Array | None,
        num_queries: int,
        num_k_exclude_rope: int = 0,
        key_scale: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Cross-attention keys and values of ``memory (B, Nm, kv_in_dim)`` with its ``pos``.

        The first ``Nm - num_k_exclude_rope`` keys are spatial memories of ``num_queries`` tokens each and get
        the queries' rotation; the last ``num_k_exclude_rope`` (object pointers) are not rotated. ``key_scale
        (B, Nm)``, when given, multiplies each token's key input (memory + pos) before the key projection, as
        SAM2Long's ``_forward_ca`` weights memory frames and pointers by their object-score rank (``None``: off).

        Returns:
          ``(k, v)`` in the compute dtype: keys ``(B, heads, Nm, C/heads)``; values the same, or, where the
          attention projects them after attending (``RoPEAttention.projects_values_after``: one head and
          ``kv_in_dim`` below ``C``, as in every official config), the memory itself ``(B, 1, Nm, kv_in_dim)``.
        """
        attn = self.cross_attn_image
        if self.pos_enc_at_cross_attn_keys:
            if pos is None:
                raise ValueError("pos_enc_at_cross_attn_keys=True needs the memory position encoding, got None")
            k_in = memory + pos
        else:
            k_in = memory
        if key_scale is not None:
            k_in = k_in * key_scale[..., None].astype(k_in.dtype)
        k = attn._separate_heads(attn.k_proj(k_in))
        if attn.projects_values_after(memory.shape[-1]):
            v = memory[:, None]  # (B, 1, Nm, kv_in_dim): v_proj runs on the attention's output
        else:
            v = attn._separate_heads(attn.v_proj(memory))
        num_k_rope = k.shape[2] - num_k_exclude_rope
        if num_k_rope < 0:
            raise ValueError(f"num_k_exclude_rope={num_k_exclude_rope} exceeds the {k.shape[2]} memory tokens")
        if num_k_rope % num_queries or (num_k_rope not in (0, num_queries) and not attn.rope_k_repeat):
            raise ValueError(
                f"{num_k_rope} rotated memory tokens are not a whole number of {num_queries}-token frames "
                f"(rope_k_repeat={attn.rope_k_repeat})"
            )
        if num_k_rope > 0:
            # Every memory frame gets the same rotation as the query grid.
            freqs = jnp.tile(self._cross_freqs(num_queries), (num_k_rope // num_queries, 1, 1))
            k = jnp.concatenate([_rotate(k[:, :, :num_k_rope], freqs), k[:, :, num_k_rope:]], axis=2)
        return k.astype(self.dtype), v.astype(self.dtype)

    def _forward_sa(self, tgt: jax.Array, query_pos: jax.Array | None, deterministic: bool) -> jax.Array:
        tgt2 = self.norm1(tgt)
        q = k = tgt2 + query_pos if self.pos_enc_at_attn else tgt2
        tgt2 = self.self_attn(q, k, tgt2, deterministic=deterministic)
        return tgt + self.dropout1(tgt2, deterministic=deterministic)

    def _forward_ca(
        self,
        tgt: jax.Array,
        memory_kv: tuple[jax.Array, jax.Array],
        query_pos: jax.Array | None,
        memory_mask: jax.Array | None,
        deterministic: bool,
    ) -> jax.Array:
        attn = self.cross_attn_image
        tgt2 = self.norm2(tgt)
        q = tgt2 + query_pos if self.pos_enc_at_cross_attn_queries else tgt2
        q = _rotate(attn._separate_heads(attn.q_proj(q)), self._cross_freqs(q.shape[1]))
        k, v = memory_kv
        tgt2 = attn._attend(q, k, v, memory_mask, deterministic, value_input=attn.projects_values_after(v.shape[-1]))
        return tgt + self.dropout2(tgt2, deterministic=deterministic)

    def attend(
        self,
        tgt: jax.Array,
        memory_kv: tuple[jax.Array, jax.Array],
        query_pos: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """The layer on ``tgt (B, HW, C)`` given this layer's ``project_memory`` output -> ``(B, HW, C)``."""
        tgt = self._forward_sa(tgt, query_pos, deterministic)
        tgt = self._forward_ca(tgt, memory_kv, query_pos, memory_mask, deterministic)
        tgt2 = self.norm3(tgt)
        tgt2 = self.linear1(tgt2)
        tgt2 = self.linear2(self.ff_dropout(get_activation_fn(self.activation)(tgt2), deterministic=deterministic))
        return tgt + self.dropout3(tgt2, deterministic=deterministic)

    def __call__(
        self,
        tgt: jax.Array,
        memory: jax.Array,
        pos: jax.Array | None = None,
        query_pos: jax.Array | None = None,
        num_k_exclude_rope: int = 0,
        memory_mask: jax.Array | None = None,
        deterministic: bool = True,
        key_scale: jax.Array | None = None,
    ) -> jax.Array:
        """``tgt (B, HW, C)`` attending to ``memory (B, Nm, kv_in_dim)`` -> ``(B, HW, C)``."""
        memory_kv = self.project_memory(memory, pos, tgt.shape[1], num_k_exclude_rope, key_scale)
        return self.attend(tgt, memory_kv, query_pos, memory_mask, deterministic)


class MemoryAttention(nn.Module):
    """A stack of ``MemoryAttentionLayer`` (params ``layers_0 …``) and a final LayerNorm.

    ``layer`` holds the ``MemoryAttentionLayer`` fields (except ``dtype``), as in the official YAML.
    """

    d_model: int
    pos_enc_at_input: bool
    layer: Mapping[str, Any]
    num_layers: int
    dtype: Dtype = jnp.float32
    attention_impl: str = "auto"

    @classmethod
    def from_config(cls, cfg: Any, dtype: Dtype = jnp.float32, attention_impl: str = "auto") -> "MemoryAttention":
        """Build from ``config.model.memory_attention`` (the official YAML's fields); ``attention_impl`` is
        ``config.model.attention_impl`` (``backend.py``)."""
        cfg = freeze_config(cfg)
        return cls(
            d_model=cfg["d_model"],
            pos_enc_at_input=cfg["pos_enc_at_input"],
            layer=cfg["layer"],
            num_layers=cfg["num_layers"],
            dtype=dtype,
            attention_impl=attention_impl,
        )

    def setup(self):
        self.layers = [
            MemoryAttentionLayer(**self.layer, dtype=self.dtype, attention_impl=self.attention_impl)
            for _ in range(self.num_layers)
        ]
        self.norm = LayerNorm(epsilon=1e-5)

    def project_memory(
        self,
        memory: jax.Array,
        memory_pos: jax.Array | None,
        num_queries: int,
        num_obj_ptr_tokens: int = 0,
        key_scale: jax.Array | None = None,
    ) -> MemoryKV:
        """Every layer's cross-attention keys and values for ``memory (B, Nm, 64)``; see ``attend``.

        Args:
          memory: spatial memories (``Nm - num_obj_ptr_tokens`` tokens, a whole number of frames of
            ``num_queries`` tokens) followed by ``num_obj_ptr_tokens`` object-pointer tokens.
          memory_pos: their position encodings, same shape.
          num_queries: tokens of the current frame (``H * W``, a square number); fixes the RoPE grid.
          num_obj_ptr_tokens: trailing tokens that get no rotary encoding.
          key_scale: ``(B, Nm)`` per-token factor on the key input (SAM2Long), or None.
        Returns:
          One ``(k, v)`` pair per layer in the compute dtype (``MemoryAttentionLayer.project_memory``).
        """
        if memory_pos is not None and memory_pos.shape != memory.shape:
            raise ValueError(f"memory_pos shape {memory_pos.shape} differs from memory shape {memory.shape}")
        return tuple(
            layer.project_memory(memory, memory_pos, num_queries, num_obj_ptr_tokens, key_scale)
            for layer in self.layers
        )

    def attend(
        self,
        curr: jax.Array,
        curr_pos: jax.Array | None,
        memory_kv: MemoryKV,
        memory_mask: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """Condition ``curr (B, HW, C)`` on memories already projected by ``project_memory``.

        Args:
          curr: current-frame features, batch-first.
          curr_pos: their position encoding (or None).
          memory_kv: ``project_memory``'s output for the same ``HW``.
          memory_mask: ``(B, Nm)`` bool, False for memory slots to ignore; None attends to all.
          deterministic: False turns on dropout (needs a ``'dropout'`` RNG).
        Returns:
          ``(B, HW, C)``: the normed output.
        """
        if len(memory_kv) != self.num_layers:
            raise ValueError(f"memory_kv has {len(memory_kv)} layers, the model has {self.num_layers}")
        k0 = memory_kv[0][0]
        if k0.shape[0] != curr.shape[0]:
            raise ValueError(f"batch sizes differ: curr {curr.shape}, memory keys {k0.shape}")
        if memory_mask is not None and memory_mask.shape != (k0.shape[0], k0.shape[2]):
            raise ValueError(f"memory_mask shape {memory_mask.shape}, expected {(k0.shape[0], k0.shape[2])}")
        output = curr
        if self.pos_enc_at_input and curr_pos is not None:
            output = output + 0.1 * curr_pos
        for layer, kv in zip(self.layers, memory_kv, strict=True):
            output = layer.attend(output, kv, curr_pos, memory_mask, deterministic)
        return self.norm(output)

    def __call__(
        self,
        curr: jax.Array,
        memory: jax.Array,
        curr_pos: jax.Array | None = None,
        memory_pos: jax.Array | None = None,
        num_obj_ptr_tokens: int = 0,
        memory_mask: jax.Array | None = None,
        deterministic: bool = True,
        key_scale: jax.Array | None = None,
    ) -> jax.Array:
        """``curr (B, HW, C)`` conditioned on ``memory (B, Nm, 64)`` -> ``(B, HW, C)``.

        Args:
          curr: current-frame features, batch-first.
          memory: spatial memory tokens followed by ``num_obj_ptr_tokens`` object-pointer tokens.
          curr_pos, memory_pos: position encodings of the same shapes.
          num_obj_ptr_tokens: trailing memory tokens that get no rotary encoding.
          memory_mask: ``(B, Nm)`` bool, False for memory slots to ignore; None attends to all.
          deterministic: False turns on dropout (needs a ``'dropout'`` RNG).
          key_scale: ``(B, Nm)`` per-token factor on the key input (SAM2Long's object-score weighting), or None.
        """
        if curr.shape[0] != memory.shape[0]:
            raise ValueError(f"batch sizes differ: curr {curr.shape}, memory {memory.shape}")
        memory_kv = self.project_memory(memory, memory_pos, curr.shape[1], num_obj_ptr_tokens, key_scale)
        return self.attend(curr, curr_pos, memory_kv, memory_mask, deterministic)
