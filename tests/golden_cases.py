"""Inputs of the golden-output checks, now ``sam2_jax.reference.golden``; re-exported for tests/test_golden.py."""

from sam2_jax.reference.golden import (  # noqa: F401
    IMAGE_CASES,
    MODEL,
    memory_attention_inputs,
    memory_encoder_inputs,
    shipped_photo,
)
