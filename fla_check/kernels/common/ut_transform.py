"""UT (WY) transform of the delta rule, per chunk of BT in {16, 32, 64} tokens.

    A     = strictly_lower(diag(beta) K K^T)            gated: A_ij *= exp(g_i - g_j), i > j
    A_inv = (I + A)^-1                                   (the "+" form; the GDN paper's "-" is a typo)
    W     = A_inv diag(beta) K                           gated: rows of K times exp(g_i)
    U     = A_inv diag(beta) V

with g the chunk-local inclusive cumsum of the per-head natural-log gate. The inverse uses
fla's sign trick: negate the strictly-lower part, then forward-substitute row by row with
additions only (row i of A_inv - I is a_i + sum_{m<i} a_im (A_inv - I)_m with a_i = -A_i),
then add the identity. Unlike fla's solve_tril (16x16 diagonal blocks merged by block
inversion with tl.dot), the substitution here runs directly on the whole BTxBT block, so the
inverse has no tl.dot and no TF32 on any chunk size. Everything is fp32; A_inv, W, U are
stored in fp32. Huge negative gates are not guarded against (same as fla).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.cumsum import chunk_local_cumsum
from fla_check.kernels.utils import dot_precision, next_pow2, prepare_chunk_indices

CHUNK_SIZES = (16, 32, 64)


@triton.jit
def ut_transform_fwd_kernel(
    k, v, beta, g_cum, A_inv, w, u, cu_seqlens, chunk_indices, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """One program per (chunk, batch*head): A, its inverse, then W and U."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:
        i_n = tl.load(chunk_indices + i_t * 2).to(tl.int64)
        i_t = tl.load(chunk_indices + i_t * 2 + 1).to(tl.int64)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = i_b.to(tl.int64) * T
        eos = bos + T
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < eos - bos
    row = (bos + o_t) * H + i_h  # flat (token, head) index of each chunk row

    b_beta = tl.load(beta + row, mask=m_t, other=0.0).to(tl.float32)
    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        b_k = tl.load(k + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_A += tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PRECISION)
    b_A = b_A * b_beta[:, None]
    m_A = (o_i[:, None] > o_i[None, :]) & m_t[:, None] & m_t[None, :]
    if USE_G:
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0).to(tl.float32)
        b_A = b_A * tl.where(m_A, tl.exp(b_g[:, None] - b_g[None, :]), 0.0)

    # sign trick: negated strictly-lower part, then forward substitution row by row
    b_Ai = -tl.where(m_A, b_A, 0.0)
    for i in range(2, BT):
        m_row = (o_i == i)[:, None]
        b_a = tl.sum(tl.where(m_row, b_Ai, 0.0), 0)
        b_a += tl.sum(b_a[:, None] * b_Ai, 0)
        b_Ai = tl.where(m_row, b_a[None, :], b_Ai)
    b_Ai += tl.where(o_i[:, None] == o_i[None, :], 1.0, 0.0)
    tl.store(A_inv + row[:, None] * BT + o_i[None, :], b_Ai, mask=m_t[:, None])

    b_kscale = b_beta
    if USE_G:
        b_kscale = b_beta * tl.exp(b_g)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        b_k = tl.load(k + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_w = tl.dot(b_Ai, b_k * b_kscale[:, None], input_precision=DOT_PRECISION)
        tl.store(w + row[:, None] * K + o_k[None, :], b_w, mask=m_tk)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
        b_u = tl.dot(b_Ai, b_v * b_beta[:, None], input_precision=DOT_PRECISION)
        tl.store(u + row[:, None] * V + o_v[None, :], b_u, mask=m_tv)


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_size must be one of {CHUNK_SIZES}, got {chunk_size}")


def ut_transform_fwd(
    k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g_cum: Optional[torch.Tensor],
    chunk_size: int, cu_seqlens: Optional[torch.Tensor] = None,
    chunk_indices: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the UT kernel with an already chunk-local-cumsummed gate `g_cum` (fp32 [B,T,H])."""
    check_chunk_size(chunk_size)
    B, T, H, K = k.shape
    V = v.shape[-1]
    k, v, beta = k.contiguous(), v.contiguous(), beta.contiguous()
    f32 = dict(device=k.device, dtype=torch.float32)
    A_inv = torch.empty(B, T, H, chunk_size, **f32)
    w = torch.empty(B, T, H, K, **f32)
    u = torch.empty(B, T, H, V, **f32)
    if cu_seqlens is not None and chunk_indices is None:
        chunk_indices = prepare_chunk_indices(cu_seqlens, chunk_size)
    NT = triton.cdiv(T, chunk_size) if cu_seqlens is None else chunk_indices.shape[0]
    if NT > 0 and B * H > 0:
        ut_transform_fwd_kernel[(NT, B * H)](
            k, v, beta, g_cum, A_inv, w, u, cu_seqlens, chunk_indices, T,
            H=H, K=K, V=V, BT=chunk_size, BK=min(64, next_pow2(K)), BV=min(64, next_pow2(V)),
            USE_G=g_cum is not None, IS_VARLEN=cu_seqlens is not None,
            DOT_PRECISION=dot_precision(torch.float32),
        )
    return A_inv, w, u


def ut_transform(
    k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: Optional[torch.Tensor] = None, *,
    chunk_size: int = 64, cu_seqlens: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Public entry: (A_inv [B,T,H,BT], w [B,T,H,K], u [B,T,H,V]), all fp32.

    `g` is the RAW per-head log gate [B,T,H] (or None for DeltaNet); its chunk-local cumsum
    (reset at chunk and sequence starts) is computed here. Row t of A_inv holds the row of
    its chunk's inverse, columns indexed within the chunk.
    """
    B, T, H, K = k.shape
    if tuple(beta.shape) != (B, T, H):
        raise ValueError(f"beta must be [B,T,H]={(B, T, H)}, got {tuple(beta.shape)}")
    check_chunk_size(chunk_size)
    chunk_indices = None if cu_seqlens is None else prepare_chunk_indices(cu_seqlens, chunk_size)
    g_cum = None if g is None else chunk_local_cumsum(g, chunk_size, cu_seqlens, chunk_indices)
    return ut_transform_fwd(k, v, beta, g_cum, chunk_size, cu_seqlens, chunk_indices)
