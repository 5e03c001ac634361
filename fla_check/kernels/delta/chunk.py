"""Chunked delta rule forward, shared by DeltaNet (no gate) and Gated DeltaNet (USE_G).

Pipeline (fp32 intermediates, gates in natural log, `exp` not `exp2`; products of q/k inputs
only take them in their own dtype with fp32 accumulation, dots on fp32 operands run at
`operands_precision(k, v)`: IEEE for fp32 inputs, TF32 for fp16/bf16 ones):
  1. g_cum = chunk-local cumsum of the per-head gate (fla_check.kernels.common.cumsum);
  2. A_inv, W, U = UT transform per chunk (fla_check.kernels.common.ut_transform, the same
     code path as the public `ut_transform` entry);
  3. state passing, one program per (sequence, head, V-block), looping over chunks:
     h_c is stored (state before chunk c), v_new = U - W h_c,
     h_{c+1} = exp(g_last) h_c + (K * exp(g_last - g))^T v_new;
  4. output, one program per (chunk, head, V-block):
     o = scale * ((q * exp(g)) h_c + tril(q k^T * exp(g_i - g_j)) v_new),
     the upper triangle is discarded by tl.where selection (overflow there never leaks).
No guard against huge negative gates: like fla, a -0.1*finfo.max fill at a reset inside a
chunk is absorbed by the chunk-local cumsum (silently wrong) and -inf gives NaN.
`chunk_fwd` returns every intermediate; the public entries are differentiable (q, k, v, beta,
g, initial_state) through `ChunkDeltaRuleFunction`, whose Triton backward
(fla_check.kernels.delta.chunk_bwd) reuses them: the autograd graph keeps g_cum, A_inv, w,
v_new ([B,T,H,*] fp32) and the per-chunk states h ([chunks,H,K,V] fp32) alive until backward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.cumsum import chunk_local_cumsum
from fla_check.kernels.common.ut_transform import check_chunk_size, ut_transform_fwd
from fla_check.kernels.common.varlen import chunk_bounds, first_chunk, flat_chunk, sequence_bounds
from fla_check.kernels.delta.chunk_bwd import chunk_bwd
from fla_check.kernels.utils import (
    check_value_heads, check_varlen, next_pow2, operands_precision, num_sequences, prepare_chunk_indices,
)

MAX_HEAD_DIM = 256


@triton.jit(do_not_specialize=["T"])
def chunk_delta_h_kernel(
    k, w, u, g_cum, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T, H, HK, K, V, BT: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Inter-chunk state passing; writes h (before each chunk) and v_new = U - W h."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    NT = tl.cdiv(eos - bos, BT)
    boh = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN)
    o_i = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_state = o_k[:, None] * V + o_v[None, :]

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        b_h += tl.load(h0 + i_nh.to(tl.int64) * K * V + p_state, mask=m_h, other=0.0).to(tl.float32)
    for i_t in range(0, NT):
        tl.store(h + ((boh + i_t) * H + i_h) * K * V + p_state, b_h, mask=m_h)
        o_t = i_t * BT + o_i
        m_t = o_t < eos - bos
        row = (bos + o_t) * H + i_h
        row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_w = tl.load(w + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0)
        b_u = tl.load(u + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0)
        b_v = b_u - tl.dot(b_w, b_h, input_precision=DOT_PRECISION)
        tl.store(v_new + row[:, None] * V + o_v[None, :], b_v, mask=m_tv)
        b_kt = tl.load(k + row_k[None, :] * K + o_k[:, None], mask=m_k[:, None] & m_t[None, :],
                       other=0.0).to(tl.float32)
        if USE_G:
            last = tl.minimum(i_t * BT + BT, eos - bos) - 1
            b_g_last = tl.load(g_cum + (bos + last) * H + i_h)
            b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
            b_v = b_v * tl.where(m_t, tl.exp(b_g_last - b_g), 0.0)[:, None]
            b_h *= tl.exp(b_g_last)
        b_h += tl.dot(b_kt, b_v, input_precision=DOT_PRECISION)
    if STORE_FINAL_STATE:
        tl.store(ht + i_nh.to(tl.int64) * K * V + p_state, b_h, mask=m_h)


@triton.jit(do_not_specialize=["T"])
def chunk_delta_o_kernel(
    q, k, v_new, h, g_cum, o, cu_seqlens, chunk_indices, scale, T, H, HK, K, V, BT: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """o = scale * ((q * exp(g)) h_c + tril(q k^T * exp(g_i - g_j)) v_new) for one chunk."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    i_tg = flat_chunk(i_c, i_b, T, BT, IS_VARLEN)
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < eos - bos
    row = (bos + o_t) * H + i_h
    row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V

    b_q = tl.load(q + row_k[:, None] * K + o_k[None, :], mask=m_t[:, None] & m_k[None, :],
                  other=0.0)
    b_kt = tl.load(k + row_k[None, :] * K + o_k[:, None], mask=m_k[:, None] & m_t[None, :],
                   other=0.0)
    b_h = tl.load(h + (i_tg * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :],
                  mask=m_k[:, None] & m_v[None, :], other=0.0)
    b_A = tl.dot(b_q, b_kt, input_precision=DOT_PRECISION)  # input dtype: exact products, fp32 sum
    b_q = b_q.to(tl.float32)
    if USE_G:
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
        b_q = b_q * tl.exp(b_g)[:, None]
        b_A = b_A * tl.exp(b_g[:, None] - b_g[None, :])
    b_o = tl.dot(b_q, b_h, input_precision=DOT_PRECISION)
    m_A = (o_i[:, None] >= o_i[None, :]) & m_t[:, None] & m_t[None, :]
    b_A = tl.where(m_A, b_A, 0.0)
    b_v = tl.load(v_new + row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :],
                  other=0.0)
    b_o = (b_o + tl.dot(b_A, b_v, input_precision=DOT_PRECISION)) * scale
    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty),
             mask=m_t[:, None] & m_v[None, :])


