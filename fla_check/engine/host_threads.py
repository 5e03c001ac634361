"""One CPU thread for torch in fla-check's own processes on a GPU (standard library only at import).

On a GPU run the harness's host-side tensors are tiny (drawing a case: about 7,000 CPU ops for
gated_delta's 30 ci cases), and torch's default intra-op pool has one thread per core. While the
warm-up's compile processes hold the cores, every parallel op of that pool waits for threads that
are not scheduled: on a 32-core H200 host, planning gated_delta's 30 cases took 0.36-0.54 s alone and
26.1 s beside 16 busy processes at nice 10 (delta: 0.16 -> 6.3 s; docs/gpu/perf-h200-13). The search,
its planner and the selftest's workers draw the same way.

The CLI calls :func:`one_host_thread` once it knows the run is on a GPU: before it imports torch
where it can (the processes it prestarts then inherit the setting), else right after. The pytest
plugin does not: it runs in the user's own process.
"""
from __future__ import annotations

import os
import sys

ENV = "OMP_NUM_THREADS"


def one_host_thread() -> int:
    """``OMP_NUM_THREADS=1`` unless set already (torch reads it at import: this process and every
    process it starts from now on) and, when torch is imported, its intra-op threads set to that
    count now. Returns the count."""
    os.environ.setdefault(ENV, "1")
    try:
        threads = max(1, int(os.environ[ENV]))
    except ValueError:
        threads = 1
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    return threads
