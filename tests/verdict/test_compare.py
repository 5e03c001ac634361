"""The verdict rule: metrics, bounds, fp32 slack, the cancelling-sum term, and calibration margins."""
import math

import pytest
import torch
from host_spy import host_transfers

from fla_check.verdict.compare import (A_BACKWARD, Cancellation, A_FORWARD, A_MAX_BACKWARD, A_MAX_FORWARD, Agreement, Judged,
                                       Metrics, Verdict, agreement, agreements, compare, compare_many, measure, worst)


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


def _scale(p, r):
    """The baseline as the verdict sees it: one sample's max-abs and rel-RMSE error."""
    return measure(p, r)


def test_ok_within_twice_the_baseline():
    r = _ref()
    p, k = _noise(r, 1e-3, 1), _noise(r, 1.5e-3, 2)
    c = compare("o", k, r, _scale(p, r), steps=32)
    assert c.verdict is Verdict.OK and 0 < c.score < 1 and c.ratio == pytest.approx(1.5, rel=0.1)


def test_diverged_past_twice_the_baseline_rms():
    r = _ref()
    p, k = _noise(r, 1e-3, 1), _noise(r, 2.3e-3, 2)
    c = compare("o", k, r, _scale(p, r), steps=32)
    assert c.verdict is Verdict.DIVERGED and c.kernel.rel_rms > c.bound_rel_rms


def test_diverged_on_max_abs_alone():
    r = _ref()
    p = _noise(r, 1e-7)
    k = p.clone()
    k[0, 5, 1, 3] += 2e-4  # one element: rel-RMSE stays tiny
    c = compare("o", k, r, _scale(p, r), steps=32)
    assert c.verdict is Verdict.DIVERGED and c.kernel.rel_rms < c.bound_rel_rms
    assert c.kernel.max_abs > c.bound_max_abs and c.score > 1


def test_diverged_on_rel_rmse_alone():
    r = _ref()
    p = _noise(r, 1e-6)
    k = _noise(r, 4e-5, 3)
    c = compare("o", k, r, _scale(p, r), steps=10000)  # long accumulation: big abs slack
    assert c.kernel.max_abs <= c.bound_max_abs and c.verdict is Verdict.DIVERGED


def test_nonfinite_verdict():
    r = _ref()
    k = r.clone()
    k[0, 16] = math.nan
    assert compare("o", k, r, _scale(r, r), steps=32).verdict is Verdict.NONFINITE


def test_fp32_slack_covers_an_exact_baseline_and_nothing_more():
    """A baseline may be exact (tiny cases): a few fp32 ulps of reordering must pass, 0.3% must not."""
    r = _ref().float().double()
    k = (r.float() * (1 + 2 * torch.finfo(torch.float32).eps)).double()
    c = compare("o", k, r, _scale(r, r), steps=1)
    assert c.baseline.max_abs == 0 and c.verdict is Verdict.OK
    assert compare("o", r * 1.003, r, _scale(r, r), steps=4096).verdict is Verdict.DIVERGED


def test_backward_uses_a_three():
    r = _ref()
    p = _noise(r, 1e-4)
    k = r + 2.5 * (p - r)  # exactly 2.5 times the baseline's error
    assert compare("dq", k, r, _scale(p, r), steps=1).verdict is Verdict.DIVERGED
    assert compare("dq", k, r, _scale(p, r), steps=1, backward=True).verdict is Verdict.OK
    assert (A_FORWARD, A_MAX_FORWARD, A_BACKWARD, A_MAX_BACKWARD) == (2, 3, 3, 4)


def test_cancelling_sum_term_only_where_passed():
    r = _ref()
    k = _noise(r, 1e-5, 3)
    assert compare("dg", k, r, _scale(r, r), steps=32, backward=True).verdict is Verdict.DIVERGED
    assert compare("dg", k, r, _scale(r, r), steps=32, backward=True, cancel_scale=1e3).verdict is Verdict.OK


