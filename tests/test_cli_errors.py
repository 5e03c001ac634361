"""The CLI's one error mapping: usage errors (FlaCheckError) exit 2 with one line; report schema versions."""
import json

import pytest
from click.testing import CliRunner
from device import DEVICE

from fla_check.cli import main
from fla_check.errors import FlaCheckError, ReportError


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _report(tmp_path, name="r.json", **extra):
    path = tmp_path / name
    path.write_text(json.dumps({"op": "gla", "modes": ["recurrent"], "cases": [], **extra}))
    return path


@pytest.mark.parametrize("command", ["replay", "compare", "gate"])
def test_a_newer_report_is_a_usage_error_naming_both_versions(tmp_path, command):
    new = _report(tmp_path, schema_version=2)
    args = {"replay": [new, "--device", DEVICE], "compare": [new, _report(tmp_path, "old.json")],
            "gate": ["--baseline", new, "--device", DEVICE]}[command]
    out = _run(command, *args)
    assert out.exit_code == 2, out.output
    assert "schema version 2" in out.stderr and "schema version 1 only" in out.stderr
    assert "internal error" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_an_unversioned_report_reads_as_version_1(tmp_path):
    out = _run("replay", _report(tmp_path), "--device", DEVICE)
    assert out.exit_code == 2 and "--case 0 out of range: the report has 0 case(s)" in out.stderr


@pytest.mark.parametrize("args, message", [
    (["selftest", "--mutants", "no-such-mutant", "--list"], "no mutant matches 'no-such-mutant'"),
    (["ut-transform", "--chunk-size", "16,x"], "--chunk-size: not a comma list of integers"),
    (["run", "--op", "gla", "--modes", "recurrent", "--shard", "3/2"], "--shard: "),
    (["run", "--op", "nope", "--modes", "recurrent"], "nope"),
    (["run", "--op", "kda", "--modes", "recurrent", "--kernel-options", "lower_bound"],
     "--kernel-options: lower_bound needs gate_in_kernel"),
    (["run", "--op", "kda", "--modes", "recurrent", "--kernel-options", "gate_in_kernel,safe_gate"],
     "safe_gate needs lower_bound"),
    (["run", "--op", "gated_delta", "--modes", "recurrent", "--kernel-options", "safe_gate"],
     "safe_gate not taken by"),
])
def test_usage_errors_exit_2_with_one_line(args, message):
    out = _run(*args, "--device", DEVICE)
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith("fla-check: error: ") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_fla_check_own_failures_exit_3(monkeypatch):
    from fla_check.errors import EmulationError

    def broken(*args, **kwargs):
        raise EmulationError("planted")

    monkeypatch.setattr("fla_check.commands.listing.engine.inventory", broken)
    out = _run("list", "--device", DEVICE)
    assert out.exit_code == 3 and "internal error: EmulationError: planted" in out.stderr


def test_every_error_type_has_the_root():
    import fla_check.errors as errors

    types = [t for t in vars(errors).values() if isinstance(t, type) and issubclass(t, BaseException)]
    assert len(types) > 20 and all(issubclass(t, FlaCheckError) for t in types)
    assert issubclass(ReportError, ValueError)  # stdlib bases kept


def test_a_report_whose_case_is_for_another_op_is_a_usage_error(tmp_path):
    from fla_check.cases import CaseConfig

    config = CaseConfig(op="delta", dtype="float32", B=1, T=4, H=1, K=16, V=16, seed=0).to_json()
    out = _run("replay", _report(tmp_path, cases=[{"config": config}]), "--device", DEVICE)
    assert out.exit_code == 2 and "case is for op 'delta', not 'gla'" in out.stderr
