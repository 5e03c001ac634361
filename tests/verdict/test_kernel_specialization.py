"""The emulation's fused kernels (noise, state passing, scores, delta state passing, dots) compile once per bucket:
the Triton specialization keys of their launches (computed as JITFunction.run keys its cache: every constexpr
value, ints == 1 / % 16 unless do_not_specialize) do not depend on the sequence length, the batch or the number
of cases of one shape, the head dims within one tile size, or an initial state, only on what a warm-up bucket
fixes (dtype, head dims' tiles, chunk size). A search draws many lengths per bucket: each new key would be a
compile on its clock (docs/compile_buckets.md)."""
import inspect

import pytest
import torch
from device import DEVICE  # selects the backend (TRITON_INTERPRET on a CPU) before triton loads

from fla_check.verdict import emulation
from fla_check.verdict.arithmetic import Arithmetic

VERDICT_KERNELS = {"_perturb_kernel", "_passing_kernel", "_scores_kernel", "_delta_kernel", "_dot_kernel"}


def _key(fn, args: tuple, kwargs: dict) -> tuple:
    """The cache key of one launch (bench/compile_buckets.py's, without the launch options)."""
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import native_specialize_impl

    params = inspect.signature(fn.fn).parameters
    names = list(params)
    raw = getattr(fn, "kwargs", {}).get("do_not_specialize") or getattr(fn, "do_not_specialize", None) or ()
    dns = {names[d] if isinstance(d, int) else d for d in raw}
    bound = dict(zip(params, args)) | {k: v for k, v in kwargs.items() if k in params}

    def specialized(name: str) -> tuple:
        return native_specialize_impl(BaseBackend, bound.get(name), False, name not in dns, True)

    return tuple((name, "constexpr", repr(bound.get(name))) if "constexpr" in str(p.annotation)
                 else (name,) + tuple(specialized(name)) for name, p in params.items())


def _launch_keys(monkeypatch, op: str, T: int, B: int, cases: int, K: int = 16, h0: bool = False) -> set:
    """(kernel, key) of every verdict-kernel launch of one chunk emulation of `cases` cases of one shape (`h0`: with
    an initial state), on the fused (GPU) path, whole-sequence kernels at any length: compiled on a GPU, under the
    interpreter on a CPU."""
    if DEVICE == "cpu":
        from triton.runtime.interpreter import InterpretedFunction as Launcher
    else:
        from triton.runtime.jit import JITFunction as Launcher

    keys, original = set(), Launcher.run

    def recording(fn, *args, grid, warmup, **kwargs):
        if fn.fn.__name__ in VERDICT_KERNELS:
            keys.add((fn.fn.__name__, _key(fn, args, kwargs)))
        return original(fn, *args, grid=grid, warmup=warmup, **kwargs)

    monkeypatch.setattr(Launcher, "run", recording)
    monkeypatch.setattr(emulation, "fused_noise", lambda device: True)
    monkeypatch.setattr(emulation, "FUSED_MIN_CHUNKS", 1)
    gen = torch.Generator().manual_seed(T)
    S, H, V = 2 * cases, 2, 16
    x = lambda *shape: torch.randn(S, B, T, H, *shape, dtype=torch.float64, generator=gen).to(DEVICE)  # noqa: E731
    gate = -torch.rand(S, B, T, H, *((K,) if op in ("gla", "kda") else ()), dtype=torch.float64,
                       generator=gen).to(DEVICE) / 4
    beta = None if op == "gla" else torch.rand(S, B, T, H, dtype=torch.float64, generator=gen).to(DEVICE)
    state = torch.randn(S, B, H, K, V, dtype=torch.float64, generator=gen).to(DEVICE) if h0 else None
    with torch.no_grad():
        emulation.emulate(op, None, Arithmetic("chunk", 32, store="input"), x(K), x(K), x(V), gate, beta, state, None,
                          dtype=torch.float16, seed=list(range(cases)))
    return keys


# gla's state passing keeps the initial state a constexpr (a runtime flag cost its baselines: passing_kernel.py)
@pytest.mark.parametrize("op,kernels,h0", [
    ("gla", {"_perturb_kernel", "_passing_kernel", "_scores_kernel", "_dot_kernel"}, False),
    ("gated_delta", {"_perturb_kernel", "_delta_kernel", "_dot_kernel"}, True),
    ("kda", {"_perturb_kernel", "_scores_kernel", "_delta_kernel", "_dot_kernel"}, True)])
def test_lengths_batches_case_counts_head_dims_and_initial_states_share_one_binary_per_kernel(monkeypatch, op,
                                                                                           kernels, h0):
    short = _launch_keys(monkeypatch, op, T=20, B=1, cases=1, K=48)  # one chunk
    long = _launch_keys(monkeypatch, op, T=150, B=3, cases=3, K=64, h0=h0)  # five chunks, three rows and cases
    assert {name for name, _ in short} == kernels
    assert short == long, sorted(name for name, _ in short ^ long)