def state_tiles(BK: int, V: int) -> tuple[int, int]:
    """(BV, num_warps) of the state-passing kernel for a [BK, BV] fp32 state tile."""
    BV = min(64 if BK <= 64 else 32, next_pow2(V))
    return BV, 4 if BK <= 64 else 8


def chunk_layout(B: int, T: int, cu_seqlens: Optional[torch.Tensor], chunk_size: int,
                 ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], int]:
    """(chunk_indices, chunk_offsets (first chunk of each sequence), total number of chunks)."""
    if cu_seqlens is None:
        return None, None, B * triton.cdiv(T, chunk_size)
    chunk_indices = prepare_chunk_indices(cu_seqlens, chunk_size)
    counts = triton.cdiv(cu_seqlens[1:] - cu_seqlens[:-1], chunk_size)
    chunk_offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
    return chunk_indices, chunk_offsets, chunk_indices.shape[0]


@dataclass
class ChunkFwdOutput:
    """The output, the final state and every intermediate a backward pass may reuse (fp32)."""

    o: torch.Tensor  # [B,T,H,V], q.dtype
    final_state: Optional[torch.Tensor]  # [N,H,K,V] or None
    g_cum: Optional[torch.Tensor]  # [B,T,H] chunk-local cumsum of g (natural log)
    A_inv: torch.Tensor  # [B,T,H,BT]
    w: torch.Tensor  # [B,T,H,K]
    u: torch.Tensor  # [B,T,H,V]
    h: torch.Tensor  # [B*NT or total chunks, H, K, V]: state before each chunk
    v_new: torch.Tensor  # [B,T,H,V] = u - w h


def chunk_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
    g: Optional[torch.Tensor], scale: float, initial_state: Optional[torch.Tensor],
    output_final_state: bool, cu_seqlens: Optional[torch.Tensor], chunk_size: int = 64,
) -> ChunkFwdOutput:
    """The chunked forward with all intermediates; `g` is the raw per-head gate or None."""
    check_chunk_size(chunk_size)
    B, T, HK, K = q.shape
    H, V = v.shape[2], v.shape[-1]  # H: value heads (HV = r HK with grouped value heads)
    if K > MAX_HEAD_DIM:
        raise ValueError(f"chunk kernel supports K <= {MAX_HEAD_DIM}, got {K}")
    BT = chunk_size
    N = num_sequences(B, cu_seqlens)
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    chunk_indices, chunk_offsets, NT_total = chunk_layout(B, T, cu_seqlens, BT)
    g_cum = None if g is None else chunk_local_cumsum(g, BT, cu_seqlens, chunk_indices)
    A_inv, w, u = ut_transform_fwd(k, v, beta, g_cum, BT, cu_seqlens, chunk_indices)

    f32 = dict(device=q.device, dtype=torch.float32)
    h = torch.empty(NT_total, H, K, V, **f32)
    v_new = torch.empty(B, T, H, V, **f32)
    ht = torch.empty(N, H, K, V, **f32) if output_final_state else None
    h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    BK = next_pow2(K)
    meta = dict(H=H, HK=HK, K=K, V=V, BT=BT, BK=BK, USE_G=g is not None,
                IS_VARLEN=cu_seqlens is not None, DOT_PRECISION=operands_precision(k, v))
    if N * H > 0:
        # the whole-K state tile [BK, BV] stays in registers across chunks: narrower V-blocks
        # and more warps for wide heads (more programs in flight on the serial chunk loop)
        BV, warps = state_tiles(BK, V)
        chunk_delta_h_kernel[(triton.cdiv(V, BV), N * H)](
            k, w, u, g_cum, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T, BV=BV, num_warps=warps,
            USE_INITIAL_STATE=h0 is not None, STORE_FINAL_STATE=output_final_state, **meta,
        )
    NT = triton.cdiv(T, BT) if cu_seqlens is None else NT_total
    if NT * B * H > 0:
        BV = min(64, next_pow2(V))
        chunk_delta_o_kernel[(triton.cdiv(V, BV), NT, B * H)](
            q, k, v_new, h, g_cum, o, cu_seqlens, chunk_indices, scale, T, BV=BV,
            num_warps=8 if BK > 64 else 4, **meta,
        )
    return ChunkFwdOutput(o, ht, g_cum, A_inv, w, u, h, v_new)


