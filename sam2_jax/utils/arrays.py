"""``TensorLikeArray``: the predictors' numpy outputs, answering the torch idioms of the official notebooks.

The official video notebook writes ``(out_mask_logits[i] > 0.0).cpu().numpy()`` on every mask, and scripts write
``logits.float().detach().cpu().numpy()``. Our outputs are numpy arrays; this subclass of ``np.ndarray`` adds those
methods, each a no-op or a plain numpy conversion, so such a line runs unchanged. Everything else is numpy:
indexing, comparisons and ``&`` / ``|`` give a ``TensorLikeArray`` again (numpy keeps the subclass), reductions give
numpy scalars, and ``np.asarray(x)`` or ``x.numpy()`` gives a plain ``np.ndarray`` (no copy).
"""

from typing import Any

import numpy as np


class TensorLikeArray(np.ndarray):
    """A numpy array with ``.cpu()``, ``.numpy()``, ``.detach()``, ``.float()``, ``.bool()``, ``.long()``, ``.to()``."""

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        # A full reduction gives a numpy scalar, as for a plain array (json, int(), f-strings behave the same).
        if return_scalar:
            return arr[()]
        return super().__array_wrap__(arr, context, return_scalar)

    def cpu(self) -> "TensorLikeArray":
        """Already in host memory: the array itself."""
        return self

    def detach(self) -> "TensorLikeArray":
        """No autograd here: the array itself."""
        return self

    def numpy(self, force: bool = False) -> np.ndarray:
        """A plain ``np.ndarray`` view of the same data (``force`` is accepted as torch's)."""
        del force
        return self.view(np.ndarray)

    def float(self) -> "TensorLikeArray":
        """float32, as ``torch.Tensor.float``."""
        return self.astype(np.float32)

    def bool(self) -> "TensorLikeArray":
        return self.astype(bool)

    def long(self) -> "TensorLikeArray":
        return self.astype(np.int64)

    def to(self, *args: Any, **kwargs: Any) -> "TensorLikeArray":
        """Devices are accepted and ignored; a numpy dtype (or ``dtype=``) converts."""
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, type | np.dtype):
                dtype = a
        return self if dtype is None else self.astype(dtype)


def tensor_like(x: Any) -> TensorLikeArray:
    """``x`` as a ``TensorLikeArray`` (a view when ``x`` is already a numpy array)."""
    return np.asarray(x).view(TensorLikeArray)
