"""Crash and hang isolation: mode calls run in a long-lived worker process, one per device.

Design (docs/isolation.md): the parent builds the case, runs the float64 reference and the
baselines, and judges; only the mode call crosses to the worker (:mod:`fla_check.engine.worker`):
the mode by name (plus its pickle) with the provider specs loaded in the parent, the inputs as
CPU tensors; the outputs come back as CPU tensors. A crash can therefore only lose the call that
caused it. Verdicts:

- the worker dies during a call (abort, segfault, ``os._exit``) or reports a device error that
  poisons the CUDA context -> :class:`ModeCrashed` (verdict CRASHED, with the signal or exit
  code and the last lines of the worker's stderr); the next call starts a fresh worker;
- no reply within the case timeout -> the worker is killed -> :class:`ModeTimedOut` (TIMEOUT);
- the mode raised -> :class:`RemoteError` (ERROR, with the worker's traceback);
- the worker cannot load the mode (a callable registered in this process only, e.g. a closure)
  -> :class:`NotPortable`: the caller runs that mode in-process (:func:`in_process_modes`).
"""
from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

from fla_check.cases import CaseInputs
from fla_check.engine import gradients
from fla_check.engine import worker as _worker
from fla_check.engine import prestart
from fla_check.engine.configs import FIRST, ConfigPolicy, TunedKernel
from fla_check.engine.memory import MemoryChecks
from fla_check.engine.worker import CallRequest, to_device
from fla_check.errors import ConfigPolicyError, IsolationError, IsolationOptionError
from fla_check.ops import ModeSpec
from fla_check.verdict.compare import Verdict

ISOLATION_KINDS = ("process", "none")
DEFAULT_CASE_TIMEOUT = 900.0  # seconds per mode call (GPU autotuning of fla's kernels takes minutes)
START_TIMEOUT = 600.0  # seconds for a worker to import torch/triton and probe the backend
STDERR_LINES = 20


class RemoteError(Exception):
    """The mode raised inside the worker."""

    def __init__(self, name: str, message: str, traceback: str):
        super().__init__(f"{name}: {message}")
        self.name, self.summary, self.traceback = name, f"{name}: {message}", traceback


class WorkerFailure(Exception):
    """The mode's call ended its worker: a CRASHED or TIMEOUT verdict."""

    verdict = Verdict.CRASHED

    def __init__(self, reason: str, stderr: str = ""):
        super().__init__(reason)
        self.reason, self.stderr = reason, stderr


class ModeCrashed(WorkerFailure):
    verdict = Verdict.CRASHED


class ModeTimedOut(WorkerFailure):
    verdict = Verdict.TIMEOUT


class NotPortable(Exception):
    """The worker cannot load this mode."""


@dataclass(frozen=True)
class Isolation:
    """Where mode calls run: ``process`` (a worker per device) or ``none`` (this process);
    `case_timeout`: seconds one mode call may take (process isolation only; None: no limit)."""

    kind: str = "none"
    case_timeout: Optional[float] = None

    def __post_init__(self) -> None:
        if self.kind not in ISOLATION_KINDS:
            raise IsolationOptionError(f"isolation {self.kind!r}; valid: {', '.join(ISOLATION_KINDS)}")
        if self.case_timeout is not None:
            if self.kind != "process":
                raise IsolationOptionError("a case timeout needs process isolation (a call in this process cannot be stopped)")
            if not self.case_timeout > 0:
                raise IsolationOptionError(f"case timeout must be > 0 seconds, got {self.case_timeout}")

    @property
    def isolated(self) -> bool:
        return self.kind == "process"

    @classmethod
    def from_options(cls, kind: str, case_timeout: Optional[float] = None) -> "Isolation":
        """The command-line options (``--isolation``, ``--case-timeout``): process isolation
        gets :data:`DEFAULT_CASE_TIMEOUT` unless given; :class:`IsolationOptionError` (a usage
        error, a ValueError) with one line when invalid."""
        if kind == "none" and case_timeout is not None:
            raise IsolationOptionError("--case-timeout needs --isolation process (a call in this process cannot be stopped)")
        if case_timeout is not None and not case_timeout > 0:
            raise IsolationOptionError(f"--case-timeout must be > 0 seconds, got {case_timeout:g}")
        if kind == "process" and case_timeout is None:
            case_timeout = DEFAULT_CASE_TIMEOUT
        return cls(kind, case_timeout)

    @classmethod
    def of(cls, value: Union["Isolation", str, None]) -> "Isolation":
        """None -> no isolation; 'process' / 'none' -> that kind, no timeout."""
        if isinstance(value, Isolation):
            return value
        return cls() if value is None else cls(value)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "case_timeout": self.case_timeout}


