"""Rich rendering of a :class:`~fla_check.commands.gate.engine.GateResult` (``fla-check gate`` / ``compare``).

A header (what was compared, the factor), the regressions as a table (or every row with
``show_all``), a per-mode summary with the worst growth factors, and the verdict line.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

from rich import box
from rich.console import Console
from rich.table import Table

from fla_check.commands.gate.engine import FAILING, METRICS, GateResult, Row
from fla_check.report.console import fmt, make_progress

STATUS_STYLE = {"new failure": "bold red", "regressed": "bold red", "improved": "green", "same": "",
                "not compared": "yellow"}
METRIC_TITLE = {"max_abs": "max-abs", "rel_rms": "rel-RMSE"}


def _x(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.2g}x"


def _table(title: str) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, collapse_padding=True)


def row_table(rows: list[Row], title: str, *, factor: float, min_score: float, every_metric: bool = False) -> Table:
    """One line per (case, mode, output, metric): baseline error, error now, growth, share of
    the allowed error used now, verdict now (``*``: a new failure). Only the metrics that
    regressed unless `every_metric`; fits 80 columns."""
    table = _table(title)
    for name, justify in (("case", "right"), ("mode", "left"), ("output", "left"), ("base", "right"),
                          ("now", "right"), ("x", "right"), ("used", "right"), ("verdict", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    for r in rows:
        verdict = r.new_verdict + ("*" if r.status == "new failure" else "")
        style = STATUS_STYLE.get(r.status)
        verdict = f"[{style}]{verdict}[/]" if style else verdict
        metrics = [m for m in METRICS if m in r.new and m in r.base]
        if not every_metric and r.status == "regressed":
            metrics = [m for m in metrics if r.ratio(m) > factor and r.score(m) >= min_score] or metrics
        if not metrics:
            table.add_row(f"#{r.case}", r.mode, "-", "-", "-", "-", "-", verdict)
        for m in metrics:
            table.add_row(f"#{r.case}", r.mode, f"{r.output} {METRIC_TITLE[m]}", fmt(r.base[m]), fmt(r.new[m]),
                          _x(r.ratio(m)), fmt(r.score(m)), verdict)
    return table


def mode_summary_table(result: GateResult) -> Table:
    table = _table("per mode: worst growth (now / baseline), counts of paired outputs")
    for name, justify in (("mode", "left"), ("outputs", "right"), ("max-abs", "right"), ("rel-RMSE", "right"),
                          ("regressed", "right"), ("new fail", "right"), ("skipped", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for mode in result.modes:
        rows = sum(r.mode == mode for r in result.rows)
        table.add_row(mode, str(rows), _x(result.worst(mode, "max_abs")), _x(result.worst(mode, "rel_rms")),
                      str(result.count("regressed", mode)), str(result.count("new failure", mode)),
                      str(result.count("not compared", mode)))
    return table


def render_gate(console: Console, result: GateResult, *, title: str = "fla-check gate",
                show_all: bool = False) -> None:
    """The human view of a gate or compare run."""
    console.print(f"[bold]{title}[/]: {result.op}  {result.new_label}  vs  baseline {result.base_label}",
                  soft_wrap=True)
    console.print(f"{result.matched} paired cases, modes {', '.join(result.modes) or '-'}; "
                  f"regression = growth > {result.factor:g}x with >= {result.min_score:g} of the allowed error "
                  "used, or a new failure")
    if result.only_base or result.only_new:
        console.print(f"[yellow]unpaired cases: {result.only_base} only in the baseline, "
                      f"{result.only_new} only in the new report[/]")
    for label, modes in (("baseline", result.modes_only_base), ("new report", result.modes_only_new)):
        if modes:
            console.print(f"[yellow]modes only in the {label}: {', '.join(modes)}[/]")
    shown = result.rows if show_all else result.regressions
    if shown:
        title = "every paired output" if show_all else "regressions (used: share of the allowed error now)"
        console.print(row_table(shown, title, factor=result.factor, min_score=result.min_score,
                                every_metric=show_all))
        if any(r.status == "new failure" for r in shown):
            console.print("  * new failure: the baseline passed this case")
        for case, case_id in sorted({r.case: r.case_id for r in shown}.items()):
            console.print(f"  #{case}: {case_id}", soft_wrap=True, markup=False)
    console.print(mode_summary_table(result))
    skipped = [r for r in result.rows if r.status == "not compared" and r.reason]
    if skipped:
        console.print(f"[yellow]{len(skipped)} mode result(s) not compared[/]: {skipped[0].reason}",
                      soft_wrap=True)
    bad = len(result.regressions)
    counts = {s: result.count(s) for s in FAILING}
    verdict = (f"[bold red]FAIL[/] ({counts['regressed']} regressed, {counts['new failure']} new failures)"
               if bad else "[green]OK[/] (no regression)")
    console.print(f"verdict: {verdict}")


@contextmanager
def case_progress(quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar on stderr for re-run cases; yields update(done, total)."""
    bar = make_progress("re-running cases", no_color=quiet, quiet=quiet)
    task = bar.add_task("cases", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update
