"""Microseconds per call of the built-in delta-rule recurrent forward (DeltaNet and Gated DeltaNet), GPU only.

    python bench/delta_recurrent_speed.py [--T 256,1024] [--H 4] [--K 64] [--BV 64,16] [--warps 4]
    PYTHONPATH=.old python bench/delta_recurrent_speed.py ...   # another tree's kernel (its own V-block)

``fla_check.kernels.delta.recurrent.delta_rule_recurrent_fwd`` on bf16 inputs, B = 1, no initial state, with
and without the gate, for each V-block width `--BV` and warps per program `--warps` (the module's ``FWD_BV``
and ``FWD_WARPS``; a tree without them has one of each, printed as "fixed"). Median of `--reps` calls by CUDA
events. Each row's largest distance from the first row's output and final state is printed: the compiled
reductions over K are laid out by the block's shape, so the bits may differ (the interpreter's do not).
"""
from __future__ import annotations

import argparse

import torch
from _common import cuda_median_us  # bench/ is on sys.path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", default="256,1024")
    parser.add_argument("--H", type=int, default=4)
    parser.add_argument("--K", type=int, default=64)
    parser.add_argument("--BV", default="64,16")
    parser.add_argument("--warps", default="4", help="warps per program (the module's FWD_WARPS)")
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    from fla_check.kernels.delta import recurrent

    tunable = hasattr(recurrent, "FWD_WARPS")
    widths = [int(w) for w in args.BV.split(",")] if tunable else [None]
    warps = [int(w) for w in args.warps.split(",")] if tunable else [None]
    print(f"kernel from {recurrent.__file__}")
    print("| op | T | BV | warps | us per call | max abs apart from the first row |")
    print("|---|---|---|---|---|---|")
    for T in (int(t) for t in args.T.split(",")):
        gen = torch.Generator(device="cuda").manual_seed(T)
        shape = (1, T, args.H)
        q, k = (torch.randn(*shape, args.K, device="cuda", generator=gen).bfloat16() for _ in range(2))
        k = torch.nn.functional.normalize(k.float(), dim=-1).bfloat16()
        v = torch.randn(*shape, args.K, device="cuda", generator=gen).bfloat16()
        beta = torch.rand(*shape, device="cuda", generator=gen).bfloat16()
        gate = -torch.rand(*shape, device="cuda", generator=gen).float()
        for op, g in (("delta", None), ("gated_delta", gate)):
            first = None
            for width, warp in ((w, n) for w in widths for n in warps):
                if tunable:
                    recurrent.FWD_BV, recurrent.FWD_WARPS = width, warp
                call = lambda: recurrent.delta_rule_recurrent_fwd(q, k, v, g, beta, args.K ** -0.5, None, True, None)
                o, ht, _ = call()  # compiles
                us = cuda_median_us(call, args.reps)
                first = (o, ht) if first is None else first
                apart = max((a.float() - b.float()).abs().max().item() for a, b in zip(first, (o, ht)))
                print(f"| {op} | {T} | {width or 'fixed'} | {warp or 'fixed'} | {us:.1f} | {apart:.3g} |")


if __name__ == "__main__":
    main()
