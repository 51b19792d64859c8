"""Params to and from orbax checkpoint directories (the converter's output format)."""

import os

import numpy as np


def save_params(params: dict, path: str | os.PathLike) -> None:
    """Write params (nested dict of arrays) to a new orbax directory ``path`` (absolute path used)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        raise ValueError(f"output {path!r} already exists; choose a new directory or delete it")
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, params)


def restore_params(path: str | os.PathLike) -> dict:
    """Read params written by ``save_params`` as numpy arrays.

    Raises:
      ValueError: ``path`` is not a folder orbax wrote (no ``_METADATA``), instead of orbax's own
        ``FileNotFoundError`` about that file.
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(os.path.join(path, "_METADATA")):
        raise ValueError(
            f"{path!r} is not an orbax params folder (it has no _METADATA file): give an official .pt or a folder "
            "written by `sam2-jax convert`"
        )
    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(path)
    return _to_numpy(params)


def _to_numpy(tree):
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)