_NOISE = ("multiprocessing/", 'File "<string>"', "fla_check/engine/worker.py")  # the worker's own frames
STACK_MARKERS = ("Fatal Python error", "Current thread", "Stack (most recent call first)", "Thread 0x")


def stack_excerpt(text: str, lines: int = STDERR_LINES) -> str:
    """The interesting part of a worker log: from the first faulthandler marker on (the
    dying call's frames come first; the 'Extension modules' line is dropped), else its tail."""
    all_lines = text.rstrip().splitlines()
    start = next((i for i, ln in enumerate(all_lines) if ln.startswith(STACK_MARKERS)), None)
    if start is None:
        return "\n".join(all_lines[-lines:])
    kept = [ln for ln in all_lines[start:] if ln.strip() and not ln.startswith("Extension modules")
            and not any(noise in ln for noise in _NOISE)]
    return "\n".join(kept[:lines])


def describe_exit(code: Optional[int]) -> str:
    """'killed by SIGABRT (signal 6)' / 'exited with code 3' for a worker's exit code."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal"
        return f"killed by {name} (signal {-code})"
    return f"exited with code {code}"


class Worker:
    """One worker process for `device`, started on first use and after every fatal error."""

    def __init__(self, device: str):
        self.device = device
        self.proc: Optional[multiprocessing.process.BaseProcess] = None
        self.conn = None
        self.log_path = ""
        self.starts = 0  # processes started so far (1 + restarts)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def start(self, attempts: int = 2) -> None:
        """Start the worker and wait for it to be ready; a failed start is retried once (a
        transient failure must not end the run), then raises :class:`IsolationError`."""
        for attempt in range(attempts):
            try:
                return self._start_once()
            except IsolationError:
                if attempt == attempts - 1:
                    raise
            except BaseException:  # Ctrl-C while starting: leave no half-started worker behind
                self._discard()
                raise

    def _start_once(self) -> None:
        # one spawned before this process imported torch (the CLI's `run`), else a new one
        self.proc, parent, self.log_path = (prestart.take_prestarted(self.device)
                                            or prestart.start_worker(process_context(self.device), _worker.main,
                                                                     self.device))
        self.conn, self.starts = parent, self.starts + 1
        if not parent.poll(START_TIMEOUT):
            self._discard()
            raise IsolationError(f"the {self.device} worker did not start within {START_TIMEOUT:g} s")
        try:
            reply = parent.recv()
        except (EOFError, OSError):
            code, tail = self._reap()
            raise IsolationError(f"the {self.device} worker {describe_exit(code)} while starting\n{tail}") from None
        if reply[0] != "ready":
            detail = reply[2] if len(reply) > 2 else ""
            self._discard()
            raise IsolationError(f"the {self.device} worker could not start: {reply[1]}\n{detail}")

    def call(self, request: CallRequest, timeout: Optional[float]) -> tuple:
        """Send `request`, wait at most `timeout` seconds for the reply (see worker.py)."""
        if not self.alive:
            self._discard()
            self.start()
        try:
            self.conn.send_bytes(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
            if not self.conn.poll(timeout):
                tail = self._dump_stack()
                self._discard()
                raise ModeTimedOut(f"no result after {timeout:g} s (--case-timeout); worker killed", tail)
            reply = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            code, tail = self._reap()
            raise ModeCrashed(f"worker process {describe_exit(code)}", tail) from None
        except WorkerFailure:
            raise
        except BaseException:  # Ctrl-C while waiting: the worker's state is unknown
            self._discard()
            raise
        if reply[0] == "fatal":
            _, tail = self._reap()
            raise ModeCrashed(f"device error, CUDA context lost (worker restarted): {reply[1]}: {reply[2]}",
                              (tail + "\n" + reply[3]).strip())
        return reply

    def stderr_tail(self, lines: int = STDERR_LINES) -> str:
        """What the worker wrote during the current call: from a faulthandler stack dump on
        (most recent call first) when there is one, else the last `lines` lines."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return stack_excerpt(text, lines)

    def _dump_stack(self) -> str:
        """Ask a hung worker for its Python stack (faulthandler) and return the excerpt."""
        try:
            os.kill(self.proc.pid, _worker.DUMP_SIGNAL)
        except (OSError, AttributeError):
            return self.stderr_tail()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            tail = self.stderr_tail()
            if any(m in tail for m in STACK_MARKERS):
                time.sleep(0.1)  # let it finish the dump
                return self.stderr_tail()
            time.sleep(0.05)
        return self.stderr_tail()

    def stop(self) -> None:
        """Ask the worker to exit, then make sure it did."""
        if self.alive:
            try:
                self.conn.send_bytes(pickle.dumps(None))
                self.proc.join(5)
            except (OSError, ValueError):
                pass
        self._discard()

    def _reap(self) -> tuple[Optional[int], str]:
        """Wait for a dying worker (it may be flushing its stderr); its exit code and stderr tail."""
        code = None
        if self.proc is not None:
            self.proc.join(10)
            code = self.proc.exitcode
        tail = self.stderr_tail()
        self._discard()
        return code, tail

    def _discard(self) -> None:
        """Kill the worker if it still runs; forget it and its log."""
        dispose(self.proc, self.conn, self.log_path)
        self.proc, self.conn, self.log_path = None, None, ""


