"""Seconds to plan a run's cases (the warm-up's planner, the search's own draws) alone and beside busy
processes, with torch's default CPU threads and with one (fla_check.engine.host_threads).

    python bench/plan_contention.py --ops gated_delta,delta --busy 16

Each row is a fresh process (torch reads OMP_NUM_THREADS at import) that plans the ci profile's
cases of one op (``planned_cases``, modes recurrent,chunk, the backend's device) while `--busy`
processes at nice 10 spin on the CPU, as the warm-up's compile processes do. Found on a 32-core H200
host (docs/gpu/perf-h200-13): gated_delta's plan took 0.36-0.54 s alone and 26.1 s beside 16 busy
processes with torch's default threads.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = ("import sys, time, torch\n"
         "from fla_check.engine.search import planned_cases\n"
         "from fla_check.backend import get_backend\n"
         "device = get_backend().device\n"
         "t = time.perf_counter()\n"
         "cases = planned_cases(sys.argv[1], modes=('recurrent', 'chunk'), profile='ci', device=device)\n"
         "print(f'{time.perf_counter() - t:.2f} {len(cases)} {torch.get_num_threads()}')\n")


def plan_seconds(op: str, threads: str) -> tuple[float, int, int]:
    """(seconds, cases, torch threads) of one planning process; `threads`: its OMP_NUM_THREADS ('' unset)."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = threads
    out = subprocess.run([sys.executable, "-c", CHILD, op], env=env, capture_output=True, text=True, check=True)
    seconds, cases, used = out.stdout.split()[-3:]
    return float(seconds), int(cases), int(used)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default="gated_delta,delta")
    p.add_argument("--busy", type=int, default=16, help="busy processes at nice 10 in the loaded rows")
    args = p.parse_args()
    print("| op | busy processes | OMP_NUM_THREADS | torch threads | cases | plan s |")
    print("|---|---|---|---|---|---|")
    for busy in (0, args.busy):
        spinners = [subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", "while True: pass"])
                    for _ in range(busy)]
        time.sleep(1 if busy else 0)
        try:
            for op in args.ops.split(","):
                for threads in ("", "1"):
                    seconds, cases, used = plan_seconds(op, threads)
                    print(f"| {op} | {busy} | {threads or 'unset'} | {used} | {cases} | {seconds:.2f} |", flush=True)
        finally:
            for s in spinners:
                s.kill()


if __name__ == "__main__":
    main()
