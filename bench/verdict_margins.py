"""Margins of the verdict per op and dtype: honest kernels vs planted subtle bugs.

For each op and dtype, fixed multi-chunk cases (T 100 and 200, K 16 and 64, beta up to 2, h0,
a -1e4 mask fill on gated ops in half of them) run through ``check_case`` with

- the built-in chunk mode (honest, as shipped) and the fla-like torch proxy
  (tests/controls/fla_like.py, ``honest:fla64``: rounds where fla-core 0.6.0 rounds);
- the selftest's subtle mutants of the built-in chunk mode: ``o-late`` (o x1.02 from the second
  chunk on) and ``ht-late`` (ht x0.98 on multi-chunk sequences).

Prints a markdown table: worst honest score (fraction of the allowed error; > 1 is DIVERGED),
and per mutant the cases caught, the weakest score and its "x base" (the failing output's
rel-RMSE over the baseline's, ``Comparison.ratio``).

    python bench/verdict_margins.py [--ops gla,delta,gated_delta] [--dtypes fp32,fp16,bf16]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from controls import fla_like  # noqa: E402
from fla_check import ops  # noqa: E402
from fla_check.cases import CaseConfig  # noqa: E402
from fla_check.commands.selftest.mutants import select  # noqa: E402
from fla_check.engine.runner import check_case, mode_label  # noqa: E402

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def cases(op: str, dtype: str) -> list[CaseConfig]:
    out = []
    for i, (T, K) in enumerate([(100, 16), (200, 16), (100, 64), (200, 64)]):
        kw = dict(op=op, dtype=dtype, B=1, T=T, H=1, K=K, V=K, beta_max=2.0, initial_state=True, seed=100 + i)
        if op != "delta" and i % 2:
            kw.update(packing="mask", segments=((T // 3, T - T // 3),), mask_fill=-1e4)
        out.append(CaseConfig(**kw))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default="gla,delta,gated_delta")
    p.add_argument("--dtypes", default="fp32,fp16,bf16")
    args = p.parse_args()
    print("| op | dtype | honest built-in chunk | honest fla-like | o x1.02 late: caught, weakest (x base) "
          "| ht x0.98 late: caught, weakest (x base) |")
    print("|---|---|---|---|---|---|")
    for op in args.ops.split(","):
        proxy = fla_like.MODES[op]["fla64"]
        ops.register_modes(op, [proxy])
        mutants = {m.kind: dataclasses.replace(m.mode_specs()[0], name=m.kind) for m in select(ops=[op])
                   if m.kind in ("o-late", "ht-late") and m.modes == ("chunk",)}
        for dt in args.dtypes.split(","):
            start = time.perf_counter()
            modes = ["chunk", proxy] + list(mutants.values())
            results = [check_case(op, modes, cfg) for cfg in cases(op, DTYPES[dt])]
            honest = max(r.modes["chunk"].score for r in results)
            proxy_score = max(r.modes[mode_label(proxy)].score for r in results)
            cells = []
            for kind in ("o-late", "ht-late"):
                label = mode_label(mutants[kind])
                scores = [r.modes[label].score for r in results]
                caught = sum(r.modes[label].verdict.failed for r in results)
                weakest = min(range(len(scores)), key=scores.__getitem__)
                ratio = max(c.ratio for c in results[weakest].modes[label].outputs)
                cells.append(f"{caught}/{len(results)}, {scores[weakest]:.2f} ({ratio:.1f}x)")
            print(f"| {op} | {dt} | {honest:.2f} | {proxy_score:.2f} | {cells[0]} | {cells[1]} |", flush=True)
            print(f"<!-- {op} {dt}: {time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
