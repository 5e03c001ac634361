"""Compile timeline hook (bench/compile_timeline.py puts this folder first on PYTHONPATH).

In every Python process of a run (the CLI, its isolation worker, the warm-up processes) it logs,
as JSON lines appended to ``$FLA_CHECK_TIMELINE``: the process start, each Triton compile
(``JITFunction._do_compile`` taking > 20 ms: a cache miss), each launcher build (gcc), each
warm-up bucket and plan, and each ``check_case``. Modules are patched right after they first
load, so nothing is imported earlier than the run would import it.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import json
import os
import sys
import time

_PATH = os.environ.get("FLA_CHECK_TIMELINE")
_T0 = time.time()


def _log(kind: str, start: float, end: float, **extra) -> None:
    line = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "kind": kind, "start": start, "end": end, **extra})
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _timed(kind: str, fn, describe=lambda *a, **k: {}, min_s: float = 0.0, outcome=lambda result: {}):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start, result = time.time(), None
        try:
            result = fn(*args, **kwargs)
            return result
        finally:
            end = time.time()
            if end - start >= min_s:
                _log(kind, start, end, **describe(*args, **kwargs), **(outcome(result) if result is not None else {}))
    return wrapper


def _patch_jit(mod) -> None:
    cls = mod.JITFunction
    cls._do_compile = _timed("compile", cls._do_compile, lambda self, *a, **k: {"name": self.fn.__name__}, 0.02)


def _patch_driver(mod) -> None:
    if not hasattr(mod, "compile_module_from_src"):  # another Triton's layout: launcher builds go unlogged
        return
    mod.compile_module_from_src = _timed("launcher", mod.compile_module_from_src,
                                         lambda *a, **k: {"name": k.get("name", "")}, 0.02)


def _patch_warmup(mod) -> None:
    mod.warm_bucket = _timed("bucket", mod.warm_bucket, lambda b, *a, **k: {"name": b.describe()})
    mod._planned = _timed("plan", mod._planned)


def _patch_runner(mod) -> None:
    mod.check_case = _timed("case", mod.check_case, lambda op, modes, config, *a, **k: {
        "name": f"{getattr(op, 'name', op)} {','.join(getattr(m, 'name', str(m)) for m in modes)} {config.dtype} T={config.T} K={config.K} V={config.V} {config.packing}"},
        outcome=lambda result: {"verdicts": {m: r.verdict.value for m, r in result.modes.items()}})


_PATCHES = {"triton.runtime.jit": _patch_jit, "triton.backends.nvidia.driver": _patch_driver,
            "fla_check.engine.warmup": _patch_warmup, "fla_check.engine.runner": _patch_runner}


class _PostImport(importlib.abc.MetaPathFinder):
    """Runs a module's patch right after the module executes."""

    def find_spec(self, name, path, target=None):
        if name not in _PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def patched_exec(module):
            exec_module(module)
            _PATCHES[name](module)
        spec.loader.exec_module = patched_exec
        return spec


if _PATH:
    _log("process", _T0, _T0, argv=" ".join(sys.argv)[:200])
    sys.meta_path.insert(0, _PostImport())
