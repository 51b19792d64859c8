"""The official training harness, now ``sam2_jax.reference.training``; re-exported for the tests."""

from sam2_jax.reference.training import (  # noqa: F401
    install_fvcore_schedulers,
    official_clip_forward,
    official_loss_fns,
    official_mose_optim_config,
    official_sam2_utils_with_exact_edt,
    official_sam2train,
)
