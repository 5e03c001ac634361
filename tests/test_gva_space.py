"""Grouped value heads and in-kernel options as case dimensions: configurations, their JSON and
tensors, the drawn space (r = 3 among the draws, shrinking to r = 1, flags that restrict it),
mode declarations (UNSUPPORTED with the reason) and simplification."""
import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, find, given, settings

from fla_check.cases import CaseConfig, CaseError, build_case
from fla_check.ops import OPS
from fla_check.engine.search import planned_cases
from fla_check.engine.simplify import candidates
from fla_check.strategies import SpaceOptions, case_configs, digits_at_risk

FAST = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
GDN = dict(op="gated_delta", dtype="fp32", B=1, T=6, H=2, K=16, V=8)


def test_config_json_round_trip_and_old_reports_load_as_r1():
    c = CaseConfig(**GDN, value_ratio=3, qk_l2norm=True, qk_scale=1e-3, gate_in_kernel=True, beta_sigmoid=True)
    assert CaseConfig.from_json(c.to_json()) == c and c.HV == 6
    assert c.options == ("qk_l2norm", "gate_in_kernel", "beta_sigmoid")
    assert "H2HV6" in c.short() and "qk_l2norm" in c.short()
    old = {k: v for k, v in CaseConfig(**GDN).to_json().items()
           if k not in ("value_ratio", "qk_l2norm", "qk_scale", "gate_in_kernel", "beta_sigmoid")}
    assert CaseConfig.from_json(old).value_ratio == 1 and CaseConfig.from_json(old).options == ()


@pytest.mark.parametrize("bad,match", [
    (dict(op="gla", value_ratio=2), "no grouped value heads"),
    (dict(value_ratio=5), "value_ratio must be one of"),
    (dict(op="delta", qk_l2norm=True), "no in-kernel options"),
    (dict(qk_scale=0.1), "qk_scale"),
    (dict(beta_sigmoid=True, beta_max=2.0), "beta_max"),
    (dict(gate_in_kernel=True, packing="mask", segments=((3, 3),), mask_fill=-20.0), "softplus"),
])
def test_invalid_combinations_are_case_errors(bad, match):
    with pytest.raises(CaseError, match=match):
        CaseConfig(**{**GDN, **bad})


def test_tensors_have_value_heads_and_the_options_inputs():
    c = CaseConfig(**GDN, value_ratio=3, initial_state=True, gate_in_kernel=True, beta_sigmoid=True,
                   qk_l2norm=True, qk_scale=1e-3)
    x = build_case(c)
    assert x.q.shape == x.k.shape == (1, 6, 2, 16) and x.v.shape == (1, 6, 6, 8)
    assert x.g.shape == x.beta.shape == (1, 6, 6) and x.initial_state.shape == (1, 6, 16, 8)
    assert x.A_log.shape == x.dt_bias.shape == (6,) and float(x.k.norm(dim=-1).max()) < 0.02  # raw, unnormalized
    assert float(x.beta.min()) < 0 < float(x.beta.max())  # logits
    kw = x.mode_kwargs()
    assert kw["use_qk_l2norm_in_kernel"] and kw["use_gate_in_kernel"] and kw["use_beta_sigmoid_in_kernel"]
    plain = build_case(CaseConfig(**GDN, initial_state=True))
    assert "use_qk_l2norm_in_kernel" not in plain.mode_kwargs() and plain.prepare is None
    assert torch.allclose(x.q, plain.q * 1e-3)  # the same draw, scaled


@FAST
@given(case_configs(SpaceOptions(op="gated_delta", dtypes=("fp32",), max_seq_len=40)))
def test_gdn_draws_are_valid_and_small_on_cpu(c):
    assert c.HV <= 8 and c.value_ratio in (1, 2, 3, 4, 8)
    assert not (c.gate_in_kernel and c.packing == "mask")
    assert digits_at_risk(c) >= 0


def test_ratio_3_is_drawn_and_everything_shrinks_to_r1_without_options():
    space = SpaceOptions(op="gated_delta", dtypes=("fp32",), max_seq_len=40)
    settings_ = settings(max_examples=2000, database=None, deadline=None, derandomize=True)
    assert find(case_configs(space), lambda c: c.value_ratio == 3, settings=settings_).value_ratio == 3
    minimal = find(case_configs(space), lambda c: c.T >= 5, settings=settings_)
    assert minimal.value_ratio == 1 and minimal.options == ()
    gva = find(case_configs(space), lambda c: c.value_ratio > 1, settings=settings_)
    assert gva.value_ratio == 3 and gva.H == 1 and gva.T == 1  # the smallest GVA case: ratio 3 comes right after 1


def test_run_draws_r3_early_and_flags_restrict_the_space():
    drawn = planned_cases("gated_delta", modes=["recurrent", "chunk"], dtypes=["fp32"], profile="smoke")
    assert any(c.value_ratio > 1 for c in drawn[:4]) and any(c.value_ratio == 3 for c in drawn)
    # what the built-ins declare: builtin:recurrent all three (in its kernel), builtin:chunk qk_l2norm
    assert {o for c in drawn for o in c.options} == {"qk_l2norm", "gate_in_kernel", "beta_sigmoid"}
    space = SpaceOptions(op="gated_delta", value_ratios=(3,), kernel_options=())
    assert space.ratios() == (3,) and space.options_to_draw() == ()
    with pytest.raises(ValueError, match="takes"):
        SpaceOptions(op="gla", value_ratios=(2,))


def test_modes_declare_gva_and_options_the_rest_is_unsupported_with_the_reason():
    recurrent, chunk = OPS["gated_delta"].modes["recurrent"], OPS["gated_delta"].modes["chunk"]
    assert recurrent.gva and recurrent.options == {"qk_l2norm", "gate_in_kernel", "beta_sigmoid"}
    assert chunk.gva and chunk.options == {"qk_l2norm"}
    kw = dict(dtype=torch.float32, varlen=False, initial_state=False, backward=False, interpreter=False)
    assert recurrent.unsupported_reason(**kw, options=("qk_l2norm", "gate_in_kernel", "beta_sigmoid")) is None
    for option, words in (("gate_in_kernel", "A_log"), ("beta_sigmoid", "logits")):
        why = chunk.unsupported_reason(**kw, options=(option,))
        assert option in why and words in why and "chunk" in why
    gla = OPS["gla"].modes["chunk"]
    assert "grouped value heads" in gla.unsupported_reason(dtype=torch.float32, varlen=False, initial_state=False,
                                                           backward=False, interpreter=False, value_ratio=3)


def test_simplify_tries_r1_and_each_option_off():
    c = CaseConfig(**GDN, value_ratio=3, qk_l2norm=True, qk_scale=1e-3, beta_sigmoid=True)
    cands = [x for x in candidates(c, None) if x is not None]
    assert dataclasses.replace(c, value_ratio=1) in cands
    assert dataclasses.replace(c, qk_l2norm=False, qk_scale=1.0) in cands
    assert dataclasses.replace(c, beta_sigmoid=False) in cands
