"""Where a cold GPU run's seconds go: a timeline of every process's compiles, launcher builds,
warm-up buckets and cases.

    python bench/compile_timeline.py --out DIR -- run --op gated_delta --modes recurrent,chunk
    python bench/compile_timeline.py --analyze DIR/events.jsonl          # the tables again

Runs ``python -m fla_check.cli ARGS`` with an empty ``TRITON_CACHE_DIR`` (``--cache-dir`` keeps
one) and ``bench/timeline_hook`` first on ``PYTHONPATH``: every process of the run (the CLI, its
isolation worker, the warm-up processes) appends its events to DIR/events.jsonl. Then prints,
per process, its start, compiles (count and seconds), launcher builds, warm-up buckets and cases;
the cases of the run in order with the compile seconds inside each; and the compiled kernel names
that more than one process compiled (work done twice).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HOOK = Path(__file__).resolve().parent / "timeline_hook"


def record(out: Path, argv: list[str], cache_dir: str, timeout: float) -> tuple[int, float]:
    """Run the CLI with the hook; (exit code, seconds from spawn)."""
    events = out / "events.jsonl"
    events.unlink(missing_ok=True)
    env = dict(os.environ, TRITON_CACHE_DIR=cache_dir, FLA_CHECK_TIMELINE=str(events),
               PYTHONPATH=os.pathsep.join(p for p in (str(HOOK), os.environ.get("PYTHONPATH", "")) if p))
    start = time.time()
    with open(out / "run.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fla_check.cli", *argv], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # the whole group: its warm-up processes must not outlive the row
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = 124
    return rc, time.time() - start


def analyze(path: Path, spawned: float | None = None) -> str:
    """The tables of the module doc, from the events at `path`."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    procs = {e["pid"]: e for e in events if e["kind"] == "process"}
    t0 = spawned or min(e["start"] for e in events)
    by_pid: dict[int, list[dict]] = defaultdict(list)
    for e in events:
        by_pid[e["pid"]].append(e)
    lines = [f"{len(procs)} processes; times in s from {'spawn' if spawned else 'the first process start'}", "",
             f"{'pid':>8} {'role':8} {'start':>6} {'last':>6} {'compiles':>8} {'comp s':>7} {'launch':>6} "
             f"{'lnch s':>6} {'buckets':>7} {'cases':>5}"]
    for pid, evs in sorted(by_pid.items(), key=lambda kv: procs.get(kv[0], {"start": 0})["start"]):
        kinds = Counter(e["kind"] for e in evs)
        secs = defaultdict(float)
        for e in evs:
            secs[e["kind"]] += e["end"] - e["start"]
        role = ("cases" if kinds["case"] and not kinds["bucket"] else "warm-up" if kinds["bucket"] or kinds["plan"]
                else "cli" if "fla_check" in procs.get(pid, {}).get("argv", "") else "other")
        start = procs.get(pid, {"start": t0})["start"] - t0
        last = max(e["end"] for e in evs) - t0
        lines.append(f"{pid:>8} {role:8} {start:6.1f} {last:6.1f} {kinds['compile']:>8} {secs['compile']:7.1f} "
                     f"{kinds['launcher']:>6} {secs['launcher']:6.1f} {kinds['bucket']:>7} {kinds['case']:>5}")
    total = defaultdict(float)
    for e in events:
        total[e["kind"]] += e["end"] - e["start"]
    lines += ["", f"all processes: compile {total['compile']:.1f} s over {sum(e['kind'] == 'compile' for e in events)} "
              f"compiles, launcher builds {total['launcher']:.1f} s, warm-up buckets {total['bucket']:.1f} s, "
              f"plans {total['plan']:.1f} s", "", "cases (in the process that ran them, in order):"]
    for e in sorted((e for e in events if e["kind"] == "case"), key=lambda e: e["start"]):
        inside = [c for c in by_pid[e["pid"]] if c["kind"] in ("compile", "launcher")
                  and c["start"] >= e["start"] and c["end"] <= e["end"]]
        comp = sum(c["end"] - c["start"] for c in inside)
        lines.append(f"  {e['start'] - t0:6.1f} +{e['end'] - e['start']:5.2f} s  compile {comp:5.2f} s "
                     f"({len(inside)})  {e.get('name', '')}  {' '.join(f'{m}={v}' for m, v in e.get('verdicts', {}).items())}")
    compiled_by = defaultdict(set)
    for e in events:
        if e["kind"] == "compile":
            compiled_by[e["name"]].add(e["pid"])
    twice = Counter(e["name"] for e in events if e["kind"] == "compile")
    lines += ["", "kernel: compiles (processes)"]
    lines += [f"  {name}: {n} ({len(compiled_by[name])})" for name, n in twice.most_common()]
    buckets = sorted((e for e in events if e["kind"] in ("bucket", "plan")), key=lambda e: e["start"])
    lines += ["", "warm-up plan and buckets:"]
    lines += [f"  {e['start'] - t0:6.1f} +{e['end'] - e['start']:5.2f} s  pid {e['pid']}  {e['kind']} {e.get('name', '')}"
              for e in buckets]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for events.jsonl, run.log and timeline.txt")
    ap.add_argument("--cache-dir", help="TRITON_CACHE_DIR to use (default: a new empty one)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before the run is cut")
    ap.add_argument("--analyze", type=Path, help="only print the tables of an events.jsonl")
    ap.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the fla-check arguments")
    args = ap.parse_args()
    if args.analyze:
        print(analyze(args.analyze))
        return 0
    argv = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    if not args.out or not argv:
        ap.error("--out DIR -- FLA_CHECK_ARGS")
    args.out.mkdir(parents=True, exist_ok=True)
    spawned = time.time()
    rc, seconds = record(args.out, argv, args.cache_dir or tempfile.mkdtemp(prefix="fla_check_tl_"), args.timeout)
    report = f"fla-check {' '.join(argv)}\nexit {rc} after {seconds:.1f} s from spawn\n\n" + analyze(
        args.out / "events.jsonl", spawned)
    (args.out / "timeline.txt").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
