"""Time to detect: examples and seconds until ``fla-check run`` finds a known failure.

    python bench/time_to_detect.py --out bench_out --mask-ops gla,gated_delta --mutants per-kind

- ``mask.<op>``: ``fla-check run --op OP --modes recurrent,chunk --mask-fill=-0.1max``
  (:func:`fla_check.engine.search.search`, same profile, fixed seed): the example index and seconds of
  the first failing case of each mode (``SearchResult.first_failure``), the total search time
  including shrinking, and the shrunk case. The chunk mode must fail, the recurrent one pass.
- ``first.<op>``: the same masking run as a user starts it, in a fresh process per row
  (``--child-first``): seconds from spawning the process to the first failing case, with an
  empty Triton cache (cold) and with the cache a first run filled (warm), each with ``--warmup``
  off and background (:mod:`fla_check.engine.warmup`); the process stops at the first failure.
  Between the cold and the warm rows the run runs once to its end in the filled cache (a row of
  its own: as a CI job's previous run leaves the cache, its plan in the warm-up ledger).
- ``selftest.<id>``: per planted mutant, :func:`fla_check.commands.selftest.suite.run_selftest` (the same
  search on the mutated mode): examples / seconds to the first *killing* case (the mutant fails
  and the clean mode passes it), whole-search seconds, the shrunk case.

Seconds include Triton compilation of each new compile key (on a GPU) and, under the CPU
interpreter, the interpreter's run time; examples do not depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from _common import Bench, Table, add_common_args, environment, fmt, log

# (label, --warmup, which cache dir): cold rows start from an empty TRITON_CACHE_DIR; the warm rows
# reuse the one the cold background row filled (what its search and warm-up compiled up to its first
# failure) and a complete run then finished, as a second run of the same seed would
FIRST_ROWS = (("cold", "off", "fresh"), ("cold", "background", "filled"), ("warm", "off", "filled"),
              ("warm", "background", "filled"))


def first_failure_child(op: str, args, spawned_at: float) -> None:
    """In a fresh process: the masking run as ``fla-check run`` starts it; stops at the first
    failing case and prints one ``RESULT`` JSON line (seconds counted from `spawned_at`). Mode
    calls go to an isolation worker, as the CLI's default ``--isolation process``, spawned as the
    CLI spawns it, with the warm-up's processes: before this process imports torch."""
    from fla_check import cli

    cli._prestart("process", args.device, args.child_warmup)
    from fla_check.backend import get_backend
    from fla_check.commands.run.engine import run
    from fla_check.engine.isolation import Isolation
    from fla_check.ops import get_op

    device = get_backend(args.device).device
    out: dict[str, Any] = {"import_s": time.time() - spawned_at, "warmup": args.child_warmup}
    warm: dict[str, float] = {}

    def on_warm(done: int, total: int, bucket) -> None:
        warm.setdefault("start_s", time.time() - spawned_at)
        warm["end_s"] = time.time() - spawned_at

    def progress(event) -> None:
        out.setdefault("first_case_s", time.time() - spawned_at)
        if event.failing and "first_failure_s" not in out:
            out.update(first_failure_s=time.time() - spawned_at, examples=event.examples,
                       failing=list(event.failing), first_case=event.case.config.short())
            if not args.child_complete:
                raise KeyboardInterrupt  # what is measured is the first failure; search returns its partial result

    with tempfile.TemporaryDirectory() as tmp:
        result, _ = run(get_op(op), args.modes.split(","), mask_fills=[args.fill], seed=args.seed,
                        profile=args.profile, device=device, examples=args.examples, max_seq_len=args.max_seq_len,
                        report=os.path.join(tmp, "run.json"), progress=progress, warmup=args.child_warmup,
                        isolation=Isolation.of("process"),
                        warmup_buckets=args.warmup_buckets, warmup_seconds=args.warmup_seconds,
                        warmup_progress=on_warm)
    out.update(cases=len(result.cases), warmup_record=result.options.get("warmup"), **warm,
               process_s=time.time() - spawned_at)
    print("RESULT " + json.dumps(out), flush=True)


