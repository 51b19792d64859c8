"""Freezing configs without the ``ml_collections`` aliasing trap.

``ml_collections.FrozenConfigDict(cfg)`` keeps a reference to ``cfg``'s nested ``ConfigDict`` s, and its ``__hash__``
and ``__eq__`` read them (ml_collections 1.1.0). Mutating a nested field of ``cfg`` after freezing therefore changes
the *old* frozen config's hash and equality: two modules built from ``cfg`` before and after
``cfg.train.remat = "full"`` compare equal, and ``jax.jit`` (whose static arguments are our modules and configs)
silently reuses the first one's compiled function. ``freeze_config`` freezes a deep copy, so a frozen config never
changes after it is made. ``ml_collections.ConfigDict(cfg)`` is a *shallow* copy (its nested dicts are ``cfg``'s):
``copy_config`` is the deep one, for a config that will be changed without touching the caller's.
"""

import copy

import ml_collections


def copy_config(cfg) -> ml_collections.ConfigDict:
    """A mutable deep copy of ``cfg`` (a ``ConfigDict``, ``FrozenConfigDict`` or plain dict)."""
    return copy.deepcopy(ml_collections.ConfigDict(cfg))


def freeze_config(cfg) -> ml_collections.FrozenConfigDict:
    """An immutable snapshot of ``cfg`` (a ``ConfigDict``, ``FrozenConfigDict`` or plain dict)."""
    return ml_collections.FrozenConfigDict(copy_config(cfg))
