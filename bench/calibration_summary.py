"""Summarise `fla-check run --json` reports: per op, mode, dtype and direction, the cases run,
the failures and the worst score (fraction of the allowed error; > 1 = DIVERGED).

    python bench/calibration_summary.py REPORT.json [...] [--markdown]

A report whose run was interrupted (time cap) still counts the cases it finished. Scores of
failed cases are listed too, with the shrunk case when the report has one.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

GRADIENTS = {"dq", "dk", "dv", "dg", "dbeta", "dh0"}


def _float(x) -> float:
    return float(x) if not isinstance(x, str) else float(x.replace("inf", "Infinity")) if x != "nan" else math.nan


def rows(paths: list[Path]) -> dict[tuple, dict]:
    """(op, mode, dtype, direction, tag) -> {cases, failed, verdicts, worst, worst_output}."""
    table: dict[tuple, dict] = defaultdict(lambda: {"cases": 0, "failed": 0, "verdicts": defaultdict(int),
                                                    "worst": 0.0, "worst_output": ""})
    for path in paths:
        try:
            rep = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            print(f"# skipped {path}: {exc}")
            continue
        if rep.get("kind") != "run":
            continue
        tag = Path(path).stem
        for case in rep.get("cases", []):
            dtype = case["config"]["dtype"]
            for mode, res in case["modes"].items():
                if res["verdict"] == "UNSUPPORTED":
                    continue
                for direction in ("fwd", "bwd"):
                    outs = [o for o in res.get("outputs", []) if (o["name"] in GRADIENTS) == (direction == "bwd")]
                    if not outs and not (direction == "fwd" and res["verdict"] == "ERROR"):
                        continue
                    row = table[(rep["op"], mode, dtype, direction, tag)]
                    row["cases"] += 1
                    verdict = res["verdict"] if direction == "fwd" or outs else "OK"
                    worst = max(outs, key=lambda o: _float(o["score"]), default=None)
                    failed = any(o["verdict"] != "OK" for o in outs) or res["verdict"] == "ERROR"
                    row["failed"] += failed
                    row["verdicts"][verdict if failed else "OK"] += 1
                    if worst is not None and _float(worst["score"]) > row["worst"]:
                        row["worst"], row["worst_output"] = _float(worst["score"]), worst["name"]
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", type=Path)
    args = p.parse_args()
    table = rows(args.reports)
    print("| report | op | mode | dtype | dir | cases | failed | worst score (output) |")
    print("|---|---|---|---|---|---|---|---|")
    for (op, mode, dtype, direction, tag), r in sorted(table.items()):
        print(f"| {tag} | {op} | {mode} | {dtype} | {direction} | {r['cases']} | {r['failed']} | "
              f"{r['worst']:.3g} ({r['worst_output']}) |")


if __name__ == "__main__":
    main()
