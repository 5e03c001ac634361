"""``fla-check selftest --jobs N``: catalog entries run in N worker processes.

Each worker (:mod:`fla_check.commands.selftest.job_worker`) is a process of its own (its own
CUDA context: ``spawn`` on a GPU, the fork server on CPU, as the isolation workers), runs one
whole entry at a time through :func:`fla_check.commands.selftest.engine.run_entry` and sends
its results back. Entries are handed out longest-first when there are cost hints (a previous
result's seconds per entry, :func:`costs_from`, or the shipped ones of
:mod:`fla_check.commands.selftest.costs`), else in catalog order; the caller puts the results
back in catalog order. With several GPUs visible, worker slot w is pinned to GPU
``w % n_gpus`` (:func:`fla_check.engine.sharding.gpu_for_index`, as pytest-xdist workers are).

A worker that dies (segfault, abort, a CUDA fault that kills it) loses only the entry it ran:
that entry is reported broken with the exit and the worker's last log lines, and a new worker
takes the slot. An exception raised by an entry ends the run, as in the sequential selftest.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from fla_check.commands.selftest import job_worker
from fla_check.engine.isolation import START_TIMEOUT, describe_exit, dispose, process_context, stack_excerpt
from fla_check.engine.sharding import gpu_for_index, visible_gpus
from fla_check.errors import FlaCheckError, UsageError

Jobs = Union[int, str]  # a number of workers, or "auto"


class SelftestJobError(FlaCheckError, RuntimeError):
    """A selftest worker could not start or an entry raised in it (fla-check's failure, exit 3)."""

    usage = False


def parse_jobs(text: Union[str, int]) -> Jobs:
    """'4' -> 4, 'auto' -> 'auto'; :class:`UsageError` for anything else or a count below 1."""
    value = str(text).strip().lower()
    if value == "auto":
        return "auto"
    try:
        jobs = int(value)
    except ValueError:
        raise UsageError(f"{text!r} is not a number of worker processes or 'auto'") from None
    if jobs < 1:
        raise UsageError(f"need at least 1 worker process (or auto), got {jobs}")
    return jobs


def resolve_jobs(jobs: Jobs, entries: int) -> int:
    """The number of workers: `jobs`, or for 'auto' one per usable CPU core, at most one per
    entry (compiling Triton kernels keeps one core busy per worker)."""
    if jobs == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(cores, entries))
    return parse_jobs(jobs)  # type: ignore[return-value]


def costs_from(result: Mapping[str, Any]) -> dict[str, float]:
    """Seconds per entry id of a previous ``selftest --json`` result (its search seconds,
    summed over the entry's modes); :class:`UsageError` when it is not one."""
    rows = result.get("results") if isinstance(result, Mapping) and result.get("kind") == "selftest" else None
    if not isinstance(rows, list):
        raise UsageError("not a `fla-check selftest --json` result (no kind 'selftest' with results)")
    costs: dict[str, float] = {}
    for row in rows:
        try:
            costs[str(row["id"])] = costs.get(str(row["id"]), 0.0) + float(row.get("search_seconds") or 0.0)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UsageError(f"a result row without an id and search_seconds: {row!r}") from None
    return costs


def handout_order(ids: Sequence[str], costs: Optional[Mapping[str, float]] = None) -> list[int]:
    """Indices of `ids` in the order workers get them: catalog order without `costs`; with
    them the costliest first, entries without a cost before all (they may be the longest), ties
    in catalog order."""
    if not costs:
        return list(range(len(ids)))
    return sorted(range(len(ids)), key=lambda i: (ids[i] in costs, -costs.get(ids[i], 0.0)))


