"""Chunk-local gate cumsum kernel: resets at chunk and sequence starts, absorbs huge fills."""
import pytest
import torch

from device import DEVICE
from fla_check.kernels.common.cumsum import chunk_local_cumsum


def _expected(g, chunk_size, starts):
    out = torch.zeros_like(g, dtype=torch.float64)
    bounds = starts + [g.shape[1]]
    for s, e in zip(bounds[:-1], bounds[1:]):
        for c in range(s, e, chunk_size):
            out[:, c:min(c + chunk_size, e)] = g[:, c:min(c + chunk_size, e)].double().cumsum(1)
    return out


@pytest.mark.parametrize("chunk_size", [16, 32, 64])
def test_resets_at_chunk_starts(chunk_size):
    g = -torch.rand(2, 70, 3, generator=torch.Generator().manual_seed(chunk_size)).to(DEVICE)
    got = chunk_local_cumsum(g, chunk_size)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _expected(g, chunk_size, [0]), rtol=1e-6, atol=1e-5)


def test_resets_at_sequence_starts():
    g = -torch.rand(1, 40, 2, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    cu = torch.tensor([0, 1, 1, 23, 40], device=DEVICE)
    got = chunk_local_cumsum(g, 16, cu_seqlens=cu)
    torch.testing.assert_close(got.double(), _expected(g, 16, [0, 1, 23]), rtol=1e-6, atol=1e-5)


def test_huge_fill_absorbs_later_gates():
    """Like fla: -0.1*finfo.max + (-0.5) == -0.1*finfo.max, the later decays are lost."""
    g = torch.full((1, 16, 1), -0.5, device=DEVICE)
    g[0, 3] = -0.1 * torch.finfo(torch.float32).max
    got = chunk_local_cumsum(g, 16)
    assert (got[0, 3:] == got[0, 3]).all()