def dispose(proc, conn, log_path: str) -> None:
    """Kill worker process `proc` if it still runs and reap it, close its pipe `conn`, remove its
    log `log_path` (each may be None / empty). Shared with the selftest's worker pool."""
    if proc is not None:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
    if conn is not None:
        conn.close()
    if log_path:
        with contextlib.suppress(OSError):
            os.unlink(log_path)


PRELOAD = ["torch", "triton", "fla_check.engine.worker"]  # imported once by the fork server


def process_context(device: str) -> multiprocessing.context.BaseContext:
    """``spawn`` for a GPU worker; on CPU ``forkserver`` where the platform has it (a fresh
    process that imports torch and triton once and forks a worker from that state in
    milliseconds, so a restart after a crash does not pay torch's import). On an H200 a worker
    forked from the fork server could not initialise CUDA ("Cannot re-initialize CUDA in forked
    subprocess": the preloaded imports touch it), so CUDA workers are spawned (2-5 s to start)."""
    if device.startswith("cuda") or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


_WORKERS: dict[str, Worker] = {}
_IN_PROCESS: dict[str, str] = {}  # qualified mode -> why the worker cannot load it


def worker(device: str) -> Worker:
    """The worker of `device` (created on first use; long-lived)."""
    if device not in _WORKERS:
        _WORKERS[device] = Worker(device)
    return _WORKERS[device]


def call_isolated(spec: ModeSpec, op: str, inputs: CaseInputs, up: Optional[gradients.Upstream], device: str,
                  timeout: Optional[float], policy: ConfigPolicy = FIRST, force: Optional[dict[str, int]] = None,
                  memory: Optional[MemoryChecks] = None) -> tuple[Any, dict, float, dict[str, TunedKernel]]:
    """One call of `spec` in the worker of `device` under the autotune `policy` (`force`: config
    indices per kernel) and the `memory` checks (None: all): (raw, grads, seconds, launched autotuned
    kernels), tensors on `device`.
    Raises :class:`RemoteError`, :class:`ModeCrashed`, :class:`ModeTimedOut`, :class:`NotPortable`
    or, for a config the policy cannot apply, :class:`ConfigPolicyError`."""
    if spec.qualified in _IN_PROCESS:
        raise NotPortable(_IN_PROCESS[spec.qualified])
    from fla_check.providers import loaded_specs

    request = CallRequest(op, spec.qualified, _pickled(spec), loaded_specs(), tuple(sys.path),
                          to_device(inputs, "cpu"), to_device(up, "cpu"), policy,
                          None if force is None else dict(force), memory)
    reply = worker(device).call(request, timeout)
    if reply[0] == "unportable":
        _IN_PROCESS[spec.qualified] = reply[1]
        raise NotPortable(reply[1])
    if reply[0] == "raised":
        raise RemoteError(*reply[1:])
    if reply[0] == "policy":
        raise ConfigPolicyError(reply[1])
    _, raw, grads, seconds, kernels = reply
    return to_device(raw, device), to_device(grads, device), seconds, kernels


def _pickled(spec: ModeSpec) -> Optional[bytes]:
    try:
        return pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - closures, lambdas: the worker resolves the name instead
        return None


def in_process_modes(modes: Optional[Sequence[str]] = None) -> dict[str, str]:
    """Modes (of `modes`, labels or qualified names; default all) the worker could not load:
    they ran in this process. With the reason."""
    if modes is None:
        return dict(_IN_PROCESS)
    wanted = set(modes) | {f"builtin:{m}" for m in modes}
    return {m: why for m, why in _IN_PROCESS.items() if m in wanted}


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM stops the run like Ctrl-C (KeyboardInterrupt), so the partial
    report is written; the previous handler is restored after (main thread only)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def shutdown() -> None:
    """Stop every worker (at exit; tests may call it)."""
    for w in list(_WORKERS.values()):
        w.stop()
    _WORKERS.clear()


atexit.register(shutdown)
