"""fla_check.verdict.dot_kernel: a batched float64 dot with its accumulation noise in one Triton launch (the GPU's
path; here under the interpreter) computes what Rounding.dot's torch ops with the fused noise compute, draw for
draw, for the operands the chunked emulation gives it (transposed views, widths that are not powers of two,
several cases, a group of samples), and only on cases of at least the minimum chunks."""
import pytest
import torch
from device import DEVICE
from fused_noise import fused_rounding, past_shared_memory, torch_path

from fla_check.verdict import emulation
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.dot_kernel import noisy_dot

R, NT, H = 4, 3, 2


def _operands(m: int, n: int, p: int, seed: int = 0, transposed: bool = False):
    """a [R,NT,H,m,n] and b [R,NT,H,n,p] (b a transposed view when `transposed`)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(R, NT, H, m, n, dtype=torch.float64, generator=gen)
    b = torch.randn(R, NT, H, p, n, dtype=torch.float64, generator=gen).transpose(-1, -2) if transposed else \
        torch.randn(R, NT, H, n, p, dtype=torch.float64, generator=gen)
    return a.to(DEVICE), b.to(DEVICE)


def _rounding(seeds, rows=None):
    return fused_rounding(Arithmetic("chunk", 64, store="input"), torch.float16, seeds, rows, draws=5)


def _torch_dot(rnd, a, b):
    return torch_path(rnd, "fused_dot", emulation.Rounding.dot, a, b)


@pytest.mark.parametrize("m,n,p,transposed", [(16, 64, 64, False), (64, 12, 64, True), (64, 64, 12, False),
                                              (20, 33, 70, True)])
def test_one_launch_computes_what_the_torch_ops_do(m, n, p, transposed):
    a, b = _operands(m, n, p, transposed=transposed)
    seeds = [3, 2**62 + 5]  # two cases of two rows each
    fused_rnd, torch_rnd = _rounding(seeds), _rounding(seeds)
    got = fused_rnd.dot(a, b)
    want = _torch_dot(torch_rnd, a, b)
    assert fused_rnd.draws == torch_rnd.draws == 6  # one draw, as the torch path's
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    exact = a @ b
    assert not torch.equal(got, exact)  # the accumulation noise is there
    bound = (a.abs() @ b.abs()) * emulation.U32 * n**0.5
    assert ((got - exact).abs() <= bound * (1 + 1e-9)).all()  # and within its width


@pytest.mark.parametrize("m,n,p", [(16, 64, 64), (20, 33, 70)])
def test_a_scaled_dot_plus_an_addend_is_one_launch_of_the_torch_ops_values(monkeypatch, m, n, p):
    """rnd.dot(a, b, scale, c): the torch ops' ``dot * scale + c`` (gla's output: its state term and o_intra),
    the same draws, in the dot's launch."""
    a, b = _operands(m, n, p, seed=3)
    c = torch.randn(R, NT, H, m, p, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    seeds = [3, 2**62 + 5]
    fused_rnd, torch_rnd, plain_rnd = _rounding(seeds), _rounding(seeds), _rounding(seeds)
    monkeypatch.setattr(emulation.Rounding, "accumulated", lambda *x: pytest.fail("torch ops"))
    got = fused_rnd.dot(a, b, 0.125, c)
    monkeypatch.undo()
    want = _torch_dot(torch_rnd, a, b) * 0.125 + c
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    assert fused_rnd.draws == torch_rnd.draws == 6
    assert torch.equal(torch_path(plain_rnd, "fused_dot", emulation.Rounding.dot, a, b, 0.125, c), want)
    off = _rounding(seeds).dot(a, b, 0.125 * 1.02, c)  # the scale 2 % off: seen
    assert not torch.allclose(off, want, rtol=1e-6, atol=0)


def test_a_case_gets_the_same_values_alone_in_a_batch_and_as_a_group_of_its_samples():
    a, b = _operands(64, 16, 32, seed=1)
    both = _rounding([3, 7]).dot(a, b)
    alone = _rounding([7]).dot(a[2:], b[2:])
    torch.testing.assert_close(alone, both[2:], rtol=1e-12, atol=0)
    rows = slice(4, 8)  # samples 4-7 of 16: the rows a grouped run holds
    ga, gb = _operands(64, 16, 32, seed=2)
    full = _rounding([9]).dot(ga.repeat(4, 1, 1, 1, 1), gb.repeat(4, 1, 1, 1, 1))
    group = _rounding([9], rows=rows).dot(ga, gb)
    torch.testing.assert_close(group, full[4:8], rtol=1e-12, atol=0)


@pytest.mark.parametrize("min_chunks,launched", [(NT, True), (NT + 1, False)])
def test_the_kernel_takes_cases_of_at_least_the_minimum_chunks(monkeypatch, min_chunks, launched):
    a, b = _operands(16, 16, 16)
    want = _torch_dot(_rounding([3, 5]), a, b)
    calls = []
    monkeypatch.setattr("fla_check.verdict.dot_kernel.noisy_dot", lambda *x: calls.append(1) or noisy_dot(*x))
    rnd = _rounding([3, 5])
    rnd.min_chunks = min_chunks
    torch.testing.assert_close(rnd.dot(a, b), want, rtol=1e-12, atol=1e-13)
    assert bool(calls) == launched


def test_broadcast_and_unchunked_operands_take_the_torch_ops(monkeypatch):
    monkeypatch.setattr("fla_check.verdict.dot_kernel.noisy_dot", lambda *x: pytest.fail("launched"))
    a, b = _operands(16, 16, 16)
    rnd = _rounding([3, 5])
    rnd.dot(a, b[:, :, :1])  # b broadcast over heads
    rnd.dot(a[:, 0], b[:, 0])  # 4-d: not the chunked layout
    assert rnd.draws == 7


def test_a_launch_past_shared_memory_falls_back_to_the_torch_ops(monkeypatch):
    a, b = _operands(64, 16, 16)
    want = _torch_dot(_rounding([3]), a, b)
    monkeypatch.setattr("fla_check.verdict.dot_kernel.noisy_dot", past_shared_memory)
    rnd = _rounding([3])
    assert torch.equal(rnd.dot(a, b), want)
    assert rnd.draws == 6  # the torch path's one draw, none lost to the failed launch


def test_bad_operands_are_refused():
    a, b = _operands(16, 16, 16)
    seeds = torch.arange(1, 6, device=DEVICE)  # 24 dots do not split into 5 cases
    with pytest.raises(ValueError, match="not a batched dot"):
        noisy_dot(a, b[:, :2], seeds[:1], 1, 0, 1e-7)
    with pytest.raises(ValueError, match="not a batched dot"):
        noisy_dot(a, b[..., :8, :], seeds[:1], 1, 0, 1e-7)
    with pytest.raises(ValueError, match="do not split"):
        noisy_dot(a, b, seeds, 1, 0, 1e-7)
    with pytest.raises(ValueError, match="32-bit offsets"):
        noisy_dot(a, b, seeds[:1], 1, 2**31 - 10, 1e-7)