def first_failure(bench: Bench, op: str, args) -> dict[str, Any]:
    """The FIRST_ROWS of `op`, each a fresh process (``--child-first``) within the budget."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as fresh_root, tempfile.TemporaryDirectory() as filled:
        for i, (cache, warmup, which) in enumerate(FIRST_ROWS):
            if warmup not in args.first_warmups:
                continue
            if not bench.has_time(f"first.{op}.{cache}.{warmup}", args.min_entry_s):
                break
            if cache == "warm" and not any(r["cache"] == "filled by a complete run" for r in rows):
                rows.append(_fill(op, args, filled, bench))
            cache_dir = os.path.join(fresh_root, str(i)) if which == "fresh" else filled
            row = {"cache": cache, "warmup": warmup, "cache_dir": cache_dir}
            try:
                row.update(_spawn_first(op, args, warmup, cache_dir, min(args.child_timeout, bench.remaining())))
            except Exception as exc:  # noqa: BLE001 - one row's failure keeps the others
                row["error"] = f"{type(exc).__name__}: {str(exc)[-600:]}"
            rows.append(row)
            log(f"  {op} {cache} cache, warm-up {warmup}: first failure {fmt(row.get('first_failure_s'))} s "
                f"after {row.get('examples', '-')} cases{'; ' + row['error'] if 'error' in row else ''}")
    command = (f"fla-check run --op {op} --modes {args.modes} --mask-fill={args.fill} --profile {args.profile} "
               f"--seed {args.seed}" + (f" --warmup-buckets {args.warmup_buckets}" if args.warmup_buckets else "")
               + (f" --warmup-seconds {args.warmup_seconds:g}" if args.warmup_seconds else ""))
    return {"rows": rows, "command": command}


def _fill(op: str, args, cache_dir: str, bench: Bench) -> dict[str, Any]:
    """The whole run once more in the cache the cold rows filled, to its end (shrinking included),
    as a CI job's previous run leaves its cache: what it did not compile is compiled now, and its
    plan goes into the cache's warm-up ledger (fla_check.engine.warm_ledger)."""
    row: dict[str, Any] = {"cache": "filled by a complete run", "warmup": "background", "cache_dir": cache_dir}
    try:
        row.update(_spawn_first(op, args, "background", cache_dir, min(args.child_timeout, bench.remaining()),
                                complete=True))
    except Exception as exc:  # noqa: BLE001 - the warm rows still run, on what the cold rows left
        row["error"] = f"{type(exc).__name__}: {str(exc)[-600:]}"
    log(f"  {op} complete run in the filled cache: {fmt(row.get('process_s'))} s")
    return row


def _spawn_first(op: str, args, warmup: str, cache_dir: str, timeout: float, complete: bool = False) -> dict[str, Any]:
    env = dict(os.environ, TRITON_CACHE_DIR=cache_dir, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, __file__, "--child-first", op, "--child-warmup", warmup, "--spawned-at", repr(time.time()),
           "--modes", args.modes, f"--fill={args.fill}", "--profile", args.profile, "--seed", str(args.seed)]
    if complete:
        cmd.append("--child-complete")
    for flag, value in (("--examples", args.examples), ("--max-seq-len", args.max_seq_len),
                        ("--warmup-buckets", args.warmup_buckets), ("--warmup-seconds", args.warmup_seconds),
                        ("--device", args.device)):
        if value is not None:
            cmd += [flag, str(value)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"exit {proc.returncode} without a result: {proc.stderr[-1500:]}")
    return json.loads(line[len("RESULT "):])


def _first_table(bench: Bench, args) -> Optional[Table]:
    rows = []
    commands = []
    for op in args.first_ops:
        rec = bench.data["sections"].get(f"first.{op}", {})
        if "command" in rec:
            commands.append(rec["command"])
        for r in rec.get("rows", []):
            w = r.get("warmup_record") or {}
            warm = (f"{fmt(w.get('seconds'))} s, {w.get('warmed', '-')}/{w.get('buckets', '-')} buckets"
                    + (" (stopped)" if w.get("stopped") else "") if w else "-")
            if w.get("skipped"):
                warm = "skipped (plan compiled before: warm-up ledger)"
            last = r.get("first_case", "-")
            if r["cache"].startswith("filled"):
                last = f"the whole run (shrinking included) ended {fmt(r.get('process_s'))} s after spawn"
            rows.append([op, r["cache"], r["warmup"], fmt(r.get("import_s")), warm, r.get("examples", "-"),
                         fmt(r.get("first_failure_s")), ",".join(r.get("failing", [])) or "-",
                         "ERR: " + r["error"][:80] if "error" in r else last])
    if not rows:
        return None
    return Table("Masking failure (-0.1*finfo.max fill): process start to the first failing case", bench.command,
                 ["op", "triton cache", "--warmup", "import s", "warm-up", "cases to 1st failure",
                  "spawn to 1st failure s", "failing", "first failing case"], rows,
                 note="cold = empty TRITON_CACHE_DIR; warm = the cache the cold background row filled and a complete run "
                      "finished (the 'filled by a complete run' row: spawn to the end of that run). Equivalent CLI: "
                      + "; ".join(commands))


