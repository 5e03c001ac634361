"""Every renderer on checked-in report JSON (tests/goldens/*.json) against checked-in text,
80 columns, NO_COLOR. ``FLA_CHECK_UPDATE_GOLDENS=1`` rewrites the text; tests/goldens/make_sources.py
re-creates the JSON."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from golden import GOLDENS, check_golden, golden_diff, render
from rich.console import Console
from rich.table import Table

from fla_check.commands.gate.engine import diff_reports
from fla_check.commands.gate.render import render_gate
from fla_check.commands.listing.render import render_inventory
from fla_check.commands.run.render import render_case, render_run
from fla_check.commands.selftest.engine import SelftestResult
from fla_check.commands.selftest.render import render_selftest
from fla_check.commands.sweep.engine import SweepResult
from fla_check.commands.sweep.render import render_sweep
from fla_check.commands.ut_transform.engine import UTResult
from fla_check.commands.ut_transform.render import render_ut
from fla_check.report.storage import read_report
from fla_check.verdict.results import CaseResult, SearchResult


def _source(name: str) -> dict:
    return read_report(GOLDENS / f"{name}.json")


def _run(console: Console) -> None:
    render_run(console, SearchResult.from_json(_source("run")), Path("reports/run-gla.json"))


def _replay(console: Console) -> None:
    data = _source("run")
    index = min(data["failures"].values())
    render_case(console, CaseResult.from_json(data["cases"][index]), f"replay of case #{index} from reports/run-gla.json")


def _gate(console: Console) -> None:
    base, new = _source("run"), _source("gate-rerun")
    diff = diff_reports(base, new, factor=2.0, min_score=0.05, base_label="reports/run-gla.json",
                        new_label="re-run reports/gate-gla.json")
    render_gate(console, diff, title="fla-check gate", show_all=True)


def _sweep(console: Console) -> None:
    render_sweep(console, SweepResult.from_json(_source("sweep")), Path("reports/sweep-gla.json"))


def _selftest(console: Console) -> None:
    render_selftest(console, SelftestResult.from_json(_source("selftest")))


def _ut_transform(console: Console) -> None:
    render_ut(console, UTResult.from_json(_source("ut-transform")))


def _list(console: Console) -> None:
    render_inventory(console, _source("list"))


RENDERERS: dict[str, Callable[[Console], None]] = {
    "run": _run, "replay": _replay, "gate": _gate, "sweep": _sweep, "ut-transform": _ut_transform,
    "selftest": _selftest, "list": _list}


@pytest.mark.parametrize("name, cls", [("run", SearchResult), ("sweep", SweepResult), ("ut-transform", UTResult),
                                       ("selftest", SelftestResult)])
def test_results_read_back_from_a_report_give_the_same_report(name, cls):
    data = _source(name)
    del data["schema_version"]
    assert _timeless(cls.from_json(data).to_json()) == _timeless(data)


def _timeless(x):
    """`x` without its "seconds" (stored rounded: a sum of rounded times can differ in the last digit)."""
    if isinstance(x, dict):
        return {k: _timeless(v) for k, v in x.items() if k != "seconds"}
    return [_timeless(v) for v in x] if isinstance(x, list) else x


@pytest.fixture(autouse=True)
def _no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_renderer_matches_its_golden(name):
    check_golden(name, render(RENDERERS[name]))


def _dropping(column: str, monkeypatch) -> None:
    """Make every rich table built from now on lose the column headed `column` (header and cells)."""
    add_column, add_row = Table.add_column, Table.add_row

    def add_column_but(self, header="", *args, **kwargs):
        dropped = getattr(self, "_dropped", None)
        if header == column:
            self._dropped = len(self.columns)
            return None
        self._dropped = dropped
        return add_column(self, header, *args, **kwargs)

    def add_row_but(self, *cells, **kwargs):
        i = getattr(self, "_dropped", None)
        return add_row(self, *(cells[:i] + cells[i + 1:] if i is not None else cells), **kwargs)

    monkeypatch.setattr(Table, "add_column", add_column_but)
    monkeypatch.setattr(Table, "add_row", add_row_but)


@pytest.mark.parametrize("name, column", [("run", "rel-RMSE"), ("sweep", "recurrent"), ("gate", "now"),
                                          ("selftest", "caught"), ("ut-transform", "score")])
def test_a_dropped_column_fails_the_golden_check(name, column, monkeypatch):
    honest = render(RENDERERS[name])
    assert not golden_diff(name, honest)  # the honest renderer matches...
    _dropping(column, monkeypatch)
    broken = render(RENDERERS[name])
    diff = golden_diff(name, broken)  # ...one without the column does not
    assert diff and any(line.startswith("-") and column in line for line in diff.splitlines()[2:])
    with pytest.raises(AssertionError, match="differs from its golden"):
        monkeypatch.delenv("FLA_CHECK_UPDATE_GOLDENS", raising=False)
        check_golden(name, broken)
