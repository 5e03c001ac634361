"""The field catalog (issue 15 part 7): mutants that plant a bug users reported, named by its
public thread; ``selftest --field`` runs only those; GPU-only ones are skipped on CPU with their
reason; each new field mutant is caught by the check meant for it, and only by it."""
import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console

from fla_check.backend import get_backend
from fla_check.cases import CaseConfig
from fla_check.cli import main
from fla_check.commands.selftest.engine import SKIPPED, EntryResult, SelftestResult, run_mutant
from fla_check.commands.selftest.suite import run_selftest
from fla_check.commands.selftest.mutants import MUTANTS, all_entries, select
from fla_check.commands.selftest.render import catalog_table, render_selftest, results_table
from fla_check.engine.profiles import PROFILES
from fla_check.errors import SelectionError
from fla_check.engine.runner import check_case
from fla_check.verdict.compare import Verdict

FIELD = [m for m in MUTANTS if m.field]
INT32 = next(m for m in MUTANTS if m.kind == "int32-offset")


def _get(mutant_id: str):
    return next(m for m in MUTANTS if m.id == mutant_id)


def _text(renderable, width: int = 200) -> str:
    console = Console(width=width, no_color=True, record=True)
    console.print(renderable)
    return console.export_text()


def _cli(*args):
    return CliRunner().invoke(main, ["selftest", *map(str, args)])


# -- selection and listing ---------------------------------------------------------------------
def test_field_selects_exactly_the_entries_with_a_thread():
    picked = select(field_only=True)
    assert picked == [e for e in all_entries() if e.field]
    threads = {e.field for e in picked}
    assert {"fla #640", "fla #1134", "fla #892", "SGLang #22312", "fla #285/#494", "fla #945/#1228",
            "vLLM #53877", "fla #1080"} <= threads
    assert len(select()) > len(picked)  # plain selftest keeps the synthetic mutants
    assert select(["kda"], field_only=True) == [e for e in picked if e.op == "kda"]
    assert select(ids=["nondeterministic"], field_only=True) == [_get("gla.recurrent.nondeterministic")]
    with pytest.raises(SelectionError, match="among the field mutants"):  # synthetic: not in the field catalog
        select(ids=["gla.recurrent.scale"], field_only=True)


def test_cli_field_list_shows_the_thread_and_gpu_only():
    res = _cli("--field", "--list", "--no-color")
    assert res.exit_code == 0, res.output
    assert "gla.recurrent.nondeterministic" in res.stdout and "fla #945/#1228" in res.stdout
    assert "gla.recurrent.scale" not in res.stdout and "fla #1080 (GPU only)" in res.stdout
    res = _cli("--field", "--mutants", "gla.recurrent.scale")
    assert res.exit_code == 2 and "among the field mutants (--field)" in res.output  # a synthetic one only


def test_catalog_table_has_a_field_column():
    text = _text(catalog_table([_get("gla.recurrent.overread-last-row"), _get("gla.recurrent.scale"), INT32]))
    header = next(line for line in text.splitlines() if " id " in line)
    assert "field" in header
    assert any("gla.recurrent.overread-last-row" in ln and "fla #1134" in ln for ln in text.splitlines())
    assert any("gla.recurrent.scale" in ln and "│ -" in ln for ln in text.splitlines())


def test_results_table_and_json_carry_the_field():
    r = EntryResult("gla.recurrent.beta", "beta-bf16", "gla", "recurrent", True, 1, 0.5, status="caught",
                    field="vLLM #53877")
    assert any("vLLM #53877" in ln and "gla.recurrent.beta" in ln for ln in _text(results_table([r])).splitlines())
    assert EntryResult.from_json(json.loads(json.dumps(r.to_json()))) == r


# -- GPU-only mutants: skipped on CPU, with the reason, not silently --------------------------------
@pytest.mark.skipif(not get_backend().interpreter, reason="the CPU skip: a GPU searches the mutant")
def test_gpu_only_mutant_is_skipped_on_cpu_with_its_reason():
    (r,) = run_mutant(INT32, profile="smoke")
    assert (r.status, r.caught, r.searched, r.field) == (SKIPPED, False, 0, "fla #1080")
    assert "GPU only" in r.note and "2^31" in r.note
    result = SelftestResult({}, [r, EntryResult("gla.recurrent.scale", "scale", "gla", "recurrent", True, 1, 0.1,
                                                status="caught")])
    assert (result.caught, result.total, result.skipped, result.all_caught) == (1, 1, 1, True)
    console = Console(width=200, no_color=True, record=True)
    render_selftest(console, result)
    out = console.export_text()
    assert "skipped gla.recurrent.int32-offset" in out and "2^31" in out
    assert "1/1 (100.0%), 1 skipped (GPU only)" in out
    assert json.loads(json.dumps(result.to_json()))["skipped"] == 1


