"""The run renderer: 80 columns, no colour when asked, strict JSON reports, provider caveats."""
import dataclasses
import json

import pytest
from rich.console import Console
from _fake_modes import registered

from fla_check.commands.run.render import _print_drawn, render_case, render_run, replay_command
from fla_check.report.console import make_console
from fla_check.report.storage import SCHEMA_VERSION, write_report
from fla_check.engine.search import search


@pytest.fixture(scope="module")
def failing_run():
    with registered("gla"):
        return search("gla", ["test:clean", "test:dropped", "test:raises"], examples=6, seed=2, max_seq_len=40,
                      dtypes=["fp32"], database_root=None)


def _render(fn, *args, **console_kw):
    console = make_console(width=80, **console_kw)
    with console.capture() as cap:
        fn(console, *args)
    return cap.get()


def test_run_report_content(failing_run, tmp_path):
    out = _render(render_run, failing_run, tmp_path / "r.json")
    assert "test:dropped" in out and "DIVERGED" in out and "test:raises" in out and "ERROR" in out
    assert "packing:" in out and "seed" in out and "planted kernel crash" in out
    assert f"replay: fla-check replay {tmp_path / 'r.json'} --case " in out
    assert "mode vs mode" in out and "verdict: FAIL" in out


def test_tables_fit_80_columns(failing_run, tmp_path):
    out = _render(render_run, failing_run, tmp_path / "r.json")
    soft = ("  replay:", "  packing:", "  o first", "  error:", "    ")  # soft-wrapped, copy-pasteable
    long = [ln for ln in out.splitlines() if len(ln) > 80 and not ln.startswith(soft)]
    assert not long, long


def test_no_color(failing_run, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)  # the caller's shell may set it
    assert "\x1b[" in _render(render_run, failing_run)
    assert "\x1b[" not in _render(render_run, failing_run, no_color=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in _render(render_run, failing_run)


def test_render_case(failing_run):
    case = failing_run.cases[failing_run.failures["test:dropped"]]
    out = _render(render_case, case, "replay")
    assert "test:dropped" in out and "first exceeds tolerance" in out and "verdict: ERROR" in out


def test_report_json_is_strict(failing_run, tmp_path):
    path = write_report(failing_run.to_json(), tmp_path / "r.json")
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert data["schema_version"] == SCHEMA_VERSION and data["failures"] and data["cases"][data["failures"]["test:dropped"]]["config"]["op"] == "gla"


def test_a_mode_caveat_is_recorded_and_printed():
    """A provider's caveat (e.g. fla's #640 guard lifted) goes into options.caveats and the console."""
    from fla_check.ops import get_mode, get_op
    from fla_check.verdict.results import SearchResult

    with registered("gla"):
        clean = get_mode(get_op("gla"), "test:clean")
        noted = dataclasses.replace(clean, caveat="guard lifted in this process")
        result = search("gla", [noted], examples=1, seed=0, max_seq_len=8, dtypes=["fp32"],
                        database_root=None, profile="smoke")
    assert result.options["caveats"] == {"test:clean": "guard lifted in this process"}
    reread = SearchResult.from_json(json.loads(json.dumps(result.to_json())))
    assert reread.options["caveats"] == result.options["caveats"]
    assert "caveat test:clean: guard lifted in this process" in _render(render_run, result)
    assert "caveat" not in _render(render_run, dataclasses.replace(result, options={**result.options, "caveats": {}}))


def test_replay_command(tmp_path):
    assert replay_command(tmp_path / "a b.json", 3) == f"fla-check replay '{tmp_path}/a b.json' --case 3"


def test_long_mode_names_wrap_instead_of_cutting_numbers():
    """A provider's long mode names must not squeeze the number columns at 80 columns: a cut
    '1.3e-…' or '9.2e+…' reads as a different number (the mode name wraps instead)."""
    from pathlib import Path

    from fla_check.report.storage import read_report
    from fla_check.verdict.results import SearchResult

    text = json.dumps(read_report(Path(__file__).resolve().parent.parent / "goldens" / "run.json"))
    result = SearchResult.from_json(json.loads(text.replace("test:dropped", "mykernels:fused_recurrent_fwd")))
    out = _render(render_run, result, None, no_color=True)
    tables = out.split("mode vs mode")[0]
    assert "…" not in tables, tables
    assert "9.2e+04" in tables and "9/25 bad" in tables and "3.0e-06" in tables


def test_a_value_asked_for_but_never_drawn_is_named():
    """--kernel-options lower_bound,safe_gate in 19 cases that drew neither (as an H200 run did):
    the view counts each option and names the ones no case checked."""
    from fla_check.cases import CaseConfig
    from fla_check.verdict.results import CaseResult, SearchResult

    plain = CaseConfig(op="kda", dtype="float32", B=1, T=4, H=1, K=16, V=16)
    gated = CaseConfig(op="kda", dtype="float32", B=1, T=4, H=1, K=16, V=16, gate_in_kernel=True)
    result = SearchResult("kda", ["fla:chunk"], {"kernel_options": ["gate_in_kernel", "lower_bound", "safe_gate"]},
                          cases=[CaseResult(plain, {}), CaseResult(gated, {})])
    assert result.drawn() == [("gate_in_kernel", 1), ("lower_bound", 0), ("safe_gate", 0)]
    console = Console(width=80, record=True, no_color=True)
    _print_drawn(console, result)
    text = " ".join(console.export_text().split())
    assert "drawn (of 2 cases): gate_in_kernel 1, lower_bound 0, safe_gate 0" in text
    assert "never drawn: lower_bound, safe_gate" in text
