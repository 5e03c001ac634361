"""Milliseconds per case of the batched float64 reference (``engine.batched.build_ahead``).

    python bench/reference_loop.py --ops gla,gated_delta --T 256,1024 --cases 64 --calls 3
    PYTHONPATH=.old python bench/reference_loop.py ...   # another tree's fla_check, for an A/B

`--cases` seeded bf16 cases of one shape (B=1, H=4, K=V=64 by default) have their inputs and
float64 references built in one batch (with the readout terms of the recurrent fp32 baselines, as
a run of every built-in mode builds them); the inputs alone are timed too and subtracted. Each
line: the first call (a CUDA graph's capture included) and the best of `--calls` more, per case;
``--eager`` runs the loop without graphs (where the tree has them).
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default="gla,gated_delta")
    p.add_argument("--T", default="256,1024", help="sequence lengths (comma-separated)")
    p.add_argument("--cases", type=int, default=64)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--K", type=int, default=64, help="K = V")
    p.add_argument("--eager", action="store_true", help="no CUDA graphs (references.graphs off)")
    args = p.parse_args()

    import fla_check
    from fla_check.backend import get_backend
    from fla_check.cases import CaseConfig
    from fla_check.engine.batched import build_ahead, built_inputs, wants_readout
    from fla_check.ops import get_op

    if args.eager:
        try:
            from fla_check.references import graphs
            graphs.MAX_STATE_BYTES = -1
        except ImportError:  # a tree without graphs
            pass
    device = get_backend(None).device
    wait = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    print(f"fla_check from {fla_check.__file__}; device {device}; eager {args.eager}")
    print("| op | T | cases | first call ms/case | best ms/case | inputs alone ms/case |\n|---|---|---|---|---|---|")
    for op in args.ops.split(","):
        modes = [m for m, s in get_op(op).modes.items() if s.provider == "builtin"]
        readout = wants_readout(op, modes)
        for T in (int(t) for t in args.T.split(",")):
            def configs(seed: int) -> list:
                return [CaseConfig(op=op, dtype="bfloat16", B=1, T=T, H=args.H, K=args.K, V=args.K, seed=seed + i)
                        for i in range(args.cases)]

            def timed(fn, seed: int) -> float:
                wait()
                t0 = time.perf_counter()
                fn(configs(seed))
                wait()
                return (time.perf_counter() - t0) * 1e3 / args.cases

            build = lambda cs: build_ahead(op, cs, device, readout=readout)  # noqa: E731
            inputs = lambda cs: built_inputs(cs, torch.device(device))  # noqa: E731
            first = timed(build, 0)
            best = min(timed(build, 1000 * (i + 1)) for i in range(args.calls))
            alone = min(timed(inputs, 1000 * (i + 1)) for i in range(args.calls))
            print(f"| {op} | {T} | {args.cases} | {first - alone:.2f} | {best - alone:.2f} | {alone:.2f} |", flush=True)


if __name__ == "__main__":
    main()
