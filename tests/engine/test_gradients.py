"""Gradient checks (``--backward``): upstream gradients, fresh leaves, verdicts per gradient,
calibration of the clean built-in kernels and planted gradient bugs (runner + gradients)."""
import json

import pytest
import torch
from _fake_modes import PROVIDER, make_clean, make_state_dropped, registered

from fla_check import ops
from fla_check.engine import gradients
from fla_check.cases import CaseConfig, build_case
from fla_check.verdict.compare import Verdict
from fla_check.commands.selftest.mutate import load_mutant
from fla_check.ops import ModeSpec
from fla_check.references import naive_baseline, reference
from fla_check.engine.runner import CaseResult, check_case


@pytest.fixture(autouse=True)
def fake_modes():
    """The fake modes, plus differentiable ones: test:bclean (correct), test:bdropped (state
    zeroed every 16 steps)."""
    with registered():
        for op in ops.OPS.values():
            ops.register_modes(op.name, [ModeSpec("bclean", PROVIDER, make_clean(op.step), backward=True),
                                         ModeSpec("bdropped", PROVIDER, make_state_dropped(op.step), backward=True)])
        yield


def _cfg(op="gla", **kw):
    base = dict(op=op, dtype="float32", B=1, T=20, H=1, K=16, V=16, initial_state=True, seed=3)
    return CaseConfig(**{**base, **kw})


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward scales the incoming gradient (a planted gradient bug)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def _dg_scaled(base, factor):
    def mode(q, k, v, *, g=None, **kw):
        return base(q, k, v, g=_ScaleGrad.apply(g, factor), **kw)

    return mode


def _register(op, name, fn, **kw):
    ops.register_modes(op, [ModeSpec(name, PROVIDER, fn, **kw)])
    return f"{PROVIDER}:{name}"


# -- upstream gradients and leaves -------------------------------------------------------------
def test_upstream_is_part_of_the_case():
    a, b = gradients.upstream(_cfg()), gradients.upstream(_cfg())
    assert torch.equal(a.do, b.do) and torch.equal(a.dht, b.dht)
    assert a.do.shape == (1, 20, 1, 16) and a.dht.shape == (1, 1, 16, 16) and a.do.dtype == torch.float64
    other = gradients.upstream(_cfg(seed=4))
    assert not torch.equal(a.do, other.do)
    inputs = build_case(_cfg())
    assert not torch.equal(a.do, inputs.v.double())  # its own stream, not the inputs'


def test_grad_names_follow_the_op():
    assert gradients.grad_names(build_case(_cfg())) == ["dq", "dk", "dv", "dg", "dh0"]
    assert gradients.grad_names(build_case(_cfg("delta", initial_state=False))) == ["dq", "dk", "dv", "dbeta"]
    assert gradients.grad_names(build_case(_cfg("gated_delta"))) == ["dq", "dk", "dv", "dg", "dbeta", "dh0"]


def test_every_pass_gets_fresh_leaves_and_nothing_accumulates():
    """Each mode call sees new leaves with no .grad; the case's inputs are never made leaves;
    two passes give identical gradients (fla's test_delta varlen test compares a gradient with
    itself because its shared leaves are never cleared)."""
    seen = []
    clean = make_clean(ops.get_op("gla").step)

    def spy(q, k, v, **kw):
        seen.append((q, q.is_leaf, q.requires_grad, q.grad))  # q itself: a freed tensor's id can be reused
        return clean(q, k, v, **kw)

    name = _register("gla", "spy", spy, backward=True)
    cfg = _cfg()
    first = check_case("gla", [name, name.replace("spy", "bclean")], cfg, backward=True, invariance="none")
    second = check_case("gla", [name], cfg, backward=True, invariance="none")  # (counts the calls)
    assert len(seen) == 2 and seen[0][0] is not seen[1][0]
    assert all(leaf and req and grad is None for _, leaf, req, grad in seen)
    assert first.modes[name].to_json()["outputs"] == second.modes[name].to_json()["outputs"]
    inputs = build_case(cfg)
    up = gradients.upstream(cfg)
    op = ops.get_op("gla")
    g1 = gradients.recurrence_outputs(op, inputs, up, reference, torch.float64)
    g2 = gradients.recurrence_outputs(op, inputs, up, reference, torch.float64)
    assert all(torch.equal(g1[n], g2[n]) for n in g1)
    assert all(x.grad is None and not x.requires_grad for x in (inputs.q, inputs.g, inputs.initial_state))


