"""The GVA and l2norm mutants fail a small hand-picked case that the clean built-in mode passes
(fast and deterministic; tests/test_selftest.py proves the ci search finds them on its own)."""
import pytest

from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Verdict
from fla_check.commands.selftest.mutants import MUTANTS
from fla_check.engine.runner import check_case

NEW = [m for m in MUTANTS if m.kind in ("gva-map", "l2norm-eps", "l2norm-order")]
CASE = dict(op="gated_delta", dtype="fp32", B=1, T=20, H=2, K=16, V=16, seed=3)
CASES = {"gva-map": dict(value_ratio=2), "l2norm-eps": dict(qk_l2norm=True, qk_scale=1e-3),
         "l2norm-order": dict(qk_l2norm=True)}


def test_the_new_bug_classes_are_planted_in_both_modes():
    assert {(m.kind, m.modes) for m in NEW} == {
        ("gva-map", ("recurrent",)), ("gva-map", ("chunk",)), ("l2norm-eps", ("recurrent",)),
        ("l2norm-eps", ("chunk",)), ("l2norm-order", ("recurrent",))}


@pytest.mark.parametrize("mutant", NEW, ids=lambda m: m.id)
def test_mutant_fails_where_the_clean_mode_passes(mutant):
    (spec,) = mutant.mode_specs()
    config = CaseConfig(**CASE, **CASES[mutant.kind])
    r = check_case("gated_delta", [spec, spec.name], config)
    assert r.modes[spec.name].verdict is Verdict.OK
    # gva-map reads key/value heads past the tensor's end: the memory checks call that OVERREAD
    assert r.modes[spec.qualified].verdict in (Verdict.DIVERGED, Verdict.NONFINITE, Verdict.OVERREAD), \
        r.modes[spec.qualified].reason


@pytest.mark.parametrize("mutant", [m for m in NEW if m.kind == "gva-map"], ids=lambda m: m.id)
def test_gva_mutants_are_invisible_without_grouped_value_heads(mutant):
    (spec,) = mutant.mode_specs()
    r = check_case("gated_delta", [spec], CaseConfig(**CASE))  # r = 1: j // 1 == j == j mod H
    assert r.modes[spec.qualified].verdict is Verdict.OK
