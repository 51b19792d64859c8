"""sam2-jax: SAM 2 in JAX/Flax, numerically equal to the official PyTorch code."""

from sam2_jax.build_sam import SAM2Model, build_sam2

__all__ = ["SAM2Model", "build_sam2", "SAM2ImagePredictor"]


def __getattr__(name):
    # Lazy so that `import sam2_jax` stays light.
    if name == "SAM2ImagePredictor":
        from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

        return SAM2ImagePredictor
    raise AttributeError(name)
