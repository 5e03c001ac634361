"""Baseline samples and the scales the verdict takes from them."""
import math

import pytest
import torch

from fla_check.engine import gradients
from fla_check.cases import CaseConfig, build_case
from fla_check.ops import get_op
from fla_check.verdict.arithmetic import RECURRENT_FP32, Arithmetic
from fla_check.verdict.baselines import EmulationError, baseline_samples, noise_scales, sample_seed
from fla_check.verdict.compare import Verdict
from fla_check.verdict.emulation import SAMPLES


def test_noise_scales_take_the_worst_sample():
    exact = {"o": torch.ones(4, 4, dtype=torch.float64)}
    samples = torch.ones(3, 4, 4, dtype=torch.float64)
    samples[1, 0, 0] += 0.5
    samples[2] += 0.01
    s = noise_scales({"o": samples}, exact)["o"]
    assert s.max_abs == pytest.approx(0.5)
    assert s.rel_rms == pytest.approx(max(0.5 / 4, 0.01), rel=1e-6)
    other = {"o": 2 * torch.ones(4, 4, dtype=torch.float64)}  # normalised by another reference's RMS
    assert noise_scales({"o": samples}, exact, other)["o"].rel_rms == pytest.approx(s.rel_rms / 2, rel=1e-6)


def test_noise_scales_fetch_every_output_at_once(monkeypatch):
    exact = {n: torch.randn(3, 5, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
             for i, n in enumerate(("o", "ht", "dq"))}
    samples = {n: x[None] * (1 + 1e-3 * torch.rand(4, 3, 5, dtype=torch.float64)) for n, x in exact.items()}
    want = {}
    for n, x in exact.items():  # the rule, a transfer per number
        diff = samples[n] - x
        rms = diff.flatten(1).square().sum(1).div(x.numel()).sqrt().max().item()
        want[n] = (diff.abs().max().item(), rms / (x.square().mean().sqrt().item() + 1e-8))
    calls = []
    original = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    got = noise_scales(samples, exact)
    assert len(calls) == 1
    assert {n: (m.max_abs, m.rel_rms) for n, m in got.items()} == want


def test_a_nonfinite_baseline_is_an_error_not_an_infinite_bound():
    exact = {"o": torch.ones(2, dtype=torch.float64)}
    bad = torch.ones(3, 2, dtype=torch.float64)
    bad[0, 1] = math.nan
    with pytest.raises(EmulationError):
        noise_scales({"o": bad}, exact)
    exact["o"][1] = math.inf  # where the reference is not finite, nothing is asked
    assert noise_scales({"o": bad}, exact)["o"].max_abs == 0.0


def test_sample_seed_is_stable_and_depends_on_the_declaration():
    a = Arithmetic("chunk", 64, store="input", dot="tf32")
    assert sample_seed(3, a) == sample_seed(3, Arithmetic("chunk", 64, store="input", dot="tf32"))
    assert len({sample_seed(3, a), sample_seed(4, a), sample_seed(3, RECURRENT_FP32), sample_seed(3, a, True)}) == 4


def test_backward_samples_carry_every_gradient_rounded_like_the_kernel_returns_it():
    cfg = CaseConfig(op="gated_delta", dtype="float16", B=1, T=20, H=1, K=16, V=16, initial_state=True, seed=1)
    inputs, up = build_case(cfg), gradients.upstream(cfg)
    out = baseline_samples(get_op("gated_delta"), Arithmetic("chunk", 16), inputs, torch.float16, 0, up=up)
    assert set(out) == {"o", "ht", "dq", "dk", "dv", "dg", "dbeta", "dh0"}
    assert all(x.shape[0] == SAMPLES and x.dtype == torch.float64 for x in out.values())
    assert out["dq"].shape[1:] == inputs.q.shape and out["dh0"].shape[1:] == inputs.initial_state.shape
    assert not torch.equal(out["dq"][0], out["dq"][1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_recurrent_shortcut_agrees_with_the_emulated_loop(dtype):
    """With the exact answer at hand a recurrent fp32-state baseline is the answer rounded to the
    output dtypes plus the readout's fp32 sum; the full step loop's extra (fp32 state) error stays
    inside the fp32 slack."""
    from fla_check.references import reference
    from fla_check.verdict.baselines import noise_scales

    cfg = CaseConfig(op="gla", dtype=str(dtype).removeprefix("torch."), B=1, T=50, H=2, K=16, V=16, seed=3)
    inputs, op = build_case(cfg), get_op("gla")
    o, ht = reference(op.step, *inputs.tensors(), output_final_state=True)
    exact = {"o": o, "ht": ht}
    short = noise_scales(baseline_samples(op, RECURRENT_FP32, inputs, dtype, 1, exact=exact), exact)
    loop = noise_scales(baseline_samples(op, RECURRENT_FP32, inputs, dtype, 1), exact)
    u = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8}[dtype]
    # o also carries the readout's K-term fp32 sum: u32 sqrt(K) sum_k |q_k S_kv| at most
    o_abs, _ = reference(op.step, *(x.abs() for x in inputs.tensors()[:3]), inputs.tensors()[3])
    readout = 2.0**-24 * 16**0.5 * (o_abs.square().mean() / o.square().mean()).sqrt().item()
    assert u < short["o"].rel_rms <= u + readout if dtype == torch.float32 else short["o"].rel_rms <= u + readout
    assert short["ht"].rel_rms <= 2.0**-24
    assert loop["o"].rel_rms <= short["o"].rel_rms + 2e-5 and short["o"].rel_rms <= loop["o"].rel_rms + 2e-5
    if dtype == torch.bfloat16:  # there the output rounding dominates both
        assert 0.5 < short["o"].rel_rms / loop["o"].rel_rms < 2


def _recurrent_fp16_scales(config: CaseConfig) -> dict:
    """The fp16 baseline's noise scales of `config` under the recurrent fp32-state arithmetic,
    against its float64 reference (options applied exactly)."""
    from fla_check.references import reference

    op, inputs = get_op(config.op), build_case(config)
    o, ht = reference(op.step, *inputs.tensors(), initial_state=inputs.initial_state, output_final_state=True,
                      prepare=inputs.prepare)
    exact = {"o": o, "ht": ht}
    return noise_scales(baseline_samples(op, RECURRENT_FP32, inputs, torch.float16, 1, exact=exact), exact)


def test_a_gate_computed_in_kernel_carries_fp32_transcendental_error_into_the_state():
    """fla computes the gate -exp(A_log) softplus(a + dt_bias) in fp32 with a GPU's approximate
    exp/log; accumulated over T decays its error reached ht rel-RMSE 1e-5 on an H200 (a false
    alarm at 2.4x before it was modelled). The baseline of such a case carries it; the same case
    without the option keeps the shortcut's fp32 output rounding only."""
    base = dict(op="gated_delta", dtype="float16", B=1, T=32, H=1, K=16, V=16, initial_state=True, seed=5,
                value_ratio=2)
    scales = {gik: _recurrent_fp16_scales(CaseConfig(**base, gate_in_kernel=gik)) for gik in (False, True)}
    assert scales[False]["ht"].rel_rms <= 2.0**-24
    assert scales[True]["ht"].rel_rms > 20 * 2.0**-24


@pytest.mark.parametrize("bound", [None, -5.0])
def test_kda_in_kernel_gate_softplus_or_bounded_carries_fp32_transcendental_error(bound):
    """KDA's gate per key channel (-exp(A_log) softplus(a + dt_bias), or lower_bound * sigmoid(exp(A_log)
    (a + dt_bias))) is computed in fp32 like Gated DeltaNet's: the same model (emulation.
    _computed_in_kernel, absolute scale exp(A_log) per head over the channels, or |lower_bound|)."""
    base = dict(op="kda", dtype="float16", B=1, T=32, H=2, K=16, V=16, initial_state=True, seed=5, gate_norm=0.1)
    scales = {gik: _recurrent_fp16_scales(CaseConfig(**base, gate_in_kernel=gik, lower_bound=bound if gik else None))
              for gik in (False, True)}
    assert scales[False]["ht"].rel_rms <= 2.0**-24
    assert scales[True]["ht"].rel_rms > 20 * 2.0**-24


def test_a_cancelling_readout_is_no_false_alarm_and_a_small_error_still_is_caught():
    """Built-in recurrent GLA, fp32, T=1, K=V=60: q . k cancels, so the readout's 60-term fp32 sum
    errs far above o's own rounding; it scored 2.74 (DIVERGED) before the readout was sampled.
    The same output 0.3% off is still DIVERGED."""
    from fla_check.engine.runner import check_case
    from fla_check.ops import ModeSpec

    cfg = CaseConfig(op="gla", dtype="float32", B=1, T=1, H=2, K=60, V=60, gate_norm=0.20437815428532424,
                     zero_gate_frac=0.1, near_zero_decay=True, packing="varlen", segments=((1,),), seed=4194303)
    clean = get_op("gla").modes["recurrent"]
    kernel = clean.load()

    def off(*args, **kwargs):
        o, ht = kernel(*args, **kwargs)
        return o * 1.003, ht

    wrong = ModeSpec("wrong", "test", off, arithmetic=clean.arithmetic, description="o x1.003")
    r = check_case("gla", ["recurrent", wrong], cfg)
    o = next(c for c in r.modes["recurrent"].outputs if c.name == "o")
    assert r.modes["recurrent"].verdict is Verdict.OK and o.score < 0.5, o
    assert r.modes["test:wrong"].verdict is Verdict.DIVERGED, r.modes["test:wrong"]


def _exact(op, inputs, up):
    from fla_check.references import reference

    if up is not None:
        return gradients.recurrence_outputs(op, inputs, up, reference, torch.float64)
    o, ht = reference(op.step, *inputs.tensors(), initial_state=inputs.initial_state, output_final_state=True)
    return {"o": o, "ht": ht}


@pytest.mark.parametrize("op_name, arith, backward, ratio", [
    ("gated_delta", Arithmetic("chunk", 16), True, 2),  # chunked emulation with autograd, grouped value heads
    ("gated_delta", RECURRENT_FP32, True, 1),  # the emulated recurrent loop (dbeta)
    ("gla", Arithmetic("chunk", 16), False, 1),
    ("gla", RECURRENT_FP32, False, 1),  # the rounded-exact shortcut with the readout's noise
])
def test_grouped_samples_equal_the_ungrouped_ones_bit_for_bit(op_name, arith, backward, ratio):
    from fla_check.verdict.baselines import sample_bytes, sample_groups

    cfg = CaseConfig(op=op_name, dtype="bfloat16", B=2, T=40, H=2, K=16, V=16, initial_state=True, seed=1,
                     value_ratio=ratio)
    op, inputs = get_op(op_name), build_case(cfg)
    up = gradients.upstream(cfg) if backward else None
    exact = _exact(op, inputs, up)
    whole = baseline_samples(op, arith, inputs, torch.bfloat16, 5, up=up, exact=exact)
    one = sample_bytes(inputs, arith, backward, shortcut=not backward and arith is RECURRENT_FP32)
    for size in (1, 5):  # 16 samples as 16 groups, and as 5 + 5 + 5 + 1
        groups = list(sample_groups(op, arith, inputs, torch.bfloat16, 5, up=up, exact=exact, budget=size * one))
        assert [g["o"].shape[0] for g in groups] == ([1] * SAMPLES if size == 1 else [5, 5, 5, 1])
        assert all(torch.equal(whole[n], torch.cat([g[n] for g in groups])) for n in whole)
        assert noise_scales(iter(groups), exact) == noise_scales(whole, exact)


def test_a_readout_given_ahead_is_used_and_refused_for_the_truth():
    """sample_groups takes the readout terms computed ahead (the batched reference's) instead of
    its own loop: a readout scaled up widens o's samples; the per-segment truth refuses one."""
    from fla_check.verdict.baselines import _readout_terms, sample_groups

    cfg = CaseConfig(op="gla", dtype="float32", B=1, T=20, H=2, K=16, V=16, seed=1)
    op, inputs = get_op("gla"), build_case(cfg)
    exact = _exact(op, inputs, None)
    terms = _readout_terms(op, inputs, truth=False)
    own = noise_scales(sample_groups(op, RECURRENT_FP32, inputs, torch.float32, 5, exact=exact), exact)
    given = noise_scales(sample_groups(op, RECURRENT_FP32, inputs, torch.float32, 5, exact=exact, readout=terms), exact)
    wide = noise_scales(sample_groups(op, RECURRENT_FP32, inputs, torch.float32, 5, exact=exact,
                                      readout=1e3 * terms), exact)
    assert given == own and wide["o"].max_abs > 100 * own["o"].max_abs
    with pytest.raises(ValueError, match="truth"):
        next(sample_groups(op, RECURRENT_FP32, inputs, torch.float32, 5, exact=exact, readout=terms, truth=True))


def test_a_group_drawing_its_own_noise_would_differ():
    """What the grouping must not do: a group of samples emulated with its own draws (the
    generator reseeded per group) gives other samples than the same rows of the ungrouped run."""
    from fla_check.verdict.baselines import _emulated_samples

    cfg = CaseConfig(op="gla", dtype="bfloat16", B=1, T=20, H=2, K=16, V=16, seed=1)
    op, inputs, arith = get_op("gla"), build_case(cfg), Arithmetic("chunk", 16)
    whole = _emulated_samples(op, arith, inputs, torch.bfloat16, 5, None, False)
    held = _emulated_samples(op, arith, inputs, torch.bfloat16, 5, None, False, slice(4, 8))
    assert torch.equal(held["o"], whole["o"][4:8])
    naive = _emulated_samples(op, arith, inputs, torch.bfloat16, 5, None, False)["o"][:4]  # rows 0-3's noise
    assert not torch.equal(naive, whole["o"][4:8])


def test_groups_are_sized_by_the_budget():
    from fla_check.verdict.baselines import CPU_BUDGET, group_size, memory_budget, sample_bytes

    assert memory_budget("cpu") == CPU_BUDGET
    assert group_size(100, 10**9) == SAMPLES and group_size(100, 450) == 4 and group_size(100, 50) == 1
    cfg = CaseConfig(op="gated_delta", dtype="bfloat16", B=1, T=128, H=2, K=16, V=16, seed=1)
    inputs = build_case(cfg)
    chunk, rec = Arithmetic("chunk", 64), RECURRENT_FP32
    assert sample_bytes(inputs, chunk, True) > sample_bytes(inputs, chunk, False)
    assert sample_bytes(inputs, rec, True) > sample_bytes(inputs, chunk, True)  # a state per step, not per chunk
    longer = build_case(CaseConfig(op="gated_delta", dtype="bfloat16", B=1, T=256, H=2, K=16, V=16, seed=1))
    ratio = sample_bytes(longer, chunk, False) / sample_bytes(inputs, chunk, False)
    assert 1.9 < ratio < 2  # linear in T, plus a state


def test_a_per_key_gates_estimate_covers_its_largest_temporaries():
    """GLA's chunked emulation forms [BLOCK, BLOCK, K] scores per sub-chunk row: the estimate holds
    four tensors of the largest size one sample's emulation allocates (it held less than one, and
    64 cases at T = 1024 in one batch ran the H200 out of memory)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from fla_check.verdict.baselines import sample_bytes, sample_groups

    class Largest(TorchDispatchMode):
        bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and not func.is_view:
                    Largest.bytes = max(Largest.bytes, t.numel() * t.element_size())
            return out

    cfg = CaseConfig(op="gla", dtype="bfloat16", B=1, T=256, H=2, K=64, V=16, seed=1)
    op, inputs = get_op("gla"), build_case(cfg)
    arith = Arithmetic("chunk", 64)
    exact = _exact(op, inputs, None)
    with Largest():
        next(iter(sample_groups(op, arith, inputs, torch.bfloat16, 1, exact=exact, budget=1)))  # one sample
    assert sample_bytes(inputs, arith, False) >= 4 * Largest.bytes


def _inline_pending_terms(groups, exact, ref):
    """PendingScales.terms as computed before ReferenceTerms (every reduction inline)."""
    from fla_check.verdict.reductions import finite_mask, nonfinite_mask

    worst, terms = {}, []
    for group in groups:
        for name in exact:
            e, x64 = group[name].double(), exact[name].detach().double()
            ok = finite_mask(x64)
            diff = torch.where(ok, e - x64, torch.zeros_like(e)).flatten(1)
            found = [nonfinite_mask(diff).sum(), diff.abs().max(), diff.square().sum(1).div(ok.sum()).sqrt().max()]
            worst[name] = found if name not in worst else [worst[name][0] + found[0],
                                                           torch.maximum(worst[name][1], found[1]),
                                                           torch.maximum(worst[name][2], found[2])]
    for name in exact:
        r = ref[name].detach().double()
        terms += [finite_mask(exact[name]).sum(), *worst[name], finite_mask(r).sum(),
                  r.contiguous().square().mean().sqrt()]
    return terms


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pending_scales_with_shared_reference_terms_keep_the_inline_bits(seed):
    """PendingScales with a ReferenceTerms shared across calls (as the runner's judge does) gives
    the bits of the inline reductions, for several groups, a non-finite exact entry and a
    reference other than `exact`; the second call reuses the first call's reductions."""
    from fla_check.verdict.baselines import PendingScales
    from fla_check.verdict.reductions import ReferenceTerms

    gen = torch.Generator().manual_seed(seed)
    exact = {n: torch.randn(2, 6, 3, generator=gen, dtype=torch.float64) for n in ("o", "ht")}
    exact["o"][0, seed, 1] = math.inf if seed else -0.0
    ref = {n: x.transpose(0, 1) * 1.5 for n, x in exact.items()} if seed == 2 else exact  # another reference
    groups = [{n: x[None] + 1e-3 * torch.randn((4,) + x.shape, generator=gen, dtype=torch.float64)
               for n, x in exact.items()} for _ in range(3)]
    want = _inline_pending_terms(groups, exact, ref)
    shared = ReferenceTerms()
    first = PendingScales(iter(groups), exact, ref, refs=shared).terms
    second = PendingScales(iter(groups), exact, ref, refs=shared).terms
    for got in (first, second, PendingScales(iter(groups), exact, ref).terms):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and torch.equal(a.signbit(), b.signbit()) and torch.equal(
                a.reshape(-1).view(torch.int64), b.reshape(-1).view(torch.int64))
    assert second[4] is first[4] and second[5] is first[5]


def test_a_varlen_case_is_sized_by_its_padded_pieces():
    """The emulation runs uneven sequences zero-padded to the longest: their memory estimate
    counts those padded tokens (3 x 60 here, not the 62 the case holds)."""
    from fla_check.verdict.baselines import sample_bytes

    arith = Arithmetic("chunk", 16)
    even = build_case(CaseConfig(op="gla", dtype="float32", B=1, T=180, H=1, K=16, V=16, packing="varlen",
                                 segments=((60, 60, 60),), seed=1))
    uneven = build_case(CaseConfig(op="gla", dtype="float32", B=1, T=62, H=1, K=16, V=16, packing="varlen",
                                   segments=((1, 1, 60),), seed=1))
    assert sample_bytes(uneven, arith, False) == sample_bytes(even, arith, False)
    assert sample_bytes(uneven, arith, False, shortcut=True) < sample_bytes(even, arith, False, shortcut=True)


@pytest.mark.parametrize("op_name, arith", [("gla", Arithmetic("chunk", 16)), ("gated_delta", Arithmetic("chunk", 32)),
                                            ("kda", Arithmetic("chunk", 16)), ("simple_gla", Arithmetic("chunk", 16))])
def test_an_emulated_batch_gives_each_case_its_alone_samples_bit_for_bit(op_name, arith, per_case):
    from fla_check.verdict.baselines import emulated_batch

    op = get_op(op_name)
    cases = [build_case(CaseConfig(op=op_name, dtype="bfloat16", B=2, T=40, H=2, K=16, V=16, initial_state=True,
                                   seed=seed)) for seed in (1, 2, 3)]
    got = per_case(emulated_batch(op, arith, cases, torch.bfloat16, [11, 12, 13]), 3)
    for inputs, seed, samples in zip(cases, (11, 12, 13), got):
        alone = baseline_samples(op, arith, inputs, torch.bfloat16, seed)
        assert samples.keys() == alone.keys() and all(torch.equal(alone[n], samples[n]) for n in alone)
    assert not torch.equal(got[0]["o"], got[1]["o"])


def test_batched_baselines_refuse_cases_of_different_keys():
    from fla_check.verdict.baselines import baseline_key, batched_deviations, emulated_batch
    from fla_check.verdict.emulation import Rounding

    op, arith = get_op("gla"), Arithmetic("chunk", 16)
    a, b = (build_case(CaseConfig(op="gla", dtype="float32", B=1, T=T, H=2, K=16, V=16, seed=1)) for T in (20, 24))
    exact = [_exact(op, x, None) for x in (a, b)]
    assert baseline_key(arith, a, torch.float32) != baseline_key(arith, b, torch.float32)
    with pytest.raises(ValueError, match="one baseline_key"):
        batched_deviations(op, arith, [a, b], torch.float32, [1, 2], exact)
    with pytest.raises(ValueError, match="one baseline_key"):
        batched_deviations(op, RECURRENT_FP32, [a, a], torch.float32, [1], exact)  # a seed each
    with pytest.raises(ValueError, match="one baseline_key"):
        emulated_batch(op, RECURRENT_FP32, [a, a], torch.float32, [1, 2])  # rounded, not emulated
    with pytest.raises(ValueError, match="no `rows`"):
        Rounding(arith, torch.float32, [1, 2], torch.device("cpu"), rows=slice(0, 4))
    with pytest.raises(ValueError, match="does not split"):
        Rounding(arith, torch.float32, [1, 2], torch.device("cpu"))._draw((3, 4))


def test_a_small_emulation_does_not_ask_the_device_for_its_free_memory(monkeypatch):
    from fla_check.verdict import baselines

    asked = []
    monkeypatch.setattr(baselines, "memory_budget", lambda device: asked.append(device) or 2**40)
    cfg = CaseConfig(op="gla", dtype="float32", B=1, T=20, H=2, K=16, V=16, seed=1)
    op, inputs, arith = get_op("gla"), build_case(cfg), Arithmetic("chunk", 16)
    small = list(baselines.sample_groups(op, arith, inputs, torch.float32, 5))
    assert not asked and len(small) == 1
    monkeypatch.setattr(baselines, "SMALL_EMULATION", 0)  # every emulation "large": the budget decides
    assert len(list(baselines.sample_groups(op, arith, inputs, torch.float32, 5))) == 1 and len(asked) == 1


@pytest.mark.parametrize("op_name, arith, ahead", [
    ("gla", Arithmetic("chunk", 16), False),  # emulated
    ("gla", RECURRENT_FP32, False),  # exact answers rounded, the readout computed here
    ("gla", RECURRENT_FP32, True),  # ... the readout computed ahead (the batched reference's)
    ("gated_delta", RECURRENT_FP32, False),  # rounded, no readout (the delta rule)
])
def test_batched_deviations_reduce_each_case_as_its_own_baseline_does(op_name, arith, ahead):
    """Per case, the batch's reduction equals PendingScales on the samples the case gets alone, a
    reference with a non-finite entry (masked out) included."""
    from fla_check.verdict.baselines import PendingScales, _readout_terms, batched_deviations
    from fla_check.verdict.host import to_host

    op = get_op(op_name)
    cases = [build_case(CaseConfig(op=op_name, dtype="bfloat16", B=1, T=24, H=2, K=16, V=16, seed=s))
             for s in (1, 2, 3)]
    exact = [_exact(op, x, None) for x in cases]
    exact[1]["o"] = exact[1]["o"].clone()
    exact[1]["o"][0, 3, 0, 0] = math.inf
    seeds = [7, 8, 9]
    readouts = [_readout_terms(op, x, truth=False) for x in cases] if ahead else None
    worst = batched_deviations(op, arith, cases, torch.bfloat16, seeds, exact, readouts)
    for x, seed, answer, found in zip(cases, seeds, exact, worst):
        alone = PendingScales(baseline_samples(op, arith, x, torch.bfloat16, seed, exact=answer), answer)
        ahead_of = PendingScales(None, answer, worst=found)
        assert ahead_of.outputs == alone.outputs == ["o", "ht"]
        want, got = alone.finish(to_host(alone.terms)), ahead_of.finish(to_host(ahead_of.terms))
        for name in want:
            assert math.isclose(got[name].max_abs, want[name].max_abs, rel_tol=1e-12), name
            assert math.isclose(got[name].rel_rms, want[name].rel_rms, rel_tol=1e-12), name
    assert len({w["o"][1].item() for w in worst}) == 3


def test_cases_are_sampled_as_the_concatenation_of_their_copies():
    from fla_check.verdict.baselines import _sampled, _sampled_cases

    xs = [torch.randn(3, 5, dtype=torch.bfloat16) for _ in range(3)]
    got = _sampled_cases(xs)
    assert got.dtype == torch.float64 and got.is_contiguous()
    assert torch.equal(got, torch.cat([_sampled(x) for x in xs]))
