"""Compile buckets of the built-in kernels (docs/compile_buckets.md): every launched kernel keeps
its per-case integers out of Triton's specialization key.

A ``tl.constexpr`` argument compiles a new binary per value; a plain int argument compiles one
per class (== 1, % 16 == 0, other) unless it is listed in ``do_not_specialize``. The kernels'
convention: upper-case arguments are integers or flags; the per-case ones are runtime: lengths,
head counts and partial-sum sizes unspecialized, head dims (K, V, D) specialized on % 16 only (the
divisibility lets Triton vectorize the loads of rows K or V apart: K = 64 and 128 share a binary,
60 and 100 another); block sizes and flags constexpr.
Works on the interpreter's InterpretedFunction and on a GPU's JITFunction (and through
``triton.autotune``).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import fla_check.kernels
import fla_check.kernels.gla.recurrent

HEAD_DIMS = {"K", "V", "D"}  # runtime, specialized on % 16 (alignment of rows)
PER_CASE_INTS = {"T", "N", "PART", "PART_K", "PART_B", "H", "HV", "HK"} | HEAD_DIMS
TENSORS = {"A"}  # upper-case tensor arguments (the GLA chunk kernels' intra-chunk matrix)


def _kernel_modules() -> list:
    names = [m.name for m in pkgutil.walk_packages(fla_check.kernels.__path__, "fla_check.kernels.")]
    return [importlib.import_module(n) for n in names]


def _source_kernels() -> set[tuple[str, str]]:
    """(module, name) of every ``@triton.jit`` function named ``*_kernel``, read from the source."""
    out = set()
    for module in _kernel_modules():
        text = Path(module.__file__).read_text()
        out |= {(module.__name__, n) for n in re.findall(r"@triton\.jit[^\n]*\ndef (\w+_kernel)\(", text)}
    return out


def _unwrap(obj):
    """The JITFunction / InterpretedFunction under a triton.autotune wrapper."""
    while type(obj).__name__ == "Autotuner":
        obj = obj.fn
    return obj


def _do_not_specialize(jitted) -> set[str]:
    names = list(inspect.signature(jitted.fn).parameters)
    raw = getattr(jitted, "kwargs", {}).get("do_not_specialize") if hasattr(jitted, "kwargs") else None
    raw = raw if raw is not None else getattr(jitted, "do_not_specialize", None)
    return {names[d] if isinstance(d, int) else d for d in raw or ()}


KERNELS = sorted(_source_kernels())


def test_every_kernel_module_is_found():
    modules = {m for m, _ in KERNELS}
    assert len(KERNELS) >= 40
    assert {"fla_check.kernels.gla.chunk", "fla_check.kernels.delta.recurrent",
            "fla_check.kernels.common.ut_transform", "fla_check.kernels.kda.chunk"} <= modules


@pytest.mark.parametrize("module,name", KERNELS, ids=[f"{m.rsplit('.', 2)[-2]}.{n}" for m, n in KERNELS])
def test_per_case_integers_do_not_specialize(module, name):
    jitted = _unwrap(getattr(importlib.import_module(module), name))
    params = inspect.signature(jitted.fn).parameters
    dns = _do_not_specialize(jitted)
    assert PER_CASE_INTS & set(params), f"{name}: no per-case integer argument (a new convention?)"
    constexpr = {p for p, v in params.items() if "constexpr" in str(v.annotation)}
    assert not constexpr & PER_CASE_INTS, f"{name}: head counts / dims / lengths as tl.constexpr"
    runtime_caps = {p for p in params if p.isupper() and p not in constexpr | TENSORS | HEAD_DIMS}
    assert runtime_caps <= dns, f"{name}: {sorted(runtime_caps - dns)} specialize on == 1 / % 16"
    assert not dns & HEAD_DIMS, f"{name}: head dims {sorted(dns & HEAD_DIMS)} lose their % 16 alignment"
    assert dns <= set(params), f"{name}: do_not_specialize names {sorted(dns - set(params))}, not arguments"


def test_compiled_jit_functions_are_read_too():
    """The GPU path: a JITFunction (names or indices in do_not_specialize) reads the same."""
    from triton.runtime.jit import JITFunction

    interpreted = _unwrap(fla_check.kernels.gla.recurrent.gla_recurrent_fwd_kernel)
    names = list(inspect.signature(interpreted.fn).parameters)
    by_index = JITFunction(interpreted.fn, do_not_specialize=[names.index("T"), "K"])
    assert _do_not_specialize(by_index) == {"T", "K"}
