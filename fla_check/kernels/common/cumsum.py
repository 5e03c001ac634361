"""Chunk-local cumulative sum of a per-head log gate (natural log, fp32 output).

With `reverse=True` the sum runs from the chunk's (or sequence's) last token backwards:
that is the backward of the forward cumsum (dg_t = sum_{s >= t in its chunk} dg_cum_s).

The sum restarts at every chunk of `chunk_size` tokens and at every sequence start
(`cu_seqlens`), exactly like fla's `chunk_local_cumsum` except that fla scales by 1/ln 2
and works in base 2; here the result stays in natural log and kernels use `exp`.
There is deliberately no protection against huge negative gates: a fill of
-0.1*finfo.max absorbs every later gate of its chunk, as in fla.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.varlen import chunk_bounds
from fla_check.kernels.utils import prepare_chunk_indices


@triton.jit(do_not_specialize=["T", "H"])
def chunk_local_cumsum_kernel(
    g, g_cum, cu_seqlens, chunk_indices, T,
    H, BT: tl.constexpr, IS_VARLEN: tl.constexpr, REVERSE: tl.constexpr,
):
    """One program per (chunk, batch*head): inclusive (reverse with REVERSE) cumsum of BT gates."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < eos - bos
    p = (bos + o_t) * H + i_h
    b_g = tl.load(g + p, mask=m_t, other=0.0).to(tl.float32)
    tl.store(g_cum + p, tl.cumsum(b_g, axis=0, reverse=REVERSE), mask=m_t)


def chunk_local_cumsum(
    g: torch.Tensor,
    chunk_size: int,
    cu_seqlens: Optional[torch.Tensor] = None,
    chunk_indices: Optional[torch.Tensor] = None,
    reverse: bool = False,
) -> torch.Tensor:
    """g [B,T,H] (any float dtype) -> fp32 [B,T,H] chunk-local inclusive cumsum (or reverse)."""
    if g.dim() != 3:
        raise ValueError(f"per-head gate must be [B,T,H], got shape {tuple(g.shape)}")
    B, T, H = g.shape
    g = g.contiguous()
    out = torch.empty(B, T, H, device=g.device, dtype=torch.float32)
    if cu_seqlens is not None and chunk_indices is None:
        chunk_indices = prepare_chunk_indices(cu_seqlens, chunk_size)
    NT = triton.cdiv(T, chunk_size) if cu_seqlens is None else chunk_indices.shape[0]
    if NT == 0 or B * H == 0:
        return out
    chunk_local_cumsum_kernel[(NT, B * H)](
        g, out, cu_seqlens, chunk_indices, T,
        H=H, BT=chunk_size, IS_VARLEN=cu_seqlens is not None, REVERSE=reverse,
    )
    return out
