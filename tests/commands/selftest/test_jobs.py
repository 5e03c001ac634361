"""`fla-check selftest --jobs N` / `--shard i/n`: entries in worker processes report what a
sequential run reports, in catalog order; a worker that dies loses only its entry (broken); shards
partition the catalog; and the option errors are usage errors.

Cheap entries only: the three recurrent `scale` mutants are caught on the first ci case (T = 1)."""
import json

import pytest
from click.testing import CliRunner

from device import DEVICE
from fla_check.cli import main
from fla_check.commands.selftest.engine import BROKEN, CAUGHT, crashed_entry, run_entry
from fla_check.commands.selftest.suite import run_selftest
from fla_check.commands.selftest.job_worker import CRASH_ENV
from fla_check.commands.selftest.jobs import (SelftestJobError, costs_from, handout_order, parse_jobs,
                                              resolve_jobs, run_jobs)
from fla_check.commands.selftest.mutants import USAGE_CASES, UsageCase, all_entries, select
from fla_check.engine import invariance
from fla_check.engine.sharding import Shard
from fla_check.errors import UnknownNameError, UsageError

CHEAP = ["gla.recurrent.scale", "delta.recurrent.scale", "simple_gla.recurrent.scale"]
TIMINGS = {"seconds", "search_seconds"}


def _rows(result):
    return [{k: v for k, v in r.to_json().items() if k not in TIMINGS} for r in result.results]


def _run(jobs, **kw):
    progress = []
    result = run_selftest(ids=CHEAP, jobs=jobs, on_result=lambda r, done, total: progress.append((done, total, r.id)),
                          **kw)
    return result, progress


# -- workers ---------------------------------------------------------------------------------
def test_two_workers_report_what_one_process_reports_in_catalog_order():
    alone, progress_alone = _run(1)
    pooled, progress = _run(2)
    assert [r.status for r in alone.results] == [CAUGHT] * 3
    assert _rows(pooled) == _rows(alone)
    assert [r.id for r in pooled.results] == CHEAP  # catalog order, whoever finished first
    assert progress_alone == [(1, 3, CHEAP[0]), (2, 3, CHEAP[1]), (3, 3, CHEAP[2])]
    assert sorted(i for _, _, i in progress) == sorted(CHEAP) and {n for _, n, _ in progress} == {3}
    assert [d for d, _, _ in progress] == [1, 2, 3]  # "[k/total]" counts entries as they finish
    assert pooled.options["jobs"] == 2 and "jobs" not in alone.options
    assert {k: v for k, v in pooled.options.items() if k != "jobs"} == alone.options


def test_a_worker_that_dies_loses_only_its_entry(monkeypatch):
    monkeypatch.setenv(CRASH_ENV, "delta.recurrent.scale")
    result, progress = _run(2)
    assert [r.id for r in result.results] == CHEAP and len(progress) == 3
    gla, delta, simple = result.results
    assert gla.status == simple.status == CAUGHT  # the others still run (a new worker took the slot)
    assert (delta.status, delta.caught, delta.mode) == (BROKEN, False, "recurrent")
    assert "killed by SIGSEGV" in delta.note and "killed by SIGSEGV" in delta.error
    assert (result.caught, result.broken, result.all_caught) == (2, 1, False)


def test_an_entry_that_raises_in_a_worker_ends_the_run_with_its_error():
    bad = UsageCase("nope.mask-fill", "mask-fill", "nope", ("chunk",), (), ("-0.1max",), "no such op")
    scale = select(ids=CHEAP[:1])
    with pytest.raises(UnknownNameError, match="nope"):
        run_jobs([scale[0], bad], {"profile": "ci", "examples": 1, "max_seq_len": None, "dtypes": None,
                                          "device": DEVICE}, jobs=2, device=DEVICE, order=[0, 1],
                        finish=lambda i, rows: None, crashed=crashed_entry)


def test_crashed_entry_is_broken_on_every_mode_it_plants():
    (usage,) = [c for c in USAGE_CASES if c.op == "gla"]
    rows = crashed_entry(usage, "selftest worker process killed by SIGABRT (signal 6)\nFatal Python error: Aborted")
    assert [r.mode for r in rows] == list(usage.flagged) and all(r.status == BROKEN and not r.caught for r in rows)
    assert rows[0].note == "crashed: selftest worker process killed by SIGABRT (signal 6)"
    assert "Fatal Python error" in rows[0].error and rows[0].errors == 1


