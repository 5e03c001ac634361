"""The warm-up ledger: fingerprints of runs whose buckets the Triton cache holds."""
import json

import pytest

from fla_check.commands.run.engine import _compiled_its_plan
from fla_check.engine import warm_ledger
from fla_check.verdict.results import SearchResult

ARGS = dict(dtypes=["fp32"], examples=6, seed=3, profile="ci", device="cuda", max_seq_len=64)


@pytest.fixture(autouse=True)
def ledger_on(monkeypatch):
    monkeypatch.setenv(warm_ledger.LEDGER_ENV, "on")


def test_the_fingerprint_changes_with_anything_that_changes_the_plan():
    base = warm_ledger.fingerprint("gla", ["recurrent", "chunk"], "layout", ARGS)
    assert base == warm_ledger.fingerprint("gla", ["recurrent", "chunk"], "layout", dict(ARGS))
    others = [warm_ledger.fingerprint("delta", ["recurrent", "chunk"], "layout", ARGS),
              warm_ledger.fingerprint("gla", ["chunk"], "layout", ARGS),
              warm_ledger.fingerprint("gla", ["recurrent", "chunk"], "none", ARGS),
              warm_ledger.fingerprint("gla", ["recurrent", "chunk"], "layout", dict(ARGS, seed=4)),
              warm_ledger.fingerprint("gla", ["recurrent", "chunk"], "layout", dict(ARGS, backward=True))]
    assert len({base, *others}) == 6


def test_a_recorded_fingerprint_is_held_and_the_ledger_keeps_the_newest(tmp_path, monkeypatch):
    assert not warm_ledger.holds("a", str(tmp_path))
    warm_ledger.add("a", str(tmp_path))
    assert warm_ledger.holds("a", str(tmp_path)) and not warm_ledger.holds("b", str(tmp_path))
    monkeypatch.setattr(warm_ledger, "MAX_ENTRIES", 2)
    for name in ("b", "c"):
        warm_ledger.add(name, str(tmp_path))
    assert [warm_ledger.holds(x, str(tmp_path)) for x in "abc"] == [False, True, True]
    monkeypatch.setenv(warm_ledger.LEDGER_ENV, "off")
    assert not warm_ledger.holds("c", str(tmp_path))


def test_an_unreadable_ledger_holds_nothing_and_is_rewritten(tmp_path):
    (tmp_path / warm_ledger.LEDGER_NAME).write_text("{not json")
    assert not warm_ledger.holds("a", str(tmp_path))
    warm_ledger.add("a", str(tmp_path))
    assert list(json.loads((tmp_path / warm_ledger.LEDGER_NAME).read_text())) == ["a"]


@pytest.mark.parametrize("interrupted, failures, record, compiled", [
    (False, {}, None, True),  # no failure: the search drew the whole plan
    (True, {}, None, False),
    (False, {"chunk": 3}, None, False),  # shrinking departed from the plan, no warm-up
    (False, {"chunk": 3}, {"buckets": 4, "warmed": 4, "stopped": ""}, True),
    (False, {"chunk": 3}, {"buckets": 4, "warmed": 3, "stopped": "the search ended first: 1 bucket(s) not warmed"},
     False),
])
def test_a_run_is_recorded_only_when_it_compiled_its_whole_plan(interrupted, failures, record, compiled):
    result = SearchResult(op="gla", modes=["chunk"], options={}, failures=failures, interrupted=interrupted)
    assert _compiled_its_plan(result, record) is compiled
