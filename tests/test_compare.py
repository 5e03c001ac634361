"""The verdict rule: metrics, bounds, floors, the gate allowance, and calibration margins."""
import math

import pytest
import torch

from fla_check.compare import (A_BACKWARD, FLOORS, GATE_CAP, Verdict, agreement, compare, gate_allowance,
                               gate_mass, measure, worst)


def _ref(shape=(1, 32, 2, 16), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _noise(ref, rel, seed=1):
    return ref + rel * torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_measure_exact_and_nonfinite():
    r = _ref()
    assert measure(r, r) == measure(r.float(), r.float().double())
    m = measure(r, r)
    assert m.max_abs == 0 and m.rel_rms == 0 and m.nonfinite == 0
    bad = r.clone()
    bad[0, 3, 1, :4] = math.nan
    bad[0, 4, 0, 0] = math.inf
    assert measure(bad, r).nonfinite == 5 and measure(bad, r).max_abs == math.inf


def test_measure_ignores_elements_where_reference_is_not_finite():
    r = _ref()
    r[0, 0, 0, 0] = math.inf
    k = r.clone()
    k[0, 0, 0, 0] = math.nan
    assert measure(k, r).nonfinite == 0 and measure(k, r).max_abs == 0


def test_relative_rmse_is_fla_ratio():
    r = _ref()
    k = r * 1.01
    assert measure(k, r).rel_rms == pytest.approx(0.01, rel=1e-6)


def test_ok_within_twice_the_baseline():
    r = _ref()
    p, k = _noise(r, 1e-3, 1), _noise(r, 1.5e-3, 2)
    c = compare("o", k, p, r, dtype=torch.float16, steps=32)
    assert c.verdict is Verdict.OK and 0 < c.score < 1 and c.ratio == pytest.approx(1.5, rel=0.1)


def test_diverged_on_max_abs_alone():
    r = _ref()
    p = _noise(r, 1e-7)
    k = p.clone()
    k[0, 5, 1, 3] += 2e-4  # one element: rel-RMSE stays tiny
    c = compare("o", k, p, r, dtype=torch.float32, steps=32)
    assert c.verdict is Verdict.DIVERGED and c.kernel.rel_rms < c.bound_rel_rms
    assert c.kernel.max_abs > c.bound_max_abs and c.score > 1


def test_diverged_on_rel_rmse_alone():
    r = _ref()
    p = _noise(r, 1e-6)
    k = _noise(r, 4e-5, 3)
    c = compare("o", k, p, r, dtype=torch.float32, steps=10000)  # long accumulation: big abs floor
    assert c.kernel.max_abs <= c.bound_max_abs and c.verdict is Verdict.DIVERGED


def test_nonfinite_verdict():
    r = _ref()
    k = r.clone()
    k[0, 16] = math.nan
    assert compare("o", k, r, r, dtype=torch.float32, steps=32).verdict is Verdict.NONFINITE


def test_floor_covers_an_exact_baseline():
    """The baseline may be exact (tiny cases): a few ulps of reordering must still pass."""
    r = _ref().float().double()
    k = (r.float() * (1 + 2 * torch.finfo(torch.float32).eps)).double()
    c = compare("o", k, r, r, dtype=torch.float32, steps=1)
    assert c.baseline.max_abs == 0 and c.verdict is Verdict.OK


def test_backward_uses_a_three():
    r = _ref()
    p = _noise(r, 1e-4)
    k = r + 2.5 * (p - r)  # exactly 2.5 times the baseline's error
    assert compare("dq", k, p, r, dtype=torch.float32, steps=1).verdict is Verdict.DIVERGED
    assert compare("dq", k, p, r, dtype=torch.float32, steps=1, backward=True).verdict is Verdict.OK
    assert A_BACKWARD == 3


def test_floors_table_is_ordered_by_precision():
    assert FLOORS[torch.float32].tau < FLOORS[torch.float16].tau <= FLOORS[torch.bfloat16].tau


def test_gate_mass():
    assert gate_mass(None) == 0.0
    g = torch.full((1, 64, 2), -0.1)
    assert gate_mass(g) == pytest.approx(6.4 * math.exp(-0.1), rel=1e-6)  # |G_63| * exp(g_63)
    strong = torch.full((1, 64, 2), -70.0)
    assert gate_mass(strong) < 1e-20  # strong decay: the differences multiply ~0
    filled = g.clone()
    filled[0, 10] = -1e4
    assert gate_mass(filled) == pytest.approx(1e4 * math.exp(-0.1), rel=1e-3)
    filled[0, 10] = -math.inf
    assert gate_mass(filled) == math.inf
    first = g.clone()
    first[0, 0] = -1e4  # first step of a chunk: nothing before it to cancel against
    assert gate_mass(first) > 1e3  # but the steps after it carry the offset


def test_gate_mass_restarts_at_chunks_and_sequences():
    g = torch.full((1, 128, 1), -0.01)
    g[0, 63] = -1e4  # last step of chunk 0: the next chunk restarts
    assert gate_mass(g) < 1.0
    g2 = torch.full((1, 40, 1), -0.01)
    g2[0, 19] = -1e4
    assert gate_mass(g2) > 1e3
    assert gate_mass(g2, cu_seqlens=torch.tensor([0, 20, 40])) < 1.0  # the fill ends sequence 0


def test_gate_allowance_is_capped():
    assert gate_allowance(0.0) == 0.0
    assert gate_allowance(1e4) < GATE_CAP
    assert gate_allowance(math.inf) == GATE_CAP


def test_allowance_widens_bounds_but_not_past_the_cap():
    r = _ref()
    k = _noise(r, 5e-4, 3)
    assert compare("o", k, r, r, dtype=torch.float32, steps=32).verdict is Verdict.DIVERGED
    assert compare("o", k, r, r, dtype=torch.float32, steps=32, gate=1e4).verdict is Verdict.OK
    wrong = _noise(r, 0.1, 3)
    assert compare("o", wrong, r, r, dtype=torch.float32, steps=32, gate=math.inf).verdict is Verdict.DIVERGED


def test_agreement():
    r = _ref()
    a, b = _noise(r, 1e-4, 1), _noise(r, 1e-4, 2)
    ok = agreement("o", a, b, r, 1e-3, 1e-3)
    assert ok.agree and ok.max_abs < 2e-3
    assert not agreement("o", a, b + 1, r, 1e-3, 1e-3).agree
    nan = a.clone()
    nan[0, 0] = math.nan
    assert not agreement("o", nan, b, r, 1.0, 1.0).agree and agreement("o", nan, nan, r, 0, 0).agree


def test_worst_ordering():
    V = Verdict
    assert worst([V.OK, V.UNSUPPORTED]) is V.OK
    assert worst([V.OK, V.DIVERGED, V.NONFINITE]) is V.NONFINITE
    assert worst([V.NONFINITE, V.ERROR]) is V.ERROR
    assert worst([]) is V.UNSUPPORTED
    assert V.DIVERGED.failed and not V.UNSUPPORTED.failed


# -- calibration on the built-in kernels (Triton interpreter on CPU) ---------------------------
CALIBRATION = [  # (case, built-in modes): default-space corners, fp32 and fp16
    (dict(op="gla", dtype="float32", T=70, H=2, K=60, V=32, gate_norm=0.1, packing="mask",
          segments=((5, 1, 40, 24),), mask_fill=-1e4, initial_state=True), ("recurrent", "chunk")),
    (dict(op="gla", dtype="float16", T=33, H=1, K=16, V=100, zero_gate_frac=0.5, packing="varlen",
          segments=((0, 1, 32),)), ("recurrent", "chunk", "fused_chunk")),
    (dict(op="gla", dtype="float32", T=48, H=1, K=32, V=16, packing="mask", segments=((7, 9, 32),),
          mask_fill=-20.0), ("recurrent", "chunk", "fused_chunk")),
    (dict(op="gated_delta", dtype="float32", T=64, H=2, K=32, V=32, gate_norm=0.01, beta_max=2.0,
          initial_state=True), ("recurrent", "chunk")),
    (dict(op="gated_delta", dtype="float16", T=50, H=1, K=64, V=16, packing="mask",
          segments=((16, 1, 33),), mask_fill=-1e3), ("recurrent", "chunk")),
    (dict(op="delta", dtype="float32", T=47, H=1, K=100, V=16, beta_max=2.0, packing="varlen",
          segments=((17, 0, 30),)), ("recurrent", "chunk")),
    (dict(op="delta", dtype="float16", T=65, H=2, K=16, V=60, initial_state=True), ("recurrent", "chunk")),
]


def _check(spec, modes):
    from _fake_modes import registered

    from fla_check.cases import CaseConfig
    from fla_check.runner import check_case

    with registered(spec["op"]):
        return check_case(spec["op"], modes, CaseConfig(B=1, seed=7, **spec))


@pytest.mark.parametrize("spec, modes", CALIBRATION, ids=lambda x: x["op"] + "-" + x["dtype"]
                         if isinstance(x, dict) else "")
def test_calibration_margins(spec, modes):
    """Clean built-in kernels use < 1/2 of the allowed error on default-space corners
    (strong decay, fills up to -1e4, zero gates, varlen with empty sequences, K/V 60 and 100)."""
    result = _check(spec, modes)
    clean = {m: round(result.modes[m].score, 4) for m in modes}
    assert all(result.modes[m].verdict is Verdict.OK for m in modes), clean
    assert max(clean.values()) < 0.5, clean


@pytest.mark.parametrize("op", ["gla", "delta", "gated_delta"])
@pytest.mark.parametrize("dtype, factor", [("float32", 1000), ("float16", 20)])
def test_planted_bug_margin(op, dtype, factor):
    """A planted bug (state dropped every 16 steps: error ~1) exceeds the allowed error by
    orders of magnitude where it is observable (moderate decay), while the kernel passes."""
    spec = dict(op=op, dtype=dtype, T=40, H=1, K=32, V=16, initial_state=True)
    result = _check(spec, ["chunk", "test:dropped"])
    assert result.modes["chunk"].score < 0.5
    assert result.modes["test:dropped"].score > factor


def test_tf32_mode_gets_half_precision_floors_on_gpu_only():
    """fla's chunk kernels use TF32 dots for fp32 inputs: a TF32-level error (~8.6e-4 measured on
    an H100) fails the fp32 floors but passes the fp16-level ones it is then judged by; a seed
    bug (error ~1) fails both."""
    from fla_check.ops import ModeSpec

    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(256, generator=gen, dtype=torch.float64)
    base = ref.float()
    tf32_like = (ref * (1 + 8.6e-4 * torch.randn(256, generator=gen, dtype=torch.float64))).float()
    spec = ModeSpec("chunk", "x", lambda: None, fp32_dot="tf32")
    assert spec.floor_dtype(torch.float32, interpreter=True) == torch.float32
    assert spec.floor_dtype(torch.float16, interpreter=False) == torch.float16
    on_gpu = spec.floor_dtype(torch.float32, interpreter=False)
    assert on_gpu == torch.float16
    judge = lambda k, fd: compare("o", k, base, ref, dtype=torch.float32, steps=16, floor_dtype=fd).verdict
    assert judge(tf32_like, None) == Verdict.DIVERGED
    assert judge(tf32_like, on_gpu) == Verdict.OK
    assert judge(tf32_like * 0 + 1.0, on_gpu) == Verdict.DIVERGED
    assert ModeSpec("chunk", "x", lambda: None).floor_dtype(torch.float32, interpreter=False) == torch.float32


def test_declared_fp32_state_judges_the_final_state_at_fp32_floors():
    from fla_check.ops import ModeSpec

    spec = ModeSpec("recurrent", "x", lambda: None, fp32_state=True)
    assert spec.floor_dtype(torch.float16, interpreter=True, output="ht") == torch.float32
    assert spec.floor_dtype(torch.bfloat16, interpreter=False, output="ht") == torch.float32
    assert spec.floor_dtype(torch.float16, interpreter=True, output="o") == torch.float16
    assert ModeSpec("chunk", "x", lambda: None).floor_dtype(torch.float16, True, "ht") == torch.float16
