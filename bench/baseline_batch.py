"""Seconds and torch ops of one batch of emulated baselines (``engine.batched.baselines_ahead``).

    python bench/baseline_batch.py --op gla --T 256,1024 --modes chunk,fused_chunk
    python bench/baseline_batch.py --op gated_delta --T 1024 --modes chunk --cases 4 --calls 3

`--cases` seeded bf16 cases of one shape (B=1, H=4, K=V=64 by default) are built with their float64
references, then each mode's declared arithmetic is sampled and reduced for all of them in one
batch (the memory budget lifted, so the batch is never split): the aten ops of one batch (a
``TorchDispatchMode`` count, views included: on a GPU roughly the launches) and the wall seconds
of `--calls` calls. The ops are the GPU's launch cost, the seconds this device's (on the CPU,
memory traffic and caches).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OpCount(TorchDispatchMode):
    """Counts the aten ops that reach the backend."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--op", default="gla")
    p.add_argument("--T", default="256,1024", help="sequence lengths (comma-separated)")
    p.add_argument("--modes", default="chunk,fused_chunk", help="one batch per mode's declaration")
    p.add_argument("--cases", type=int, default=2)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--K", type=int, default=64, help="K = V")
    p.add_argument("--device", default=None)
    args = p.parse_args()
    from fla_check.backend import get_backend
    from fla_check.cases import CaseConfig
    from fla_check.engine import batched

    device = get_backend(args.device).device
    print(f"{args.op} bf16 B=1 H={args.H} K=V={args.K}, {args.cases} cases in one batch on {device}\n\n"
          "| T | mode | aten ops per batch | seconds per call |\n|---|---|---|---|")
    for T in (int(t) for t in args.T.split(",")):
        configs = [CaseConfig(op=args.op, dtype="bfloat16", B=1, T=T, H=args.H, K=args.K, V=args.K, seed=s)
                   for s in range(1, args.cases + 1)]
        built = batched.build_ahead(args.op, configs, device, readout=True)
        for mode in args.modes.split(","):
            run = lambda: batched.baselines_ahead(args.op, [mode], configs, built, device, budget=2**50)  # noqa: E731
            with OpCount() as count:
                run()
            seconds = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                run()
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - t0)
            print(f"| {T} | {mode} | {count.ops} | {' / '.join(f'{s:.2f}' for s in seconds)} |", flush=True)


if __name__ == "__main__":
    main()
