"""UT (WY) transform of the delta rule, per chunk of BT in {16, 32, 64} tokens.

    A     = strictly_lower(diag(beta) K K^T)            gated: A_ij *= exp(g_i - g_j), i > j
    A_inv = (I + A)^-1                                   (the "+" form; the GDN paper's "-" is a typo)
    W     = A_inv diag(beta) K                           gated: rows of K times exp(g_i)
    U     = A_inv diag(beta) V

with g the chunk-local inclusive cumsum of the per-head natural-log gate.

The inverse, blocked as fla's solve_tril. Write N = -A (fla's sign trick: every later step
is additions only) and split the chunk into 16x16 blocks, N_ij the block in block-row i and
block-column j (N_ij = 0 for j > i, N_ii strictly lower). Then (I + A)^-1 = (I - N)^-1 = Y is
block lower-triangular with
    Y_ii = X_i = (I - N_ii)^-1,   found by forward substitution on the 16x16 block: row s of
           X_i - I is n_s + sum_{m<s} n_sm (X_i - I)_m, 14 serial steps, all diagonal blocks
           of the chunk at once (their columns do not overlap);
    Y_ij = X_i sum_{j<=m<i} N_im Y_mj   for i > j (from sum_m (I - N)_im Y_mj = 0),
           block row by block row, each a handful of 16x16 tl.dot.
For BT = 32 that is Y_10 = X_1 N_10 X_0; for BT = 64 the ten blocks below the diagonal need
sixteen 16x16 dots. The diagonal blocks live in registers; the merges read and write the
chunk's rows of the A_inv output in place (barriers between block rows). KDA's
`kda_ut_kernel` (fla_check.kernels.kda.chunk) inverts its Akk with the same two helpers.

Precision: q/k/v-only products (K K^T) take the inputs in their own dtype with fp32
accumulation (exact products); dots on fp32 operands (the merges) run at `DOT_PRECISION` =
`dot_precision(input dtype)`: IEEE for fp32 inputs, TF32 for fp16/bf16 inputs (declared
`dot="fp32-ieee"`, `inverse="blocked"` in fla_check.ops). A_inv is stored in fp32. W and U are
stored in the caller's `store` dtype: the chunk kernels pass the half input dtype for half
inputs (declared `store="input"`), and then A_inv K and A_inv V take A_inv and the scaled K, V
rounded to it (half x half dots, fp32 accumulation, as fla's recompute_w_u); fp32 otherwise
(A_inv K, A_inv V at DOT_PRECISION). The public `ut_transform` entry stores fp32 and passes
IEEE at every dtype (declared `dot="ieee"`). Huge negative gates are not guarded against
(same as fla).

Backward (`ut_transform_bwd`, fla's prepare_wy_repr_bwd), per chunk, from dW and dU, with
Kb = diag(beta e^g) K and Vb = diag(beta) V:
    dKb = A_inv^T dW,  dVb = A_inv^T dU,  dA_inv = dW Kb^T + dU Vb^T,
    dA  = -strictly_lower(A_inv^T dA_inv A_inv^T),   M = dA * exp(g_i - g_j),
    dk  = dKb * beta e^g + diag(beta) M K + (diag(beta) M)^T K,   dv = dVb * beta,
    dbeta = rowsum(dKb * K e^g) + rowsum(dVb * V) + rowsum(M * K K^T),
    dg_cum = rowsum(dKb * Kb) + rowsum(dA * A) - colsum(dA * A)   (gradient w.r.t. the cumsum).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.cumsum import chunk_local_cumsum
from fla_check.kernels.common.varlen import chunk_bounds
from fla_check.kernels.utils import dot_precision, next_pow2, operands_precision, prepare_chunk_indices

CHUNK_SIZES = (16, 32, 64)
BLOCK = 16  # diagonal blocks of the inverse


@triton.jit
def invert_diagonal_blocks(b_N, BT: tl.constexpr, BC: tl.constexpr):
    """(I - N_dd)^-1 of every BCxBC diagonal block d of a strictly-lower BTxBT tile N, all blocks
    at once: BC - 2 steps of forward substitution with additions only (row s of each block is
    n_s + sum_{m<s} n_sm (X - I)_m). Off-diagonal blocks come back as they went in."""
    o_i = tl.arange(0, BT)
    m_D = (o_i[:, None] // BC) == (o_i[None, :] // BC)
    b_D = tl.where(m_D, b_N, 0.0)
    for s in range(2, BC):
        m_row = ((o_i % BC) == s)[:, None]
        b_a = tl.sum(tl.where(m_row, b_D, 0.0), 0)  # row s of every block, in its own columns
        b_a += tl.sum(b_a[:, None] * b_D, 0)
        b_D = tl.where(m_row & m_D, b_a[None, :], b_D)
    b_D += tl.where(o_i[:, None] == o_i[None, :], 1.0, 0.0)
    return tl.where(m_D, b_D, b_N)


@triton.jit
def _block_ptrs(A, stride, n, i, j, BC: tl.constexpr):
    """Pointers and row mask of block (i, j) of a chunk's BTxBT tile (row r at A + r * stride)."""
    o_c = tl.arange(0, BC)
    r = i * BC + o_c
    return A + r[:, None] * stride + j * BC + o_c[None, :], (r < n)[:, None]