def test_reference_gradients_are_float64_and_baseline_in_the_kernel_dtype():
    cfg = _cfg(dtype="float16")
    inputs, up, op = build_case(cfg), gradients.upstream(cfg), ops.get_op("gla")
    ref = gradients.recurrence_outputs(op, inputs, up, reference, torch.float64)
    base = gradients.recurrence_outputs(op, inputs, up, naive_baseline)
    assert ref["dq"].dtype == torch.float64 and base["dq"].dtype == torch.float16
    assert base["dh0"].dtype == torch.float32  # h0 is fp32 in every case
    rel = ((base["dk"].double() - ref["dk"]).norm() / ref["dk"].norm()).item()
    assert 1e-5 < rel < 5e-3  # fp16 rounding, not a different function



# -- verdicts (fast modes in plain PyTorch) ----------------------------------------------------
@pytest.mark.parametrize("op, extra", [
    ("gla", dict(packing="mask", segments=((7, 13),), mask_fill=-20.0)),
    ("delta", dict(packing="varlen", B=1, segments=((0, 1, 19),), beta_max=2.0)),
    ("gated_delta", dict(gate_norm=0.1)),
])
def test_clean_mode_passes_every_gradient(op, extra):
    r = check_case(op, ["test:bclean"], _cfg(op, **extra), backward=True)
    res = r.modes["test:bclean"]
    assert res.verdict is Verdict.OK and r.backward
    want = ["o", "ht"] + gradients.grad_names(build_case(_cfg(op, **extra)))
    assert [c.name for c in res.outputs] == want


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_dg_wrong_by_a_small_factor_is_flagged(dtype):
    clean = make_clean(ops.get_op("gla").step)
    bad = _register("gla", "dg105", _dg_scaled(clean, 1.05), backward=True)
    r = check_case("gla", [bad, "test:bclean"], _cfg(T=40, dtype=dtype), backward=True)
    verdicts = {c.name: c.verdict for c in r.modes[bad].outputs}
    assert verdicts.pop("dg") is Verdict.DIVERGED
    assert set(verdicts.values()) == {Verdict.OK}  # o, ht and the other gradients are fine
    assert r.modes["test:bclean"].verdict is Verdict.OK
    assert r.modes[bad].localization.output == "dg"


def test_forward_only_modes_are_unsupported_with_their_reason():
    name = _register("gla", "fwdonly", make_clean(ops.get_op("gla").step), backward_reason="no bwd here")
    r = check_case("gla", [name, "fused_chunk"], _cfg(), backward=True)
    assert r.modes[name].verdict is Verdict.UNSUPPORTED and r.modes[name].reason == "no bwd here"
    assert r.modes["fused_chunk"].reason == "builtin:fused_chunk is forward only"
    assert check_case("gla", [name], _cfg()).modes[name].verdict is Verdict.OK  # forward still checked


def test_missing_gradients_and_missing_graphs_are_errors():
    clean = make_clean(ops.get_op("gla").step)
    no_dg = _register("gla", "nodg", lambda q, k, v, g=None, **kw: clean(q, k, v, g=g.detach(), **kw),
                      backward=True)
    no_graph = _register("gla", "nograph", lambda *a, **kw: tuple(x.detach() for x in clean(*a, **kw)),
                         backward=True)
    r = check_case("gla", [no_dg, no_graph], _cfg(), backward=True)
    assert r.modes[no_dg].verdict is Verdict.ERROR and r.modes[no_dg].reason == \
        "wrong output: no gradient dg (got NoneType)"
    assert r.modes[no_graph].verdict is Verdict.ERROR and "not differentiable" in r.modes[no_graph].reason


