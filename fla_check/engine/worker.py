"""The isolation worker: a long-lived process that runs mode calls for one device.

Started by :mod:`fla_check.engine.isolation` with the ``spawn`` context (so CUDA is never
inherited through ``fork``). It selects the backend (installing the interpreter shim on CPU),
says ``ready``, then serves :class:`CallRequest` after :class:`CallRequest` over a pipe,
keeping imports, Triton compile and autotune caches warm. Each reply is one of

- ``("ok", raw, grads, seconds, kernels)``: the mode's return value and gradients, tensors on
  CPU, and the autotuned kernels it launched (:class:`fla_check.engine.configs.TunedKernel`);
- ``("policy", message)``: the autotune-config policy cannot be applied (a usage error);
- ``("raised", type, message, traceback)``: the mode raised (an ERROR verdict);
- ``("fatal", type, message, traceback)``: the mode raised a device error that poisons the
  CUDA context (illegal memory access, device-side assert...); the worker exits after it;
- ``("unportable", reason)``: the mode cannot be loaded here (the caller runs it in-process).

Its stdout and stderr go to a log file (truncated before each call), with :mod:`faulthandler`
on, so an abort or a segfault leaves the Python stack of the dying call for the parent to read
(and ``DUMP_SIGNAL`` makes a hung call write its stack before the parent kills it).
SIGINT is ignored: Ctrl-C is the parent's to handle.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

from torch import Tensor

from fla_check.cases import CaseInputs
from fla_check.engine import gradients
from fla_check.engine.call import call_mode
from fla_check.engine.configs import FIRST, ConfigPolicy
from fla_check.engine.memory import MemoryChecks
from fla_check.engine.worker_process import start, truncate_log
from fla_check.errors import ConfigPolicyError

FATAL_EXIT = 70  # the worker's exit code after a fatal device error
DUMP_SIGNAL = signal.SIGUSR1  # makes the worker write its Python stack to its log (before a timeout kill)
FATAL_DEVICE_ERRORS = ("illegal memory access", "illegal address", "device-side assert", "unspecified launch failure",
                       "misaligned address", "illegal instruction", "uncorrectable ecc", "launch timed out",
                       "cuda error: unknown error")


@dataclass
class CallRequest:
    """One mode call: the mode by name (and pickled, when it pickles), the provider specs and
    import path needed to load it, and the case's inputs (and upstream gradients) on CPU."""

    op: str
    mode: str  # qualified name, 'provider:mode'
    spec: Optional[bytes]  # pickle of the ModeSpec, or None
    providers: tuple[str, ...]
    sys_path: tuple[str, ...]
    inputs: CaseInputs
    up: Optional[gradients.Upstream] = None
    policy: ConfigPolicy = FIRST  # the autotune-config policy the call runs under
    force: Optional[dict[str, int]] = None  # config indices forced per kernel (None: the policy's)
    memory: Optional[MemoryChecks] = None  # the memory checks the call runs under (None: all)


class Unresolvable(Exception):
    """The worker cannot load the requested mode."""


def is_fatal_device_error(exc: BaseException) -> bool:
    """Whether `exc` is a device error after which the CUDA context cannot be trusted."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in FATAL_DEVICE_ERRORS)


def to_device(obj: Any, device: str) -> Any:
    """`obj` with every tensor (in tuples, lists, dicts, dataclasses) on `device`, detached."""
    if isinstance(obj, Tensor):
        return obj.detach().to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_device(getattr(obj, f.name), device)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


def _portable(obj: Any) -> Any:
    """`obj` ready to cross the pipe: tensors detached on CPU, anything unpicklable as its repr."""
    if isinstance(obj, (Tensor, tuple, list, dict)):
        return to_device(obj, "cpu")
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - a mode may return anything
        return f"<unpicklable {type(obj).__name__}>"
    return obj


def _resolve(req: CallRequest, loaded: set[str]):
    """The ModeSpec of `req`: its pickle, else its name after loading the provider specs."""
    from fla_check import ops
    from fla_check.providers import ProviderError, load_provider

    sys.path.extend(p for p in req.sys_path if p not in sys.path)
    for spec in req.providers:
        if spec not in loaded:
            try:
                load_provider(spec)
            except ProviderError as exc:
                raise Unresolvable(f"provider {spec!r} does not load in the worker: {exc}") from None
            loaded.add(spec)
    if req.spec is not None:
        try:
            return pickle.loads(req.spec)
        except Exception:  # noqa: BLE001 - e.g. a function of a module the worker cannot import
            pass
    try:
        return ops.get_mode(ops.get_op(req.op), req.mode)
    except ops.UnknownNameError as exc:
        raise Unresolvable(f"mode {req.mode!r} is not known in the worker: {exc}") from None


def serve(req: CallRequest, device: str, loaded: set[str]) -> tuple:
    """Run one request; the reply (see the module docstring)."""
    try:
        spec = _resolve(req, loaded)
    except Unresolvable as exc:
        return ("unportable", str(exc))
    start = time.perf_counter()
    try:
        fn = spec.load()
        raw, grads, kernels = call_mode(fn, to_device(req.inputs, device), to_device(req.up, device), device,
                                        req.policy, req.force, req.memory)
        raw, grads, kernels = _portable(raw), _portable(grads), _portable(kernels)
    except ConfigPolicyError as exc:  # a usage error (--config out of range), not a verdict
        return ("policy", str(exc))
    except Exception as exc:  # noqa: BLE001 - a raising kernel is a verdict
        kind = "fatal" if is_fatal_device_error(exc) else "raised"
        return (kind, type(exc).__name__, str(exc), traceback.format_exc())
    return ("ok", raw, grads, time.perf_counter() - start, kernels)



def main(conn, device: str, log_path: str) -> None:
    """The worker process: select the backend, then serve requests until told to stop."""
    if not start(conn, device, log_path, dump_signal=DUMP_SIGNAL):
        return
    loaded: set[str] = set()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        request = pickle.loads(data)
        if request is None:
            return
        truncate_log()
        reply = serve(request, device, loaded)
        conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        if reply[0] == "fatal":
            sys.stderr.flush()
            os._exit(FATAL_EXIT)
