"""fla_check.verdict.delta_kernel: the delta rule's chunked state passing in one Triton launch (the GPU's path; here
under the interpreter) computes what the per-chunk torch ops with the fused noise compute, draw for draw, in
every form _delta_passed takes (initial state or none, per-head or per-channel decay, rows that stop early,
operands that are or are not rounded again, value widths that are not powers of two, several cases, a group
of samples), and a case gets the same values alone and in a batch."""
import pytest
import torch
from device import DEVICE
from fused_noise import fused_rounding, past_shared_memory, torch_path

from fla_check.verdict import emulation
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.delta_kernel import Points, fits, passed

R, NT, H, C, K, V = 4, 3, 2, 16, 8, 12


def _inputs(decay_k: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h0 = torch.randn(R, H, K, V, dtype=torch.float64, generator=gen)
    w = torch.randn(R, NT, H, C, K, dtype=torch.float64, generator=gen) / 4
    u = torch.randn(R, NT, H, C, V, dtype=torch.float64, generator=gen)
    kg = torch.randn(R, NT, H, C, K, dtype=torch.float64, generator=gen) / 4
    decay = torch.rand(R, NT, H, decay_k, 1, dtype=torch.float64, generator=gen)
    return tuple(x.to(DEVICE) for x in (h0, w, u, kg, decay))


def _rounding(seeds, rows=None, dtype=torch.float16, store="input"):
    return fused_rounding(Arithmetic("chunk", C, store=store, dot="tf32"), dtype, seeds, rows)


def _per_chunk(rnd, *args):
    return torch_path(rnd, "fused_delta_passing", emulation._delta_passed, *args)


UNEVEN = [48, 16, 0, 33]  # rows that stop early, one that runs no chunk
ROUNDINGS = {"fp16-input": (torch.float16, "input", 7),  # stored in the input dtype: no second operand rounding
             "bf16-fp32": (torch.bfloat16, "fp32", 9), "fp32-fp32": (torch.float32, "fp32", 9)}


# every value of each parameter twice, each pair of decay and rounding once (the interpreter's 1-2 s a case)
@pytest.mark.parametrize("decay_k,with_h0,lengths,rounding", [
    (1, True, None, "fp16-input"), (K, False, UNEVEN, "fp16-input"), (1, False, UNEVEN, "bf16-fp32"),
    (K, True, None, "bf16-fp32"), (1, True, UNEVEN, "fp32-fp32"), (K, False, None, "fp32-fp32")])
def test_one_launch_computes_what_the_per_chunk_ops_do(decay_k, with_h0, lengths, rounding):
    dtype, store, draws = ROUNDINGS[rounding]
    h0, w, u, kg, decay = _inputs(decay_k)
    h0 = h0 if with_h0 else None
    args = (h0, w, u, kg, decay, lengths, C)
    fused_rnd, chunk_rnd = _rounding([3, 2**62 + 5], dtype=dtype, store=store), _rounding([3, 2**62 + 5], dtype=dtype,
                                                                                         store=store)
    got = emulation._delta_passed(fused_rnd, *args)
    want = _per_chunk(chunk_rnd, *args)
    assert fused_rnd.draws == chunk_rnd.draws == 7 + draws * NT  # the draws after it are the per-chunk path's too
    for x, y in zip(got, want, strict=True):  # states, new values, final state
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)
    exact_first = h0 if with_h0 else torch.zeros_like(got[2])
    assert not torch.equal(got[0][:, 0], exact_first)  # the stored states carry their noise
    if lengths is not None:  # a row that ran no chunk keeps its initial state, exactly
        assert torch.equal(got[2][2], exact_first[2])


