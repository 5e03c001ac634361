"""An isolation worker spawned before the parent imports torch (the CLI's ``run``).

Standard library only at import time, so the CLI can start the worker before its own imports:
the worker's 2-5 s start (a CUDA worker is spawned and imports torch and triton itself) then
overlaps the parent's imports instead of following them.
:class:`fla_check.engine.isolation.Worker` adopts it on first use. The warm-up's processes are
prestarted the same way (:mod:`fla_check.engine.warmup_pool`).
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Optional

_PRESTARTED: dict[str, tuple[Any, Any, str]] = {}  # device -> (process, parent end of its pipe, log path)


def prestart(device: str) -> None:
    """Spawn the isolation worker of `device` now (see the module doc); adopted on first use
    (:func:`take_prestarted`), or, never adopted, a daemon ended with this process."""
    import multiprocessing

    _PRESTARTED[device] = start_worker(multiprocessing.get_context("spawn"), serve_prestarted, device)


def start_worker(ctx: Any, target: Any, device: str) -> tuple[Any, Any, str]:
    """Start worker process ``target(conn, device, log_path)`` in multiprocessing context `ctx`
    (a daemon, its output to a new log file): the process, the parent's end of its pipe, the log."""
    fd, log_path = tempfile.mkstemp(prefix="fla_check_worker_", suffix=".log")
    os.close(fd)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, device, log_path), daemon=True, name=f"fla-check-worker-{device}")
    proc.start()
    child.close()  # so the parent sees EOF when the worker dies
    return proc, parent, log_path


def serve_prestarted(conn, device: str, log_path: str) -> None:
    """A prestarted worker's entry point (this module stays importable without torch)."""
    from fla_check.engine.worker import main

    main(conn, device, log_path)


def take_prestarted(device: str) -> Optional[tuple[Any, Any, str]]:
    """The worker :func:`prestart` started for `device` (process, pipe, log path), once; or None."""
    return _PRESTARTED.pop(device, None)


def triton_cache_dir() -> str:
    """Where Triton keeps compiled kernels for this process and its children."""
    return os.environ.get("TRITON_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".triton", "cache")
