"""Bytes the batched baseline emulation moves per case, by aten op: a CPU proxy of its GPU memory traffic.

    TRITON_INTERPRET=1 python bench/emulation_traffic.py --op gla --dtype float32 --modes recurrent,chunk

On an H200 the emulated baselines of a warm case at T = 1024 are bound by memory traffic, not by
launches (docs/gpu/perf-h200-19: gla fp32, 93 launch ops and 6.2 ms per case). Each aten op that
is not a view or an allocation is charged the bytes of its tensor inputs and outputs (what it reads and
writes, once each; a broadcast input once; allocations were charged their output's bytes before the eighteenth
session, `_unsafe_view` and broadcasts in full before the nineteenth), summed over
:func:`fla_check.engine.batched.baselines_ahead` of `--cases` cases of one shape (every case in one batch:
the memory budget lifted); printed per case, the largest first.
Triton kernels are not aten ops: the GPU's fused noise (fla_check.verdict.noise_kernel) is not on
the CPU's path, which this measures by default (the torch ops it replaces on a GPU are: rand, cat, addcmul and
the mul before it). `--fused` takes the GPU's path instead, its Triton kernels under the interpreter (their
traffic uncounted: each reads and writes its tensors once); `--by function` charges each op to the innermost
function of fla_check.verdict.emulation it ran in, `--by site` to the innermost line of fla_check.

    TRITON_INTERPRET=1 python bench/emulation_traffic.py --op gated_delta --dtype bfloat16 --modes chunk --cases 2 \
        --fused --by function
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode


ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}  # write nothing
FREE = ALLOCATIONS | {"_unsafe_view"}  # _unsafe_view: a view of a fresh tensor (reshape's), not marked as a view


def stored_bytes(t: torch.Tensor) -> int:
    """The bytes `t` spans in memory once: a broadcast dim (stride 0, an expand) is read once, not per index."""
    return math.prod(n for n, s in zip(t.shape, t.stride()) if s != 0) * t.element_size()


class Traffic(TorchDispatchMode):
    """Bytes read and written per aten op (inputs + outputs of every op that is not a view or an allocation)."""

    def __init__(self, by: str = "op") -> None:
        super().__init__()
        self.by = by
        self.bytes: Counter = Counter()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and func.__name__.split(".")[0] not in FREE:
            tensors = [t for t in (out if isinstance(out, (tuple, list)) else [out]) + list(args)
                       if isinstance(t, torch.Tensor)]
            where = _caller(self.by == "site")
            if where is None:  # the interpreter's copies of a Triton kernel's arguments
                return out
            name = func.__name__ if self.by == "op" else where if self.by == "function" else f"{where} {func.__name__}"
            self.bytes[name] += sum(stored_bytes(t) for t in tensors)
            self.calls[name] += 1
        return out


def _caller(site: bool = False) -> str | None:
    """The innermost function of fla_check.verdict.emulation on the stack ('-' outside it), or with `site` the
    innermost line of fla_check (module:line); None inside a Triton launch."""
    frame, found = sys._getframe(2), None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("triton."):
            return None
        if found is None and site and module.startswith("fla_check."):
            found = f"{module.removeprefix('fla_check.')}:{frame.f_lineno}"
        if found is None and not site and module == "fla_check.verdict.emulation":
            found = frame.f_code.co_qualname
        frame = frame.f_back
    return found or "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--op", default="gla")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--modes", default="recurrent,chunk")
    p.add_argument("--T", type=int, default=1024)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--K", type=int, default=64, help="K = V")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--fused", action="store_true", help="the GPU's path: its Triton kernels under the interpreter")
    p.add_argument("--by", choices=("op", "function", "site"), default="op",
                   help="charge each aten op by its name, its emulation function, or its line of fla_check")
    args = p.parse_args()

    from fla_check.cases import CaseConfig
    from fla_check.engine import batched

    modes = args.modes.split(",")
    configs = [CaseConfig(op=args.op, dtype=args.dtype, B=1, T=args.T, H=args.H, K=args.K, V=args.K, seed=i)
               for i in range(args.cases)]
    built = batched.build_ahead(args.op, configs, "cpu", readout=batched.wants_readout(args.op, modes))
    batched.memory_budget = lambda device: 10**13  # every case in one batch, as on a GPU
    if args.fused:
        from fla_check.verdict import emulation

        emulation.fused_noise = lambda device: True
        from fla_check.verdict import noise_kernel

        noise_kernel.min_row = lambda on_gpu: noise_kernel.MIN_ROW  # views read in place, as on a GPU
    traffic = Traffic(args.by)
    start = time.perf_counter()
    with traffic:
        batched.baselines_ahead(args.op, modes, configs, built, "cpu")
    seconds = time.perf_counter() - start
    n = len(configs)
    path = "the GPU's fused path" if args.fused else "the CPU's path"
    print(f"{args.op} {args.dtype} T={args.T} H={args.H} K=V={args.K} modes {args.modes}, {path}, {n} cases: "
          f"{sum(traffic.bytes.values()) / 1e9 / n:.2f} GB and {sum(traffic.calls.values()) / n:.0f} ops per case "
          f"({seconds:.1f} s on this CPU)\n")
    column = {"op": "aten op", "function": "emulation function", "site": "line of fla_check, aten op"}[args.by]
    print(f"| {column} | GB per case | ops per case |\n|---|---:|---:|")
    for name, size in traffic.bytes.most_common(args.top):
        print(f"| {name} | {size / 1e9 / n:.2f} | {traffic.calls[name] / n:.1f} |")


if __name__ == "__main__":
    main()
