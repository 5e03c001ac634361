"""`fla-check ut-transform`: JSON and table output, exit codes 0 / 1 / 2."""
import json

import pytest
from click.testing import CliRunner

from fla_check.commands.ut_transform import engine as ut_check
from fla_check.cli import main
from fla_check.commands.selftest.mutate import load_mutant
from fla_check.commands.ut_transform.variants import closed_minus, closed_plus, kernel_variant

FAST = ["ut-transform", "--chunk-size", "16", "--dtypes", "fp32", "--examples", "1", "--no-color"]


@pytest.fixture
def no_fla(monkeypatch):
    """The built-in variants only (fla's import alone costs seconds; tests/commands/test_ut_check.py runs it)."""
    monkeypatch.setattr(ut_check, "default_variants", lambda: [closed_plus(), closed_minus(), kernel_variant()])


def test_json_names_the_plus_sign(no_fla):
    res = CliRunner().invoke(main, FAST + ["--json", "--seed", "3"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["kind"] == "ut-transform" and data["correct_sign"] == "+" and data["verdict"] == "OK"
    verdicts = {s["variant"]: s["verdict"] for s in data["summary"]}
    assert verdicts == {"closed(+)": "OK", "closed(-)": "DIVERGED", "kernel": "OK"}
    assert data["options"]["seed"] == 3 and len(data["cases"]) == 6


def test_table_and_conclusion(no_fla):
    res = CliRunner().invoke(main, FAST)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "closed(-)" in out and "DIVERGED" in out and "conclusion: correct sign: +" in out
    assert "verdict: OK" in out and "\x1b[" not in out
    assert "kernel: stores fp32, ieee fp32 dots, blocked inverse" in out and "OK iff relrms <= 2 s" in out
    assert max(len(line) for line in out.splitlines() if "│" in line or "─" in line) <= 80


def test_planted_sign_flip_exits_1(monkeypatch):
    mutant = load_mutant("fla_check.kernels.common.ut_transform",
                         [("b_Ai = -tl.where(m_A, b_A, 0.0)", "b_Ai = tl.where(m_A, b_A, 0.0)")], tag="cli_ut")
    monkeypatch.setattr(ut_check, "default_variants", lambda: [closed_plus(), kernel_variant(mutant.ut_transform)])
    res = CliRunner().invoke(main, FAST)
    assert res.exit_code == 1, res.output
    assert "kernel float32 DIVERGED" in res.stdout and "worst chunk" in res.stdout


@pytest.mark.parametrize("args,message", [
    (["--chunk-size", "8"], "--chunk-size must be"),
    (["--chunk-size", "16,x"], "not a comma list"),
    (["--examples", "0"], "--examples must be >= 1"),
    (["--dtypes", "fp8"], "unknown dtype"),
])
def test_usage_errors_exit_2(args, message):
    res = CliRunner().invoke(main, ["ut-transform", *args])
    assert res.exit_code == 2 and message in res.stderr
