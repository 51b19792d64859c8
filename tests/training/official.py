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
