"""Count the Triton compile buckets a GPU ``fla-check run`` would need, on the CPU.

    python bench/compile_buckets.py --op gla --modes recurrent,chunk          # ci profile, 3 dtypes
    python bench/compile_buckets.py --all --json /tmp/buckets.json            # the five built-in ops

The cases are those the search draws when every case passes (:func:`fla_check.engine.search.
planned_cases`) in the GPU's space (``small=False``: head dims 16..100 evenly, B, H <= 4,
T <= 512) for fp32, fp16 and bf16. Each case runs through each mode the way the runner calls it
(:func:`fla_check.engine.call.call_mode`, memory checks included: the padded inputs are what the
kernels see), with every kernel launch replaced by a recorder: nothing executes. A launch's
specialization key is computed with Triton's own ``native_specialize_impl`` from the arguments
and the kernel's ``tl.constexpr`` / ``do_not_specialize`` declarations, exactly as
``JITFunction.run`` keys its cache (pointer dtype and 16-byte alignment, ints ``== 1`` /
``% 16 == 0`` / i32-i64 unless ``do_not_specialize``, every constexpr value). Distinct (kernel,
key) pairs are the compiles a cold GPU run pays, forward only, for the planned cases (shrinking,
invariance variants and autotuning configs other than the first excluded). An expectation, not a
GPU measurement.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

OPS = ("gla", "simple_gla", "delta", "gated_delta", "kda")
DTYPES = ("float32", "float16", "bfloat16")


def specialization_key(fn: Any, args: tuple, kwargs: dict) -> tuple:
    """The cache key Triton's JITFunction would compute for this launch (interpreter or not)."""
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import native_specialize_impl

    py_fn = getattr(fn, "fn", fn)
    dns = set(getattr(fn, "do_not_specialize", None) or getattr(fn, "kwargs", {}).get("do_not_specialize") or ())
    params = inspect.signature(py_fn).parameters
    names = list(params)
    dns = {names[d] if isinstance(d, int) else d for d in dns}
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in params})
    key = []
    for name, param in params.items():
        value = bound.get(name, param.default)
        if "constexpr" in str(param.annotation):
            key.append((name, "constexpr", repr(value)))
        else:
            key.append((name,) + tuple(native_specialize_impl(BaseBackend, value, False, name not in dns, True)))
    options = tuple(sorted((k, repr(v)) for k, v in kwargs.items() if k not in params))
    return tuple(key) + options


class Recorder:
    """Replaces InterpretedFunction.run: records (kernel, key) and runs nothing."""

    def __init__(self) -> None:
        self.launches: Counter = Counter()

    def __enter__(self) -> "Recorder":
        from triton.runtime.interpreter import InterpretedFunction

        self._original = InterpretedFunction.run
        recorder = self

        def run(fn, *args, grid, warmup, **kwargs):
            recorder.launches[(fn.fn.__name__, specialization_key(fn, args, kwargs))] += 1

        InterpretedFunction.run = run
        return self

    def __exit__(self, *exc) -> None:
        from triton.runtime.interpreter import InterpretedFunction

        InterpretedFunction.run = self._original


def gpu_backend():
    """The CPU backend as a GPU would answer: no interpreter, bf16 dots exact (space and support)."""
    import dataclasses

    from fla_check.backend import get_backend

    return dataclasses.replace(get_backend("cpu"), interpreter=False, bf16_dot_ok=True)


def gpu_space_cases(op: str, modes: tuple[str, ...], profile: str, seed: int) -> list:
    """planned_cases in the GPU's space (not the CPU's small one)."""
    from fla_check.engine import search

    real = search.get_backend
    search.get_backend = lambda device=None: gpu_backend()
    try:
        return search.planned_cases(op, modes=modes, dtypes=DTYPES, profile=profile, seed=seed,
                                    max_seq_len=search.GPU_MAX_SEQ_LEN)
    finally:
        search.get_backend = real