@dataclass
class _Slot:
    """Worker slot `number` (its GPU pin, `gpu`) and the process in it, if any."""

    number: int
    gpu: Optional[str]
    proc: Any = None
    conn: Any = None
    log_path: str = ""
    ready: bool = False
    task: Optional[int] = None  # the entry it runs

    def start(self, device: str) -> None:
        ctx = process_context(device)
        fd, self.log_path = tempfile.mkstemp(prefix="fla_check_selftest_job_", suffix=".log")
        os.close(fd)
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=job_worker.main, daemon=True, name=f"fla-check-selftest-job-{self.number}",
                                args=(child, device, self.gpu, dict(os.environ), tuple(sys.path), self.log_path))
        try:
            self.proc.start()
        except BaseException:
            self.proc = None
            parent.close()
            raise
        finally:
            child.close()  # so this side sees EOF when the worker dies
        self.conn, self.ready, self.task = parent, False, None

    @property
    def running(self) -> bool:
        return self.proc is not None

    def exit_reason(self) -> str:
        """How the dead worker ended, with the last lines of its log (then forgets it)."""
        self.proc.join(10)
        code = self.proc.exitcode
        try:
            with open(self.log_path, "rb") as f:
                tail = stack_excerpt(f.read().decode(errors="replace"))
        except OSError:
            tail = ""
        self.discard()
        return f"selftest worker process {describe_exit(code)}" + (f"\n{tail}" if tail else "")

    def stop(self) -> None:
        """Ask an idle worker to exit, then make sure it did (a busy or starting one is killed)."""
        if self.proc is not None and self.proc.is_alive() and self.ready and self.task is None:
            try:
                self.conn.send(None)
                self.proc.join(5)
            except (OSError, ValueError):
                pass
        self.discard()

    def discard(self) -> None:
        dispose(self.proc, self.conn, self.log_path)
        self.proc, self.conn, self.log_path = None, None, ""


class _Pool:
    """The slots, the entries left to hand out, and what to do with each finished entry."""

    def __init__(self, entries: Sequence[Any], options: dict, order: Sequence[int], jobs: int, device: str,
                 finish: Callable[[int, list], None], crashed: Callable[[Any, str], list]):
        self.entries, self.options, self.device = entries, options, device
        self.pending = deque(order)
        self.finish, self.crashed = finish, crashed
        gpus = visible_gpus(os.environ) if device.startswith("cuda") else []
        self.slots = [_Slot(w, gpu_for_index(w, gpus)) for w in range(min(jobs, len(order)))]

    def run(self) -> None:
        try:
            for slot in self.slots:
                slot.start(self.device)
            while any(s.running for s in self.slots):
                live = [s for s in self.slots if s.running]
                woken = wait([s.conn for s in live] + [s.proc.sentinel for s in live],
                             timeout=None if all(s.ready for s in live) else START_TIMEOUT)
                if not woken:
                    raise SelftestJobError(f"a selftest worker did not start within {START_TIMEOUT:g} s")
                for slot in live:
                    if slot.conn in woken or slot.proc.sentinel in woken:
                        self._wake(slot)
        finally:
            for slot in self.slots:
                slot.stop()

    def _wake(self, slot: _Slot) -> None:
        try:
            message = slot.conn.recv() if slot.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is None:
            if not slot.proc.is_alive() or slot.conn.closed:
                self._died(slot)
            return
        if message[0] == "failed":
            raise SelftestJobError(f"a selftest worker could not start: {message[1]}\n{message[2]}")
        if message[0] == "raised":
            _, _, blob, summary, trace = message
            raise _unpickled(blob) or SelftestJobError(f"{summary}\n{trace}")
        if message[0] == "done":
            slot.task = None
            self.finish(message[1], message[2])
        slot.ready = True
        self._hand_out(slot)

    def _died(self, slot: _Slot) -> None:
        task, was_ready = slot.task, slot.ready
        reason = slot.exit_reason()
        if not was_ready:
            raise SelftestJobError(f"a selftest worker died while starting: {reason}")
        if task is not None:
            self.finish(task, [r.to_json() for r in self.crashed(self.entries[task], reason)])
        if self.pending:
            slot.start(self.device)

    def _hand_out(self, slot: _Slot) -> None:
        if not self.pending:
            slot.stop()
            return
        slot.task = self.pending.popleft()
        slot.conn.send((slot.task, self.entries[slot.task], self.options))


def _unpickled(blob: Optional[bytes]) -> Optional[BaseException]:
    import pickle

    try:
        return pickle.loads(blob) if blob else None
    except Exception:  # noqa: BLE001 - a class this process cannot import: the text instead
        return None


def run_jobs(entries: Sequence[Any], options: dict, *, jobs: int, device: str, order: Sequence[int],
             finish: Callable[[int, list], None], crashed: Callable[[Any, str], list]) -> None:
    """Run `entries` (``run_entry(entry, **options)``) in `jobs` workers, handing them out in
    `order` (indices); ``finish(index, rows)`` with the JSON rows of each entry as it ends, in
    this process; an entry whose worker died gets ``crashed(entry, reason)``'s results."""
    _Pool(entries, options, order, jobs, device, finish, crashed).run()
