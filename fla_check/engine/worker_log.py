"""A worker process's log: its stdout and stderr sent to one file, emptied before each task.

Standard library only: a worker imports it before anything that may touch CUDA (the selftest's
pool sets ``CUDA_VISIBLE_DEVICES`` first). Used by the isolation workers
(:mod:`fla_check.engine.worker`) and the selftest's (:mod:`fla_check.commands.selftest.job_worker`).
"""
from __future__ import annotations

import os
import sys


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
