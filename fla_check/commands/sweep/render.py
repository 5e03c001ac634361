"""Rendering of a mask-fill sweep: rich tables, the safe intervals, advice, an optional PNG heatmap.

- :func:`render_sweep` prints one table per dtype (fill values as rows, modes as columns, each
  cell the outcome and the worst rel-RMSE against the per-segment float64 truth), then the safe
  interval per mode and dtype, the advice and the tolerance used. Tables fit 80 columns for
  up to three modes (one table per dtype keeps them narrow).
- :func:`write_plot` draws the same grid as a heatmap (matplotlib, the optional ``[plot]``
  extra) and writes it atomically; :class:`PlotUnavailable` says why it cannot.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fla_check.cases import DTYPES
from fla_check.report.console import ProgressFeed, fmt, make_progress
from fla_check.report.storage import atomic_write
from fla_check.commands.sweep.engine import CONTROL, TOLERANCE_RULE, Cell, Outcome, SweepResult, effective_fill
from fla_check.errors import PlotUnavailable  # noqa: F401 (re-exported)

STYLE = {Outcome.OK: "green", Outcome.LEAK: "yellow", Outcome.DIVERGED: "bold red",
         Outcome.NONFINITE: "bold magenta", Outcome.ERROR: "bold red", Outcome.UNSUPPORTED: "dim"}
COLOURS = {Outcome.OK: "#4caf50", Outcome.LEAK: "#ffc107", Outcome.DIVERGED: "#e53935",
           Outcome.NONFINITE: "#8e24aa", Outcome.ERROR: "#212121", Outcome.UNSUPPORTED: "#bdbdbd"}
LEGEND = ("LEAK: the fill is too weak (state crosses the segment start)",
          "DIVERGED / NONFINITE: the kernel's arithmetic breaks at this fill (absorption or cancellation "
          "in the chunk cumsum, exp overflow, inf - inf)")


def cell_text(cell: Optional[Cell], markup: bool = True) -> str:
    """'OK 9.6e-08', 'LEAK 0.13', 'NONFINITE', 'UNSUPPORTED' or '-' (not run)."""
    if cell is None:
        return "-"
    o = cell.outcome
    err = cell.error
    text = o.value if o in (Outcome.NONFINITE, Outcome.ERROR, Outcome.UNSUPPORTED) or err is None \
        else f"{o.value} {fmt(err)}"
    return f"[{STYLE[o]}]{text}[/]" if markup else text


def _value(result: SweepResult, label: str, dtype: str) -> str:
    """The fill as `dtype` sees it: '-20', '-1e3', '-3.4e37', '-inf'; 'no fill' for the control."""
    if label == CONTROL:
        return "no fill"
    x = effective_fill(result.fills[label], DTYPES[dtype])
    if not math.isfinite(x) or abs(x) < 1000:
        return f"{x:g}"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def dtype_table(result: SweepResult, dtype: str) -> Table:
    table = Table(title=dtype, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("fill", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for mode in result.modes:
        table.add_column(mode, no_wrap=True)
    for label in result.values:
        cells = [cell_text(result.cell(label, m, dtype)) for m in result.modes]
        if label == CONTROL:
            table.add_section()
        table.add_row(label, _value(result, label, dtype), *cells)
    return table


def safe_table(result: SweepResult) -> Table:
    table = Table(title="safe fill values (longest contiguous run of OK fills)", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for name in ("mode", "dtype", "safe fills", "flagged from", "cu_seqlens"):
        table.add_column(name, no_wrap=True)
    for mode in result.modes:
        for dtype in result.dtypes:
            iv = result.safe_interval(mode, dtype)
            safe = "none" if iv is None else (iv[0] if iv[0] == iv[1] else f"{iv[0]} .. {iv[1]}")
            flagged = _first_flagged(result, mode, dtype)
            ctrl = result.outcome(CONTROL, mode, dtype)
            if not result.varlen.get(mode):
                cu = "not supported"
            else:
                cu = "-" if ctrl is None else f"[{STYLE[ctrl]}]{ctrl.value}[/]"
            table.add_row(mode, dtype, safe, flagged, cu)
    return table


def _first_flagged(result: SweepResult, mode: str, dtype: str) -> str:
    """'-50 (cases 0,2)': the weakest flagged fill and the cases where it broke, or '-'."""
    for v in result.ordered_fills(dtype):
        cell = result.cell(v, mode, dtype)
        if cell is not None and cell.outcome.flagged:
            cases = [str(c.case) for c in cell.cases if c.outcome.flagged]
            return f"{v} (case{'s' if len(cases) > 1 else ''} {','.join(cases)})"
    return "-"


def render_sweep(console: Console, result: SweepResult, report_path: Optional[Path] = None) -> None:
    """The human view of a sweep."""
    o = result.options
    console.print(f"[bold]fla-check sweep-mask-values[/]: {result.op} {escape('[' + ', '.join(result.modes) + ']')}")
    stopped = " [yellow](interrupted: partial results)[/]" if result.interrupted else ""
    console.print(f"dtypes {','.join(result.dtypes)}; {o.get('backend', o.get('device'))}; "
                  f"{len(result.cases)} packed cases per cell, seed {o.get('seed')}; {result.seconds:.1f} s{stopped}",
                  soft_wrap=True)
    for c in result.cases:
        console.print(f"  case {c['case']} {c['layout']}: T={c['T']} H={c['H']} K={c['K']} V={c['V']} "
                      f"resets at {c['starts']} seed {c['seed']}", soft_wrap=True, markup=False)
    console.print(f"cells: outcome and worst rel-RMSE vs the per-segment float64 truth over the {len(result.cases)} "
                  "cases; value: the fill as the dtype sees it", soft_wrap=True)
    for dtype in result.dtypes:
        console.print(dtype_table(result, dtype))
    for line in LEGEND:
        console.print(line, soft_wrap=True, markup=False)
    console.print(safe_table(result))
    for line in result.advice():
        console.print(f"advice: {line}", soft_wrap=True, markup=False)
    console.print(f"tolerance: {TOLERANCE_RULE}", soft_wrap=True, markup=False)
    for cell in result.cells.values():
        if cell.outcome is Outcome.ERROR:
            console.print(f"error: {cell.mode} {cell.dtype} at {cell.value}: {cell.reason}", soft_wrap=True,
                          markup=False)
    times = {m: sum(c.seconds for (_, mode, _), cell in result.cells.items() if mode == m for c in cell.cases)
             for m in result.modes}
    console.print("kernel time: " + ", ".join(f"{m} {s:.1f} s" for m, s in times.items()))
    verdict = "[bold red]FAIL[/] (a mode raised or failed the cu_seqlens control)" if result.failed else "[green]done[/]"
    console.print(f"verdict: {verdict}" + (f"   report: {report_path}" if report_path else ""), soft_wrap=True)


# -- heatmap ---------------------------------------------------------------------------------
def write_plot(result: SweepResult, path: Path) -> Path:
    """A PNG heatmap (rows: fills, columns: mode x dtype, colour: outcome, text: error), atomic."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("matplotlib is not installed (pip install 'fla-check[plot]')") from None
    order = list(Outcome)
    cols = [(m, d) for d in result.dtypes for m in result.modes]
    grid, texts = [], []
    for label in result.values:
        row, trow = [], []
        for m, d in cols:
            cell = result.cell(label, m, d)
            row.append(order.index(cell.outcome) if cell else order.index(Outcome.UNSUPPORTED))
            trow.append(cell_text(cell, markup=False).replace(" ", "\n", 1))
        grid.append(row)
        texts.append(trow)
    fig = Figure(figsize=(1.3 * len(cols) + 1.8, 0.45 * len(result.values) + 1.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(grid, cmap=ListedColormap([COLOURS[o] for o in order]), vmin=0, vmax=len(order) - 1,
              aspect="auto")
    for i, trow in enumerate(texts):
        for j, text in enumerate(trow):
            ax.text(j, i, text, ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(cols)), [f"{m}\n{d}" for m, d in cols], fontsize=7)
    ax.set_yticks(range(len(result.values)), result.values, fontsize=7)
    ax.set_title(f"{result.op}: reset-mask fills vs per-segment float64 truth", fontsize=9)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120), suffix=".png")


# -- progress --------------------------------------------------------------------------------
class SweepProgress(ProgressFeed):
    """A transient rich progress bar on stderr, fed with (done, total, label)."""

    def __init__(self, quiet: bool, no_color: bool = False):
        super().__init__(make_progress(no_color=no_color, quiet=quiet))

    def update(self, done: int, total: int, label: str) -> None:
        if self.task is None:
            self.task = self.bar.add_task("sweep", total=total)
        self.bar.update(self.task, completed=done, total=total, description=label)