def mask_search(op: str, args, device: str, deadline: float) -> dict[str, Any]:
    """One `run --mask-fill` search with a progress clock; stops (partial result) at the deadline."""
    from fla_check.engine.search import search

    seen: dict[int, float] = {}
    start = time.perf_counter()

    def progress(event) -> None:
        seen.setdefault(event.examples, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            raise KeyboardInterrupt  # search returns what it found so far (interrupted=True)

    modes = args.modes.split(",")
    result = search(op, modes, mask_fills=[args.fill], examples=args.examples, seed=args.seed,
                    profile=args.profile, device=device, max_seq_len=args.max_seq_len, progress=progress,
                    database_root=None)
    out: dict[str, Any] = {"command": f"fla-check run --op {op} --modes {args.modes} --mask-fill={args.fill} "
                                      f"--profile {args.profile} --seed {args.seed}"
                                      + (f" --examples {args.examples}" if args.examples is not None else ""),
                           "search_seconds": round(result.seconds, 3), "cases": len(result.cases),
                           "interrupted": result.interrupted, "first_case_seconds": seen.get(1),
                           "options": result.options, "modes": {}}
    for mode in result.modes:
        first = result.first_failure.get(mode)
        entry: dict[str, Any] = {"failed": mode in result.failures, "first_failure": first}
        if first:
            case = result.cases[first["example"] - 1]
            entry["first_verdict"] = case.modes[mode].verdict.value
            entry["first_case"] = case.config.short()
        if mode in result.failures:
            shrunk = result.cases[result.failures[mode]]
            entry["shrunk_case"] = shrunk.config.short()
            entry["shrunk_verdict"] = shrunk.modes[mode].verdict.value
        out["modes"][mode] = entry
        log(f"  {op}:{mode}: first failure {first}, failed={entry['failed']}")
    return out


def pick_mutants(spec: str, ops: list[str]) -> list[str]:
    """Catalog ids: 'all', 'per-kind' (first source mutant of each bug class per op), or ids."""
    from fla_check.commands.selftest.mutants import Mutant, all_entries

    entries = [e for e in all_entries() if e.op in ops]
    if spec == "all":
        return [e.id for e in entries]
    if spec == "per-kind":
        picked, kinds = [], set()
        for e in entries:
            if isinstance(e, Mutant) and (e.op, e.kind) not in kinds:
                kinds.add((e.op, e.kind))
                picked.append(e.id)
        return picked
    return [s for s in spec.split(",") if s]


def selftest_entries(bench: Bench, args, device: str) -> None:
    """One run_selftest call per entry (sections), until the budget runs out."""
    try:
        from fla_check.commands.selftest.suite import run_selftest
    except ImportError as exc:  # TODO(selftest): fla_check.commands.selftest.engine not present in this checkout
        bench.data["sections"]["selftest"] = {"todo": f"fla_check.commands.selftest.engine unavailable ({exc}); "
                                                      "hook: run_selftest(ids=[id], profile=..., examples=...)"}
        return
    ids = pick_mutants(args.mutants, args.mutant_ops)
    bench.data["mutant_ids"] = ids
    for mid in ids:
        if not bench.has_time(f"selftest.{mid}", args.min_entry_s):
            continue
        with bench.section(f"selftest.{mid}") as rec:
            result = run_selftest(ids=[mid], profile=args.selftest_profile, examples=args.selftest_examples,
                                  max_seq_len=args.max_seq_len, device=device)
            rec["results"] = [r.to_json() for r in result.results]
            rec["seconds"] = round(result.seconds, 3)
            for r in result.results:
                log(f"  {r.id} [{r.mode}]: caught={r.caught} examples={r.examples} seconds={r.seconds}")


def tables(bench: Bench, args) -> list[Table]:
    secs = bench.data["sections"]
    rows = []
    for op in args.mask_ops:
        rec = secs.get(f"mask.{op}", {})
        for mode, m in rec.get("modes", {}).items():
            first = m.get("first_failure") or {}
            verdict = "FAIL" if m["failed"] else ("not found (budget)" if rec.get("interrupted") else "pass")
            rows.append([op, mode, verdict, first.get("example", "-"),
                         fmt(first.get("seconds")), m.get("first_verdict", "-"), rec.get("cases", "-"),
                         fmt(rec.get("search_seconds")), m.get("shrunk_case", "-")])
    cmds = "; ".join(secs[f"mask.{op}"]["command"] for op in args.mask_ops if "command" in secs.get(f"mask.{op}", {}))
    first = _first_table(bench, args)
    out = [first] if first else []
    out += [Table("Masking failure (-0.1*finfo.max fill): time to the first failing case", bench.command,
                 ["op", "mode", "verdict", "examples to 1st failure", "seconds to 1st failure", "1st verdict",
                  "cases in run", "run seconds (incl. shrink)", "shrunk case"], rows,
                 note=f"Equivalent CLI: {cmds}" if cmds else "")]
    mrows = []
    for key, rec in secs.items():
        if not key.startswith("selftest."):
            continue
        for r in rec.get("results", []):
            mrows.append([r["id"], r["mode"], "caught" if r["caught"] else "MISSED", r["examples"] or "-",
                          fmt(r["seconds"]), r["verdict"] or "-", r["searched"], fmt(r["search_seconds"])])
    out.append(Table(f"Selftest mutants: time to the first killing case (profile {args.selftest_profile})",
                     bench.command, ["mutant", "mode", "result", "examples", "seconds", "verdict", "cases searched",
                                     "search seconds (incl. shrink)"], mrows))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, budget=600)
    p.add_argument("--mask-ops", default="gla,gated_delta", help="ops of the masking search ('' to skip)")
    p.add_argument("--modes", default="recurrent,chunk")
    p.add_argument("--fill", default="-0.1max")
    p.add_argument("--profile", default="ci", help="profile of the masking search (fla-check run's default: ci)")
    p.add_argument("--examples", type=int, default=None, help="masking search budget per mode (default: profile's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seq-len", type=int, default=None)
    p.add_argument("--mask-share", type=float, default=0.5, help="share of the budget for the masking searches")
    p.add_argument("--mutants", default="per-kind", help="'per-kind', 'all', 'none' or comma-separated catalog ids")
    p.add_argument("--mutant-ops", default="gla,delta,gated_delta")
    p.add_argument("--selftest-profile", default="smoke")
    p.add_argument("--selftest-examples", type=int, default=None)
    p.add_argument("--min-entry-s", type=float, default=20.0, help="do not start a mutant with less time left")
    p.add_argument("--first-ops", default="", help="ops of the process-start-to-first-failure rows ('' to skip)")
    p.add_argument("--first-warmups", default="off,background",
                   help="--warmup values of the first-failure rows (default both; 'background': the CLI's default only)")
    p.add_argument("--warmup-buckets", type=int, default=None, help="--warmup-buckets of the warm-up rows")
    p.add_argument("--warmup-seconds", type=float, default=None, help="--warmup-seconds of the warm-up rows")
    p.add_argument("--child-timeout", type=float, default=180.0, help="seconds per first-failure process")
    p.add_argument("--child-first", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-complete", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-warmup", default="off", help=argparse.SUPPRESS)
    p.add_argument("--spawned-at", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_first:
        first_failure_child(args.child_first, args, args.spawned_at)
        return
    from fla_check.backend import get_backend

    device = get_backend(args.device).device
    args.mask_ops = [o for o in args.mask_ops.split(",") if o]
    args.mutant_ops = [o for o in args.mutant_ops.split(",") if o]
    args.first_ops = [o for o in args.first_ops.split(",") if o]
    args.first_warmups = [w for w in args.first_warmups.split(",") if w]
    unknown = sorted(set(args.first_warmups) - {warmup for _, warmup, _ in FIRST_ROWS})
    if unknown:
        p.error(f"--first-warmups: unknown {', '.join(unknown)} (off, background)")
    bench = Bench("time_to_detect", args.out, args.budget)
    bench.data["environment"] = environment(device)
    bench.data["args"] = dict(vars(args))
    bench.render = lambda: tables(bench, args)
    try:
        for op in args.first_ops:
            if bench.has_time(f"first.{op}", args.min_entry_s):
                with bench.section(f"first.{op}") as rec:
                    rec.update(first_failure(bench, op, args))
        for i, op in enumerate(args.mask_ops):
            if not bench.has_time(f"mask.{op}", 10.0):
                continue
            deadline = time.perf_counter() + args.mask_share * bench.budget_s / len(args.mask_ops)
            deadline = min(deadline, time.perf_counter() + bench.remaining())
            with bench.section(f"mask.{op}") as rec:
                rec.update(mask_search(op, args, device, deadline))
        if args.mutants != "none":
            selftest_entries(bench, args, device)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    bench.write()
    log(f"wrote {bench.out}/time_to_detect.json and .md")


if __name__ == "__main__":
    main()
