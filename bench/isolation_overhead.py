"""Per-call cost of process isolation: one built-in mode called in this process vs in the worker.

    python -W ignore bench/isolation_overhead.py [--T 16,128] [--calls 10]

Prints ms per call for each T (B=1, H=2, K=V=64, fp32, GLA recurrent, CPU interpreter), after
one warm-up call each; the worker's first start and a restart are timed separately.
"""
from __future__ import annotations

import argparse
import time

from fla_check.backend import get_backend
from fla_check.cases import CaseConfig, build_case
from fla_check.engine.call import call_mode
from fla_check.engine.isolation import call_isolated, worker
from fla_check.ops import get_mode, get_op


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--T", default="16,128")
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    get_backend("cpu")
    spec = get_mode(get_op("gla"), "recurrent")
    start = time.perf_counter()
    worker("cpu").start()
    print(f"worker start (fork server cold): {time.perf_counter() - start:.2f} s")
    worker("cpu").stop()
    start = time.perf_counter()
    worker("cpu").start()
    print(f"worker restart (fork server warm): {time.perf_counter() - start:.2f} s")
    for T in (int(t) for t in args.T.split(",")):
        inputs = build_case(CaseConfig(op="gla", dtype="float32", B=1, T=T, H=2, K=64, V=64, seed=1))
        calls = {"in-process": lambda: call_mode(spec.load(), inputs, None, "cpu"),
                 "isolated": lambda: call_isolated(spec, "gla", inputs, None, "cpu", None)}
        for label, call in calls.items():
            call()  # warm-up
            start = time.perf_counter()
            for _ in range(args.calls):
                call()
            print(f"T={T} {label}: {(time.perf_counter() - start) / args.calls * 1000:.1f} ms/call")


if __name__ == "__main__":
    main()
