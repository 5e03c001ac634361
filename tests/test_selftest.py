"""`fla-check selftest` on CPU: every planted bug is caught by the ci search, the clean kernels
pass the same runs, and the CLI reports the mutation score with the right exit code.

Budget: the ci profile's strategies and example budget, but no shrinking (the shrink budget
only polishes the reported case, it never decides a catch) -- see docs/selftest.md.
"""
import dataclasses
import json

import pytest
from click.testing import CliRunner

from fla_check import mutants as catalog
from fla_check.cases import CaseConfig
from fla_check.cli import main
from fla_check.mutants import MUTANTS, USAGE_CASES, Mutant
from fla_check.profiles import PROFILES
from fla_check.runner import check_case
from fla_check.selftest import run_mutant, run_selftest, run_usage



@pytest.fixture
def no_shrink(monkeypatch):
    monkeypatch.setitem(PROFILES, "ci", dataclasses.replace(PROFILES["ci"], shrink_cases=0))


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_every_mutant_is_caught_by_the_ci_search(mutant, no_shrink):
    (r,) = run_mutant(mutant, profile="ci")
    assert r.caught, r.note
    assert r.verdict in ("DIVERGED", "NONFINITE", "ERROR") and r.examples <= PROFILES["ci"].examples
    assert r.shrunk is not None and r.shrunk_control == "OK"  # the reported case kills it
    if mutant.modes != ("fused_chunk",):  # the clean fused_chunk fails strong decay on its own
        assert r.control_failures == 0  # the clean kernel passes every case of that run


@pytest.mark.parametrize("case", USAGE_CASES, ids=lambda c: c.id)
def test_mask_fill_flags_chunk_and_not_recurrent(case, no_shrink):
    (r,) = run_usage(case, profile="ci")
    assert r.caught, r.note
    assert r.mode == "chunk" and r.control_failures == 0 and "recurrent: OK" in r.shrunk_control


FP16_STATE = [m for m in MUTANTS if m.kind == "fp16-accumulator"]


@pytest.mark.parametrize("mutant", FP16_STATE, ids=lambda m: m.id)
def test_fp16_state_is_caught_on_the_fp32_final_state_with_margin(mutant):
    """An fp16 state costs ~1e-3 rel-RMSE at T=130 (fp16, no decay): inside the fp16 floors of
    `o`, but the recurrent modes declare an fp32 state, so `ht` is judged at fp32 floors, where
    the clean kernel sits >= 10x inside its bound and the mutant >= 10x outside it."""
    (spec,) = mutant.mode_specs()
    gate = {} if mutant.op == "delta" else dict(zero_gate_frac=1.0)
    config = CaseConfig(op=mutant.op, dtype="float16", B=1, T=130, H=1, K=16, V=16, seed=0, **gate)
    r = check_case(mutant.op, [spec, "recurrent"], config)
    bad, clean = r.modes["mutant:recurrent"], r.modes["recurrent"]
    assert bad.verdict.failed and not clean.verdict.failed
    ht, clean_ht = (next(c for c in m.outputs if c.name == "ht") for m in (bad, clean))
    assert ht.kernel.rel_rms > 10 * ht.bound_rel_rms
    assert clean_ht.kernel.rel_rms < 0.1 * clean_ht.bound_rel_rms


def _cli(*args):
    return CliRunner().invoke(main, ["selftest", *map(str, args)])


def test_cli_json_and_exit_0_when_caught(no_shrink):
    res = _cli("--mutants", "gla.recurrent.scale", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["caught"], data["total"], data["score"]) == (1, 1, 1.0)
    (row,) = data["results"]
    assert row["id"] == "gla.recurrent.scale" and row["examples"] >= 1 and row["seconds"] >= 0


def test_cli_table_and_exit_1_when_a_mutant_escapes(monkeypatch):
    # an equivalent mutant (multiplies by one): nothing can catch it
    same = Mutant("gla.recurrent.times-one", "scale", "gla", ("recurrent",), "fla_check.kernels.gla.recurrent",
                  (("        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v)\n",
                    "        tl.store(p_o, (b_o * 1.0).to(p_o.dtype.element_ty), mask=m_v)\n"),), "no-op")
    monkeypatch.setattr(catalog, "MUTANTS", (same,))
    res = _cli("--mutants", "gla.recurrent", "--profile", "smoke", "--no-color")
    assert res.exit_code == 1, res.output
    assert "mutation score: 0/1 (0.0%)" in res.stdout and "missed gla.recurrent.times-one" in res.stdout


def test_cli_list_and_usage_errors():
    res = _cli("--list", "--op", "delta", "--no-color")
    assert res.exit_code == 0 and "delta.chunk.ut-sign" in res.stdout and "gla.chunk" not in res.stdout
    res = _cli("--mutants", "gla.nope")
    assert res.exit_code == 2 and "no mutant matches 'gla.nope'" in res.output
    assert _cli("--op", "foo").exit_code == 2


def test_selftest_result_counts_the_score(no_shrink):
    result = run_selftest(ids=["gla.chunk.scale"])
    assert (result.caught, result.total, result.all_caught) == (1, 1, True)
    assert json.loads(json.dumps(result.to_json()))["results"][0]["mode"] == "chunk"
