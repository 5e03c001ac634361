"""A worker process of ``fla-check selftest --jobs N``: runs whole catalog entries.

Started by :mod:`fla_check.commands.selftest.jobs` (the isolation workers' process context:
``spawn`` for CUDA, the fork server on CPU). Standard library only at import time: the pool's
GPU pin (``CUDA_VISIBLE_DEVICES``) is set here before anything imports torch's CUDA side.
It adopts the parent's environment and ``sys.path``, selects the backend, says
``("ready", pid)``, then answers each ``(index, entry, options)`` with

- ``("done", index, rows)``: :func:`fla_check.commands.selftest.engine.run_entry`'s results as
  JSON rows;
- ``("raised", index, exception pickle or None, summary, traceback)``: run_entry raised (the
  parent stops the run, as the sequential selftest would).

``None`` asks it to exit. Its stdout and stderr go to a log (truncated before each entry) with
:mod:`faulthandler` on, so a crash leaves the dying entry's stack for the parent's report.
SIGINT is ignored: Ctrl-C is the parent's to handle.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from typing import Any, Mapping, Optional, Sequence

from fla_check.engine.worker_process import start, truncate_log

CRASH_ENV = "FLA_CHECK_SELFTEST_CRASH"  # tests only: the entry id on which a worker kills itself (SIGSEGV)


def adopt(env: Mapping[str, str], gpu: Optional[str], path: Sequence[str]) -> None:
    """This process's environment becomes `env` (the parent's; a fork-server child inherits the
    server's), pinned to `gpu` when given; `path` is added to ``sys.path``."""
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    sys.path.extend(p for p in path if p not in sys.path)



def serve(index: int, entry: Any, options: dict) -> tuple:
    """Run one entry; the reply (see the module docstring)."""
    from fla_check.commands.selftest.engine import run_entry

    if os.environ.get(CRASH_ENV) == entry.id:
        os.kill(os.getpid(), signal.SIGSEGV)
    try:
        return ("done", index, [r.to_json() for r in run_entry(entry, **options)])
    except Exception as exc:  # noqa: BLE001 - the parent re-raises it
        try:
            blob: Optional[bytes] = pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text only
            blob = None
        return ("raised", index, blob, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def main(conn, device: str, gpu: Optional[str], env: dict, path: tuple, log_path: str) -> None:
    """The worker process: pin, select the backend, then run entries until told to stop."""
    adopt(env, gpu, path)
    if not start(conn, device, log_path):
        return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        truncate_log()
        conn.send(serve(*request))
