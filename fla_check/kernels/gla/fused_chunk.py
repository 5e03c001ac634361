"""GLA, legacy fused-chunk design (fla's fused_chunk_gla before its removal), forward only.

One program per (sequence, head, V-block) walks chunks of BT = 16 tokens with the state in
fp32 registers. Within a chunk G = inclusive cumsum of g (natural log, restarts per chunk):
    q~ = q * exp(G) * scale,  k~ = k * exp(-G)          (k~ is unbounded for strong decay)
    o  = tril(q~ k~^T) v + q~ h
    h  = h * exp(G_last) + (k * exp(G_last - G))^T v
Unlike the chunk mode, the intra-chunk weights are exp(G_i) * exp(-G_j), not exp(G_i - G_j):
large |G| overflows exp(-G) to inf and the product to NaN -- a different failure mode.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.varlen import sequence_bounds
from fla_check.kernels.gla.inputs import prepare_gla_args
from fla_check.kernels.utils import dot_precision, next_pow2

CHUNK = 16


@triton.jit(do_not_specialize=["T", "H"])
def gla_fused_chunk_fwd_kernel(
    q, k, v, g, o, h0, ht, cu_seqlens, scale, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    seq_len = eos - bos
    o_c = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    o_s = i_nh * K * V + o_k[:, None] * V + o_v[None, :]
    causal = o_c[:, None] >= o_c[None, :]
    is_last = (o_c == BT - 1)[:, None]

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_h += tl.load(h0 + o_s, mask=m_h, other=0.0).to(tl.float32)
    for i_t in range(0, tl.cdiv(seq_len, BT)):
        o_t = i_t * BT + o_c
        m_t = o_t < seq_len
        row = (bos + o_t) * H + i_h
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_k = tl.load(k + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_g = tl.load(g + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
        b_G = tl.cumsum(b_g, axis=0)
        b_gl = tl.sum(tl.where(is_last, b_G, 0.0), 0)  # padded rows add 0: G at the last valid row
        b_qg = b_q * tl.exp(b_G) * scale
        b_kg = b_k * tl.exp(-b_G)
        b_A = tl.dot(b_qg, tl.trans(b_kg), input_precision=DOT_PRECISION)
        b_A = tl.where(causal, b_A, 0.0)
        b_o = tl.dot(b_A, b_v, input_precision=DOT_PRECISION)
        b_o += tl.dot(b_qg, b_h, input_precision=DOT_PRECISION)
        tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)
        b_kd = b_k * tl.exp(b_gl[None, :] - b_G)
        b_h = b_h * tl.exp(b_gl)[:, None] + tl.dot(tl.trans(b_kd), b_v, input_precision=DOT_PRECISION)
    if STORE_HT:
        tl.store(ht + o_s, b_h, mask=m_h)


def gla_fused_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, g: Optional[torch.Tensor] = None,
    beta: Optional[torch.Tensor] = None, scale: Optional[float] = None,
    initial_state: Optional[torch.Tensor] = None, output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """GLA by the legacy fused-chunk kernel (forward only, no autograd)."""
    a = prepare_gla_args(q, k, v, g, beta, scale, initial_state, cu_seqlens)
    B, T, H, K = a.q.shape
    V = a.v.shape[-1]
    BK = next_pow2(K)
    BV = min(next_pow2(V), 64)
    NV = triton.cdiv(V, BV)
    o = torch.empty_like(a.v, dtype=a.q.dtype)
    ht = a.q.new_empty(a.N, H, K, V, dtype=torch.float32) if output_final_state else None
    if a.N * H > 0:
        gla_fused_chunk_fwd_kernel[(NV, a.N * H)](
            a.q, a.k, a.v, a.g, o, a.initial_state, ht, a.cu_seqlens, a.scale, T,
            H=H, K=K, V=V, BT=CHUNK, BK=BK, BV=BV, USE_H0=a.initial_state is not None,
            STORE_HT=output_final_state, IS_VARLEN=a.cu_seqlens is not None,
            DOT_PRECISION=dot_precision(a.q.dtype),
        )
    return o, ht
