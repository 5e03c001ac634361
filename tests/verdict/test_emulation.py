"""The Monte Carlo emulation: exact without noise, noise where the declaration puts it, seeded."""
import math

import pytest
import torch

from fla_check.cases import CaseConfig, build_case
from fla_check.ops import get_op
from fla_check.references import reference
from fla_check.verdict import emulation
from fla_check.verdict.arithmetic import RECURRENT_FP32, Arithmetic
from fla_check.verdict.emulation import SAMPLES, Rounding, emulate, emulate_ut

FLA_LIKE = Arithmetic("chunk", 64, store="input", dot="tf32", inverse="blocked")
EXACT_CHUNK = Arithmetic("chunk", 64, store="fp32", dot="ieee", inverse="substitution")


def _samples(x):
    return None if x is None else x.double()[None].expand((SAMPLES,) + tuple(x.shape))


def _run(cfg: CaseConfig, arith: Arithmetic, truth: bool = False, seed: int = 0):
    inputs = build_case(cfg)
    op = get_op(cfg.op)
    split = dict(reset_mask=inputs.reset_mask) if truth else {}
    o_ref, ht_ref = reference(op.step, *inputs.tensors(), initial_state=inputs.initial_state,
                              output_final_state=True, cu_seqlens=inputs.cu_seqlens, **split)
    o, ht = emulate(cfg.op, op.step, arith, *(_samples(x) for x in inputs.tensors()), _samples(inputs.initial_state),
                    inputs.cu_seqlens, dtype=cfg.torch_dtype, seed=seed,
                    reset_mask=inputs.reset_mask if truth else None)
    return o, ht, o_ref, ht_ref


def _rel(x, ref):
    return ((x - ref).square().mean().sqrt() / ref.square().mean().sqrt()).item()


@pytest.fixture
def no_noise(monkeypatch):
    """Every rounding point rounds by 0: the emulation must be the exact chunked algorithm."""
    monkeypatch.setattr(emulation.Rounding, "_noise", lambda self, x, lo, hi: x)
    monkeypatch.setattr(emulation.Rounding, "dot",
                        lambda self, a, b, scale=1.0, add=None: a @ b if add is None else (a @ b) * scale + add)
    monkeypatch.setattr(emulation.Rounding, "accumulated", lambda self, ab, bound, n: ab)


CORNERS = [
    dict(op="gla", T=150, K=16, V=24, initial_state=True, gate_norm=0.1),
    dict(op="gla", T=70, K=20, V=16, packing="mask", segments=((5, 1, 40, 24),), mask_fill=-1e4),
    dict(op="gla", T=41, K=16, V=16, packing="varlen", segments=((0, 1, 17, 0, 23),), initial_state=True),
    dict(op="delta", T=130, K=16, V=16, beta_max=2.0, initial_state=True),
    dict(op="delta", T=41, K=16, V=8, packing="varlen", segments=((20, 0, 21),)),
    dict(op="gated_delta", T=100, K=16, V=16, beta_max=2.0, gate_norm=0.01, initial_state=True),
    dict(op="gated_delta", T=66, K=16, V=16, packing="mask", segments=((3, 30, 33),), mask_fill=-20.0),
    dict(op="simple_gla", T=150, K=16, V=24, initial_state=True, gate_norm=0.1),
    dict(op="simple_gla", T=70, K=20, V=16, packing="mask", segments=((5, 1, 40, 24),), mask_fill=-1e4),
    dict(op="simple_gla", T=41, K=16, V=16, packing="varlen", segments=((0, 1, 17, 0, 23),), initial_state=True),
    dict(op="kda", T=100, K=16, V=16, beta_max=2.0, gate_norm=0.01, initial_state=True),
    dict(op="kda", T=66, K=20, V=16, packing="mask", segments=((3, 30, 33),), mask_fill=-20.0),
    dict(op="kda", T=41, K=16, V=8, packing="varlen", segments=((20, 0, 21),), initial_state=True),
]


@pytest.mark.parametrize("corner", CORNERS, ids=lambda c: f"{c['op']}-{c['T']}")
@pytest.mark.parametrize("arith", [RECURRENT_FP32, FLA_LIKE, Arithmetic("chunk", 16, inverse="substitution")],
                         ids=["recurrent", "chunk64-blocked", "chunk16"])
