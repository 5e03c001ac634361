"""`fla-check sweep-mask-values`: tables, JSON, report file, plot, exit codes 0 / 1 / 2."""
import json
import sys

import pytest
from click.testing import CliRunner

from _fake_modes import registered
from fla_check.cli import main
from optional_deps import PLOT_HINT, require

FAST = ["sweep-mask-values", "--dtypes", "fp32", "--cases", "1", "--no-color"]


def _invoke(args, tmp_path):
    return CliRunner().invoke(main, FAST + ["--report", str(tmp_path / "sweep.json")] + args)


def test_json_and_report_file(tmp_path):
    with registered("gla"):
        res = _invoke(["--modes", "test:clean,test:chunk16", "--values=-inf,-1,-20", "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data == json.loads((tmp_path / "sweep.json").read_text())
    got = {(c["value"], c["mode"]): c["outcome"] for c in data["cells"]}
    assert got[("-1", "test:clean")] == "LEAK" and got[("-inf", "test:clean")] == "OK"
    assert got[("-inf", "test:chunk16")] == "NONFINITE" and got[("cu_seqlens", "test:chunk16")] == "OK"
    assert data["values"] == ["-1", "-20", "-inf", "cu_seqlens"] and data["common_safe"] == ["-20", "-20"]


def test_table_safe_interval_and_advice(tmp_path):
    with registered("gla"):
        res = _invoke(["--modes", "test:clean,test:chunk16", "--values=-1,-20,-0.1max,-inf"], tmp_path)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "\x1b[" not in out and max(len(line) for line in out.splitlines() if "─" in line) <= 80
    assert "LEAK" in out and "DIVERGED" in out and "NONFINITE" in out
    row = next(line for line in out.splitlines() if line.split()[:2] == ["test:chunk16", "float32"])
    assert "-20" in row and "-0.1max" in row  # safe -20, flagged from -0.1max
    assert "advice: pack with cu_seqlens" in out and f"report: {tmp_path / 'sweep.json'}" in out


def test_builtin_recurrent_leaks_at_minus_one(tmp_path):
    res = _invoke(["--op", "gated_delta", "--modes", "recurrent", "--values=-1,-inf", "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    got = {c["value"]: c["outcome"] for c in json.loads(res.stdout)["cells"]}
    assert got == {"-1": "LEAK", "-inf": "OK", "cu_seqlens": "OK"}


def test_crashing_mode_exits_1(tmp_path):
    with registered("gla"):
        res = _invoke(["--modes", "test:raises", "--values=-20"], tmp_path)
    assert res.exit_code == 1, res.output
    assert "ERROR" in res.stdout and "planted kernel crash" in res.stdout


def test_plot_without_matplotlib_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with registered("gla"):
        res = _invoke(["--modes", "test:clean", "--values=-20", "--plot", str(tmp_path / "h.png")], tmp_path)
    assert res.exit_code == 0, res.output
    assert "matplotlib is not installed" in res.stderr and "fla-check[plot]" in res.stderr
    assert not (tmp_path / "h.png").exists()


def test_plot_writes_a_png(tmp_path):
    require("matplotlib", hint=PLOT_HINT)
    with registered("gla"):
        res = _invoke(["--modes", "test:clean,test:chunk16", "--values=-1,-inf", "--plot",
                       str(tmp_path / "plots" / "h.png")], tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "plots" / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,message", [
    (["--op", "delta"], "DeltaNet has no gate"),
    (["--values=-1,abc"], "--values"),
    (["--values=cu_seqlens"], "empty value list"),
    (["--values=-20,5"], "a log-gate fill must be <= 0"),
    (["--cases", "0"], "--cases must be >= 1"),
    (["--modes", "nope"], "unknown mode"),
    (["--dtypes", "fp8"], "unknown dtype"),
])
def test_usage_errors_exit_2(args, message, tmp_path):
    res = CliRunner().invoke(main, ["sweep-mask-values", "--report", str(tmp_path / "r.json"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    if args == ["--op", "delta"]:
        assert "pack its sequences with cu_seqlens" in res.stderr
    assert not (tmp_path / "r.json").exists()
