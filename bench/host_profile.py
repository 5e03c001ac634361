"""Host-side Python cost of a warm ``check_case``, without the Triton interpreter's kernel runs.

    python bench/host_profile.py                       # gla + gated_delta, fp32 + bf16, T=64 H=2 K=V=32
    python bench/host_profile.py --calls 10 --top 40   # more calls per case, longer lists
    python bench/host_profile.py --batch 16            # one case's share of 16 run by check_cases

On a GPU the Triton interpreter does not exist (the kernel runs on the device), so what a warm
case costs on the host is its wall time minus the interpreter's: ``InterpretedFunction.run``
(argument copies, the grid loop in numpy, copies back). Each case runs once to warm (Triton,
the bucket's invariance checks), then `--calls` times timed (best per call: wall and interpreter
ms), then `--calls` times under cProfile with a *host clock*: a timer that stops while the
interpreter runs, so every function's tottime/cumtime is host time only (the interpreter's own
frames show ~0). The lists are summed over all cases (ms per case = total / cases). The torch
ops' own CPU time outside the interpreter (aten self time, torch.profiler) splits host ms into
``aten`` (the ops' work and dispatch: on a GPU, launches and device time) and ``python`` (the rest).
torch runs on one thread (``--threads``): with two on a shared machine OpenMP wake-ups made tiny
ops take milliseconds.
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import time
from typing import Callable

from op_counts import make_config  # noqa: E402 (bench/ is on sys.path when run as a script)

INTERPRETER = "triton_interpreter"  # the profiler range around InterpretedFunction.run
OVERLAP = {"default": None, "on": True, "off": False}  # --overlap: check_cases' baselines in a thread or not


class HostClock:
    """perf_counter that stands still while the Triton interpreter runs a kernel."""

    def __init__(self) -> None:
        self.excluded = 0.0  # seconds spent inside the interpreter so far
        self.since: float | None = None  # entry time of the running interpreter call

    def __call__(self) -> float:
        now = self.since if self.since is not None else time.perf_counter()
        return now - self.excluded

    def wrap(self, run: Callable) -> Callable:
        @functools.wraps(run)
        def timed(*args, **kwargs):
            if self.since is not None:  # nested: already excluded
                return run(*args, **kwargs)
            self.since = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                self.excluded += time.perf_counter() - self.since
                self.since = None

        return timed


def aten_ms(run: Callable[[], object], interpreted: type) -> float:
    """Self CPU ms of the aten ops of one `run()` outside the Triton interpreter (torch.profiler):
    the torch ops' own work and dispatch; host ms minus this is the Python around them."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    original = interpreted.run

    def marked(*args, **kwargs):
        with record_function(INTERPRETER):
            return original(*args, **kwargs)

    interpreted.run = marked
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
    finally:
        interpreted.run = original

    def outside(event) -> bool:
        while event is not None:
            if event.name == INTERPRETER:
                return False
            event = event.cpu_parent
        return True

    return sum(e.self_cpu_time_total for e in prof.events() if e.name.startswith("aten::") and outside(e)) / 1e3


def measure(case: dict, args) -> tuple[float, float, float, pstats.Stats]:
    """(best wall ms, its interpreter ms, aten ms outside it, host-clock profile of `args.calls`
    calls) of one case."""
    from fla_check.engine.runner import check_case  # first: it sets TRITON_INTERPRET=1 on a CPU
    from fla_check.engine.batched import check_cases

    import triton.runtime.interpreter as interpreter

    modes = args.modes.split(",")
    if args.batch > 1:  # seeds seed .. seed + batch - 1 through check_cases; figures are per case below
        run = lambda seed: check_cases(  # noqa: E731
            case["op"], modes, [make_config(case, args, seed * args.batch + i) for i in range(args.batch)],
            overlap=OVERLAP[args.overlap])
    else:
        run = lambda seed: check_case(case["op"], modes, make_config(case, args, seed))  # noqa: E731
    run(args.seed + 1000)  # warm: JIT, the bucket's invariance checks
    clock = HostClock()
    original = interpreter.InterpretedFunction.run
    interpreter.InterpretedFunction.run = clock.wrap(original)
    try:
        best = (float("inf"), 0.0)
        for i in range(args.calls):
            before, t0 = clock.excluded, time.perf_counter()
            run(args.seed + i)
            wall = time.perf_counter() - t0
            best = min(best, (wall, clock.excluded - before))
        prof = cProfile.Profile(clock)
        for i in range(args.calls):
            prof.runcall(run, args.seed + i)
    finally:
        interpreter.InterpretedFunction.run = original
    aten = min(aten_ms(lambda i=i: run(args.seed + i), interpreter.InterpretedFunction) for i in range(args.calls))
    n = max(1, args.batch)
    return 1e3 * best[0] / n, 1e3 * best[1] / n, aten / n, pstats.Stats(prof)


