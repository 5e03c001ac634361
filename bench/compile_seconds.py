"""CPU seconds a cold GPU ``fla-check run`` spends compiling, per kernel, measured on a CPU machine.

    python bench/compile_seconds.py --op gated_delta                   # ci profile, 3 dtypes, recurrent,chunk
    python bench/compile_seconds.py --all --top 12                     # every built-in op

The planned cases of the ci profile in the GPU's space (as ``bench/compile_buckets.py``) run
through each mode the way the runner calls it, with Triton's ``JITFunction.run`` turned into a
warm-up compile for sm_90 (``bench/compile_sm90.py``'s fake driver; nothing executes, the outputs
are garbage nobody reads). Each distinct binary is compiled once, into an empty
``TRITON_CACHE_DIR``; the table sums the compile seconds per kernel and dtype. The total is the
CPU time the run's warm-up processes share out on a GPU host (a lower bound: the host's cores
may be slower, and processes start and import too). ``--cache-dir D`` keeps the binaries in D: a
GPU run with ``TRITON_CACHE_DIR=D`` afterwards compiles only what this pass missed.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

import compile_sm90  # noqa: F401,E402 (first: real compiles for sm_90, fake driver, empty cache)
import compile_buckets  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

os.environ.pop("TRITON_INTERPRET", None)  # compile_buckets sets it for its own recorder
if "--cache-dir" in sys.argv:  # compile into this directory instead of an empty temporary one
    os.environ["TRITON_CACHE_DIR"] = sys.argv[sys.argv.index("--cache-dir") + 1]


def _gpu_backend():
    """A GPU's backend answers (compiled Triton, bf16 and TF32 dots), without probing a device."""
    from fla_check.backend import Backend

    return Backend("cuda", False, True, "", True, "hardware (assumed: sm_90)")


compile_buckets.gpu_backend = _gpu_backend


def compile_seconds(op: str, modes: tuple[str, ...], profile: str, seed: int) -> dict:
    """{(kernel, dtype): [binaries, seconds]} of the planned cases of `op` and the errors."""
    from triton.runtime.jit import JITFunction

    configs = compile_buckets.gpu_space_cases(op, modes, profile, seed)
    backend = compile_buckets.gpu_backend()
    seen: set = set()
    cost: dict = defaultdict(lambda: [0, 0.0])
    errors: Counter = Counter()
    current = {"dtype": ""}
    original = JITFunction.run

    def timed(self, *args, grid, warmup, **kwargs):
        key = (self.__name__, compile_buckets.specialization_key(self, args, kwargs))
        start = time.perf_counter()
        kernel = original(self, *args, grid=grid, warmup=True, **kwargs)
        if key not in seen:
            seen.add(key)
            entry = cost[(self.__name__, current["dtype"])]
            entry[0] += 1
            entry[1] += time.perf_counter() - start
        return kernel

    JITFunction.run = timed
    try:
        for config in configs:
            current["dtype"] = config.dtype
            compile_buckets.call_modes(op, modes, config, backend, errors)
    finally:
        JITFunction.run = original
    return {"cases": len(configs), "cost": dict(cost), "errors": dict(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="gated_delta")
    ap.add_argument("--all", action="store_true", help="every built-in op")
    ap.add_argument("--modes", default="recurrent,chunk")
    ap.add_argument("--profile", default="ci")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=10, help="kernel/dtype rows per op")
    ap.add_argument("--cache-dir", default=None,
                    help="TRITON_CACHE_DIR to fill (a GPU run then finds these binaries if the keys match)")
    a = ap.parse_args()
    compile_sm90._driver.set_active(compile_sm90.FakeDriver())
    for op in (compile_buckets.OPS if a.all else (a.op,)):
        r = compile_seconds(op, tuple(a.modes.split(",")), a.profile, a.seed)
        rows = sorted(r["cost"].items(), key=lambda kv: -kv[1][1])
        total = sum(s for _, s in r["cost"].values())
        binaries = sum(n for n, _ in r["cost"].values())
        print(f"\n#### {op} ({a.modes}, {a.profile} profile seed {a.seed}): {r['cases']} planned cases, "
              f"{binaries} binaries, {total:.1f} s of compiling\n\n| kernel | dtype | binaries | seconds | s / binary |\n"
              "|---|---|---|---|---|")
        for (name, dtype), (n, s) in rows[:a.top]:
            print(f"| {name} | {dtype} | {n} | {s:.1f} | {s / n:.2f} |")
        if r["errors"]:
            print("\nerrors: " + "; ".join(f"{k} x{v}" for k, v in r["errors"].items()))


if __name__ == "__main__":
    main()
