"""Let third-party autotuned Triton kernels run under the CPU interpreter (TRITON_INTERPRET=1).

`triton.autotune` benchmarks every config through `driver.active`, which does not exist in
the interpreter ("0 active drivers"). Pinning the autotuner to the first config that survives
the kernel's own `early_config_prune` skips benchmarking entirely (Triton's single-config path).
The pin is process-wide because autograd runs backward kernels outside the provider's call;
`unpin_autotune` restores Triton's behaviour (configs already chosen stay cached).
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


@contextmanager
def pinned_autotune() -> Iterator[None]:
    """Scoped pin (forward-only use); leaves an outer pin in place."""
    installed = pin_autotune()
    try:
        yield
    finally:
        if installed:
            unpin_autotune()