def call_modes(op: str, modes: tuple[str, ...], config: Any, backend: Any, errors: Counter) -> None:
    """Run `config` through each of `modes` the way the runner calls them, on CPU tensors (the
    launches go wherever the caller pointed Triton's run); what a mode raises is counted in `errors`."""
    from fla_check.cases import build_case
    from fla_check.engine.call import call_mode
    from fla_check.engine.runner import mode_inputs, resolve_modes, resolve_op, unsupported_reason

    inputs = build_case(config, "cpu")
    for spec in resolve_modes(resolve_op(op), modes):
        if unsupported_reason(spec, config, backend):
            continue
        try:
            call_mode(spec.load(), mode_inputs(spec, inputs), None, "cpu")
        except Exception as exc:  # noqa: BLE001 - a mode that refuses a case launches nothing more
            errors[f"{spec.name}: {type(exc).__name__}: {str(exc)[:80]}"] += 1


def record(op: str, runs: list[tuple[tuple[str, ...], Any]]) -> tuple[Recorder, Counter]:
    """Launch keys of each (modes, case config) of `runs`, and the errors modes raised."""
    errors: Counter = Counter()
    backend = gpu_backend()
    with Recorder() as rec:
        for modes, config in runs:
            call_modes(op, modes, config, backend, errors)
    return rec, errors


def warmup_coverage(op: str, modes: tuple[str, ...], profile: str = "ci", seed: int = 0) -> dict:
    """Binaries the planned cases need against those the warm-up of their buckets compiles
    (:func:`fla_check.engine.warmup.warm_case` per bucket)."""
    from fla_check.engine import warmup

    configs = gpu_space_cases(op, modes, profile, seed)
    need = set(record(op, [(modes, c) for c in configs])[0].launches)
    buckets = warmup.buckets_of(configs, modes)
    warmed = set(record(op, [((b.mode,), warmup.warm_case(b)) for b in buckets])[0].launches)
    return {"op": op, "cases": len(configs), "buckets": len(buckets), "needed": len(need),
            "warm_up_compiles": len(warmed), "covered": len(need & warmed)}


def count(op: str, modes: tuple[str, ...], profile: str = "ci", seed: int = 0) -> dict:
    configs = gpu_space_cases(op, modes, profile, seed)
    rec, errors = record(op, [(modes, c) for c in configs])
    per_kernel = Counter(name for name, _ in rec.launches)
    varying: dict[str, dict[str, int]] = {}
    for name, key in rec.launches:
        for entry in key:
            varying.setdefault(name, {}).setdefault(entry[0], set()).add(entry[1:])
    varying = {name: {p: len(v) for p, v in params.items() if len(v) > 1} for name, params in sorted(varying.items())}
    return {"op": op, "modes": list(modes), "profile": profile, "seed": seed, "cases": len(configs),
            "buckets": len(rec.launches), "per_kernel": dict(sorted(per_kernel.items())),
            "varying": varying,
            "launches": sum(rec.launches.values()), "errors": dict(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", default="gla")
    ap.add_argument("--all", action="store_true", help="every built-in op")
    ap.add_argument("--modes", default="recurrent,chunk")
    ap.add_argument("--profile", default="ci")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--warmup-coverage", action="store_true",
                    help="compare the binaries the planned cases need with those the warm-up compiles")
    a = ap.parse_args()
    if a.warmup_coverage:
        for op in (OPS if a.all else (a.op,)):
            r = warmup_coverage(op, tuple(a.modes.split(",")), a.profile, a.seed)
            print(f"{r['op']}: {r['cases']} cases, {r['buckets']} warm-up buckets; binaries needed {r['needed']}, "
                  f"warm-up compiles {r['warm_up_compiles']}, of them needed {r['covered']}", flush=True)
        return
    results = [count(op, tuple(a.modes.split(",")), a.profile, a.seed) for op in (OPS if a.all else (a.op,))]
    for r in results:
        print(f"{r['op']}: {r['cases']} cases, {r['buckets']} compile buckets, {r['launches']} launches; "
              f"per kernel {r['per_kernel']}; errors {r['errors'] or 'none'}", flush=True)
        for name, params in r["varying"].items():
            print(f"  {name}: distinct values per argument {params}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
