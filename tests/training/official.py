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
