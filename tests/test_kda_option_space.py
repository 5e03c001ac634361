"""KDA's lower_bound and safe_gate as case dimensions (issue 16): configurations, their JSON and
description, validation as fla 0.6.0 takes them, tensors and mode keywords, the drawn space and
its flags, mode declarations (UNSUPPORTED with the reason) and simplification."""
import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from fla_check.cases import CaseConfig, CaseError, build_case, option_values, usable_options
from fla_check.engine.simplify import candidates
from fla_check.ops import OPS
from fla_check.strategies import LOWER_BOUNDS, SpaceOptions, case_configs

FAST = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
KDA = dict(op="kda", dtype="fp32", B=1, T=6, H=1, K=16, V=8)
BOUNDED = dict(gate_in_kernel=True, lower_bound=-5.0)


def test_json_round_trip_description_and_old_reports():
    c = CaseConfig(**KDA, **BOUNDED, safe_gate=True, qk_l2norm=True, beta_sigmoid=True)
    assert c.options == ("qk_l2norm", "gate_in_kernel", "beta_sigmoid", "lower_bound", "safe_gate")
    data = c.to_json()
    assert data["lower_bound"] == -5.0 and data["safe_gate"] is True
    assert CaseConfig.from_json(data) == c and CaseConfig.from_json(str(data).replace("'", '"').replace(
        "True", "true").replace("False", "false").replace("None", "null")) == c
    assert "lower_bound=-5-safe_gate" in c.short()
    plain = CaseConfig(**KDA).to_json()
    assert "lower_bound" not in plain and "safe_gate" not in plain  # reports of plain cases read as before


@pytest.mark.parametrize("bad,match", [
    (dict(lower_bound=-5.0), "needs gate_in_kernel"),
    (dict(gate_in_kernel=True, lower_bound=0.0), "< 0"),
    (dict(gate_in_kernel=True, lower_bound=float("-inf")), "finite"),
    (dict(gate_in_kernel=True, lower_bound=True), "float"),
    (dict(gate_in_kernel=True, safe_gate=True), r"safe_gate needs .*\[-5, 0\)"),
    (dict(gate_in_kernel=True, lower_bound=-6.0, safe_gate=True), r"\[-5, 0\)"),
    (dict(safe_gate=True), "safe_gate needs"),
    (dict(op="gated_delta", gate_in_kernel=True, lower_bound=-5.0), "does not take lower_bound"),
    (dict(op="gla", safe_gate=True), "no in-kernel options"),
])
def test_invalid_combinations_are_case_errors(bad, match):
    with pytest.raises(CaseError, match=match):
        CaseConfig(**{**KDA, **bad})


def test_bound_without_safe_gate_may_lie_below_fla_safe_range():
    assert CaseConfig(**KDA, gate_in_kernel=True, lower_bound=-8.0).lower_bound == -8.0  # fla: no check there


def test_tensors_and_mode_keywords():
    x = build_case(CaseConfig(**KDA, **BOUNDED, safe_gate=True, initial_state=True))
    assert x.g.shape == (1, 6, 1, 16) and x.A_log.shape == (1,) and x.dt_bias.shape == (16,)  # fla: [HV * K]
    kw = x.mode_kwargs()
    assert kw["use_gate_in_kernel"] is True and kw["lower_bound"] == -5.0 and kw["safe_gate"] is True
    assert kw["A_log"].shape == (1,) and kw["dt_bias"].shape == (16,)
    q, k, v, g, beta = x.prepare(*(None if t is None else t.double() for t in x.tensors()))
    assert float(g.min()) > -5.0 and float(g.max()) < 0
    softplus = build_case(CaseConfig(**KDA, gate_in_kernel=True))
    assert "lower_bound" not in softplus.mode_kwargs() and torch.equal(softplus.g, x.g)  # the same raw a


def test_option_helpers():
    assert usable_options(("lower_bound", "safe_gate")) == ()
    assert usable_options(("gate_in_kernel", "safe_gate", "lower_bound")) == ("gate_in_kernel", "safe_gate",
                                                                               "lower_bound")
    assert option_values(("gate_in_kernel", "lower_bound")) == {"gate_in_kernel": True, "lower_bound": -5.0}


@FAST
@given(case_configs(SpaceOptions(op="kda", dtypes=("fp32",), max_seq_len=40)))
def test_kda_draws_are_valid(c):
    assert c.lower_bound is None or (c.gate_in_kernel and c.lower_bound in LOWER_BOUNDS)
    assert not c.safe_gate or -5.0 <= c.lower_bound < 0


def test_bounds_and_safe_gate_are_drawn_and_flags_restrict_them():
    from hypothesis import find

    space = SpaceOptions(op="kda", dtypes=("fp32",), max_seq_len=40)
    s = settings(max_examples=3000, database=None, deadline=None, derandomize=True)
    assert find(case_configs(space), lambda c: c.safe_gate, settings=s).lower_bound == -5.0  # shrinks to fla's -5
    assert find(case_configs(space), lambda c: c.lower_bound == -0.1, settings=s).gate_in_kernel
    off = SpaceOptions(op="kda", dtypes=("fp32",), kernel_options=("gate_in_kernel",))
    assert find(case_configs(off), lambda c: c.gate_in_kernel, settings=s).lower_bound is None
    with pytest.raises(ValueError, match="needs gate_in_kernel"):
        SpaceOptions(op="kda", kernel_options=("lower_bound",))
    with pytest.raises(ValueError, match="takes"):
        SpaceOptions(op="gated_delta", kernel_options=("safe_gate",))


def test_builtin_kda_modes_decline_every_option_with_the_reason():
    for mode in OPS["kda"].modes.values():
        if mode.provider != "builtin":
            continue
        for option, words in (("lower_bound", "lower_bound * sigmoid"), ("safe_gate", "one path"),
                              ("gate_in_kernel", "A_log")):
            why = mode.unsupported_reason(dtype=torch.float32, varlen=False, initial_state=False, backward=False,
                                          interpreter=False, options=(option,))
            assert option in why and words in why


def test_simplify_drops_safe_gate_then_the_bound_then_the_gate():
    c = CaseConfig(**KDA, **BOUNDED, safe_gate=True)
    cands = [x for x in candidates(c, None) if x is not None]
    assert dataclasses.replace(c, safe_gate=False) in cands
    assert dataclasses.replace(c, safe_gate=False, lower_bound=None) in cands
    assert dataclasses.replace(c, safe_gate=False, lower_bound=None, gate_in_kernel=False) in cands
