"""Forward wall time (warm, second call) and max abs error vs float64 of an op's built-in modes.

    python bench/kernel_cpu_time.py --op gla --B 1 --T 256 --H 2 --K 64 --V 64

Runs where fla_check.backend puts it (the Triton CPU interpreter without a GPU).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import fla_check.kernels  # noqa: F401  (selects the backend before triton is imported)
from fla_check.ops import get_op
from fla_check.references import reference


def make_inputs(op, B: int, T: int, H: int, K: int, V: int, seed: int = 0) -> dict:
    """q, k, v ~ randn; gates logsigmoid(randn) of the op's shape; beta ~ U(0,1); k normalised for delta ops."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    x = dict(q=q, k=k, v=torch.randn(B, T, H, V, generator=gen), g=None, beta=None)
    if op.gate == "key":
        x["g"] = F.logsigmoid(torch.randn(B, T, H, K, generator=gen))
    elif op.gate == "head":
        x["g"] = F.logsigmoid(torch.randn(B, T, H, generator=gen))
    if op.has_beta:
        x["k"] = F.normalize(k, dim=-1)
        x["beta"] = torch.rand(B, T, H, generator=gen)
    return x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--op", default="gla")
    p.add_argument("--modes", default=None, help="comma-separated; default: all builtin modes")
    for name, default in (("B", 1), ("T", 256), ("H", 2), ("K", 64), ("V", 64)):
        p.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args()
    op = get_op(a.op)
    x = make_inputs(op, a.B, a.T, a.H, a.K, a.V)
    ref_o, _ = reference(op.step, x["q"], x["k"], x["v"], x["g"], x["beta"])
    names = a.modes.split(",") if a.modes else [m for m, s in op.modes.items() if s.provider == "builtin"]
    print(f"op={a.op} B={a.B} T={a.T} H={a.H} K={a.K} V={a.V} fp32, forward, torch {torch.__version__}")
    for name in names:
        fn = op.modes[name].load()
        fn(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"])  # first call: compile / warm caches
        t0 = time.perf_counter()
        o, _ = fn(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"])
        dt = time.perf_counter() - t0
        err = (o.double() - ref_o).abs().max().item()
        print(f"{name:12s} {dt:8.3f} s   max|o - ref64| = {err:.2e}   (max|ref| = {ref_o.abs().max():.2f})")


if __name__ == "__main__":
    main()