def test_without_noise_the_emulation_is_the_reference(no_noise, corner, arith):
    cfg = CaseConfig(dtype="float32", B=1 if corner.get("packing") in ("varlen", "mask") else 2, H=2, seed=4,
                     **{k: v for k, v in corner.items()})
    o, ht, o_ref, ht_ref = _run(cfg, arith)
    assert torch.allclose(o[0], o_ref, rtol=1e-9, atol=1e-10)
    assert torch.allclose(ht[0], ht_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("op", ["gla", "gated_delta"])  # the recurrent loop with a plain and a paired step
@pytest.mark.parametrize("arith", [FLA_LIKE, RECURRENT_FP32], ids=["chunk64-blocked", "recurrent"])
def test_truth_runs_each_reset_segment_on_its_own(no_noise, arith, op):
    cfg = CaseConfig(op=op, dtype="float32", B=3, T=70, H=1, K=16, V=16, packing="mask",
                     segments=((5, 1, 40, 24), (70,), (30, 40)), mask_fill=-1.0, initial_state=True, seed=2)
    o, ht, o_ref, ht_ref = _run(cfg, arith, truth=True)
    assert torch.allclose(o[0], o_ref, rtol=1e-9, atol=1e-10) and torch.allclose(ht[0], ht_ref, rtol=1e-9)
    o_lit, *_ = _run(cfg, arith)
    assert _rel(o_lit[0], o_ref) > 1e-3  # a -1 fill leaks: the literal problem is another one


@pytest.mark.parametrize("op, sequence", [("gla", "_gla_sequence"), ("gated_delta", "_delta_sequence")])
@pytest.mark.parametrize("arith", [RECURRENT_FP32, Arithmetic("chunk", 16)], ids=["recurrent", "chunk16"])
def test_one_run_covers_every_row_and_sequence(monkeypatch, op, sequence, arith):
    """One emulation run for all samples x pieces (not one per batch row or varlen sequence):
    a varlen case of 3 sequences and a 3-row case run 3 rows per sample, as long as the longest."""
    calls = []
    target = "run_rows" if arith is RECURRENT_FP32 else sequence
    real = getattr(emulation, target)
    shape_at = 1 if target == "run_rows" else 3  # the step function / (rnd, C, arith) come first
    monkeypatch.setattr(emulation, target, lambda *a, **kw: calls.append(tuple(a[shape_at].shape)) or real(*a, **kw))
    for extra in (dict(B=1, packing="varlen", segments=((9, 0, 14),)), dict(B=3)):
        cfg = CaseConfig(op=op, dtype="float32", T=23 if extra["B"] == 1 else 14, H=1, K=16, V=16, seed=3, **extra)
        _run(cfg, arith)
    assert calls == [(SAMPLES * 3, 14, 1, 16)] * 2


@pytest.mark.parametrize("dtype, arith, lo, hi", [
    ("float32", EXACT_CHUNK, 1e-8, 2e-5),  # fp32 everywhere: fp32-level noise
    ("float32", FLA_LIKE, 3e-4, 2e-2),  # TF32 operands
    ("bfloat16", RECURRENT_FP32, 1e-3, 5e-3),  # only o's rounding to bf16
    ("bfloat16", FLA_LIKE, 3e-3, 3e-2),  # stores and operands in bf16 too
])
def test_noise_size_follows_the_declaration(dtype, arith, lo, hi):
    cfg = CaseConfig(op="gated_delta", dtype=dtype, B=1, T=100, H=2, K=32, V=32, beta_max=2.0, seed=3)
    o, ht, o_ref, ht_ref = _run(cfg, arith)
    worst = max(_rel(o[s], o_ref) for s in range(SAMPLES))
    assert lo < worst < hi, worst


def test_kda_chunk_noise_is_fp32_level_and_per_channel():
    """The per-channel gated UT transform: fp32 declaration -> fp32-level noise; a 2% error in one
    key channel's gate is far outside it."""
    cfg = CaseConfig(op="kda", dtype="float32", B=1, T=100, H=2, K=32, V=32, beta_max=2.0, seed=3)
    o, _, o_ref, _ = _run(cfg, EXACT_CHUNK)
    worst = max(_rel(o[s], o_ref) for s in range(SAMPLES))
    assert 1e-8 < worst < 2e-5, worst
    x = build_case(cfg)
    g = x.g.clone()
    g[..., 0] *= 1.02
    o_bad, _ = reference(get_op("kda").step, x.q, x.k, x.v, g, x.beta)
    assert _rel(o_bad.double(), o_ref) > 20 * worst


def test_recurrent_arithmetic_keeps_the_final_state_at_fp32():
    cfg = CaseConfig(op="gla", dtype="bfloat16", B=1, T=60, H=1, K=16, V=16, seed=1)
    _, ht, _, ht_ref = _run(cfg, RECURRENT_FP32)
    assert max(_rel(ht[s], ht_ref) for s in range(SAMPLES)) < 1e-5
    _, ht16, _, _ = _run(cfg, Arithmetic(state="input"))
    assert max(_rel(ht16[s], ht_ref) for s in range(SAMPLES)) > 1e-3


def test_a_large_fill_is_sampled_up_to_the_clamp_only():
    """A -1e4 fill costs a chunk kernel eps32*|G| in the exponent (sampled); -0.1*finfo.max is
    clamped to -GATE_CLAMP, so the emulation's error stays small and the kernel's (~1) is flagged."""
    base = dict(op="gla", dtype="float32", B=1, T=64, H=1, K=16, V=16, packing="mask",
                segments=((10, 54),), seed=5, gate_norm=10.0)
    errs = {}
    for fill in (-20.0, -1e4, "-0.1max"):
        o, _, o_ref, _ = _run(CaseConfig(mask_fill=fill, **base), EXACT_CHUNK)
        errs[fill] = max(_rel(o[s], o_ref) for s in range(SAMPLES))
    assert errs[-20.0] < 1e-5 < errs[-1e4] < 1e-2
    assert errs["-0.1max"] < 0.05
    assert emulation.GATE_CLAMP * emulation.U32 < 0.01


def test_recurrent_modes_get_no_gate_cumsum_noise():
    cfg = CaseConfig(op="gla", dtype="float32", B=1, T=64, H=1, K=16, V=16, packing="mask",
                     segments=((10, 54),), seed=5, mask_fill=-1e4)
    o, _, o_ref, _ = _run(cfg, RECURRENT_FP32)
    assert max(_rel(o[s], o_ref) for s in range(SAMPLES)) < 1e-6


def test_samples_are_seeded():
    cfg = CaseConfig(op="delta", dtype="float16", B=1, T=40, H=1, K=16, V=16, seed=1)
    a, *_ = _run(cfg, FLA_LIKE, seed=7)
    b, *_ = _run(cfg, FLA_LIKE, seed=7)
    c, *_ = _run(cfg, FLA_LIKE, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # the samples differ from each other


@pytest.mark.parametrize("n", [16, 32, 64])
def test_inverses_without_noise_are_exact(no_noise, n):
    gen = torch.Generator().manual_seed(n)
    k = torch.nn.functional.normalize(torch.randn(2, n, 8, generator=gen, dtype=torch.float64), dim=-1)
    A = (torch.rand(2, n, 1, generator=gen, dtype=torch.float64) * 2 * (k @ k.transpose(-1, -2))).tril(-1)
    want = torch.linalg.inv(torch.eye(n, dtype=torch.float64) + A)
    rnd = emulation.Rounding(FLA_LIKE, torch.float32, 0, A.device)
    for arith in (FLA_LIKE, EXACT_CHUNK):
        assert torch.allclose(emulation._inverse(rnd, arith, A), want, atol=1e-9)


def test_emulate_ut_matches_the_closed_form(no_noise):
    gen = torch.Generator().manual_seed(0)
    S, H, n, K, V = SAMPLES, 1, 32, 16, 8
    k = torch.nn.functional.normalize(torch.randn(H, n, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(H, n, V, generator=gen, dtype=torch.float64)
    beta = torch.rand(H, n, generator=gen, dtype=torch.float64)
    g = -torch.rand(H, n, generator=gen, dtype=torch.float64) * 0.1
    out = emulate_ut(FLA_LIKE, *(x[None].expand((S,) + x.shape) for x in (k, v, beta, g)), dtype=torch.float32,
                     seed=0)
    G = g.cumsum(-1)
    L = (beta[..., None] * (k @ k.transpose(-1, -2)) * (G[..., :, None] - G[..., None, :]).exp()).tril(-1)
    A_inv = torch.linalg.inv(torch.eye(n, dtype=torch.float64) + L)
    assert torch.allclose(out["A_inv"][0], A_inv, atol=1e-10)
    assert torch.allclose(out["w"][0], A_inv @ (k * (beta * G.exp())[..., None]), atol=1e-10)
    assert torch.allclose(out["u"][0], A_inv @ (v * beta[..., None]), atol=1e-10)


def test_gradients_flow_per_sample():
    cfg = CaseConfig(op="gated_delta", dtype="float32", B=1, T=20, H=1, K=16, V=16, seed=2)
    inputs = build_case(cfg)
    q = inputs.q.double()[None].repeat(SAMPLES, 1, 1, 1, 1).requires_grad_()
    rest = [_samples(x) for x in inputs.tensors()[1:]]
    o, ht = emulate("gated_delta", get_op("gated_delta").step, FLA_LIKE, q, *rest, None, None,
                    dtype=torch.float32, seed=0)
    (dq,) = torch.autograd.grad(o.sum(), [q])
    assert dq.shape == q.shape and not torch.equal(dq[0], dq[1]) and math.isfinite(dq.abs().max().item())


def test_stores_and_outputs_sample_the_subnormal_spacing():
    """Rounding to a format errs by max(u |x|, tiny/2): zero stays within half fp16's subnormal
    spacing, and fp32 stores add nothing visible."""
    zeros = torch.zeros(SAMPLES, 1000, dtype=torch.float64)
    half = emulation.Rounding(FLA_LIKE, torch.float16, 0, zeros.device)
    assert 2.0**-26 < half.store(zeros).abs().max() <= 2.0**-25
    assert half.output(zeros).abs().max() <= 2.0**-25
    exact = emulation.Rounding(EXACT_CHUNK, torch.float16, 0, zeros.device)
    assert exact.store(zeros).abs().max() <= 2.0**-150


@pytest.mark.parametrize("algorithm", ["recurrent", "chunk"])
def test_the_emulation_makes_no_host_transfer_per_step(monkeypatch, algorithm):
    """The emulated baseline's host reads do not grow with T or the chunk count (a GPU
    stream sync each): the noise is drawn on the case's device, the reset mask read once."""
    from host_spy import host_transfers
    from fla_check.cases import CaseConfig, build_case
    from fla_check.ops import get_op
    from fla_check.verdict.arithmetic import Arithmetic
    from fla_check.verdict.baselines import baseline_samples

    arith = Arithmetic(algorithm=algorithm, chunk=16, state="input") if algorithm == "recurrent" else \
        Arithmetic(algorithm="chunk", chunk=16)
    counts = []
    for T in (20, 70):
        c = CaseConfig(op="gla", dtype="float16", B=1, T=T, H=1, K=4, V=4, packing="mask",
                       segments=((T // 2, T - T // 2),), mask_fill=-20.0)
        x = build_case(c, "cpu")
        calls = host_transfers(monkeypatch)
        baseline_samples(get_op("gla"), arith, x, torch.float16, 1, truth=True)  # per-segment: reads the mask
        counts.append(len(calls))
        monkeypatch.undo()
    assert counts[0] == counts[1] <= 5  # the mask read for sizing the groups (padded pieces) and per group


def test_rounding_of_some_samples_draws_the_rows_of_the_full_draw():
    """A group's noise is the ungrouped run's rows (the CPU draws row by row: torch's CPU
    generator fills a tensor serially, so this also guards that assumption across torch versions)."""
    cpu = torch.device("cpu")
    arith = Arithmetic("chunk", 16)
    full = Rounding(arith, torch.bfloat16, 7, cpu)
    part = Rounding(arith, torch.bfloat16, 7, cpu, slice(3, 9))
    shifted = Rounding(arith, torch.bfloat16, 7, cpu, slice(4, 10))  # a group off by one row
    for shape in [(3, 5), (2, 4, 3)]:  # successive draws stay aligned
        a, b, c = full._uniform((SAMPLES,) + shape), part._uniform((6,) + shape), shifted._uniform((6,) + shape)
        assert torch.equal(a[3:9], b) and torch.equal(a[4:10], c) and not torch.equal(b, c)


@pytest.fixture
def ahead(monkeypatch):
    """The GPU's noise path (blocks drawn ahead, emulation._Stream) on the CPU, with small blocks
    so that an emulation crosses several of them."""
    from fla_check.verdict import emulation

    monkeypatch.setattr(emulation, "drawn_ahead", lambda device: True)
    monkeypatch.setattr(emulation, "NOISE_BLOCK", 5000)
    monkeypatch.setattr(emulation, "BLOCK_AHEAD", 3)


def test_noise_drawn_ahead_keeps_a_group_the_rows_of_the_full_draw(ahead):
    cpu, arith = torch.device("cpu"), Arithmetic("chunk", 16)
    full, part = Rounding(arith, torch.bfloat16, 7, cpu), Rounding(arith, torch.bfloat16, 7, cpu, slice(3, 9))
    for shape in [(3, 5), (2, 400, 3), (1, 7)]:  # the second draw starts a block of its own size
        a, b = full._uniform((SAMPLES,) + shape), part._uniform((6,) + shape)
        assert torch.equal(a[3:9], b)


def test_noise_drawn_ahead_is_one_launch_per_block_and_the_same_alone_and_in_a_batch(ahead, monkeypatch, per_case):
    from fla_check.cases import CaseConfig, build_case
    from fla_check.ops import get_op
    from fla_check.verdict import emulation
    from fla_check.verdict.baselines import baseline_samples, emulated_batch

    draws = []
    real = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: draws.append(1) or real(*a, **k))
    monkeypatch.setattr(emulation, "NOISE_BLOCK", 200_000)
    for op_name in ("gla", "gated_delta"):
        op, arith = get_op(op_name), Arithmetic("chunk", 16)
        cases = [build_case(CaseConfig(op=op_name, dtype="bfloat16", B=1, T=40, H=2, K=16, V=16, seed=s)) for s in (1, 2)]
        draws.clear()
        alone = [baseline_samples(op, arith, x, torch.bfloat16, seed) for x, seed in zip(cases, (5, 6))]
        blocks = len(draws) / 2
        with monkeypatch.context() as plain:  # a launch per draw point
            plain.setattr(emulation, "drawn_ahead", lambda device: False)
            draws.clear()
            baseline_samples(op, arith, cases[0], torch.bfloat16, 5)
        got = per_case(emulated_batch(op, arith, cases, torch.bfloat16, [5, 6]), 2)
        for a, b in zip(alone, got):
            assert all(torch.equal(a[n], b[n]) for n in a)
        assert not torch.equal(got[0]["o"], got[1]["o"])
        assert 1 < blocks <= len(draws) / 3, (blocks, len(draws))  # several blocks, far fewer than draw points


@pytest.mark.parametrize("fill", [None, -1e4])
def test_diagonal_scores_are_exact_as_a_matmul_and_elementwise(fill):
    """GLA's diagonal sub-chunk scores sum_k q_ik k_jk exp(G_ik - G_jk), j <= i: as one matmul of
    factors split at the sub-chunk's first row when no factor can overflow (the largest tensor it
    makes is the inputs' size), elementwise where a fill puts exp(G_r - G_j) out of range (a -1e4
    fill: there the split would give inf * 0). Both equal the direct sum to float64 rounding."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from fla_check.verdict.emulation import _diagonal_scores

    gen = torch.Generator().manual_seed(3)
    shape = (2, 3, 4, 16, 32)  # [..., NS, BC, K]
    qs, ks = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    g = -3 * torch.rand(shape, generator=gen, dtype=torch.float64)  # log-gates <= 0
    if fill is not None:
        g[0, 1, 2, 5, :] = fill
    Gs = g.cumsum(-2)
    Gr = Gs[..., :1, :]
    want = torch.zeros(shape[:-1] + (16,), dtype=torch.float64)
    for i in range(16):
        for j in range(i + 1):
            want[..., i, j] = (qs[..., i, :] * ks[..., j, :] * (Gs[..., i, :] - Gs[..., j, :]).exp()).sum(-1)

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                Largest.numel = max(Largest.numel, out.numel())
            return out

    with Largest():
        got = _diagonal_scores(qs, ks, Gs, Gr, qs * (Gs - Gr).exp())
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12 * want.abs().max().item())
    assert (Largest.numel <= qs.numel()) == (fill is None)  # the elementwise form makes [BC, BC, K] per row
