"""Process-wide control of ``triton.autotune`` kernels: pin to the first config, force one config.

`triton.autotune` benchmarks every config through ``driver.active``, which the CPU interpreter
lacks ("0 active drivers"). Pinning replaces ``Autotuner.prune_configs`` with the kernel's own
``early_config_prune`` followed by its first surviving config (Triton's single-config path, no
benchmark). The pin is process-wide (autograd runs backward kernels outside any scope);
:func:`unpin_autotune` restores Triton's behaviour (configs already chosen stay cached).
Built-in autotuned kernels call :func:`pin_on_interpreter` before they launch.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

_ORIGINAL: Optional[Callable] = None


def _first_config(self, kwargs: dict) -> list:
    """Autotuner.prune_configs replacement: the kernel's own pruning, then its first config."""
    configs = self.configs
    if self.early_config_prune:
        configs = self.early_config_prune(self.configs, self.nargs, **kwargs) or configs
    return list(configs[:1])


def is_interpreter() -> bool:
    """Whether Triton runs (or will run) in interpreter mode in this process."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def pin_autotune() -> bool:
    """Make every triton.autotune kernel use its first config; True if this call installed it."""
    global _ORIGINAL
    from triton.runtime.autotuner import Autotuner

    if _ORIGINAL is not None:
        return False
    _ORIGINAL = Autotuner.prune_configs
    Autotuner.prune_configs = _first_config
    return True


def unpin_autotune() -> None:
    """Undo :func:`pin_autotune` (no-op when not pinned)."""
    global _ORIGINAL
    if _ORIGINAL is None:
        return
    from triton.runtime.autotuner import Autotuner

    Autotuner.prune_configs = _ORIGINAL
    _ORIGINAL = None


def is_pinned() -> bool:
    return _ORIGINAL is not None


def pin_on_interpreter() -> None:
    """Pin autotuned kernels when running in the interpreter (it cannot benchmark configs)."""
    if is_interpreter():
        pin_autotune()


@contextmanager
def pinned_autotune() -> Iterator[None]:
    """Scoped pin; leaves an outer pin in place."""
    installed = pin_autotune()
    try:
        yield
    finally:
        if installed:
            unpin_autotune()


@contextmanager
def unpinned_autotune() -> Iterator[None]:
    """Scoped free autotuning (the autotuner benchmarks and picks); re-pins if it was pinned."""
    was = is_pinned()
    unpin_autotune()
    try:
        yield
    finally:
        if was:
            pin_autotune()