@pytest.mark.skipif(not get_backend().interpreter, reason="the CPU skip: a GPU searches the mutant")
def test_cli_reports_the_skip_and_exits_0():
    res = _cli("--mutants", INT32.id, "--no-color")
    assert res.exit_code == 0, res.output
    assert f"skipped {INT32.id}" in res.output and "GPU only" in res.output


def test_int32_offset_is_an_equivalent_mutant_on_small_shapes():
    """Why it is GPU-only: below 2^31 elements the truncated offset is the offset."""
    (spec,) = INT32.mode_specs()
    config = CaseConfig(op="gla", dtype="float32", B=2, T=9, H=2, K=16, V=16, seed=0)
    r = check_case("gla", [spec, "recurrent"], config, repeat="off")
    bad, clean = r.modes["mutant:recurrent"], r.modes["recurrent"]
    assert bad.verdict is Verdict.OK and [c.kernel.rel_rms for c in bad.outputs] == [c.kernel.rel_rms for c in clean.outputs]


# -- each new field mutant: caught by its check, the clean kernel quiet ----------------------------
def _case(mutant, dtype="float32", **kw):
    return CaseConfig(op=mutant.op, dtype=dtype, **{**dict(B=1, T=8, H=1, K=16, V=16, seed=0), **kw})


def _verdicts(mutant, config, repeat="off"):
    (spec,) = mutant.mode_specs()
    r = check_case(mutant.op, [spec, spec.name], config, repeat=repeat, invariance="none")
    return r.modes[f"mutant:{spec.name}"], r.modes[spec.name]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_nondeterministic_is_caught_by_the_repeat_only(dtype):
    """One ulp of one output element, a new one every call: within tolerance (OK without the
    repeat), NONDETERMINISTIC with it; the clean kernel is bitwise repeatable."""
    m = _get("gla.recurrent.nondeterministic")
    bad, clean = _verdicts(m, _case(m, dtype), repeat="off")
    assert bad.verdict is Verdict.OK and clean.verdict is Verdict.OK
    bad, clean = _verdicts(m, _case(m, dtype), repeat="all")
    assert bad.verdict is Verdict.NONDETERMINISTIC and "differs by up to" in bad.reason
    assert clean.verdict is Verdict.OK


@pytest.mark.parametrize("mutant_id, kw, verdict", [
    ("kda.recurrent.beta-bf16", {}, Verdict.DIVERGED),
    ("gla.recurrent.gate-bf16", {}, Verdict.DIVERGED),
    ("gla.chunk.gate-overflow", dict(T=40, gate_norm=0.01), Verdict.NONFINITE),
])
def test_precision_and_overflow_mutants_fail_the_reference_comparison(mutant_id, kw, verdict):
    m = _get(mutant_id)
    bad, clean = _verdicts(m, _case(m, **kw))
    assert bad.verdict is verdict and clean.verdict is Verdict.OK


def test_gate_overflow_is_invisible_under_ordinary_decay():
    """The factorised exp only breaks where exp(-G) overflows: strong decay within a chunk."""
    m = _get("gla.chunk.gate-overflow")
    bad, clean = _verdicts(m, _case(m, T=40, gate_norm=1.0))
    assert bad.verdict is Verdict.OK and clean.verdict is Verdict.OK


def test_beta_bf16_is_exact_on_bf16_inputs():
    """beta already is a bf16 value there: the rounding is a no-op, which is why fp32 paths hid it."""
    m = _get("kda.recurrent.beta-bf16")
    reason = get_backend().dtype_unsupported_reason(torch.bfloat16)
    if reason:
        pytest.skip(reason)
    bad, clean = _verdicts(m, _case(m, "bfloat16"))
    assert [c.kernel.rel_rms for c in bad.outputs] == [c.kernel.rel_rms for c in clean.outputs]


def test_field_selftest_runs_the_nondeterministic_mutant_to_a_catch(monkeypatch):
    """End to end through the selftest: searched with the repeat on, killed by NONDETERMINISTIC at
    the first example, the clean control (also repeated) passing."""
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(PROFILES["smoke"], shrink_cases=0))
    result = run_selftest(ids=["gla.recurrent.nondeterministic"], profile="smoke", field_only=True)
    (r,) = result.results
    assert (r.caught, r.verdict, r.field, r.control_failures) == (True, "NONDETERMINISTIC", "fla #945/#1228", 0)
    assert r.examples == 1 and result.options["field"] is True
