"""Import the official ``training`` package (installed with sam2==1.1.0) without its heavy optional dependencies.

``training/loss_fns.py`` imports ``CORE_LOSS_KEY`` from ``training/trainer.py``, which pulls in ``tensordict``,
``fvcore`` and the whole trainer; neither is a dependency of this project. When that import fails, a module holding
only the constant (``"core_loss"``, as in the official trainer) stands in for ``training.trainer``; the loss code
itself is the official one.
"""

import sys
import types


def official_loss_fns():
    """The official ``training.loss_fns`` module."""
    try:
        import training.trainer  # noqa: F401
    except ImportError:
        stub = types.ModuleType("training.trainer")
        stub.CORE_LOSS_KEY = "core_loss"
        sys.modules["training.trainer"] = stub
    import training.loss_fns

    return training.loss_fns


def official_sam2_utils_with_exact_edt():
    """The official ``sam2.modeling.sam2_utils``; when OpenCV is absent, ``cv2.distanceTransform`` (used only by
    ``sample_one_point_from_error_center``) is provided by scipy's exact Euclidean distance transform, which is what
    ``DIST_L2`` with mask size 0 (``DIST_MASK_PRECISE``) computes."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        import numpy as np
        from scipy import ndimage

        stub = types.ModuleType("cv2")
        stub.DIST_L2 = 2
        stub.distanceTransform = lambda src, dist_type, mask_size: ndimage.distance_transform_edt(src).astype(
            np.float32
        )
        sys.modules["cv2"] = stub
    import sam2.modeling.sam2_utils

    return sam2.modeling.sam2_utils


def install_fvcore_schedulers() -> None:
    """When fvcore is absent, provide the two ``fvcore.common.param_scheduler`` classes the official MOSE config
    names, with fvcore's definitions (``ConstantParamScheduler(value)``; ``CosineParamScheduler(start_value,
    end_value)(where) = end + 0.5 (start - end) (1 + cos(pi where))``)."""
    try:
        import fvcore.common.param_scheduler  # noqa: F401

        return
    except ImportError:
        pass
    import math

    class ConstantParamScheduler:
        def __init__(self, value):
            self._value = value

        def __call__(self, where):
            if where >= 1.0:
                raise RuntimeError(f"where in ParamScheduler must be in [0, 1]: got {where}")
            return self._value

    class CosineParamScheduler:
        def __init__(self, start_value, end_value):
            self._start_value, self._end_value = start_value, end_value

        def __call__(self, where):
            return self._end_value + 0.5 * (self._start_value - self._end_value) * (1 + math.cos(math.pi * where))

    mods = {n: types.ModuleType(n) for n in ("fvcore", "fvcore.common", "fvcore.common.param_scheduler")}
    mods["fvcore.common.param_scheduler"].ConstantParamScheduler = ConstantParamScheduler
    mods["fvcore.common.param_scheduler"].CosineParamScheduler = CosineParamScheduler
    mods["fvcore"].common = mods["fvcore.common"]
    mods["fvcore.common"].param_scheduler = mods["fvcore.common.param_scheduler"]
    sys.modules.update(mods)


def official_mose_optim_config():
    """The ``trainer.optim`` section of the official MOSE fine-tune YAML, interpolations resolved."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    for name, fn in (("divide", lambda a, b: a / b), ("times", lambda a, b: a * b)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    path = files("sam2") / "configs" / "sam2.1_training" / "sam2.1_hiera_b+_MOSE_finetune.yaml"
    cfg = OmegaConf.load(str(path))
    return cfg.trainer.optim