class ChunkDeltaRuleFunction(torch.autograd.Function):
    """chunk_fwd with the Triton backward of fla_check.kernels.delta.chunk_bwd."""

    @staticmethod
    def forward(ctx, q, k, v, beta, g, scale, initial_state, output_final_state, cu_seqlens,
                chunk_size):
        out = chunk_fwd(q, k, v, beta, g, scale, initial_state, output_final_state, cu_seqlens,
                        chunk_size)
        ctx.save_for_backward(q, k, v, beta, g, out.g_cum, out.A_inv, out.w, out.h, out.v_new,
                              initial_state, cu_seqlens)
        ctx.scale, ctx.chunk_size = scale, chunk_size
        return out.o, out.final_state

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, beta, g, g_cum, A_inv, w, h, v_new, initial_state, cu_seqlens = ctx.saved_tensors
        B, T = q.shape[:2]
        chunk_indices, chunk_offsets, _ = chunk_layout(B, T, cu_seqlens, ctx.chunk_size)
        grads = chunk_bwd(
            q, k, v, beta, g_cum, A_inv, w, h, v_new, do.contiguous(),
            None if dht is None else dht.contiguous(), ctx.scale, initial_state, cu_seqlens,
            chunk_indices, chunk_offsets, ctx.chunk_size,
        )
        dg = None if g is None else grads.dg.to(g.dtype)
        dh0 = None if initial_state is None else grads.dh0.to(initial_state.dtype)
        return (grads.dq.to(q.dtype), grads.dk.to(k.dtype), grads.dv.to(v.dtype),
                grads.dbeta.to(beta.dtype), dg, None, dh0, None, None, None)


def chunk_delta_rule(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Uniform-signature chunked delta rule; `g` (per-head log gate [B,T,H]) selects Gated
    DeltaNet. `beta=None` means ones. Differentiable in q, k, v, beta, g and initial_state.
    """
    B, T, _, K = q.shape
    check_varlen(q, cu_seqlens, initial_state)
    H = check_value_heads(q, v)
    if g is not None and tuple(g.shape) != (B, T, H):
        raise ValueError(f"gate g must be [B,T,HV]={(B, T, H)}, got {tuple(g.shape)}")
    if beta is None:
        beta = q.new_ones(B, T, H)
    if tuple(beta.shape) != (B, T, H):
        raise ValueError(f"beta must be [B,T,HV]={(B, T, H)}, got {tuple(beta.shape)}")
    scale = K**-0.5 if scale is None else scale
    check_chunk_size(chunk_size)
    if g is not None:
        g = g.contiguous()
    return ChunkDeltaRuleFunction.apply(q.contiguous(), k.contiguous(), v.contiguous(),
                                        beta.contiguous(), g, scale, initial_state,
                                        output_final_state, cu_seqlens, chunk_size)


def delta_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """DeltaNet, chunked (UT transform + state passing). DeltaNet has no gate: `g` must be None."""
    if g is not None:
        raise ValueError("DeltaNet takes no gate g; use the gated_delta op for a gated delta rule")
    return chunk_delta_rule(q, k, v, beta=beta, scale=scale, initial_state=initial_state,
                            output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                            chunk_size=chunk_size)