def test_run_entry_runs_as_if_alone_in_its_process():
    invariance._SEEN.add(("sentinel",))
    (r,) = run_entry(select(ids=CHEAP[:1])[0], profile="ci", examples=1)
    assert r.status == CAUGHT and ("sentinel",) not in invariance._SEEN


# -- hand-out order, job counts ----------------------------------------------------------------
def test_costs_hand_out_the_slowest_first_and_unknown_ones_before_all():
    ids = ["a", "b", "c", "d"]
    assert handout_order(ids) == handout_order(ids, {}) == [0, 1, 2, 3]
    assert handout_order(ids, {"a": 1.0, "b": 9.0, "d": 1.0}) == [2, 1, 0, 3]


def test_costs_from_a_previous_result_sum_the_modes_of_an_entry():
    data = {"kind": "selftest", "results": [{"id": "x", "search_seconds": 2.0}, {"id": "x", "search_seconds": 1.5},
                                            {"id": "y", "search_seconds": 0.25}]}
    assert costs_from(data) == {"x": 3.5, "y": 0.25}
    for bad in ({"kind": "run", "results": []}, {"kind": "selftest"}, {"kind": "selftest", "results": [{"x": 1}]}, []):
        with pytest.raises(UsageError):
            costs_from(bad)


def test_parse_and_resolve_jobs():
    assert parse_jobs("3") == 3 and parse_jobs(" AUTO ") == "auto" and parse_jobs(1) == 1
    for bad in ("0", "-2", "two", ""):
        with pytest.raises(UsageError):
            parse_jobs(bad)
    assert resolve_jobs(5, 2) == 5 and resolve_jobs("auto", 1) == 1 and 1 <= resolve_jobs("auto", 1000) <= 1000


# -- shards ----------------------------------------------------------------------------------
def test_shards_partition_the_catalog_stably_and_balanced():
    catalog = [e.id for e in all_entries()]
    shards = [[e.id for e in Shard(i, 4).pick(all_entries(), key=lambda e: e.id)] for i in range(1, 5)]
    assert sorted(i for s in shards for i in s) == sorted(catalog)  # union = all, disjoint
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shards == [[e.id for e in Shard(i, 4).pick(list(reversed(all_entries())), key=lambda e: e.id)][::-1]
                      for i in range(1, 5)]  # by id, not by position


def test_a_shard_runs_its_share_and_says_which():
    result = run_selftest(ids=CHEAP, shard=Shard(2, 2), examples=1)
    assert [r.id for r in result.results] == ["gla.recurrent.scale"]  # ids sorted: delta, gla, simple_gla
    assert result.options["shard"] == "2/2" and result.options["mutants"] == ["gla.recurrent.scale"]
    assert json.loads(json.dumps(result.to_json()))["options"]["shard"] == "2/2"


# -- the command line --------------------------------------------------------------------------
def _cli(*args):
    return CliRunner().invoke(main, ["selftest", *map(str, args)])


def test_cli_prints_progress_with_k_of_total_and_a_shard_in_its_json():
    res = _cli("--mutants", ",".join(CHEAP), "--shard", "1/3", "--no-color")
    assert res.exit_code == 0, res.output
    assert "[1/1] caught delta.recurrent.scale (delta/recurrent)" in res.stderr
    res = _cli("--mutants", ",".join(CHEAP), "--shard", "3/3", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["options"]["shard"] == "3/3" and [r["id"] for r in data["results"]] == ["simple_gla.recurrent.scale"]


@pytest.mark.parametrize("args, message", [
    (("--jobs", "0"), "--jobs: need at least 1 worker process"),
    (("--jobs", "-3"), "--jobs: need at least 1 worker process"),
    (("--jobs", "many"), "--jobs: 'many' is not a number"),
    (("--shard", "3/2"), "--shard: shard 3/2"),
    (("--shard", "half"), "--shard: shard 'half' is not of the form i/n"),
    (("--costs", "/nonexistent/selftest.json"), "--costs /nonexistent/selftest.json: cannot read it"),
])
def test_cli_usage_errors(args, message):
    res = _cli("--mutants", CHEAP[0], *args)
    assert res.exit_code == 2 and message in res.output, res.output


def test_cli_costs_not_a_selftest_result(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"kind": "run", "results": []}))
    res = _cli("--mutants", CHEAP[0], "--costs", path)
    assert res.exit_code == 2 and "not a `fla-check selftest --json` result" in res.output


def test_selftest_job_error_is_an_internal_error():
    assert SelftestJobError("x").usage is False
