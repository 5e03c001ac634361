"""The compile warm-up's processes, startable before the parent imports torch (the CLI's ``run``).

Standard library only at import time, so the CLI can spawn them before its own imports
(:func:`prestart_warmup`): their 2-5 s starts (each imports torch and triton and probes the
backend) then overlap the parent's. :class:`fla_check.engine.warmup.BackgroundWarmup` adopts
them (:func:`take_prestarted_warmup`), or starts its own (:func:`start_warmup_pool`). Spawned
after the parent's imports, on a cold GPU run they began compiling 8.6-11 s after spawn;
prestarted, at 4.3-5 s (docs/gpu/perf-h200-10).
"""
from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from typing import Any, Optional

from fla_check.errors import UsageError

JOBS_ENV = "FLA_CHECK_WARMUP_JOBS"
MAX_JOBS = 16  # warm-up processes: each holds a CUDA context (~0.5 GB) and compiles on its own core


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


def start_warmup_pool(device: str, jobs: Optional[int] = None) -> WarmupPool:
    """The planner and `jobs` compile processes for `device` (default :func:`default_jobs`, one
    core left to the search; spawn: never fork a process that may hold CUDA); each imports what a
    warm-up needs as it starts."""
    import multiprocessing

    jobs = jobs or default_jobs(MAX_JOBS, spare=1)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    path = tuple(sys.path)
    planner = ctx.Pool(1, initializer=_init_warmup_process, initargs=(queue, device, path, 0))
    pool = ctx.Pool(jobs, initializer=_init_warmup_process, initargs=(queue, device, path, WARMUP_NICE))
    return WarmupPool(planner, pool, queue, jobs, device)


def planned_bucket_queue() -> Any:
    """In a warm-up process: the queue its pool's planning task streams buckets into."""
    if _BUCKET_QUEUE is None:
        raise RuntimeError("not a warm-up process of fla_check.engine.warmup_pool.start_warmup_pool")
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
    """Spawn the warm-up pool of `device` now (:func:`start_warmup_pool`); adopted by the run's
    background warm-up (:func:`take_prestarted_warmup`), or discarded when the run does not warm
    (:func:`discard_prestarted_warmup`)."""
    global _WARMUP
    if _WARMUP is None:
        _WARMUP = start_warmup_pool(device)
        # a pool still pending at exit is ended here, not by multiprocessing's finalizer at shutdown
        # ("Exception ignored in: Pool.__del__", seen after GPU test runs)
        atexit.register(discard_prestarted_warmup)


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
