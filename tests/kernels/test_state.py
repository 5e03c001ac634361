"""The recurrent kernels' state offsets (fla_check.kernels.common.state): a [K, V] tile read from a
[N, H, K, V] state, or from a [N, H, V, K] one with V_FIRST, is the same state."""
import pytest
import torch

from device import DEVICE  # selects the backend (TRITON_INTERPRET=1 without CUDA) before triton loads
from fla_check.kernels.common.state import state_offsets

import triton  # noqa: E402 - after the backend selection
import triton.language as tl  # noqa: E402


@triton.jit
def _copy_tile_kernel(h, out, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                      V_FIRST: tl.constexpr):
    """out[i_nh] ([K, V]) = the tile of state i_nh read at state_offsets (one V-block per program)."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_h = (o_k < K)[:, None] & (o_v < V)[None, :]
    b_h = tl.load(h + state_offsets(i_nh, o_k, o_v, K, V, V_FIRST), mask=m_h, other=0.0)
    tl.store(out + i_nh * K * V + o_k[:, None] * V + o_v[None, :], b_h, mask=m_h)


def _read(h: torch.Tensor, K: int, V: int, v_first: bool) -> torch.Tensor:
    out = torch.full((h.shape[0], h.shape[1], K, V), float("nan"), device=DEVICE)
    BV = 16
    _copy_tile_kernel[(triton.cdiv(V, BV), h.shape[0] * h.shape[1])](h, out, K=K, V=V, BK=16, BV=BV,
                                                                      V_FIRST=v_first)
    return out


@pytest.mark.parametrize("K,V", [(16, 24), (12, 40)])
def test_v_first_offsets_read_the_transposed_buffer_as_the_same_state(K, V):
    h = torch.randn(2, 3, K, V, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    assert torch.equal(_read(h, K, V, v_first=False), h)
    assert torch.equal(_read(h.transpose(-1, -2).contiguous(), K, V, v_first=True), h)
    # control: the V-first buffer read with the [K, V] offsets is not the state
    assert not torch.equal(_read(h.transpose(-1, -2).contiguous(), K, V, v_first=False), h)
