"""sam2-jax: SAM 2 in JAX/Flax, numerically equal to the official PyTorch code."""

__all__ = ["SAM2Model", "build_sam2", "SAM2ImagePredictor"]


def __getattr__(name):
    # Lazy, so that `import sam2_jax` stays light and `sam2_jax.export.runtime` (the runtime of an export) runs without
    # Flax or the model code.
    if name in ("SAM2Model", "build_sam2"):
        from sam2_jax import build_sam

        return getattr(build_sam, name)
    if name == "SAM2ImagePredictor":
        from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

        return SAM2ImagePredictor
    raise AttributeError(name)
