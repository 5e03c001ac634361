"""Record the case that kills each selftest catalog entry, for the fast catalog tests.

    python3 tests/commands/record_killing_cases.py [--ops OP,...] [--ids ID,...]

Runs the selftest (:func:`fla_check.commands.selftest.suite.run_selftest`: the ci profile's
search, without shrinking, like tests/commands/test_selftest.py; usage cases at T <= 128) and
merges, per caught entry, its first killing case (``killing``) and what replaying it needs
(gradients, autotune-config and determinism policies, the mutant's verdict there) into
tests/commands/killing_cases.json, sorted, after each entry (several recorders, e.g. one per op,
may run at once: writes are locked). Entries not caught are reported and left out. Run it after
adding a mutant, or when a kernel or verdict change makes a recorded case stop killing (the
catalog test then falls back to the full search and says so).
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from fla_check.backend import get_backend
from fla_check.commands.selftest.engine import CAUGHT, SKIPPED, EntryResult, run_usage
from fla_check.commands.selftest.suite import run_selftest
from fla_check.commands.selftest.mutants import Mutant, UsageCase, all_entries
from fla_check.engine.profiles import PROFILES

PATH = Path(__file__).with_name("killing_cases.json")
RECORDER = "python3 tests/commands/record_killing_cases.py"
USAGE_MAX_SEQ_LEN = 128  # as tests/commands/test_selftest.py searches the usage cases


def load(path: Path = PATH) -> dict[str, Any]:
    """The recorded cases by catalog id ({} when none are recorded)."""
    return json.loads(path.read_text()) if path.exists() else {}


def record_of(entry: Mutant | UsageCase, result: EntryResult, backend: str) -> dict[str, Any]:
    """What replaying `result`'s killing case needs (one mode; the catalog ids carry one each)."""
    rec: dict[str, Any] = {"op": entry.op, "mode": result.mode, "verdict": result.verdict,
                           "killing": result.killing, "examples": result.examples, "profile": "ci",
                           "backend": backend}
    if isinstance(entry, Mutant):
        rec.update(backward=entry.backward, configs=entry.configs, repeat=entry.repeat)
    else:
        rec.update(usage=True, max_seq_len=USAGE_MAX_SEQ_LEN)
    return rec


def merge(updates: dict[str, dict[str, Any]], path: Path = PATH) -> None:
    """Merge `updates` into the file under an exclusive lock (concurrent recorders), sorted keys."""
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load(path)
        data.update(updates)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)


def record(ops: Optional[list[str]] = None, ids: Optional[list[str]] = None, path: Path = PATH,
           examples: Optional[int] = None) -> int:
    """Run the selftest on the selection (`examples`: the search budget, None: the ci profile's)
    and merge each caught entry; the number not caught (skipped GPU-only entries excluded)."""
    ci = PROFILES["ci"]
    PROFILES["ci"] = dataclasses.replace(ci, shrink_cases=0)
    try:
        return _record(ops, ids, path, examples)
    finally:
        PROFILES["ci"] = ci


def _record(ops: Optional[list[str]], ids: Optional[list[str]], path: Path, examples: Optional[int]) -> int:
    entries = {e.id: e for e in all_entries()}
    backend = "interpreter" if get_backend().interpreter else "cuda"
    missed = 0

    def on_result(result: EntryResult, done: int = 0, total: int = 0) -> None:
        nonlocal missed
        entry = entries[result.id]
        if result.status == CAUGHT and result.killing is not None:
            merge({result.id: record_of(entry, result, backend)}, path)
            print(f"recorded {result.id}: {result.verdict} at example {result.examples}", flush=True)
        elif result.status == SKIPPED:
            print(f"skipped {result.id}: {result.note}", flush=True)
        else:
            missed += 1
            print(f"not recorded {result.id}: {result.status} {result.note}", flush=True)

    picked = [e for e in entries.values() if (not ops or e.op in ops)
              and (not ids or any(e.id == i or e.id.startswith(i + ".") for i in ids))]
    chosen = [e.id for e in picked if isinstance(e, Mutant)]
    if chosen:
        run_selftest(ids=chosen, examples=examples, on_result=on_result)
    usage = [e for e in picked if isinstance(e, UsageCase)]
    for case in usage:
        for result in run_usage(case, profile="ci", examples=examples, max_seq_len=USAGE_MAX_SEQ_LEN):
            on_result(result)
    return missed


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", help="comma-separated ops (default: all)")
    parser.add_argument("--ids", help="comma-separated catalog ids or id prefixes (default: all)")
    args = parser.parse_args(argv)
    split = lambda text: [t for t in (text or "").split(",") if t] or None  # noqa: E731
    missed = record(split(args.ops), split(args.ids))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
