"""The shipped `selftest --jobs` hand-out costs: measured seconds per catalog entry, packaged,
used when a multi-worker run gets no `--costs`; new entries first."""
import sys
from pathlib import Path

from fla_check.commands.selftest import suite
from fla_check.commands.selftest.costs import COSTS_FILE, default_costs, load_default
from fla_check.commands.selftest.jobs import handout_order
from fla_check.commands.selftest.mutants import all_entries, select

ROOT = Path(__file__).resolve().parents[3]
IDS = ["gla.recurrent.scale", "gated_delta.chunk.unmasked-load", "delta.recurrent.scale", "gla.chunk.scale"]


def test_the_shipped_costs_name_their_source_and_cover_the_catalog():
    data, costs = load_default(), default_costs()
    assert "H200" in data["source"] and "selftest" in data["source"]
    catalog = {e.id for e in all_entries()}
    assert set(costs) <= catalog  # a renamed entry would lose its cost silently
    assert len(costs) >= 0.9 * len(catalog)
    assert all(s >= 0 for s in costs.values()) and len(set(costs.values())) > 10


def test_the_costs_file_is_package_data():
    if sys.version_info < (3, 11):
        import pytest
        pytest.skip("tomllib")
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert COSTS_FILE in package_data["fla_check.commands.selftest"]
    assert (ROOT / "fla_check" / "commands" / "selftest" / COSTS_FILE).is_file()


def _order(monkeypatch, jobs, costs=None, shipped=None):
    """The hand-out order run_selftest chooses (no entry runs)."""
    seen = []
    if shipped is not None:
        monkeypatch.setattr(suite, "default_costs", lambda: shipped)
    monkeypatch.setattr(suite, "run_jobs", lambda entries, run, *, order, finish, **kw: (
        seen.extend(entries[i].id for i in order), [finish(i, []) for i in order]))
    monkeypatch.setattr(suite, "run_entry", lambda entry, **kw: seen.append(entry.id) or [])
    suite.run_selftest(ids=IDS, jobs=jobs, costs=costs)
    return seen


def test_several_workers_without_costs_hand_out_by_the_shipped_seconds(monkeypatch):
    ids = [e.id for e in select(ids=IDS)]
    expected = [ids[i] for i in handout_order(ids, default_costs())]
    assert _order(monkeypatch, 2) == expected != ids
    assert expected[0] == "gated_delta.chunk.unmasked-load"  # the longest measured entry starts first


def test_an_entry_missing_from_the_shipped_costs_goes_first(monkeypatch):
    ids = [e.id for e in select(ids=IDS)]
    shipped = {i: float(n + 1) for n, i in enumerate(ids) if i != "delta.recurrent.scale"}
    order = _order(monkeypatch, 2, shipped=shipped)
    assert order[0] == "delta.recurrent.scale" and order[1:] == sorted(shipped, key=shipped.get, reverse=True)


def test_given_costs_override_the_shipped_ones_and_one_worker_keeps_catalog_order(monkeypatch):
    ids = [e.id for e in select(ids=IDS)]
    given = {i: float(n) for n, i in enumerate(ids)}  # the last in catalog order is the costliest
    assert _order(monkeypatch, 2, costs=given) == ids[::-1]
    assert _order(monkeypatch, 1) == ids
