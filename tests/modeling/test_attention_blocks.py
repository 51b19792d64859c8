"""Query-blocked attention: large score matrices are computed a block of queries at a time with the same numbers."""

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling import backend as B


def test_block_sizes():
    assert B._query_block(8, 4096, 28736) == 128  # 8 objects against a full memory bank: 117 MB of scores a block
    assert B._query_block(1, 4096, 28736) == 1024
    assert B._query_block(1, 4096, 64) == 4096  # small score matrices are not blocked
    assert B._query_block(1, 4099, 2**25) == 1  # a prime query count falls back to single rows


def _chunked(q, k, v, mask):
    return B.dot_product_attention(q, k, v, impl="chunked", key_mask=mask)


def test_blocked_attention_equals_whole(monkeypatch):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    q = jax.random.normal(k1, (3, 2, 256, 32))
    k = jax.random.normal(k2, (3, 2, 700, 32))
    v = jax.random.normal(k3, (3, 2, 700, 32))
    mask = jnp.arange(700)[None] < jnp.array([[700], [300], [5]])
    whole = _chunked(q, k, v, mask)
    grad_whole = jax.grad(lambda q: _chunked(q, k, v, mask).sum())(q)
    monkeypatch.setattr(B, "SCORE_BUDGET", 6 * 700 * 40)
    assert B._query_block(6, 256, 700) == 32
    blocked = _chunked(q, k, v, mask)
    grad_blocked = jax.grad(lambda q: _chunked(q, k, v, mask).sum())(q)
    np.testing.assert_allclose(blocked, whole, atol=2e-6, rtol=0)
    np.testing.assert_allclose(grad_blocked, grad_whole, atol=2e-6, rtol=0)


def test_fixed_query_chunks_equal_whole():
    """Fixed query chunks (the global blocks' split, the last chunk padded) give the one-piece numbers."""
    q, k, v = jax.random.normal(jax.random.PRNGKey(1), (3, 1, 4, 1100, 32))
    chunks = B.QueryChunks(size=256, above=2**22)
    assert 4 * 1100 * 1100 > chunks.above  # 1100 queries: four full chunks and a padded one
    chunked = jax.jit(lambda q, k, v: B.dot_product_attention(q, k, v, impl="chunked", query_chunks=chunks))(q, k, v)
    whole = B._sdpa(q, k, v, jnp.float32, None, 0.0, None)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=0, atol=1e-6)
