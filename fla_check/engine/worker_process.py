"""A worker process's start-up and log: stdout and stderr sent to one file (emptied before each
task), faulthandler on, Ctrl-C left to the parent, the backend selected, "ready" said.

Standard library only at import time: a worker imports it before anything that may touch CUDA
(the selftest's pool sets ``CUDA_VISIBLE_DEVICES`` first). Used by the isolation workers
(:mod:`fla_check.engine.worker`) and the selftest's (:mod:`fla_check.commands.selftest.job_worker`).
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import traceback
from typing import Optional


def redirect_output(log_path: str) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to `log_path`."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def truncate_log() -> None:
    """Empty the log (what the parent reads after a crash is the current task's output only)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.ftruncate(2, 0)


def open_cuda_context() -> None:
    """Create this process's CUDA context now (torch creates it on first use): its 0.3-1 s then
    overlap the parent's own start instead of counting against the first call's --case-timeout."""
    import torch

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()


def start(conn, device: str, log_path: str, dump_signal: Optional[int] = None) -> bool:
    """Begin a worker: log to `log_path`, faulthandler on (also on `dump_signal`, the parent's
    "where are you stuck?"), SIGINT ignored, the backend for `device` selected (on a GPU its CUDA
    context created); then tell the
    parent ``("ready", pid)`` and return True, or ``("failed", summary, traceback)`` and False."""
    redirect_output(log_path)
    faulthandler.enable(all_threads=False)
    if dump_signal is not None:
        faulthandler.register(dump_signal, all_threads=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from fla_check.backend import get_backend

        if get_backend(device).device == "cuda":
            open_cuda_context()
    except BaseException as exc:  # noqa: BLE001 - tell the parent why, then exit
        conn.send(("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return False
    conn.send(("ready", os.getpid()))
    return True