@triton.jit
def merge_blocks(A, stride, n, BT: tl.constexpr, BC: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """In place in memory: a tile holding X_i = (I - N_ii)^-1 on its diagonal blocks and the
    negated strictly-lower N elsewhere becomes (I - N)^-1, block row by block row:
    Y_ij = X_i sum_{j<=m<i} N_im Y_mj (i > j), tl.dot at DOT_PRECISION. Only the `n` valid
    rows are read or written; barriers order the stores against other threads' loads."""
    tl.debug_barrier()
    for i in range(1, BT // BC):  # runtime loops: unrolled, the 16 dots of BT = 64 lengthened the sm_90 compile
        p_X, m_X = _block_ptrs(A, stride, n, i, i, BC)
        b_X = tl.load(p_X, mask=m_X, other=0.0)
        for j in range(0, i):
            b_acc = tl.zeros([BC, BC], dtype=tl.float32)
            for m in range(j, i):
                p_N, m_N = _block_ptrs(A, stride, n, i, m, BC)
                p_Y, m_Y = _block_ptrs(A, stride, n, m, j, BC)
                b_acc += tl.dot(tl.load(p_N, mask=m_N, other=0.0), tl.load(p_Y, mask=m_Y, other=0.0),
                                input_precision=DOT_PRECISION)
            b_Y = tl.dot(b_X, b_acc, input_precision=DOT_PRECISION)
            p_Y, m_Y = _block_ptrs(A, stride, n, i, j, BC)
            tl.debug_barrier()  # every thread has read N_ij before it is overwritten
            tl.store(p_Y, b_Y, mask=m_Y)
        tl.debug_barrier()  # block row i is final before row i + 1 reads it


@triton.jit(do_not_specialize=["T", "H", "HK"])
def ut_transform_fwd_kernel(
    k, v, beta, g_cum, A_inv, w, u, cu_seqlens, chunk_indices, T, H, HK, K, V,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One program per (chunk, batch*head): A, its inverse (fp32, in A_inv), then W and U in the
    dtype of `w` / `u`, the inverse and the scaled K / V rounded to it as dot operands."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < eos - bos
    row = (bos + o_t) * H + i_h  # flat (token, value head) index of each chunk row
    row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)

    b_beta = tl.load(beta + row, mask=m_t, other=0.0).to(tl.float32)
    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        b_k = tl.load(k + row_k[:, None] * K + o_k[None, :], mask=m_tk, other=0.0)  # input dtype: exact products
        b_A += tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PRECISION)
    b_A = b_A * b_beta[:, None]
    m_A = (o_i[:, None] > o_i[None, :]) & m_t[:, None] & m_t[None, :]
    if USE_G:
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0).to(tl.float32)
        b_A = b_A * tl.where(m_A, tl.exp(b_g[:, None] - b_g[None, :]), 0.0)

    # sign trick: negated strictly-lower part; diagonal blocks by substitution, then merged
    b_Ai = -tl.where(m_A, b_A, 0.0)
    b_Ai = invert_diagonal_blocks(b_Ai, BT, BC)
    tl.store(A_inv + row[:, None] * BT + o_i[None, :], b_Ai, mask=m_t[:, None])
    if BT > BC:
        merge_blocks(A_inv + ((bos + i_t * BT) * H + i_h) * BT, H * BT, eos - bos - i_t * BT, BT, BC,
                     DOT_PRECISION)
        b_Ai = tl.load(A_inv + row[:, None] * BT + o_i[None, :], mask=m_t[:, None], other=0.0)
    b_Ai = b_Ai.to(w.dtype.element_ty)  # W and U dots in the store dtype (half: half x half)

    b_kscale = b_beta
    if USE_G:
        b_kscale = b_beta * tl.exp(b_g)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        b_k = tl.load(k + row_k[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_w = tl.dot(b_Ai, (b_k * b_kscale[:, None]).to(b_Ai.dtype), input_precision=DOT_PRECISION)
        tl.store(w + row[:, None] * K + o_k[None, :], b_w.to(w.dtype.element_ty), mask=m_tk)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
        b_u = tl.dot(b_Ai, (b_v * b_beta[:, None]).to(b_Ai.dtype), input_precision=DOT_PRECISION)
        tl.store(u + row[:, None] * V + o_v[None, :], b_u.to(u.dtype.element_ty), mask=m_tv)


@triton.jit(do_not_specialize=["T", "H", "HK"])
def ut_transform_bwd_kernel(
    k, v, beta, g_cum, A_inv, dw, du, dk, dv, dbeta, dg_cum, cu_seqlens, chunk_indices, T,
    H, HK, K, V, BT: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """One program per (chunk, batch*head): dk, dv, dbeta (and dg_cum) from dW, dU (all fp32)."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < eos - bos
    row = (bos + o_t) * H + i_h
    row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)

    b_beta = tl.load(beta + row, mask=m_t, other=0.0).to(tl.float32)
    b_Ai = tl.load(A_inv + row[:, None] * BT + o_i[None, :], mask=m_t[:, None], other=0.0)
    b_eg = tl.where(m_t, 1.0, 0.0)
    if USE_G:
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
        b_eg = tl.where(m_t, tl.exp(b_g), 0.0)
    b_dAi = tl.zeros([BT, BT], dtype=tl.float32)
    b_KK = tl.zeros([BT, BT], dtype=tl.float32)
    b_dbeta = tl.zeros([BT], dtype=tl.float32)
    b_dg = tl.zeros([BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):  # W = A_inv Kb, Kb = diag(beta e^g) K
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        p = row[:, None] * K + o_k[None, :]
        b_k = tl.load(k + row_k[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_dw = tl.load(dw + p, mask=m_tk, other=0.0)
        b_kg = b_k * b_eg[:, None]
        b_kb = b_kg * b_beta[:, None]
        b_KK += tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PRECISION)
        b_dAi += tl.dot(b_dw, tl.trans(b_kb), input_precision=DOT_PRECISION)
        b_dkb = tl.dot(tl.trans(b_Ai), b_dw, input_precision=DOT_PRECISION)
        tl.store(dk + p, b_dkb * (b_eg * b_beta)[:, None], mask=m_tk)
        b_dbeta += tl.sum(b_dkb * b_kg, 1)
        b_dg += tl.sum(b_dkb * b_kb, 1)
    for i_v in range(0, tl.cdiv(V, BV)):  # U = A_inv Vb, Vb = diag(beta) V
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        p = row[:, None] * V + o_v[None, :]
        b_v = tl.load(v + p, mask=m_tv, other=0.0).to(tl.float32)
        b_du = tl.load(du + p, mask=m_tv, other=0.0)
        b_dAi += tl.dot(b_du, tl.trans(b_v * b_beta[:, None]), input_precision=DOT_PRECISION)
        b_dvb = tl.dot(tl.trans(b_Ai), b_du, input_precision=DOT_PRECISION)
        tl.store(dv + p, b_dvb * b_beta[:, None], mask=m_tv)
        b_dbeta += tl.sum(b_dvb * b_v, 1)

    # A_inv = (I + A)^-1  =>  dA = -A_inv^T dA_inv A_inv^T on the strictly-lower part
    b_dA = tl.dot(tl.dot(tl.trans(b_Ai), b_dAi, input_precision=DOT_PRECISION), tl.trans(b_Ai),
                  input_precision=DOT_PRECISION)
    m_A = (o_i[:, None] > o_i[None, :]) & m_t[:, None] & m_t[None, :]
    if USE_G:
        b_dA = -tl.where(m_A, b_dA * tl.exp(b_g[:, None] - b_g[None, :]), 0.0)
    else:
        b_dA = -tl.where(m_A, b_dA, 0.0)
    # A_ij = beta_i (k_i . k_j) exp(g_i - g_j); b_dA now holds M = dA * exp(g_i - g_j)
    b_dbeta += tl.sum(b_dA * b_KK, 1)
    b_dA = b_dA * b_beta[:, None]
    b_dAA = b_dA * b_KK
    b_dg += tl.sum(b_dAA, 1) - tl.sum(b_dAA, 0)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        p = row[:, None] * K + o_k[None, :]
        b_k = tl.load(k + row_k[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_dk = tl.load(dk + p, mask=m_tk, other=0.0)
        b_dk += tl.dot(b_dA, b_k, input_precision=DOT_PRECISION)
        b_dk += tl.dot(tl.trans(b_dA), b_k, input_precision=DOT_PRECISION)
        tl.store(dk + p, b_dk, mask=m_tk)
    tl.store(dbeta + row, b_dbeta, mask=m_t)
    if USE_G:
        tl.store(dg_cum + row, b_dg, mask=m_t)


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_size must be one of {CHUNK_SIZES}, got {chunk_size}")


def ut_transform_fwd(
    k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g_cum: Optional[torch.Tensor],
    chunk_size: int, cu_seqlens: Optional[torch.Tensor] = None,
    chunk_indices: Optional[torch.Tensor] = None, precision: Optional[str] = None,
    store: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the UT kernel with an already chunk-local-cumsummed gate `g_cum` (fp32 [B,T,HV]).
    k [B,T,H,K]; v, beta, g_cum and the outputs per value head (HV = r H: GVA). fp32-operand
    dots run at `precision` ("ieee" or "tf32"); None: `operands_precision(k, v)`, IEEE for fp32
    inputs and TF32 for half inputs (the chunk kernels' choice). W and U are stored in `store`
    (a half dtype: the W / U dots take half operands, A_inv and the scaled K, V rounded to it);
    A_inv is fp32 whatever `store` (the merges' scratch, and what the backward reads)."""
    check_chunk_size(chunk_size)
    B, T, HK, K = k.shape
    H, V = v.shape[2], v.shape[-1]
    k, v, beta = k.contiguous(), v.contiguous(), beta.contiguous()
    f32 = dict(device=k.device, dtype=torch.float32)
    A_inv = torch.empty(B, T, H, chunk_size, **f32)
    w = torch.empty(B, T, H, K, device=k.device, dtype=store)
    u = torch.empty(B, T, H, V, device=k.device, dtype=store)
    if cu_seqlens is not None and chunk_indices is None:
        chunk_indices = prepare_chunk_indices(cu_seqlens, chunk_size)
    NT = triton.cdiv(T, chunk_size) if cu_seqlens is None else chunk_indices.shape[0]
    if NT > 0 and B * H > 0:
        ut_transform_fwd_kernel[(NT, B * H)](
            k, v, beta, g_cum, A_inv, w, u, cu_seqlens, chunk_indices, T,
            H=H, HK=HK, K=K, V=V, BT=chunk_size, BC=BLOCK, BK=min(64, next_pow2(K)),
            BV=min(64, next_pow2(V)), USE_G=g_cum is not None, IS_VARLEN=cu_seqlens is not None,
            DOT_PRECISION=precision or operands_precision(k, v),
        )
    return A_inv, w, u


def ut_transform_bwd(
    k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g_cum: Optional[torch.Tensor],
    A_inv: torch.Tensor, dw: torch.Tensor, du: torch.Tensor, chunk_size: int,
    cu_seqlens: Optional[torch.Tensor] = None, chunk_indices: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Backward of `ut_transform_fwd` given dW, dU (fp32): (dk, dv, dbeta, dg_cum or None), fp32;
    dk per value head [B,T,HV,K] (the caller sums a key head's group).

    dg_cum is the gradient w.r.t. the chunk-local cumsum; chain it through
    `chunk_local_cumsum(..., reverse=True)` for the raw gate.
    """
    check_chunk_size(chunk_size)
    B, T, HK, K = k.shape
    H, V = v.shape[2], v.shape[-1]
    f32 = dict(device=k.device, dtype=torch.float32)
    dk = torch.empty(B, T, H, K, **f32)
    dv = torch.empty(B, T, H, V, **f32)
    dbeta = torch.empty(B, T, H, **f32)
    dg_cum = None if g_cum is None else torch.empty(B, T, H, **f32)
    if cu_seqlens is not None and chunk_indices is None:
        chunk_indices = prepare_chunk_indices(cu_seqlens, chunk_size)
    NT = triton.cdiv(T, chunk_size) if cu_seqlens is None else chunk_indices.shape[0]
    if NT > 0 and B * H > 0:
        ut_transform_bwd_kernel[(NT, B * H)](
            k.contiguous(), v.contiguous(), beta.contiguous(), g_cum, A_inv, dw.contiguous(),
            du.contiguous(), dk, dv, dbeta, dg_cum, cu_seqlens, chunk_indices, T,
            H=H, HK=HK, K=K, V=V, BT=chunk_size, BK=min(64, next_pow2(K)), BV=min(64, next_pow2(V)),
            USE_G=g_cum is not None, IS_VARLEN=cu_seqlens is not None,
            DOT_PRECISION=dot_precision(torch.float32),
        )
    return dk, dv, dbeta, dg_cum


def ut_transform(
    k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: Optional[torch.Tensor] = None, *,
    chunk_size: int = 64, cu_seqlens: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Public entry: (A_inv [B,T,H,BT], w [B,T,H,K], u [B,T,H,V]), all fp32.

    `g` is the RAW per-head log gate [B,T,H] (or None for DeltaNet); its chunk-local cumsum
    (reset at chunk and sequence starts) is computed here. Row t of A_inv holds the row of
    its chunk's inverse, columns indexed within the chunk. Unlike the chunk kernels, every
    fp32-operand dot here is IEEE at every input dtype (declared ``dot="ieee"`` by the
    ``ut-transform`` command's kernel variant).
    """
    B, T, _, K = k.shape
    H = v.shape[2]
    if tuple(beta.shape) != (B, T, H):
        raise ValueError(f"beta must be [B,T,HV]={(B, T, H)}, got {tuple(beta.shape)}")
    check_chunk_size(chunk_size)
    chunk_indices = None if cu_seqlens is None else prepare_chunk_indices(cu_seqlens, chunk_size)
    g_cum = None if g is None else chunk_local_cumsum(g, chunk_size, cu_seqlens, chunk_indices)
    return ut_transform_fwd(k, v, beta, g_cum, chunk_size, cu_seqlens, chunk_indices, precision="ieee")
