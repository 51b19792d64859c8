"""Model configs: one file per official model, ``get_config()`` each (ml_collections)."""

import importlib.util
import os

import ml_collections

NAMES = [f"sam{v}_hiera_{s}" for v in ("2", "2.1") for s in ("t", "s", "b+", "l")]
ALIASES = {
    f"sam{v}_hiera_{long}": f"sam{v}_hiera_{s}"
    for v in ("2", "2.1")
    for s, long in (("t", "tiny"), ("s", "small"), ("b+", "base_plus"), ("l", "large"))
}


def get_config(name: str) -> ml_collections.ConfigDict:
    """Config by name (``sam2.1_hiera_t``, ``sam2.1_hiera_tiny``, ...) or path to a config file."""
    if name.endswith(".py") and os.path.isfile(name):
        path = name
    else:
        name = ALIASES.get(name, name)
        if name not in NAMES:
            raise ValueError(f"unknown model config {name!r}; expected one of {NAMES}")
        path = os.path.join(os.path.dirname(__file__), f"{name}.py")
    spec = importlib.util.spec_from_file_location("_sam2_jax_config", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()