def top(stats: pstats.Stats, key: str, n: int, cases: int) -> list[str]:
    """Markdown rows: the `n` functions with the largest `key` (tottime or cumtime), ms per case."""
    rows = []
    for (file, line, name), (cc, nc, tt, ct, _) in stats.stats.items():
        rows.append((tt if key == "tottime" else ct, nc, tt, ct, f"{file.split('site-packages/')[-1]}:{line}({name})"))
    rows.sort(reverse=True)
    return [f"| {where} | {nc / cases:.1f} | {1e3 * tt / cases:.2f} | {1e3 * ct / cases:.2f} |"
            for _, nc, tt, ct, where in rows[:n]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default="gla,gated_delta")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--T", type=int, default=64)
    p.add_argument("--H", type=int, default=2)
    p.add_argument("--K", type=int, default=32, help="K = V")
    p.add_argument("--modes", default="recurrent,chunk")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--calls", type=int, default=5, help="timed calls per case, and as many profiled")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--batch", type=int, default=1,
                   help="run this many seeded cases of each row at once (engine.batched.check_cases) and report "
                        "one case's share")
    p.add_argument("--overlap", choices=tuple(OVERLAP), default="default",
                   help="with --batch: the baselines in a thread beside the calls (on; cProfile then sees the main "
                        "thread only) or before them (off)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: no OpenMP wake-ups on a shared machine; a GPU host drives one)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cases = [dict(op=op, dtype=dtype, T=args.T) for op in args.ops.split(",") for dtype in args.dtypes.split(",")]
    print(f"warm check_case{f' (one of {args.batch} run by check_cases)' if args.batch > 1 else ''}, T={args.T} H={args.H} K=V={args.K}, modes {args.modes}; ms per case, "
          f"best of {args.calls}; aten = self CPU time of the torch ops outside the interpreter (best "
          f"of {args.calls} calls under torch.profiler); python = host - aten, an estimate (+-2 ms)\n\n"
          "| case | wall ms | interpreter ms | host ms | aten ms | python ms |\n|---|---|---|---|---|---|")
    total: pstats.Stats | None = None
    sums = [0.0, 0.0]
    for case in cases:
        wall, interp, aten, stats = measure(case, args)
        sums = [sums[0] + wall - interp, sums[1] + aten]
        total = stats if total is None else (total.add(stats) or total)
        print(f"| {case['op']} {case['dtype']} | {wall:.1f} | {interp:.1f} | {wall - interp:.1f} | {aten:.1f} | "
              f"{wall - interp - aten:.1f} |", flush=True)
    host, aten = (x / len(cases) for x in sums)
    print(f"| **mean** | | | **{host:.1f}** | **{aten:.1f}** | **{host - aten:.1f}** |")
    profiled = args.calls * len(cases) * max(1, args.batch)
    for key in ("tottime", "cumtime"):
        print(f"\nTop {args.top} by {key} (host clock, ms per case over all {profiled} profiled calls)\n\n"
              "| function | calls/case | tottime ms | cumtime ms |\n|---|---|---|---|")
        print("\n".join(top(total, key, args.top, profiled)))


if __name__ == "__main__":
    main()