def test_backward_case_result_json_round_trip():
    r = check_case("gla", ["test:bclean", "test:bdropped"], _cfg(), backward=True)
    back = CaseResult.from_json(json.loads(json.dumps(r.to_json(), allow_nan=False)))
    assert back.backward and back.to_json() == r.to_json()
    assert "dh0" in back.baseline and back.modes["test:bdropped"].verdict.failed


# -- built-in kernels (Triton interpreter) -----------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_dg_of_a_gate_that_cannot_matter_is_not_a_false_alarm(dtype):
    """T = 1 without states: dg is exactly 0 in float64 and in the baseline, the kernels'
    q*dq - k*dk identity leaves rounding noise (4.8e-7 measured): judged at the terms' scale."""
    r = check_case("gla", ["recurrent", "chunk"], _cfg(T=1, initial_state=False, seed=0, dtype=dtype),
                   backward=True)
    for mode in ("recurrent", "chunk"):
        dg = next(c for c in r.modes[mode].outputs if c.name == "dg")
        assert dg.verdict is Verdict.OK and dg.score < 0.5, (mode, dg)


CALIBRATION = [  # default-space corners: strong decay, fill -1e4, varlen with empty sequences, K 60/100
    (dict(op="gla", T=70, K=60, V=32, gate_norm=0.1, packing="mask", segments=((5, 1, 40, 24),),
          mask_fill=-1e4), ("recurrent", "chunk")),
    (dict(op="gla", T=40, K=32, V=32, gate_norm=0.1), ("chunk",)),  # chunk dg: fp32 rel. error ~2e-5
    (dict(op="gla", dtype="float16", T=33, K=16, V=100, zero_gate_frac=0.5, packing="varlen",
          segments=((0, 1, 32),), initial_state=False), ("recurrent", "chunk")),
    (dict(op="gated_delta", T=64, H=2, K=32, V=32, gate_norm=0.01, beta_max=2.0), ("chunk",)),
    (dict(op="delta", T=47, K=100, V=16, beta_max=2.0, packing="varlen", segments=((17, 0, 30),),
          initial_state=False), ("recurrent", "chunk")),
    # found by `fla-check run --op gla --modes recurrent,chunk --backward`: chunk dh0 used 0.54 of
    # its bound before dh0 got its own gate mass (every dh0 term is scaled by exp(G_t))
    (dict(op="gla", T=2, gate_norm=0.01, packing="mask", segments=((1, 1),), mask_fill=-20.0, seed=905006),
     ("recurrent", "chunk")),
]


@pytest.mark.parametrize("spec, modes", CALIBRATION, ids=lambda x: f"{x['op']}-T{x['T']}" if isinstance(x, dict) else "")
def test_clean_kernels_use_a_fraction_of_the_allowed_gradient_error(spec, modes):
    r = check_case(spec["op"], modes, _cfg(**{"seed": 7, **spec}), backward=True)
    scores = {(m, c.name): round(c.score, 3) for m in modes for c in r.modes[m].outputs}
    why = {m: (r.modes[m].verdict.value, r.modes[m].reason) for m in modes}
    assert all(r.modes[m].verdict is Verdict.OK for m in modes), (why, scores)
    # a fraction: 0.6, not 0.5: on an H200 the recurrent GLA's dh0 at T=2 reads 0.52 (its bound
    # there is the fp32 slack, 8 ulps; a GPU's ex2.approx exp costs a few of them, the CPU
    # interpreter's exact exp none: 0.03 here), docs/gpu/pytest-h200-2
    assert max(scores.values()) < 0.6, scores
    assert {n for _, n in scores} >= {"dq", "dk", "dv"}


