"""The in-kernel gate and beta mutants (issue 16) fail a small hand-picked case that the clean
built-in recurrent mode passes, and only with their option on (fast and deterministic;
tests/commands/killing_cases.json records the case the ci search finds on its own)."""
import pytest

from fla_check.cases import CaseConfig, build_case
from fla_check.commands.selftest.mutants import MUTANTS
from fla_check.engine.runner import check_case
from fla_check.verdict.compare import Verdict

NEW = {m.kind: m for m in MUTANTS if m.kind in ("softplus-saturation", "beta-sigmoid")}
CASE = dict(op="gated_delta", dtype="fp32", B=1, T=12, H=1, K=16, V=16, value_ratio=2, initial_state=True, seed=2)
OPTION = {"softplus-saturation": dict(gate_in_kernel=True), "beta-sigmoid": dict(beta_sigmoid=True)}


def test_the_mutants_target_the_gate_helper_and_the_beta_sigmoid_of_the_recurrent_kernel():
    sat, sig = NEW["softplus-saturation"], NEW["beta-sigmoid"]
    assert (sat.op, sat.modes, sat.target) == ("gated_delta", ("recurrent",), "fla_check.kernels.common.gates:softplus")
    assert "x < 1.0" in sat.source() and "x < 20.0" not in sat.source()
    assert sig.target == "fla_check.kernels.delta.recurrent:delta_rule_recurrent_fwd_kernel"
    assert "tl.sigmoid" not in sig.source().split("def delta_rule_recurrent_bwd")[0]


@pytest.mark.parametrize("kind", sorted(NEW))
def test_mutant_fails_where_the_clean_mode_passes(kind):
    (spec,) = NEW[kind].mode_specs()
    r = check_case("gated_delta", [spec, spec.name], CaseConfig(**CASE, **OPTION[kind]))
    assert r.modes[spec.name].verdict is Verdict.OK, r.modes[spec.name].reason
    assert r.modes[spec.qualified].verdict in (Verdict.DIVERGED, Verdict.NONFINITE), r.modes[spec.qualified].reason


@pytest.mark.parametrize("kind", sorted(NEW))
def test_mutant_is_invisible_without_its_option(kind):
    (spec,) = NEW[kind].mode_specs()
    r = check_case("gated_delta", [spec], CaseConfig(**CASE))
    assert r.modes[spec.qualified].verdict is Verdict.OK


def test_softplus_saturation_is_invisible_where_a_plus_dt_bias_stays_below_its_threshold():
    """seed 0 draws fla's dt_bias (softplus^-1 of dt in [1e-3, 0.1]: below -2) on both heads; with
    a ~ N(0, 1) no step reaches x >= 1 (seed 2 draws Qwen's dt_bias = 1: every a >= 0 does)."""
    config = CaseConfig(**{**CASE, "seed": 0}, gate_in_kernel=True)
    x = build_case(config)
    assert float((x.g + x.dt_bias).max()) < 1.0
    (spec,) = NEW["softplus-saturation"].mode_specs()
    assert check_case("gated_delta", [spec], config).modes[spec.qualified].verdict is Verdict.OK
