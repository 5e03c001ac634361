"""Process-wide control of ``triton.autotune`` kernels: pin to the first config, force one config.

`triton.autotune` benchmarks every config through ``driver.active``, which the CPU interpreter
lacks ("0 active drivers"). Pinning replaces ``Autotuner.prune_configs`` with the kernel's own
``early_config_prune`` followed by its first surviving config (Triton's single-config path, no
benchmark). The pin is process-wide (autograd runs backward kernels outside any scope);
:func:`unpin_autotune` restores Triton's behaviour. While pinned, configs cached by an unpinned
call are ignored (every call prunes anew): a picked config never leaks into a pinned check.
A pinned config that does not fit the GPU (Triton's ``OutOfResources``: shared memory,
registers) is passed over for the next surviving one, as the autotuner's benchmark passes over
it (:func:`run_fitting`); the tuner remembers it for the rest of the process.
Built-in autotuned kernels call :func:`pin_on_interpreter` before they launch.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

_ORIGINAL: Optional[Callable] = None
_ORIGINAL_RUN: Optional[Callable] = None  # Triton's Autotuner.run, kept from the first pin on
_PROCESS_WIDE = False  # pinned by pin_autotune(process_wide=True): scopes leave it in place


def _pinned_run(self, *args, **kwargs):
    """Autotuner.run while pinned: a config cached by an unpinned call (``--configs picked``,
    an earlier check in the same process) must not outlive the pin, so every pinned call prunes
    anew (one config: Triton's no-benchmark path). A wrapper that captured this function and
    runs after an unpin (autotune_scope's) gets Triton's plain run."""
    if is_pinned():
        return run_fitting(_ORIGINAL_RUN, self, *args, **kwargs)
    return _ORIGINAL_RUN(self, *args, **kwargs)


def run_fitting(run: Callable, tuner, *args, **kwargs):
    """``run(tuner, *args, **kwargs)``; while pinned, a config that raises ``OutOfResources`` on
    this GPU is marked unfit on the tuner (:func:`_first_config` skips it) and the call retried
    with the next one. A tuner down to one config (a forced ``--config``) raises as it is."""
    from triton.runtime.errors import OutOfResources

    while True:
        if is_pinned():
            tuner.cache.clear()  # the single config this call prunes to is then the one cached
        try:
            return run(tuner, *args, **kwargs)
        except OutOfResources:
            chosen = next(iter(tuner.cache.values()), None)
            if not is_pinned() or len(tuner.configs) <= 1 or chosen is None:
                raise
            unfit = tuner.__dict__.setdefault("fla_check_unfit", set())
            index = next(i for i, c in enumerate(tuner.configs) if c is chosen)
            if index in unfit or len(unfit) + 1 >= len(tuner.configs):
                raise
            unfit.add(index)  # the next pass (cache cleared above) prunes past it


def _first_config(self, kwargs: dict) -> list:
    """Autotuner.prune_configs replacement: the kernel's own pruning, then its first config that
    has not been found too large for this GPU (:func:`run_fitting`)."""
    configs = self.configs
    if self.early_config_prune:
        configs = self.early_config_prune(self.configs, self.nargs, **kwargs) or configs
    unfit = {id(self.configs[i]) for i in self.__dict__.get("fla_check_unfit", ())}
    fitting = [c for c in configs if id(c) not in unfit]
    return list((fitting or configs)[:1])


def is_interpreter() -> bool:
    """Whether Triton runs (or will run) in interpreter mode in this process."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def pin_autotune(process_wide: bool = False) -> bool:
    """Make every triton.autotune kernel use its first config; True if this call installed it.
    `process_wide`: the pin outlives any :func:`pinned_autotune` scope it happens inside (the fla
    provider pins once per process, possibly while a runner's scope is open)."""
    global _ORIGINAL, _ORIGINAL_RUN, _PROCESS_WIDE
    from triton.runtime.autotuner import Autotuner

    _PROCESS_WIDE = _PROCESS_WIDE or process_wide
    if _ORIGINAL is not None:
        return False
    _ORIGINAL = Autotuner.prune_configs
    if Autotuner.run is not _pinned_run:
        _ORIGINAL_RUN = Autotuner.run
    Autotuner.prune_configs, Autotuner.run = _first_config, _pinned_run
    return True


def unpin_autotune() -> None:
    """Undo :func:`pin_autotune` (no-op when not pinned), a process-wide pin too."""
    global _ORIGINAL, _ORIGINAL_RUN, _PROCESS_WIDE
    if _ORIGINAL is None:
        return
    from triton.runtime.autotuner import Autotuner

    Autotuner.prune_configs, Autotuner.run = _ORIGINAL, _ORIGINAL_RUN
    _ORIGINAL, _PROCESS_WIDE = None, False


def is_pinned() -> bool:
    return _ORIGINAL is not None


def pin_on_interpreter() -> None:
    """Pin autotuned kernels when running in the interpreter (it cannot benchmark configs)."""
    if is_interpreter():
        pin_autotune()


@contextmanager
def pinned_autotune() -> Iterator[None]:
    """Scoped pin; leaves an outer pin in place, and a process-wide pin made inside the scope."""
    installed = pin_autotune()
    try:
        yield
    finally:
        if installed and not _PROCESS_WIDE:
            unpin_autotune()


@contextmanager
def unpinned_autotune() -> Iterator[None]:
    """Scoped free autotuning (the autotuner benchmarks and picks); re-pins if it was pinned."""
    was, process_wide = is_pinned(), _PROCESS_WIDE
    unpin_autotune()
    try:
        yield
    finally:
        if was:
            pin_autotune(process_wide)