def test_a_case_gets_the_same_values_alone_in_a_batch_and_as_a_group_of_its_samples():
    h0, w, u, kg, decay = _inputs(K, seed=1)
    seeds = [11, 12]
    both = emulation._delta_passed(_rounding(seeds), h0, w, u, kg, decay, None, C)
    half = R // 2
    for c, seed in enumerate(seeds):
        rows = slice(c * half, (c + 1) * half)
        alone = emulation._delta_passed(_rounding([seed]), *(x[rows] for x in (h0, w, u, kg, decay)), None, C)
        assert all(torch.equal(a, b[rows]) for a, b in zip(alone, both, strict=True))
    # a group of samples (emulation.SAMPLES of them drawn; here 2 of 16, one row each) gets its rows of the full draw
    full = [x[:1].expand((emulation.SAMPLES,) + x.shape[1:]).contiguous() for x in (h0, w, u, kg, decay)]
    whole = emulation._delta_passed(_rounding([11]), *full, None, C)
    group = emulation._delta_passed(_rounding([11], rows=slice(5, 7)), *(x[5:7] for x in full), None, C)
    assert all(torch.equal(a, b[5:7]) for a, b in zip(group, whole, strict=True))
    assert not torch.equal(whole[2][5], whole[2][6])  # the samples differ in their noise only


def test_gradients_the_cpu_and_small_chunks_keep_the_per_chunk_ops():
    h0, w, u, kg, decay = _inputs(1)
    rnd = _rounding([3])
    assert rnd.fused_delta_passing(h0, w, u.clone().requires_grad_(), kg, decay, None) is None  # autograd
    with torch.no_grad():
        assert rnd.fused_delta_passing(h0, w, u.clone().requires_grad_(), kg, decay, None) is not None
    assert rnd.fused_delta_passing(h0, w[..., :8, :], u[..., :8, :], kg[..., :8, :], decay, None) is None  # C = 8
    assert not fits(64, 100) and not fits(128, 64) and fits(64, 64) and fits(16, 100)  # tiles past shared memory
    cpu = emulation.Rounding(Arithmetic("chunk", C), torch.float32, 3, torch.device("cpu"))
    assert cpu.fused_delta_passing(*(x.cpu() for x in (h0, w, u, kg, decay)), None) is None  # the goldens' stream


def test_bad_shapes_are_refused():
    h0, w, u, kg, decay = _inputs(K)
    seeds = torch.tensor([1, 2, 3], dtype=torch.int64, device=DEVICE)
    points = Points(1e-3, 0.0, -1e-3, 2e-3, 1e-7)
    with pytest.raises(ValueError, match="do not split"):
        passed(h0, w, u, kg, decay, None, seeds, 0, (0, 0), points)
    with pytest.raises(ValueError, match="do not fit"):
        passed(h0, w, u[:, :2], kg, decay, None, seeds[:1], 0, (0, 0), points)
    with pytest.raises(ValueError, match="does not fit"):
        passed(h0, w, u, kg, decay[..., :2, :], None, seeds[:1], 0, (0, 0), points)
    with pytest.raises(ValueError, match="powers of two"):
        passed(h0, w[..., :8, :], u[..., :8, :], kg[..., :8, :], decay, None, seeds[:1], 0, (0, 0), points)
    with pytest.raises(ValueError, match="32-bit offsets"):
        passed(h0, w, u, kg, decay, None, seeds[:1], 0, (2**31 - 10, 0), points)


def test_a_launch_past_shared_memory_falls_back_to_the_per_chunk_ops(monkeypatch):
    h0, w, u, kg, decay = _inputs(1)
    args = (h0, w, u, kg, decay, None, C)
    want = _per_chunk(_rounding([3]), *args)
    monkeypatch.setattr("fla_check.verdict.delta_kernel.passed", past_shared_memory)
    rnd = _rounding([3])
    got = emulation._delta_passed(rnd, *args)
    assert rnd.draws == 7 + 7 * NT  # the per-chunk path's draws, none lost to the failed launch
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("min_chunks,launched", [(NT, True), (NT + 1, False)])
def test_the_kernel_takes_cases_of_at_least_the_minimum_chunks(monkeypatch, min_chunks, launched):
    h0, w, u, kg, decay = _inputs(1)
    args = (h0, w, u, kg, decay, None, C)
    want = _per_chunk(_rounding([3]), *args)
    calls = []
    monkeypatch.setattr("fla_check.verdict.delta_kernel.passed", lambda *a, **kw: calls.append(1) or passed(*a, **kw))
    rnd = _rounding([3])
    rnd.min_chunks = min_chunks
    got = emulation._delta_passed(rnd, *args)
    assert bool(calls) == launched
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)
