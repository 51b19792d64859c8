"""Compile once: JAX's persistent compilation cache for every entry point, and a counter of compilations.

``enable_compilation_cache()`` is called by the predictors, the CLI, ``eval.py`` and ``train.py``: compiled XLA
executables are written to ``$SAM2_JAX_CACHE/xla`` (default ``~/.cache/sam2_jax/xla``) and a later process that
traces the same function with the same shapes, options and jaxlib loads them instead of compiling. Set
``SAM2_JAX_COMPILATION_CACHE=0`` (or pass ``--no-compile-cache`` to the CLI) to turn it off, or
``SAM2_JAX_COMPILATION_CACHE=/some/dir`` to put it elsewhere. A cache folder the user configured through JAX
(``jax_compilation_cache_dir``) is left as it is.

``CompileCounter`` counts the backend compilations of a block of code and how many of them the persistent cache
answered (``jax.monitoring`` events), for benchmarks and tests that check "compiles at most once".
"""

import os
import threading
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from sam2_jax.utils.paths import cache_dir

ENV = "SAM2_JAX_COMPILATION_CACHE"
_OFF = ("0", "false", "off", "no")
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


def default_cache_dir() -> Path:
    """``$SAM2_JAX_COMPILATION_CACHE`` when it names a folder, else ``$SAM2_JAX_CACHE/xla``."""
    value = os.environ.get(ENV, "")
    if value and value.lower() not in _OFF + ("1", "true", "on", "yes"):
        return Path(value)
    return cache_dir() / "xla"


def enable_compilation_cache(path: str | os.PathLike | None = None, enabled: bool = True) -> str | None:
    """Turn on the persistent compilation cache (idempotent).

    Args:
      path: the cache folder; default ``default_cache_dir()``.
      enabled: False (or ``SAM2_JAX_COMPILATION_CACHE=0``) leaves the cache off.
    Returns:
      The folder in use, or None when the cache is off.
    """
    if not enabled or os.environ.get(ENV, "").lower() in _OFF:
        return None
    current = jax.config.jax_compilation_cache_dir
    if current:  # the user's (or an earlier call's) folder stands
        return current
    folder = Path(path) if path is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    compilation_cache.set_cache_dir(str(folder))
    # Every executable, not only those that took a second: the point is that a warm process compiles nothing.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return str(folder)


class CompileCounter:
    """Counts backend compilations while active: ``compiles`` (all), ``cache_hits`` (answered by the persistent
    cache) and ``fresh`` (compiled by XLA). Usable as a context manager or with ``start``/``stop``."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self.compiles = 0
        self.cache_hits = 0
        self.compile_seconds = 0.0
        self._active = False

    @property
    def fresh(self) -> int:
        return self.compiles - self.cache_hits

    def _on_duration(self, event: str, seconds: float, **kwargs) -> None:
        if event == _BACKEND_COMPILE:
            with self._lock:
                self.compiles += 1
                self.compile_seconds += seconds

    def _on_event(self, event: str, **kwargs) -> None:
        if event == _CACHE_HIT:
            with self._lock:
                self.cache_hits += 1

    def start(self) -> "CompileCounter":
        if not self._active:
            jax.monitoring.register_event_duration_secs_listener(self._on_duration)
            jax.monitoring.register_event_listener(self._on_event)
            self._active = True
        return self

    def stop(self) -> None:
        if self._active:
            jax.monitoring.unregister_event_duration_listener(self._on_duration)
            jax.monitoring.unregister_event_listener(self._on_event)
            self._active = False

    def __enter__(self) -> "CompileCounter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
