"""fla_check.verdict.scores_kernel: GLA's intra-chunk scores with their accumulation noise in one Triton launch
(the GPU's path; here under the interpreter) compute what _gla_scores' torch ops with the fused noise compute,
draw for draw, in the forms they take (64- and 16-row chunks, key widths that are not powers of two, extreme
gates whose diagonal blocks are summed channel by channel, several cases, a group of samples)."""
import pytest
import torch
from device import DEVICE
from fused_noise import fused_rounding, past_shared_memory, torch_path

from fla_check.verdict import emulation
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.scores_kernel import scores

R, NT, H = 4, 2, 2


def _inputs(C: int, K: int, seed: int = 0, fill: float = 0.0):
    """q, k, and chunk-local cumulative log-gates G [R,NT,H,C,K]; `fill` a log-gate at one row (a mask fill)."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(R, NT, H, C, K, dtype=torch.float64, generator=gen) for _ in range(2))
    g = -torch.rand(R, NT, H, C, K, dtype=torch.float64, generator=gen)
    g[:, :, :, C // 2 + 3, ::3] = fill or g[:, :, :, C // 2 + 3, ::3]
    return q.to(DEVICE), k.to(DEVICE), g.cumsum(3).to(DEVICE)


def _rounding(seeds, rows=None):
    return fused_rounding(Arithmetic("chunk", 64, store="input"), torch.float16, seeds, rows, draws=5)


def _torch_path(rnd, *args):
    return torch_path(rnd, "fused_scores", emulation._gla_scores, *args)


def _exact(q, k, G):
    """The scores without noise: the torch path with an accumulation that adds nothing."""
    rnd = _rounding([1])
    rnd.accumulated = lambda ab, bound, n: ab
    return _torch_path(rnd, q, k, G)


@pytest.mark.parametrize("C,K,fill", [(64, 64, 0.0), (64, 60, 0.0), (16, 8, 0.0), (32, 20, -1e4), (64, 64, -1e4)])
def test_one_launch_computes_what_the_torch_ops_do(C, K, fill):
    q, k, G = _inputs(C, K, fill=fill)
    fused_rnd, torch_rnd = _rounding([3, 2**62 + 5]), _rounding([3, 2**62 + 5])
    got = emulation._gla_scores(fused_rnd, q, k, G)
    want = _torch_path(torch_rnd, q, k, G)
    assert fused_rnd.draws == torch_rnd.draws == 6  # one draw, as the torch path's: the draws after it agree too
    assert got.shape == (R, NT, H, C, C)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(got.triu(1), torch.zeros_like(got))  # causal: nothing above the diagonal, exactly
    exact = _exact(q, k, G)
    noise = got - exact
    if C > 16:  # the off-diagonal blocks carry their noise; the diagonal ones are exact
        assert noise.abs().amax() > 0
    bc = 16
    diagonal = torch.block_diag(*[torch.ones(bc, bc, dtype=torch.bool)] * (C // bc)).to(DEVICE)
    torch.testing.assert_close(got[..., diagonal], exact[..., diagonal], rtol=1e-12, atol=1e-12)


def test_a_case_gets_the_same_scores_alone_in_a_batch_and_as_a_group_of_its_samples():
    q, k, G = _inputs(32, 16, seed=1)
    seeds = [11, 12]
    both = emulation._gla_scores(_rounding(seeds), q, k, G)
    half = R // 2
    for c, seed in enumerate(seeds):
        rows = slice(c * half, (c + 1) * half)
        assert torch.equal(emulation._gla_scores(_rounding([seed]), q[rows], k[rows], G[rows]), both[rows])
    # a group of samples: emulation.SAMPLES rows drawn, rows 5 and 6 held, gets those rows of the full draw
    full = [x[:1].expand((emulation.SAMPLES,) + x.shape[1:]).contiguous() for x in (q, k, G)]
    whole = emulation._gla_scores(_rounding([11]), *full)
    group = emulation._gla_scores(_rounding([11], rows=slice(5, 7)), *(x[5:7] for x in full))
    assert torch.equal(group, whole[5:7])
    assert not torch.equal(whole[5], whole[6])  # the samples differ in their noise only


def test_gradients_the_cpu_and_partial_sub_chunks_keep_the_torch_ops():
    q, k, G = _inputs(64, 16)
    rnd = _rounding([3])
    assert rnd.fused_scores(q.clone().requires_grad_(), k, G) is None  # autograd differentiates it
    with torch.no_grad():
        assert rnd.fused_scores(q.clone().requires_grad_(), k, G) is not None
    q8, k8, G8 = _inputs(8, 16)
    assert rnd.fused_scores(q8, k8, G8) is None  # 8-row chunks: no whole 16-row sub-chunk
    cpu = emulation.Rounding(Arithmetic("chunk", 64), torch.float32, 3, torch.device("cpu"))
    assert cpu.fused_scores(q.cpu(), k.cpu(), G.cpu()) is None  # the goldens' stream


def test_bad_shapes_are_refused():
    q, k, G = _inputs(64, 16)
    seeds = torch.tensor([1, 2, 3], dtype=torch.int64, device=DEVICE)
    with pytest.raises(ValueError, match="do not split"):
        scores(q, k, G, seeds, 1, 0, 300.0)
    with pytest.raises(ValueError, match="sub-chunks"):
        scores(q[..., :8, :], k[..., :8, :], G[..., :8, :], seeds[:1], 1, 0, 300.0)
    with pytest.raises(ValueError, match="32-bit offsets"):
        scores(q, k, G, seeds[:1], 1, 2**31 - 10, 300.0)


def test_a_launch_past_shared_memory_falls_back_to_the_torch_ops(monkeypatch):
    q, k, G = _inputs(32, 16)
    want = _torch_path(_rounding([3]), q, k, G)
    monkeypatch.setattr("fla_check.verdict.scores_kernel.scores", past_shared_memory)
    rnd = _rounding([3])
    assert torch.equal(emulation._gla_scores(rnd, q, k, G), want)
    assert rnd.draws == 6  # the torch path's one draw, none lost to the failed launch


@pytest.mark.parametrize("min_chunks,launched", [(NT, True), (NT + 1, False)])
def test_the_kernel_takes_cases_of_at_least_the_minimum_chunks(monkeypatch, min_chunks, launched):
    q, k, G = _inputs(32, 16)
    want = _torch_path(_rounding([3]), q, k, G)
    calls = []
    monkeypatch.setattr("fla_check.verdict.scores_kernel.scores", lambda *a: calls.append(1) or scores(*a))
    rnd = _rounding([3])
    rnd.min_chunks = min_chunks
    torch.testing.assert_close(emulation._gla_scores(rnd, q, k, G), want, rtol=1e-12, atol=1e-13)
    assert bool(calls) == launched