def test_planted_dg_bug_in_the_chunk_kernel_is_flagged():
    """The GLA chunk kernel with its dg scaled by 1.05 (one store rewritten): only dg diverges."""
    mutant = load_mutant("fla_check.kernels.gla.chunk",
                         [("tl.store(dg + p_tk, b_dg.to(", "tl.store(dg + p_tk, (b_dg * 1.05).to(")],
                         tag="gla_dg105")
    bad = _register("gla", "chunk_dg105", mutant.gla_chunk, backward=True)
    r = check_case("gla", ["chunk", bad], _cfg(T=40, K=32, V=16, gate_norm=3.0), backward=True)
    assert r.modes["chunk"].verdict is Verdict.OK
    verdicts = {c.name: c.verdict for c in r.modes[bad].outputs}
    assert verdicts.pop("dg") is Verdict.DIVERGED and set(verdicts.values()) == {Verdict.OK}
    dg = next(c for c in r.modes[bad].outputs if c.name == "dg")
    assert dg.score > 10  # far outside the bound, not a borderline call


def test_kda_option_cancellation_scale_is_per_key_channel():
    """KDA's gate is per key channel: with in-kernel options the dg cancellation reach is that of
    the per-channel terms (times the gate's slope), not of the per-head sums over K a GDN gate has."""
    import torch

    from fla_check.cases import CaseConfig, build_case, upstream
    from fla_check.engine.gradients import _effective_terms, cancellation_scales
    from fla_check.ops import get_op

    config = CaseConfig(op="kda", dtype="float32", B=1, T=9, H=1, K=16, V=16, seed=2, initial_state=True,
                        gate_in_kernel=True, lower_bound=-5.0)
    inputs, up, step = build_case(config), upstream(config), get_op("kda").step
    terms, slope = _effective_terms(inputs, up, step)
    assert terms.shape == (1, 9, 1, 16) and 0 < slope <= 5.0 * 16 / 4  # |lb| max exp(A_log) / 4
    ht = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    reach = cancellation_scales(inputs, {"dg": torch.zeros(1), "ht": ht}, up, step)["dg"]
    per_channel = slope * float(terms.square().sum(1).sqrt().max())  # t = 0 sees every later term
    assert reach.walk_max == pytest.approx(per_channel) and 0 < reach.walk_rms < reach.walk_max
    assert reach.walk_max < slope * float(terms.sum(-1).square().sum(1).sqrt().max())  # not the per-head sum


def test_cancellation_reach_is_a_reverse_walk_per_sequence():
    """w_t = sqrt(sum_{s >= t} term_s^2 + state^2), within each batch row or varlen segment."""
    import torch

    from fla_check.engine.gradients import _reach

    terms = torch.tensor([[3.0, 4.0, 12.0], [0.0, 0.0, 5.0]], dtype=torch.float64).view(2, 3, 1)
    state = torch.tensor([[0.0], [12.0]], dtype=torch.float64)
    rows = _reach(terms, state, None)  # row 0: 13, 12.65, 12; row 1: 13, 13, 13
    walks = torch.tensor([13.0, (16 + 144) ** 0.5, 12.0, 13.0, 13.0, 13.0])
    assert rows.walk_max == pytest.approx(13.0) and rows.walk_rms == pytest.approx(float(walks.square().mean().sqrt()))
    packed = _reach(torch.tensor([[[3.0], [4.0], [12.0]]], dtype=torch.float64), torch.tensor([[0.0], [5.0]],
                    dtype=torch.float64), torch.tensor([0, 2, 3]))  # segments [3, 4] and [12] + state 5
    assert packed.walk_max == pytest.approx(13.0) and packed.walk_rms == pytest.approx(((25 + 16 + 169) / 3) ** 0.5)
