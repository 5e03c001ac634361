"""fla_check.verdict.deviation_kernel: the samples' deviations from their answer in one read (the GPU's path; here
under the interpreter) are the torch ops' (counts and maxima exactly, RMS to float64 rounding), per case, over
the answer's finite entries, whatever the row's length against the kernel's blocks."""
import math
from unittest import mock

import pytest
import torch
from device import DEVICE

from fla_check.verdict import baselines, emulation
from fla_check.verdict.deviation_kernel import deviations
from fla_check.verdict.reductions import finite_mask


def _torch_rows(e, x):
    """baselines._deviation_rows by its torch ops, on any device."""
    ok = finite_mask(x)
    with mock.patch.object(emulation, "fused_noise", lambda device: False):
        return baselines._deviation_rows(e, x, ok, ok.flatten(1).sum(1))


def _batch(cases, samples, shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(cases, 1, *shape, dtype=torch.float64, generator=gen)
    e = x + 1e-3 * torch.randn(cases, samples, *shape, dtype=torch.float64, generator=gen)
    return e.to(DEVICE), x.to(DEVICE)


def _fused_rows(e, x):
    return deviations(e, x, finite_mask(x).flatten(1).sum(1))


@pytest.mark.parametrize("cases,samples,shape", [(3, 16, (5, 2, 7)), (2, 4, (70000,)), (1, 2, (1,))])
@pytest.mark.parametrize("steps", [None, (64, 3)])  # the device's own blocks, and several steps and parts per row
def test_one_read_gives_the_torch_ops_deviations(monkeypatch, cases, samples, shape, steps):
    if steps is not None:
        monkeypatch.setattr("fla_check.verdict.deviation_kernel.blocks", lambda on_gpu: steps)
    e, x = _batch(cases, samples, shape)
    want, got = _torch_rows(e, x), _fused_rows(e, x)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], rtol=1e-13, atol=0)


def test_each_case_is_judged_against_its_own_answer_and_subtle_deviations_show():
    e, x = _batch(3, 16, (5, 2, 7))
    e[1, 7, 2, 1, 3] += 0.02  # one sample of case 1, one entry 2 % of a unit off
    got = _fused_rows(e, x)
    assert got[1][1] > 0.015 and max(got[1][0], got[1][2]) < 0.006  # the noise is 1e-3 randn
    assert torch.equal(got[1], _torch_rows(e, x)[1])
    x2 = x.clone()
    x2[2] += 1e-2  # case 2's answer moved: its deviations grow, the others' do not
    moved = _fused_rows(e, x2)
    assert moved[1][2] > 3 * got[1][2] and torch.equal(moved[1][:2], got[1][:2])


def test_non_finite_answers_are_left_out_and_non_finite_samples_counted():
    e, x = _batch(2, 4, (300,))
    x[0, 0, :10] = math.nan  # not judged: left out of every term
    x[1, 0, 5] = math.inf
    e[0, :, :10] = 1e300  # far off where the answer is NaN: ignored
    e[1, 2, 7] = math.nan  # a non-finite deviation where the answer is finite
    e[1, 3, 8] = -math.inf
    want, got = _torch_rows(e, x), _fused_rows(e, x)
    assert got[0].tolist() == want[0].tolist() == [0, 2]
    assert got[1][0] == want[1][0] and got[1][0] < 1e-2
    torch.testing.assert_close(got[2][0], want[2][0], rtol=1e-13, atol=0)


def test_the_batched_baselines_take_the_kernel_on_the_fused_path(monkeypatch):
    calls = []
    monkeypatch.setattr(emulation, "fused_noise", lambda device: True)
    monkeypatch.setattr("fla_check.verdict.deviation_kernel.deviations",
                        lambda *a: calls.append(1) or deviations(*a))
    e, x = _batch(2, 4, (30,))
    ok = finite_mask(x)
    got = baselines._deviation_rows(e, x, ok, ok.flatten(1).sum(1))
    assert calls and torch.equal(got[1], _fused_rows(e, x)[1])


def test_bad_shapes_are_refused():
    e, x = _batch(2, 4, (30,))
    count = finite_mask(x).flatten(1).sum(1)
    with pytest.raises(ValueError, match="not float64"):
        deviations(e, x[:1], count)
    with pytest.raises(ValueError, match="not float64"):
        deviations(e.float(), x, count)
