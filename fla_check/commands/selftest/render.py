"""Rendering of ``fla-check selftest`` results and of the mutant catalog (rich tables)."""
from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from fla_check.cases import CaseConfig
from fla_check.commands.selftest.mutants import KINDS, Mutant, UsageCase
from fla_check.commands.selftest.engine import BROKEN, SKIPPED, EntryResult, SelftestResult


def _short(config: dict | None) -> str:
    return CaseConfig.from_json(config).short() if config else "-"


def _num(x: float | int | None, digits: int = 1) -> str:
    return "-" if x is None else (str(x) if isinstance(x, int) else f"{x:.{digits}f}")


def mode_text(r: EntryResult) -> str:
    """The mode, with ' bwd' when the search checked gradients (a backward mutant)."""
    return f"{r.mode} bwd" if r.backward else r.mode


def caught_text(r: EntryResult) -> str:
    if r.caught:
        return "[green]yes[/]"
    if r.status == SKIPPED:
        return "[yellow]skipped[/]"
    return "[bold red]BROKEN[/]" if r.status == BROKEN else "[bold red]NO[/]"


def results_table(results: list[EntryResult]) -> Table:
    """One row per mutant and mode: the field thread, caught, examples and seconds to the first
    killing case."""
    table = Table(title="caught = a case the mutant fails (DIVERGED, NONFINITE, a memory, invariance or "
                  "determinism verdict) and the clean mode passes; bwd = searched with gradients; "
                  "field = the public thread of the bug", title_justify="left",
                  box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    table.add_column("mutant", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    table.add_column("field", no_wrap=True)
    table.add_column("caught")
    table.add_column("examples", justify="right")
    table.add_column("seconds", justify="right")
    for r in results:
        table.add_row(r.id, mode_text(r), r.field or "-", caught_text(r), _num(r.examples), _num(r.seconds))
    return table


def render_selftest(console: Console, result: SelftestResult) -> None:
    """The results table, each shrunk case, the misses with their reason, and the mutation score."""
    console.print(results_table(result.results))
    console.print("shrunk cases (mutant verdict on it; clean verdict on it):")
    for r in result.results:
        if r.shrunk:
            control = r.shrunk_control if ":" in r.shrunk_control else f"{r.mode}: {r.shrunk_control}"
            console.print(f"  {r.id}: {r.shrunk_verdict} on {_short(r.shrunk)} (clean {control})", soft_wrap=True)
    for r in result.results:
        if r.status == BROKEN:
            console.print(f"[bold red]broken[/] {r.id} ({r.op}/{mode_text(r)}): {r.note}", soft_wrap=True)
        elif r.status == SKIPPED:
            console.print(f"[yellow]skipped[/] {r.id} ({r.op}/{mode_text(r)}): {r.note}", soft_wrap=True)
        elif not r.caught:
            console.print(f"[bold red]missed[/] {r.id} ({r.op}/{mode_text(r)}): {r.note}")
        elif r.control_failures:
            console.print(f"note: {r.id}: the clean {r.mode} also failed {r.control_failures} case(s) of that run "
                          "(its own failures; the catch is a case it passes)")
    style = "green" if result.all_caught else "bold red"
    broken = f", {result.broken} broken (not caught)" if result.broken else ""
    broken += f", {result.skipped} skipped (GPU only)" if result.skipped else ""
    broken += f", interrupted with {result.interrupted} entries not run" if result.interrupted else ""
    console.print(f"mutation score: [{style}]{result.caught}/{result.total} ({100 * result.score:.1f}%)[/]{broken} "
                  f"in {result.seconds:.1f} s (profile {result.options.get('profile')})")


def catalog_table(entries: list[Mutant | UsageCase]) -> Table:
    """The catalog: id, op, modes, field thread (GPU only marked), bug class, what the rewrite does."""
    table = Table(title="mutant catalog (field: the public thread of the bug; GPU only: skipped on CPU)",
                  title_justify="left")
    table.add_column("id", no_wrap=True)
    for name in ("op", "modes", "field", "class", "description"):
        table.add_column(name, no_wrap=name == "field")
    for e in entries:
        modes = ", ".join(e.modes) if isinstance(e, Mutant) else f"{', '.join(e.flagged)} (clean: {', '.join(e.clean)})"
        if isinstance(e, Mutant) and e.backward:
            modes += " (backward)"
        field = (e.field or "-") + (" (GPU only)" if e.gpu_only else "")
        description = e.description + (f" [GPU only: {e.gpu_only}]" if e.gpu_only else "")
        table.add_row(e.id, e.op, modes, field, KINDS[e.kind], description)
    return table
