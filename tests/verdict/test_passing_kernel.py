"""fla_check.verdict.passing_kernel: the emulation's chunked state passing in one Triton launch (the GPU's
path; here under the interpreter) computes what the per-chunk torch ops with the fused noise compute, draw
for draw, in every form _passed takes (initial state or none, per-head or per-channel decay, rows that stop
early, several cases, a group of samples), and a case gets the same state alone and in a batch."""
import pytest
import torch
from device import DEVICE
from fused_noise import fused_rounding, torch_path

from fla_check.verdict import emulation
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.passing_kernel import passed

R, NT, H, K, V, C = 8, 5, 2, 4, 3, 16


def _inputs(decay_k: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h0 = torch.randn(R, H, K, V, dtype=torch.float64, generator=gen)
    decay = torch.rand(R, NT, H, decay_k, 1, dtype=torch.float64, generator=gen)
    added = torch.randn(R, NT, H, K, V, dtype=torch.float64, generator=gen)
    return h0.to(DEVICE), decay.to(DEVICE), added.to(DEVICE)


def _rounding(seeds, rows=None, dtype=torch.float16):
    return fused_rounding(Arithmetic("chunk", C, store="input"), dtype, seeds, rows)


def _per_chunk(rnd, *args):
    return torch_path(rnd, "fused_passing", emulation._passed, *args)


@pytest.mark.parametrize("decay_k", [1, K])
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("lengths", [None, [64, 16, 80, 0, 80, 33, 80, 1]])
def test_one_launch_computes_what_the_per_chunk_ops_do(decay_k, with_h0, lengths):
    h0, decay, added = _inputs(decay_k)
    h0 = h0 if with_h0 else None
    args = (h0, decay, added, lengths, C)
    fused_rnd, chunk_rnd = _rounding([3, 2**62 + 5]), _rounding([3, 2**62 + 5])
    stored, final = emulation._passed(fused_rnd, *args)
    want_stored, want_final = _per_chunk(chunk_rnd, *args)
    assert fused_rnd.draws == chunk_rnd.draws == 7 + 3 * NT  # the draws after it are the per-chunk path's too
    # to float64 rounding: a GPU contracts h * decay + added into one fma (perf-h200-45: 3e-16 apart where it cancels)
    torch.testing.assert_close(stored, want_stored, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(final, want_final, rtol=1e-13, atol=1e-14)
    exact_first = h0 if with_h0 else torch.zeros_like(final)
    assert not torch.equal(stored[:, 0], exact_first)  # the stores carry their noise
    if lengths is not None:  # a row that ran no chunk keeps its initial state, exactly
        assert torch.equal(final[3], exact_first[3])


def test_a_case_gets_the_same_state_alone_in_a_batch_and_as_a_group_of_its_samples():
    h0, decay, added = _inputs(K, seed=1)
    seeds = [11, 12]
    stored, final = emulation._passed(_rounding(seeds), h0, decay, added, None, C)
    half = R // 2
    for c, seed in enumerate(seeds):
        rows = slice(c * half, (c + 1) * half)
        alone = emulation._passed(_rounding([seed]), h0[rows], decay[rows], added[rows], None, C)
        assert torch.equal(alone[0], stored[rows]) and torch.equal(alone[1], final[rows])
    assert not torch.equal(stored[:half], stored[half:])  # each case its own noise
    # a group of samples (emulation.SAMPLES of them drawn; here 2 of 16, one row each) gets its rows of the full draw
    full_h0, full_decay, full_added = (x[:1].expand((emulation.SAMPLES,) + x.shape[1:]).contiguous()
                                       for x in (h0, decay, added))
    whole = emulation._passed(_rounding([11]), full_h0, full_decay, full_added, None, C)
    group = emulation._passed(_rounding([11], rows=slice(5, 7)), full_h0[5:7], full_decay[5:7], full_added[5:7],
                              None, C)
    assert torch.equal(group[0], whole[0][5:7]) and torch.equal(group[1], whole[1][5:7])


def test_gradients_and_the_cpu_keep_the_per_chunk_ops():
    h0, decay, added = _inputs(1)
    rnd = _rounding([3])
    assert rnd.fused_passing(h0, decay, added.requires_grad_(), None) is None  # autograd differentiates it
    with torch.no_grad():
        assert rnd.fused_passing(h0, decay, added, None) is not None
    cpu = emulation.Rounding(Arithmetic("chunk", C), torch.float32, 3, torch.device("cpu"))
    assert cpu.fused_passing(h0.cpu(), decay.cpu(), added.detach().cpu(), None) is None  # the goldens' stream


def test_bad_shapes_are_refused():
    h0, decay, added = _inputs(K)
    seeds = torch.tensor([1, 2, 3], dtype=torch.int64, device=DEVICE)
    with pytest.raises(ValueError, match="do not split"):
        passed(h0, decay, added, None, seeds, 0, 0, 1e-3, 0.0, 1e-7)
    with pytest.raises(ValueError, match="does not fit"):
        passed(h0, decay[:, :, :, :2], added, None, seeds[:1], 0, 0, 1e-3, 0.0, 1e-7)
    with pytest.raises(ValueError, match="32-bit offsets"):
        passed(h0, decay, added, None, seeds[:1], 0, 2**31 - 10, 1e-3, 0.0, 1e-7)
