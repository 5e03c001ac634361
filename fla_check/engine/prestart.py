"""Processes spawned before the parent imports torch (the CLI's ``run``): the isolation worker and
the compile warm-up's pool.

Standard library only at import time, so the CLI can start them before its own imports: their
2-5 s starts (each spawned process imports torch and triton itself) then overlap the parent's
imports instead of following them. :class:`fla_check.engine.isolation.Worker` adopts the worker
on first use; :class:`fla_check.engine.warmup.BackgroundWarmup` adopts the warm-up pool
(:class:`WarmupPool`, also what it starts itself when none was prestarted). On a cold GPU run the
warm-up processes used to start 4.5 s after spawn and begin compiling after another 5 s of
importing and planning (docs/gpu/perf-h200-10).
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

from fla_check.errors import UsageError

_PRESTARTED: dict[str, tuple[Any, Any, str]] = {}  # device -> (process, parent end of its pipe, log path)
JOBS_ENV = "FLA_CHECK_WARMUP_JOBS"
MAX_JOBS = 16  # warm-up processes: each holds a CUDA context (~0.5 GB) and compiles on its own core


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


def default_jobs(buckets: int, spare: int = 0) -> int:
    """``FLA_CHECK_WARMUP_JOBS``, else one process per core (less `spare` cores) up to
    :data:`MAX_JOBS`, at most one per bucket."""
    env = os.environ.get(JOBS_ENV)
    if env:
        if not env.isdigit() or int(env) < 1:
            raise UsageError(f"{JOBS_ENV}={env!r}: a positive number of processes")
        return min(int(env), max(1, buckets))
    return max(1, min(MAX_JOBS, (os.cpu_count() or 1) - spare, buckets))


WARMUP_NICE = 10  # compile processes' CPU priority below the search's (main process, isolation worker, planner)


@dataclass
class WarmupPool:
    """The warm-up's processes (``spawn`` pools): one planner at normal priority, which streams
    the buckets into `buckets` as it draws them (:func:`planned_bucket_queue` there), and `jobs`
    compile processes at :data:`WARMUP_NICE`, so that compiling ahead never takes a core from
    the search's own critical path."""

    planner: Any
    pool: Any
    buckets: Any  # multiprocessing SimpleQueue: planned buckets, then None when the plan is done
    jobs: int
    device: str

    def terminate(self) -> None:
        for pool in (self.planner, self.pool):
            pool.terminate()

    def join(self) -> None:
        for pool in (self.planner, self.pool):
            pool.join()


_BUCKET_QUEUE: Any = None  # in a warm-up process: the pool's bucket queue
_WARMUP: Optional[WarmupPool] = None  # the prestarted pool, until adopted or discarded


def start_warmup_pool(device: str, jobs: int) -> WarmupPool:
    """The planner and `jobs` compile processes for `device` (spawn: never fork a process that may
    hold CUDA); each imports what a warm-up needs as it starts."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    path = tuple(sys.path)
    planner = ctx.Pool(1, initializer=_init_warmup_process, initargs=(queue, device, path, 0))
    pool = ctx.Pool(jobs, initializer=_init_warmup_process, initargs=(queue, device, path, WARMUP_NICE))
    return WarmupPool(planner, pool, queue, jobs, device)


def planned_bucket_queue() -> Any:
    """In a warm-up process: the queue its pool's planning task streams buckets into."""
    if _BUCKET_QUEUE is None:
        raise RuntimeError("not a warm-up process of fla_check.engine.prestart.start_warmup_pool")
    return _BUCKET_QUEUE


def _init_warmup_process(queue: Any, device: str, path: tuple[str, ...], nice: int) -> None:
    """A warm-up process's start: lower its priority by `nice`, keep the queue, select and probe
    the backend (its probe kernels compile, the CUDA context is created) and import the search
    and the runner now, while the parent is still starting. Never raises (a raising initializer
    makes the pool respawn its processes forever): what fails here fails again, with its reason,
    in the first task."""
    global _BUCKET_QUEUE
    _BUCKET_QUEUE = queue
    sys.path.extend(p for p in path if p not in sys.path)
    try:
        if nice:
            os.nice(nice)
        from fla_check.backend import get_backend

        get_backend(device)
        import fla_check.engine.runner  # noqa: F401
        import fla_check.engine.search  # noqa: F401
    except Exception:  # noqa: BLE001 - see the docstring
        pass


def prestart_warmup(device: str) -> None:
    """Spawn the warm-up pool of `device` now (:func:`default_jobs` processes, one core left to
    the search); adopted by the run's background warm-up (:func:`take_prestarted_warmup`), or
    discarded when the run does not warm (:func:`discard_prestarted_warmup`)."""
    global _WARMUP
    if _WARMUP is None:
        _WARMUP = start_warmup_pool(device, default_jobs(MAX_JOBS, spare=1))


def take_prestarted_warmup(device: str) -> Optional[WarmupPool]:
    """The pool :func:`prestart_warmup` started for `device`, once; or None (a pool started for
    another device is discarded)."""
    global _WARMUP
    pool, _WARMUP = _WARMUP, None
    if pool is not None and pool.device != device:
        pool.terminate()
        return None
    return pool


def discard_prestarted_warmup() -> None:
    """End a prestarted warm-up pool nobody will adopt (the run does not warm)."""
    global _WARMUP
    if _WARMUP is not None:
        _WARMUP.terminate()
        _WARMUP = None
