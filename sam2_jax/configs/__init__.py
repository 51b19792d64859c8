"""Model configs: one file per official model, ``get_config()`` each (ml_collections).

The files are found next to this module, wherever the package is installed: nothing depends on the working
directory. A ``configs/<name>.py`` path that does not exist from the working directory (a command copied from the
README and run elsewhere) falls back to the shipped file of that name.
"""

import importlib.util
import os

import ml_collections

NAMES = [f"sam{v}_hiera_{s}" for v in ("2", "2.1") for s in ("t", "s", "b+", "l")]
ALIASES = {
    f"sam{v}_hiera_{long}": f"sam{v}_hiera_{s}"
    for v in ("2", "2.1")
    for s, long in (("t", "tiny"), ("s", "small"), ("b+", "base_plus"), ("l", "large"))
}
CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def config_path(name: str) -> str:
    """The file of a config.

    Args:
      name: a model config name (``sam2.1_hiera_t``, ``sam2.1_hiera_tiny``, ...), a path to a config file, or the
        name of a shipped ``sam2_jax/configs/*.py`` file (``sam2_jax/configs/train_synthetic_tiny.py``).
    Returns:
      Path of the ``.py`` file.
    Raises:
      ValueError: an unknown name.
    """
    if name.endswith(".py"):
        if os.path.isfile(name):
            return name
        shipped = os.path.join(CONFIG_DIR, os.path.basename(name))
        if os.path.isfile(shipped):
            return shipped
        raise ValueError(f"config file {name!r} does not exist (and is not one of the shipped ones in {CONFIG_DIR})")
    name = ALIASES.get(name, name)
    if name not in NAMES:
        raise ValueError(f"unknown model config {name!r}; expected one of {NAMES}")
    return os.path.join(CONFIG_DIR, f"{name}.py")


def get_config(name: str) -> ml_collections.ConfigDict:
    """Config by name or path (see ``config_path``).

    Args:
      name: ``sam2.1_hiera_t``, ``sam2.1_hiera_tiny``, ... or a path to a config file with a ``get_config()``.
    Returns:
      A fresh ConfigDict (callers may change it).
    """
    spec = importlib.util.spec_from_file_location("_sam2_jax_config", config_path(name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()