def test_cancelling_terms_through_tf32_dots_allow_their_truncation_and_no_more():
    """fla's gated chunk backward on fp32 inputs, H200 (docs/gpu/features-h200-5): dg off by 1.4-1.6 %
    of 2^-10 of its terms' reach where the exact dg is 0 (IEEE dots: 4.8e-7). Such an error is OK with
    the TF32 allowance and DIVERGED with fp32's; a dg 2 % off stays DIVERGED."""
    from fla_check.verdict.arithmetic import Arithmetic

    tf32, fp32_sum = (Arithmetic("chunk", 64, dot=d).cancellation_allowance(False) for d in ("tf32", "ieee"))
    r = _ref()  # a dg of rms ~1 whose terms' reach is of the same size
    reach = Cancellation(r.abs().max().item(), r.square().mean().sqrt().item())
    truncated = r + 0.05 * 2.0**-10 * reach.walk_max * torch.randn(
        r.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = _scale(r, r)

    def verdict(kernel, allowance):
        return compare_many([Judged("dg", kernel, r, exact, 64, True, reach, allowance)])[0][0].verdict

    assert verdict(truncated, tf32) is Verdict.OK and verdict(truncated, fp32_sum) is Verdict.DIVERGED
    assert verdict(r * 1.02, tf32) is Verdict.DIVERGED


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
    from fla_check.engine.runner import check_case

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


# -- one host transfer: compare_many / agreements against the per-output rule ---------------
def _outputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(2, 9, 3, 5, generator=g, dtype=torch.float64)
    k = (r * (1 + 1e-3 * torch.randn(r.shape, generator=g, dtype=torch.float64))).float()
    nan = k.clone()
    nan[0, 3, 1, 2] = float("nan")
    strided = k.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other memory order
    return r, {"o": k, "nan": nan, "strided": strided, "far": k * 1.02}


def _one_by_one(items):
    """The per-output rule as it was before batching (a transfer per metric)."""
    out = []
    for i in items:
        k = measure(i.kernel, i.ref)
        a, a_max = (3.0, 4.0) if i.backward else (2.0, 3.0)
        finite = i.ref.double()[torch.isfinite(i.ref.double())]
        amax = finite.abs().max().item() if finite.numel() else 0.0
        rms = finite.square().mean().sqrt().item() if finite.numel() else 0.0
        walk = math.sqrt(max(1, i.steps))
        bmax = a_max * i.baseline.max_abs + 8.0 * torch.finfo(torch.float32).eps * amax * walk
        brms = a * i.baseline.rel_rms + 2e-5
        if i.cancel is not None:
            bmax += i.cancel_allowance * i.cancel.walk_max
            brms += i.cancel_allowance * i.cancel.walk_rms / (rms + 1e-8)
        out.append((k, bmax, brms))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compare_many_equals_the_per_output_rule_exactly(seed):
    r, kernels = _outputs(seed)
    holes = r.clone()
    holes[1, 2, 0, 0] = float("inf")  # a reference with a non-finite entry: the masked path
    base = Metrics(5e-3, 2e-3, 0)
    items = [Judged(n, k, ref, base, 9, backward=n == "far",
                    cancel=Cancellation(3e3, 1e3) if n == "o" else None,
                    cancel_allowance=2.0**-10 if n == "o" and ref is holes else 8 * torch.finfo(torch.float32).eps)
             for n, k in kernels.items() for ref in (r, holes)]
    items.append(Judged("empty", torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.float64), base, 1))
    comps, extra = compare_many(items, [torch.tensor(3.0)])
    assert extra == [3.0]
    for c, (k, bmax, brms) in zip(comps, _one_by_one(items)):
        assert (c.kernel, c.bound_max_abs, c.bound_rel_rms) == (k, bmax, brms)
    verdicts = [c.verdict for c in comps[:8]]
    assert verdicts == [Verdict.OK, Verdict.OK, Verdict.NONFINITE, Verdict.NONFINITE, Verdict.OK, Verdict.OK,
                        Verdict.DIVERGED, Verdict.DIVERGED]


def test_compare_many_fetches_once(monkeypatch):
    r, kernels = _outputs(0)
    items = [Judged(n, k, r, Metrics(1e-4, 1e-4, 0), 9) for n, k in kernels.items()]
    calls = host_transfers(monkeypatch)
    compare_many(items)
    assert calls == ["cpu", "tolist"]  # one device-to-host copy, then read on the host


