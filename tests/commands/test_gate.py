"""The regression gate: report diffs (synthetic reports) and `fla-check gate` / `compare` end to end
on the example kernel package, where "the next commit" triples a mode's error inside tolerance."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from device import DEVICE
from fla_check.cases import CaseConfig
from fla_check.cli import main
from fla_check.commands.gate.engine import GateError, case_key, diff_reports, ratio

EXAMPLE_DIR = Path(__file__).parent.parent / "example_kernel_pkg"


# -- synthetic reports ------------------------------------------------------------------------
def _config(seed: int, T: int = 8) -> dict:
    return CaseConfig(op="gla", dtype="float32", B=1, T=T, H=1, K=16, V=16, seed=seed).to_json()


def _output(name: str, max_abs: float, rel_rms: float, verdict: str = "OK", bound: float = 1e-5) -> dict:
    return {"name": name, "verdict": verdict, "kernel": {"max_abs": max_abs, "rel_rms": rel_rms, "nonfinite": 0},
            "bound_max_abs": bound, "bound_rel_rms": bound}


def _case(seed: int, modes: dict) -> dict:
    out = {}
    for mode, spec in modes.items():
        if isinstance(spec, str):  # a mode without outputs: ERROR / UNSUPPORTED
            out[mode] = {"mode": mode, "verdict": spec, "reason": f"{spec.lower()} reason", "outputs": []}
        else:
            verdict = spec[2] if len(spec) > 2 else "OK"
            out[mode] = {"mode": mode, "verdict": verdict, "outputs": [_output("o", spec[0], spec[1], verdict)]}
    return {"config": _config(seed), "modes": out}


def _report(cases: list, modes=("a", "b"), op: str = "gla") -> dict:
    return {"op": op, "modes": list(modes), "cases": cases}


def test_ratio_edge_cases():
    assert ratio(0.0, 0.0) == 1.0
    assert ratio(1e-9, 0.0) == math.inf
    assert ratio(math.inf, math.inf) == 1.0
    assert ratio(3e-6, 1e-6) == pytest.approx(3.0)


def test_case_identity_is_the_config_not_the_position():
    assert case_key(_config(1)) == case_key(dict(reversed(list(_config(1).items()))))
    assert case_key(_config(1)) != case_key(_config(2))
    base = _report([_case(1, {"a": (1e-6, 1e-7)}), _case(2, {"a": (2e-6, 2e-7)})], modes=("a",))
    new = _report([_case(2, {"a": (2e-6, 2e-7)}), _case(1, {"a": (1e-6, 1e-7)})], modes=("a",))
    diff = diff_reports(base, new)
    assert diff.matched == 2 and not diff.failed
    assert {r.status for r in diff.rows} == {"same"}


def test_statuses():
    base = _report([
        _case(1, {"a": (1e-6, 1e-7), "b": (1e-6, 1e-7)}),
        _case(2, {"a": (1e-6, 1e-7), "b": (1e-6, 1e-7)}),
        _case(3, {"a": (1e-9, 1e-10), "b": (1e-6, 1e-7)}),
        _case(4, {"a": (1e-6, 1e-7), "b": (1e-6, 1e-7)}),
        _case(5, {"a": (4e-6, 4e-7), "b": (1e-6, 1e-7)}),
    ])
    new = _report([
        _case(1, {"a": (3e-6, 1e-7), "b": (1.5e-6, 1.5e-7)}),  # a: 3x max-abs inside tolerance; b: 1.5x
        _case(2, {"a": (2e-5, 1e-7, "DIVERGED"), "b": "ERROR"}),  # new failures
        _case(3, {"a": (3e-9, 3e-10), "b": "UNSUPPORTED"}),  # a: 3x of noise (3e-4 of the bound)
        _case(4, {"a": (1e-6, 1e-7), "b": (1e-6, 1e-7)}),
        _case(5, {"a": (1e-6, 1e-7), "b": (1e-6, 1e-7)}),  # a: 4x smaller
        _case(6, {"a": (1e-6, 1e-7), "b": (1e-6, 1e-7)}),  # not in the baseline
    ])
    diff = diff_reports(base, new, factor=2.0, min_score=0.05)
    status = {(r.case, r.mode): r.status for r in diff.rows}
    assert status == {
        (0, "a"): "regressed", (0, "b"): "same",
        (1, "a"): "new failure", (1, "b"): "new failure",
        (2, "a"): "same", (2, "b"): "not compared",
        (3, "a"): "same", (3, "b"): "same",
        (4, "a"): "improved", (4, "b"): "same",
    }
    assert diff.failed and len(diff.regressions) == 3
    assert (diff.matched, diff.only_base, diff.only_new) == (5, 0, 1)
    assert diff.worst("a", "max_abs") == pytest.approx(20.0)
    # the same growth under a larger factor is no regression; the new failures still are
    loose = diff_reports(base, new, factor=4.0)
    assert {(r.case, r.mode) for r in loose.regressions} == {(1, "a"), (1, "b")}
    # with min_score 0 the noise-level growth counts
    strict = diff_reports(base, new, min_score=0.0)
    assert any(r.case == 2 and r.mode == "a" and r.status == "regressed" for r in strict.rows)
    data = json.loads(json.dumps(diff.to_json(), allow_nan=False))
    assert data["verdict"] == "FAIL" and data["counts"]["regressed"] == 1


def test_nonfinite_now_is_a_new_failure():
    base = _report([_case(1, {"a": (1e-6, 1e-7)})], modes=("a",))
    new = _report([_case(1, {"a": (math.inf, math.inf, "NONFINITE")})], modes=("a",))
    (row,) = diff_reports(base, new).rows
    assert row.status == "new failure" and row.ratio("max_abs") == math.inf


def test_rejects_other_op_bad_factor_and_non_reports():
    base = _report([_case(1, {"a": (1e-6, 1e-7)})], modes=("a",))
    with pytest.raises(GateError, match="op"):
        diff_reports(base, dict(base, op="delta"))
    with pytest.raises(GateError, match="factor"):
        diff_reports(base, base, factor=1.0)
    with pytest.raises(GateError, match="not a fla-check run report"):
        diff_reports(base, {"op": "gla"})


# -- end to end on the example kernel package ------------------------------------------------
@pytest.fixture
def example_provider(monkeypatch):
    """The example package importable; its provider unloaded afterwards (main and v2 clash)."""
    from fla_check.providers import unload_provider

    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    yield
    unload_provider("example")


def _gate(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_gate_flags_a_3x_regression_inside_tolerance_and_passes_a_clean_rerun(tmp_path, example_provider):
    from fla_check.providers import load_provider, unload_provider
    from fla_check.report.storage import write_report
    from fla_check.engine.search import search

    load_provider("example_kernels:provider")
    result = search("gla", ["example:fused", "example:recurrent"], dtypes=["float32"], examples=6, seed=3,
                    max_seq_len=40, profile="smoke", device=DEVICE, database_root=None)
    assert not result.failed and len(result.cases) == 6
    base = write_report(result.to_json(), tmp_path / "main.json")

    # the same kernels: every error is replayed exactly
    clean = _gate("gate", "--baseline", str(base), "--provider", "example_kernels:provider", "--device", DEVICE,
                  "--report", str(tmp_path / "clean.json"), "--json")
    assert clean.exit_code == 0, clean.output
    data = json.loads(clean.output)
    assert data["verdict"] == "OK" and data["matched_cases"] == 6
    assert {r["status"] for r in data["rows"]} == {"same"}
    assert all(v == 1.0 for r in data["rows"] for v in r["ratio"].values())

    # the next commit: fused's error x3, still inside the tolerance
    unload_provider("example")
    regressed = _gate("gate", "--baseline", str(base), "--provider", "example_kernels:provider_v2",
                      "--device", DEVICE, "--report", str(tmp_path / "v2.json"), "--json")
    assert regressed.exit_code == 1, regressed.output
    data = json.loads(regressed.output)
    assert data["verdict"] == "FAIL" and data["regressions"]
    assert {r["mode"] for r in data["regressions"]} == {"example:fused"}
    assert {r["status"] for r in data["regressions"]} == {"regressed"}
    assert {r["new_verdict"] for r in data["rows"]} == {"OK"}  # every case still passes tolerance
    # x3 the error, give or take the rounding of the fp32 output itself (half an ulp in both runs;
    # 4.65 on an H200)
    assert 2.0 < data["worst_ratio"]["example:fused"]["max_abs"] < 6.0
    worst = max(data["worst_ratio"]["example:fused"].values())
    assert data["worst_ratio"]["example:recurrent"]["max_abs"] == 1.0

    # the human view names the regressions; a looser factor lets the same change through
    table = _gate("compare", str(base), str(tmp_path / "v2.json"), "--no-color")
    assert table.exit_code == 1
    assert "regressions" in table.output and "example:fused" in table.output and "FAIL" in table.output
    assert _gate("compare", str(base), str(tmp_path / "v2.json"), "--factor", f"{worst * 1.05:.3f}").exit_code == 0
    assert _gate("compare", str(base), str(tmp_path / "clean.json")).exit_code == 0


def test_gate_finds_a_provider_module_in_the_current_directory(tmp_path, monkeypatch):
    """`cd my-kernels && fla-check gate --provider mod:obj` imports mod from the current directory,
    as `run` does (gate used to skip that lookup: "no module named ...")."""
    import sys

    from fla_check.providers import unload_provider
    from fla_check.report.storage import write_report

    monkeypatch.chdir(EXAMPLE_DIR)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(EXAMPLE_DIR))])
    monkeypatch.delitem(sys.modules, "example_kernels", raising=False)
    base = tmp_path / "base.json"
    case = _case(1, {"example:recurrent": (1e-6, 1e-7)})
    write_report(_report([case], modes=("example:recurrent",)), base)
    try:
        res = _gate("gate", "--baseline", str(base), "--provider", "example_kernels:provider", "--device", DEVICE,
                    "--report", str(tmp_path / "rerun.json"), "--json")
    finally:
        unload_provider("example")
        sys.modules.pop("example_kernels", None)
    assert "no module named" not in res.output, res.output
    assert json.loads(res.output)["matched_cases"] == 1


def test_gate_usage_errors(tmp_path, example_provider):
    base = tmp_path / "base.json"
    base.write_text(json.dumps(_report([_case(1, {"nope:fused": (1e-6, 1e-7)})], modes=("nope:fused",))))
    res = _gate("gate", "--baseline", str(base), "--device", DEVICE)
    assert res.exit_code == 2 and "--provider" in res.output
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_report([], modes=("nope:fused",), op="delta")))
    res = _gate("compare", str(base), str(other))
    assert res.exit_code == 2 and "op" in res.output
    res = _gate("compare", str(base), str(base), "--factor", "0.5")
    assert res.exit_code == 2 and "--factor" in res.output
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(_report([], modes=("nope:fused",))))
    res = _gate("compare", str(empty), str(empty))
    assert res.exit_code == 2 and "nothing to compare" in res.output
