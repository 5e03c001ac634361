"""``fla-check run --large-index`` and ``replay --large-index I`` end to end, with the pack shrunk to a
tiny threshold (engine.large_index.PLAN): the rows in the table and the report, progress lines, the
budget refusal (exit 2, the need named) and the GPU-only refusal of a real pack on CPU."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fla_check.cli import main
from fla_check.engine import large_index
from tests.device import DEVICE

TINY = dict(H=1, K=16, V=16, seq_len=4, min_elements=300, grid_limits=False)


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(large_index, "PLAN", TINY)


def test_run_and_replay_large_index(tiny, tmp_path):
    report = tmp_path / "r.json"
    res = _run("run", "--op", "gla", "--modes", "recurrent,chunk", "--dtypes", "fp32", "--examples", "1",
               "--seed", "0", "--device", DEVICE, "--isolation", "none", "--large-index", "--report", report,
               "--no-color")
    assert res.exit_code == 0, res.output
    assert "large-index gla float32: inputs" in res.output  # progress while the tensors are drawn
    row = next(line for line in res.output.splitlines() if line.strip().startswith("#0 float32") and "chunk" in line)
    assert row.split()[3] == "OK" and row.split()[-1] == "5"  # verdict; sampled sequences, none bad
    assert "448 elements (> 300)" in res.output and "sampled sequences [0, 3, 4, 5, 6]" in res.output
    data = json.loads(report.read_text())
    assert data["options"]["large_index"]["cases"] == 1
    li, = data["large_index"]
    assert li["label"] == "large-index" and li["case"]["elements"] == 448 and li["case"]["sampled"] == [0, 3, 4, 5, 6]
    assert {s["index"] for s in li["sequences"]["recurrent"]} == {0, 3, 4, 5, 6}
    replay = _run("replay", report, "--large-index", "0", "--device", DEVICE, "--no-color")
    assert replay.exit_code == 0, replay.output
    assert "recurrent sequence 6 (offset 384): OK" in replay.output
    assert _run("replay", report, "--large-index", "1", "--device", DEVICE).exit_code == 2


def test_budget_refusal_names_the_need(tiny):
    res = _run("run", "--op", "gla", "--modes", "recurrent", "--dtypes", "fp32", "--examples", "1",
               "--device", DEVICE, "--large-index", "--large-index-budget", "1e-7")
    assert res.exit_code == 2 and "case needs 0.02 MiB (inputs and outputs" in res.output
    assert "over the budget of 1e-07 GiB" in res.output and "raise --large-index-budget" in res.output


@pytest.mark.skipif(DEVICE != "cpu", reason="the refusal is the CPU interpreter's")
def test_a_real_pack_is_refused_on_cpu():
    res = _run("run", "--op", "gla", "--modes", "recurrent", "--dtypes", "fp32", "--examples", "1",
               "--device", "cpu", "--large-index")
    assert res.exit_code == 2 and "needs a GPU" in res.output


def test_nightly_turns_it_on_only_on_a_gpu():
    from fla_check.commands.run.engine import large_index_wanted

    assert large_index_wanted(True, "ci", DEVICE)
    assert not large_index_wanted(False, "ci", DEVICE)
    assert large_index_wanted(False, "nightly", DEVICE) is (DEVICE == "cuda")