def test_agreements_equal_agreement_one_by_one_and_fetch_finite_ones_at_once(monkeypatch):
    r, kernels = _outputs(1)
    nan2 = kernels["nan"].clone()
    items = [(n, k, kernels["o"], r, 1e-3, 1e-3) for n, k in kernels.items()] + [("nan2", kernels["nan"], nan2, r,
                                                                                    0.0, 0.0)]
    finite = [item for item in items if bool(torch.isfinite(item[1].double() - item[2].double()).all())]
    assert 0 < len(finite) < len(items)
    calls = host_transfers(monkeypatch)
    agreements(finite)
    assert calls == ["cpu", "tolist"]  # finite differences: one transfer for all (NaN ones fetch their equality)
    monkeypatch.undo()
    batched = agreements(items)
    for got, (name, a, b, ref, ba, bb) in zip(batched, items):
        a64, b64, r64 = a.double(), b.double(), ref.double()
        diff = a64 - b64
        if not bool(torch.isfinite(diff).all()):
            same = bool(((a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))).all())
            assert got == Agreement(name, 0.0 if same else math.inf, 0.0 if same else math.inf, same)
            continue
        rms_ref = r64.square().mean().sqrt().item()
        want = Agreement(name, diff.abs().max().item(), diff.square().mean().sqrt().item() / (rms_ref + 1e-8),
                         diff.abs().max().item() <= ba + bb)
        assert got == want
    assert [a.agree for a in batched] == [True, False, True, False, True]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_finite_masks_are_isfinite(dtype):
    from fla_check.verdict.reductions import finite_mask, nonfinite_mask

    info = torch.finfo(dtype)
    x = torch.tensor([0.0, -0.0, 1.5, -2.0, info.max, -info.max, info.tiny, info.tiny * info.eps, -info.tiny / 2,
                      math.inf, -math.inf, math.nan], dtype=torch.float64).to(dtype)
    assert torch.equal(finite_mask(x), torch.isfinite(x)) and torch.equal(nonfinite_mask(x), ~torch.isfinite(x))
    assert finite_mask(x).tolist() == [True] * 9 + [False] * 3


def _same_bits(a, b):
    """Equal dtypes and bits (NaN payloads and signed zeros included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    ints = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
    return (torch.equal(a.reshape(-1).view(ints), b.reshape(-1).view(ints))
            and torch.equal(a.signbit(), b.signbit()))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "float32"])
def test_reference_terms_give_the_bits_of_the_inline_reductions(seed, layout):
    """ReferenceTerms' cached reductions equal, bit for bit, the inline ones they replaced in
    _terms, agreements and PendingScales (a NaN, an inf and signed zeros in the reference; a
    non-contiguous or fp32 one), and are computed once per tensor and device."""
    from fla_check.verdict.compare import metric_terms
    from fla_check.verdict.reductions import ReferenceTerms, finite_mask

    ref = _ref(seed=seed)
    ref[0, seed, 0, :3] = torch.tensor([-0.0, 0.0, -0.0], dtype=torch.float64)
    if seed % 2:
        ref[0, 3, 1, 2], ref[0, 5, 0, 1] = math.nan, -math.inf
    ref = {"contiguous": ref, "transposed": ref.transpose(1, 2), "float32": ref.float()}[layout]
    r = ref.detach().to(torch.float64)
    refs = ReferenceTerms()
    assert _same_bits(refs.finite(ref), finite_mask(r))
    assert _same_bits(refs.finite_count(ref), finite_mask(ref).sum())
    assert _same_bits(refs.rms(ref), r.contiguous().square().mean().sqrt())
    assert _same_bits(refs.max_abs(ref), r.contiguous().abs().max())
    assert refs.rms(ref) is refs.rms(ref) and refs.finite(ref, torch.device("cpu")) is refs.finite(ref)
    kernel = _noise(ref.double(), 1e-3, seed=seed + 7).to(ref.dtype)
    shared = ReferenceTerms()
    once, twice, fresh = (metric_terms([(kernel, ref)], shared), metric_terms([(kernel, ref)], shared),
                          metric_terms([(kernel, ref)]))
    assert all(_same_bits(a, b) and _same_bits(a, c) for a, b, c in zip(once, twice, fresh))
    assert twice[1] is once[1] and twice[4] is once[4] and twice[5] is once[5]
