"""Query-blocked attention: large score matrices are computed a block of queries at a time with the same numbers."""

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.sam import transformer as T


def test_block_sizes():
    assert T._query_block(8, 4096, 28736) == 128  # 8 objects against a full memory bank: 117 MB of scores a block
    assert T._query_block(1, 4096, 28736) == 1024
    assert T._query_block(1, 4096, 64) == 4096  # small score matrices are not blocked
    assert T._query_block(1, 4099, 2**25) == 1  # a prime query count falls back to single rows


def test_blocked_attention_equals_whole(monkeypatch):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    q = jax.random.normal(k1, (3, 2, 256, 32))
    k = jax.random.normal(k2, (3, 2, 700, 32))
    v = jax.random.normal(k3, (3, 2, 700, 32))
    mask = jnp.arange(700)[None] < jnp.array([[700], [300], [5]])
    whole = T.scaled_dot_product_attention(q, k, v, jnp.float32, mask)
    grad_whole = jax.grad(lambda q: T.scaled_dot_product_attention(q, k, v, jnp.float32, mask).sum())(q)
    monkeypatch.setattr(T, "SCORE_BUDGET", 6 * 700 * 40)
    assert T._query_block(6, 256, 700) == 32
    blocked = T.scaled_dot_product_attention(q, k, v, jnp.float32, mask)
    grad_blocked = jax.grad(lambda q: T.scaled_dot_product_attention(q, k, v, jnp.float32, mask).sum())(q)
    np.testing.assert_allclose(blocked, whole, atol=2e-6, rtol=0)
    np.testing.assert_allclose(grad_blocked, grad_whole, atol=2e-6, rtol=0)
