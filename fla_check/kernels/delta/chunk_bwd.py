"""Chunked delta rule backward, shared by DeltaNet and Gated DeltaNet (USE_G), fla's structure.

Per chunk (g = chunk-local cumsum, G = g at the chunk's last token, h = state before the chunk,
dh' = gradient of the state after it, E_ij = exp(g_i - g_j) on i >= j, P = scale tril(Q K^T E)):
  1. dv_local = P^T do                                        (one program per chunk)
  2. reverse over chunks from dht (one program per (sequence, head, V-block)):
       dv2 = dv_local + (K exp(G - g)) dh'                      (gradient of v_new, = dU)
       dh  = exp(G) dh' + scale (Q exp(g))^T do - W^T dv2;  dh0 = dh of the first chunk
  3. per chunk, looping over V-blocks:
       dq = scale (exp(g) do h^T + (tril(do v_new^T) E) K)
       dk = scale (tril(do v_new^T) E)^T Q + exp(G - g) v_new dh'^T,    dW = -dv2 h^T
       dg_cum = rowsum(Q dq) - rowsum(K dk)  (+ exp(G) <dh', h> + rowsum(K dk_state) at the last row)
  4. the UT-transform backward (fla_check.kernels.common.ut_transform.ut_transform_bwd) turns
     dW, dU into dk, dv, dbeta, dg_cum; dg = reverse chunk-local cumsum of the summed dg_cum.
Everything is fp32; the forward's intermediates (g_cum, A_inv, w, h, v_new) are reused, w, h
and v_new read as stored (the half input dtype for half inputs) and taken to fp32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.cumsum import chunk_local_cumsum
from fla_check.kernels.common.ut_transform import ut_transform_bwd
from fla_check.kernels.common.varlen import chunk_bounds, first_chunk, flat_chunk, sequence_bounds
from fla_check.kernels.utils import dot_precision, next_pow2, num_sequences


@triton.jit(do_not_specialize=["T", "H", "HK"])
def chunk_delta_bwd_dv_local_kernel(
    q, k, g_cum, do, dv, cu_seqlens, chunk_indices, scale, T,
    H, HK, K, V, BT: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """dv_local = P^T do with P_ij = scale (q_i . k_j) exp(g_i - g_j) for i >= j."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < eos - bos
    row = (bos + o_t) * H + i_h
    row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)
    o_k = tl.arange(0, BK)
    m_tk = m_t[:, None] & (o_k < K)[None, :]

    b_k = tl.load(k + row_k[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
    b_q = tl.load(q + row_k[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
    b_At = tl.dot(b_k, tl.trans(b_q), input_precision=DOT_PRECISION)  # [j, i] = k_j . q_i
    m_At = (o_i[:, None] <= o_i[None, :]) & m_t[:, None] & m_t[None, :]
    if USE_G:
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
        b_At = tl.where(m_At, b_At * tl.exp(b_g[None, :] - b_g[:, None]), 0.0)
    else:
        b_At = tl.where(m_At, b_At, 0.0)
    b_At = b_At * scale
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        p = row[:, None] * V + o_v[None, :]
        b_do = tl.load(do + p, mask=m_tv, other=0.0).to(tl.float32)
        tl.store(dv + p, tl.dot(b_At, b_do, input_precision=DOT_PRECISION), mask=m_tv)


@triton.jit(do_not_specialize=["T", "H", "HK"])
def chunk_delta_bwd_dh_kernel(
    q, k, w, g_cum, do, dv_local, dv2, dh, dht, dh0, cu_seqlens, chunk_offsets, scale, T,
    H, HK, K, V, BT: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr, USE_FINAL_STATE_GRADIENT: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Reverse state pass: writes dh' per chunk (gradient of the state after it), dv2, dh0."""
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

    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_FINAL_STATE_GRADIENT:
        b_dh += tl.load(dht + i_nh.to(tl.int64) * K * V + p_state, mask=m_h, other=0.0).to(tl.float32)
    for i_r in range(0, NT):
        i_t = NT - 1 - i_r
        tl.store(dh + ((boh + i_t) * H + i_h) * K * V + p_state, b_dh, mask=m_h)
        o_t = i_t * BT + o_i
        m_t = o_t < eos - bos
        row = (bos + o_t) * H + i_h
        row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        p_tk = row[:, None] * K + o_k[None, :]
        p_tv = row[:, None] * V + o_v[None, :]
        p_qk = row_k[:, None] * K + o_k[None, :]
        b_k = tl.load(k + p_qk, mask=m_tk, other=0.0).to(tl.float32)
        b_q = tl.load(q + p_qk, mask=m_tk, other=0.0).to(tl.float32) * scale
        b_w = tl.load(w + p_tk, mask=m_tk, other=0.0).to(tl.float32)
        b_do = tl.load(do + p_tv, mask=m_tv, other=0.0).to(tl.float32)
        b_dv = tl.load(dv_local + p_tv, mask=m_tv, other=0.0)
        if USE_G:
            last = tl.minimum(i_t * BT + BT, eos - bos) - 1
            b_g_last = tl.load(g_cum + (bos + last) * H + i_h)
            b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
            b_k = b_k * tl.where(m_t, tl.exp(b_g_last - b_g), 0.0)[:, None]
            b_q = b_q * tl.where(m_t, tl.exp(b_g), 0.0)[:, None]
        b_dv += tl.dot(b_k, b_dh, input_precision=DOT_PRECISION)
        tl.store(dv2 + p_tv, b_dv, mask=m_tv)
        if USE_G:
            b_dh *= tl.exp(b_g_last)
        b_dh += tl.dot(tl.trans(b_q), b_do, input_precision=DOT_PRECISION)
        b_dh -= tl.dot(tl.trans(b_w), b_dv, input_precision=DOT_PRECISION)
    if USE_INITIAL_STATE:
        tl.store(dh0 + i_nh.to(tl.int64) * K * V + p_state, b_dh, mask=m_h)


@triton.jit(do_not_specialize=["T", "H", "HK"])
def chunk_delta_bwd_dqkw_kernel(
    q, k, v_new, h, dh, g_cum, do, dv2, dq, dk, dw, dg_cum, cu_seqlens, chunk_indices, scale, T,
    H, HK, K, V, BT: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """dq, dk (output and state paths), dW = -dv2 h^T and dg_cum (without the UT part)."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    i_tg = flat_chunk(i_c, i_b, T, BT, IS_VARLEN)
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < eos - bos
    row = (bos + o_t) * H + i_h
    row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    p_tk = row[:, None] * K + o_k[None, :]
    p_h = (i_tg * H + i_h) * K * V

    b_ds = tl.zeros([BT, BT], dtype=tl.float32)
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dks = tl.zeros([BT, BK], dtype=tl.float32)
    b_dw = tl.zeros([BT, BK], dtype=tl.float32)
    b_dhh = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        m_h = m_k[:, None] & m_v[None, :]
        p_tv = row[:, None] * V + o_v[None, :]
        b_h = tl.load(h + p_h + o_k[:, None] * V + o_v[None, :], mask=m_h, other=0.0).to(tl.float32)
        b_dh = tl.load(dh + p_h + o_k[:, None] * V + o_v[None, :], mask=m_h, other=0.0)
        b_do = tl.load(do + p_tv, mask=m_tv, other=0.0).to(tl.float32)
        b_vn = tl.load(v_new + p_tv, mask=m_tv, other=0.0).to(tl.float32)
        b_dv = tl.load(dv2 + p_tv, mask=m_tv, other=0.0)
        b_ds += tl.dot(b_do, tl.trans(b_vn), input_precision=DOT_PRECISION)
        b_dq += tl.dot(b_do, tl.trans(b_h), input_precision=DOT_PRECISION)
        b_dks += tl.dot(b_vn, tl.trans(b_dh), input_precision=DOT_PRECISION)
        b_dw -= tl.dot(b_dv, tl.trans(b_h), input_precision=DOT_PRECISION)
        if USE_G:
            b_dhh += tl.sum(b_h * b_dh, 1)
    tl.store(dw + p_tk, b_dw, mask=m_tk)

    p_qk = row_k[:, None] * K + o_k[None, :]
    b_q = tl.load(q + p_qk, mask=m_tk, other=0.0).to(tl.float32)
    b_k = tl.load(k + p_qk, mask=m_tk, other=0.0).to(tl.float32)
    m_A = (o_i[:, None] >= o_i[None, :]) & m_t[:, None] & m_t[None, :]
    if USE_G:
        last = tl.minimum(i_t * BT + BT, eos - bos) - 1
        b_g_last = tl.load(g_cum + (bos + last) * H + i_h)
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
        b_dq = b_dq * tl.where(m_t, tl.exp(b_g), 0.0)[:, None]
        b_dks = b_dks * tl.where(m_t, tl.exp(b_g_last - b_g), 0.0)[:, None]
        b_ds = tl.where(m_A, b_ds * tl.exp(b_g[:, None] - b_g[None, :]), 0.0)
    else:
        b_ds = tl.where(m_A, b_ds, 0.0)
    b_dq = (b_dq + tl.dot(b_ds, b_k, input_precision=DOT_PRECISION)) * scale
    b_dk = tl.dot(tl.trans(b_ds), b_q, input_precision=DOT_PRECISION) * scale + b_dks
    tl.store(dq + p_tk, b_dq, mask=m_tk)
    tl.store(dk + p_tk, b_dk, mask=m_tk)
    if USE_G:
        b_dg = tl.sum(b_q * b_dq, 1) - tl.sum(b_k * b_dk, 1)
        b_dg_last = tl.exp(b_g_last) * tl.sum(b_dhh, 0) + tl.sum(tl.sum(b_k * b_dks, 1), 0)
        b_dg += tl.where(o_t == last, b_dg_last, 0.0)
        tl.store(dg_cum + row, b_dg, mask=m_t)


@dataclass
class ChunkBwdOutput:
    """Gradients, all fp32 (dg only with a gate, dh0 only with an initial state)."""

    dq: torch.Tensor
    dk: torch.Tensor
    dv: torch.Tensor
    dbeta: torch.Tensor
    dg: Optional[torch.Tensor]
    dh0: Optional[torch.Tensor]


def chunk_bwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
    g_cum: Optional[torch.Tensor], A_inv: torch.Tensor, w: torch.Tensor, h: torch.Tensor,
    v_new: torch.Tensor, do: torch.Tensor, dht: Optional[torch.Tensor], scale: float,
    initial_state: Optional[torch.Tensor], cu_seqlens: Optional[torch.Tensor],
    chunk_indices: Optional[torch.Tensor], chunk_offsets: Optional[torch.Tensor], chunk_size: int,
) -> ChunkBwdOutput:
    """Gradients of the chunked delta rule from the forward's intermediates (see chunk_fwd).
    With grouped value heads (v [B,T,HV,V], HV = r H) dq and dk are computed per value head
    and summed over each key head's r value heads."""
    B, T, HK, K = q.shape
    H, V = v.shape[2], v.shape[-1]
    BT = chunk_size
    N = num_sequences(B, cu_seqlens)
    NT = triton.cdiv(T, BT) if cu_seqlens is None else chunk_indices.shape[0]
    BK = next_pow2(K)
    BV = min(64, next_pow2(V))
    f32 = dict(device=q.device, dtype=torch.float32)
    dv_local = torch.empty(B, T, H, V, **f32)
    dv2 = torch.empty(B, T, H, V, **f32)
    dh = torch.empty(h.shape, **f32)
    dh0 = None if initial_state is None else torch.empty(N, H, K, V, **f32)
    dq = torch.empty(B, T, H, K, **f32)
    dk = torch.empty(B, T, H, K, **f32)
    dw = torch.empty(B, T, H, K, **f32)
    dg_cum = None if g_cum is None else torch.empty(B, T, H, **f32)
    # num_stages=1: software-pipelined fp32 [BT, BK] / [BK, BV] tiles overflow an H200's shared
    # memory at K = 100 (295 KB > 232 KB measured with num_stages=3)
    meta = dict(H=H, HK=HK, K=K, V=V, BT=BT, BK=BK, BV=BV, USE_G=g_cum is not None,
                IS_VARLEN=cu_seqlens is not None, DOT_PRECISION=dot_precision(torch.float32), num_stages=1)
    if NT * B * H > 0:
        chunk_delta_bwd_dv_local_kernel[(NT, B * H)](
            q, k, g_cum, do, dv_local, cu_seqlens, chunk_indices, scale, T, **meta)
    if N * H > 0:
        chunk_delta_bwd_dh_kernel[(triton.cdiv(V, BV), N * H)](
            q, k, w, g_cum, do, dv_local, dv2, dh, dht, dh0, cu_seqlens, chunk_offsets, scale, T,
            USE_INITIAL_STATE=dh0 is not None, USE_FINAL_STATE_GRADIENT=dht is not None, **meta)
    if NT * B * H > 0:
        chunk_delta_bwd_dqkw_kernel[(NT, B * H)](
            q, k, v_new, h, dh, g_cum, do, dv2, dq, dk, dw, dg_cum, cu_seqlens, chunk_indices,
            scale, T, **meta)
    dk_ut, dv, dbeta, dg_cum_ut = ut_transform_bwd(k, v, beta, g_cum, A_inv, dw, dv2, BT,
                                                  cu_seqlens, chunk_indices)
    dg = None
    if g_cum is not None:
        dg = chunk_local_cumsum(dg_cum + dg_cum_ut, BT, cu_seqlens, chunk_indices, reverse=True)
    dk = dk + dk_ut
    if H != HK:  # per value head -> per key head
        dq, dk = (x.view(B, T, HK, H // HK, K).sum(3) for x in (dq, dk))
    return ChunkBwdOutput(dq, dk, dv, dbeta, dg, dh0)
