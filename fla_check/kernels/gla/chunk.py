"""GLA, chunked (fla's chunk_gla algorithm), forward and backward in Triton.

Gates are natural-log decays; as in fla, the chunk-local cumsum is rescaled to base 2
(gc = cumsum(g) / ln 2, fp32) and every kernel uses exp2. Like fla, a gate of -finfo.max then
overflows to -inf in gc (NaN output), while -0.1*finfo.max stays finite and silently wrong.
Forward, per chunk of BT tokens (BT in {16, 32, 64}, sub-chunks of BC = 16):
  (a) gc = chunk-local inclusive cumsum of g / ln 2 (resets at every chunk and sequence start),
  (b) h[c] = state entering chunk c:  h *= exp2(gc_last);  h += (k * exp2(gc_last - gc))^T v,
  (c) intra-chunk A (scale folded in): off-diagonal sub-chunk blocks through the bounded
      factorisation (q * exp2(gc_i - gc_n)) (k * exp2(gc_n - gc_j))^T, gc_n = first row of
      sub-chunk i; diagonal blocks column by column with exact exp2(gc_i - gc_j), upper zeroed,
  (d) o = scale * (q * exp2(gc)) h[c] + A v.
No protection beyond fla's: a gate of -0.1*finfo.max is absorbed by the cumsum (silently
wrong output), -inf gives NaN. That weakness is what fla-check must detect.
Backward (chunk_gla_bwd below) recomputes gc and h in fp32, carries dh backward over chunks,
then computes dv, dA, the sub-chunk intra dq/dk and the inter dq/dk/dg per chunk.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.varlen import chunk_bounds, first_chunk, sequence_bounds
from fla_check.kernels.gla.inputs import prepare_gla_args
from fla_check.kernels.utils import dot_precision, fma_block, next_pow2, prepare_chunk_indices

BC_MAX = 16
RCP_LN2 = tl.constexpr(1.4426950408889634)  # 1 / ln 2, as fla's chunk_local_cumsum scale


@triton.jit(do_not_specialize=["T", "H"])
def chunk_local_cumsum_kernel(
    g, gc, cu_seqlens, chunk_indices, T,
    H, K, BT: tl.constexpr, BK: tl.constexpr, IS_VARLEN: tl.constexpr,
):
    """gc = inclusive cumsum of g along time, restarting at every chunk, in base 2 (fp32)."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    o_t = i_t * BT + tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    m = (o_t < seq_len)[:, None] & (o_k < K)[None, :]
    offs = ((bos + o_t) * H + i_h)[:, None] * K + o_k[None, :]
    b_g = tl.load(g + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(gc + offs, tl.cumsum(b_g, axis=0) * RCP_LN2, mask=m)


@triton.jit(do_not_specialize=["T", "H"])
def chunk_fwd_h_kernel(
    k, v, gc, h, h0, ht, cu_seqlens, chunk_offsets, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Walk the chunks of one (sequence, head, V-block, K-block); h[c] = state entering chunk c.
    A state row (one key channel) is updated from its own channel only: K-blocks are independent
    programs, each compiled for BK channels rather than the whole head dim."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_k = tl.program_id(2)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    seq_len = eos - bos
    boh = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN)
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    o_s = o_k[:, None] * V + o_v[None, :]

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_h += tl.load(h0 + i_nh * K * V + o_s, mask=m_h, other=0.0).to(tl.float32)
    for i_t in range(0, tl.cdiv(seq_len, BT)):
        tl.store(h + ((boh + i_t) * H + i_h) * K * V + o_s, b_h.to(h.dtype.element_ty), mask=m_h)
        o_t = i_t * BT + tl.arange(0, BT)
        m_t = o_t < seq_len
        row = (bos + o_t) * H + i_h
        p_kt = row[None, :] * K + o_k[:, None]  # [BK, BT]
        b_k = tl.load(k + p_kt, mask=m_k[:, None] & m_t[None, :], other=0.0)
        b_gk = tl.load(gc + p_kt, mask=m_k[:, None] & m_t[None, :], other=0.0)
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        last = tl.minimum(i_t * BT + BT, seq_len) - 1
        b_gl = tl.load(gc + ((bos + last) * H + i_h) * K + o_k, mask=m_k, other=0.0)
        b_h *= tl.exp2(b_gl)[:, None]
        b_kg = (b_k * tl.exp2(b_gl[:, None] - b_gk)).to(b_k.dtype)
        b_h += tl.dot(b_kg, b_v, input_precision=DOT_PRECISION)
    if STORE_HT:
        tl.store(ht + i_nh * K * V + o_s, b_h, mask=m_h)


@triton.jit(do_not_specialize=["T", "H"])
def chunk_fwd_A_inter_kernel(
    q, k, gc, A, cu_seqlens, chunk_indices, scale, T,
    H, K, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    NC: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Off-diagonal sub-chunk block (i, j), i > j, of A with the bounded factorisation."""
    i_c, i_ij, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_i, i_j = i_ij // NC, i_ij % NC
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    if i_i <= i_j:
        return
    if i_t * BT + i_i * BC >= seq_len:
        return
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o_i = i_t * BT + i_i * BC + tl.arange(0, BC)
    o_j = i_t * BT + i_j * BC + tl.arange(0, BC)
    m_i = o_i < seq_len
    row_i = (bos + o_i) * H + i_h
    row_j = (bos + o_j) * H + i_h
    m_qi = m_i[:, None] & m_k[None, :]
    b_q = tl.load(q + row_i[:, None] * K + o_k[None, :], mask=m_qi, other=0.0)
    b_g = tl.load(gc + row_i[:, None] * K + o_k[None, :], mask=m_qi, other=0.0)
    b_kt = tl.load(k + row_j[None, :] * K + o_k[:, None], mask=m_k[:, None], other=0.0)
    b_gkt = tl.load(gc + row_j[None, :] * K + o_k[:, None], mask=m_k[:, None], other=0.0)
    b_gn = tl.load(gc + ((bos + i_t * BT + i_i * BC) * H + i_h) * K + o_k, mask=m_k, other=0.0)
    b_qg = b_q * tl.exp2(b_g - b_gn[None, :]) * scale
    b_kg = b_kt * tl.exp2(b_gn[:, None] - b_gkt)
    b_A = tl.dot(b_qg, b_kg, input_precision=DOT_PRECISION)
    p_A = A + row_i[:, None] * BT + i_j * BC + tl.arange(0, BC)[None, :]
    tl.store(p_A, b_A, mask=m_i[:, None])


@triton.jit(do_not_specialize=["T", "H"])
def chunk_fwd_A_intra_kernel(
    q, k, gc, A, cu_seqlens, chunk_indices, scale, T,
    H, K, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    """Diagonal sub-chunk block i of A, one column at a time with exact gate differences."""
    i_c, i_i, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    if i_t * BT + i_i * BC >= seq_len:
        return
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o_c = tl.arange(0, BC)
    o_i = i_t * BT + i_i * BC + o_c
    m_i = o_i < seq_len
    row_i = (bos + o_i) * H + i_h
    m_qi = m_i[:, None] & m_k[None, :]
    b_q = tl.load(q + row_i[:, None] * K + o_k[None, :], mask=m_qi, other=0.0).to(tl.float32)
    b_g = tl.load(gc + row_i[:, None] * K + o_k[None, :], mask=m_qi, other=0.0)
    for j in range(0, BC):
        t_j = i_t * BT + i_i * BC + j
        m_j = m_k & ((o_k * 0 + t_j) < seq_len)
        p_j = ((bos + t_j) * H + i_h) * K + o_k
        b_k = tl.load(k + p_j, mask=m_j, other=0.0).to(tl.float32)
        b_gk = tl.load(gc + p_j, mask=m_j, other=0.0)
        b_A = tl.sum(b_q * b_k[None, :] * tl.exp2(b_g - b_gk[None, :]), 1)
        b_A = tl.where(o_c >= j, b_A * scale, 0.0)
        tl.store(A + row_i * BT + i_i * BC + j, b_A, mask=m_i)


@triton.jit(do_not_specialize=["T", "H"])
def chunk_fwd_o_kernel(
    q, v, gc, h, A, o, cu_seqlens, chunk_indices, chunk_offsets, scale, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """o = scale * (q * exp2(gc)) h[c] + tril(A) v for one chunk and V-block; the K reduction
    over K-blocks of BK in a loop, each block's dot accumulated into one fp32 accumulator."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    boh = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN)
    o_v = i_v * BV + tl.arange(0, BV)
    o_c = tl.arange(0, BT)
    o_t = i_t * BT + o_c
    m_v = o_v < V
    m_t = o_t < seq_len
    row = (bos + o_t) * H + i_h
    m_tv = m_t[:, None] & m_v[None, :]
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_qk = m_t[:, None] & m_k[None, :]
        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_qk, other=0.0)
        b_g = tl.load(gc + row[:, None] * K + o_k[None, :], mask=m_qk, other=0.0)
        b_qg = (b_q * tl.exp2(b_g)).to(b_q.dtype)
        p_h = h + ((boh + i_t) * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :]
        b_h = tl.load(p_h, mask=m_k[:, None] & m_v[None, :], other=0.0).to(b_qg.dtype)
        b_o = tl.dot(b_qg, b_h, b_o, input_precision=DOT_PRECISION)
    b_o = b_o * scale
    b_A = tl.load(A + row[:, None] * BT + o_c[None, :], mask=m_t[:, None], other=0.0)
    b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0)
    b_A = tl.where(o_c[:, None] >= o_c[None, :], b_A, 0.0).to(b_v.dtype)
    b_o += tl.dot(b_A, b_v, input_precision=DOT_PRECISION)
    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)


# ---------------------------------------------------------------- backward kernels


@triton.jit(do_not_specialize=["T", "H"])
def chunk_bwd_dh_kernel(
    q, gc, do, dh, dht, dh0, cu_seqlens, chunk_offsets, scale, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Reverse over chunks: dh[c] = gradient w.r.t. the state leaving chunk c (fp32)."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    seq_len = eos - bos
    boh = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    o_s = o_k[:, None] * V + o_v[None, :]

    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_DHT:
        b_dh += tl.load(dht + i_nh * K * V + o_s, mask=m_h, other=0.0).to(tl.float32)
    NT = tl.cdiv(seq_len, BT)
    for i_s in range(0, NT):
        i_t = NT - 1 - i_s
        tl.store(dh + ((boh + i_t) * H + i_h) * K * V + o_s, b_dh, mask=m_h)
        o_t = i_t * BT + tl.arange(0, BT)
        m_t = o_t < seq_len
        row = (bos + o_t) * H + i_h
        p_qt = row[None, :] * K + o_k[:, None]  # [BK, BT]
        b_q = tl.load(q + p_qt, mask=m_k[:, None] & m_t[None, :], other=0.0)
        b_g = tl.load(gc + p_qt, mask=m_k[:, None] & m_t[None, :], other=0.0)
        b_do = tl.load(do + row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        last = tl.minimum(i_t * BT + BT, seq_len) - 1
        b_gl = tl.load(gc + ((bos + last) * H + i_h) * K + o_k, mask=m_k, other=0.0)
        b_dh *= tl.exp2(b_gl)[:, None]
        b_qg = (b_q * tl.exp2(b_g) * scale).to(b_q.dtype)
        b_dh += tl.dot(b_qg, b_do.to(b_qg.dtype), input_precision=DOT_PRECISION)
    if STORE_DH0:
        tl.store(dh0 + i_nh * K * V + o_s, b_dh, mask=m_h)


@triton.jit(do_not_specialize=["T", "H"])
def chunk_bwd_dA_kernel(
    v, do, dA, cu_seqlens, chunk_indices, scale, T,
    H, V, BT: tl.constexpr, BV: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dA = scale * tril(do v^T) within one chunk: the gradient w.r.t. A / scale."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    o_c = tl.arange(0, BT)
    o_t = i_t * BT + o_c
    m_t = o_t < seq_len
    row = (bos + o_t) * H + i_h
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        b_do = tl.load(do + row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        b_vt = tl.load(v + row[None, :] * V + o_v[:, None], mask=m_v[:, None] & m_t[None, :], other=0.0)
        b_dA += tl.dot(b_do, b_vt.to(b_do.dtype), input_precision=DOT_PRECISION)
    b_dA = tl.where(o_c[:, None] >= o_c[None, :], b_dA * scale, 0.0)
    tl.store(dA + row[:, None] * BT + o_c[None, :], b_dA, mask=m_t[:, None])


@triton.jit(do_not_specialize=["T", "H"])
def chunk_bwd_dv_kernel(
    k, gc, A, do, dh, dv, cu_seqlens, chunk_indices, chunk_offsets, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dv = tril(A)^T do + (k * exp2(gc_last - gc)) dh[c]."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    boh = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN)
    o_c = tl.arange(0, BT)
    o_t = i_t * BT + o_c
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_t = o_t < seq_len
    m_k = o_k < K
    m_v = o_v < V
    row = (bos + o_t) * H + i_h
    m_tv = m_t[:, None] & m_v[None, :]
    b_do = tl.load(do + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0)
    b_At = tl.load(A + row[None, :] * BT + o_c[:, None], mask=m_t[None, :], other=0.0)  # [j, i]
    b_At = tl.where(o_c[:, None] <= o_c[None, :], b_At, 0.0).to(b_do.dtype)
    b_dv = tl.dot(b_At, b_do, input_precision=DOT_PRECISION)
    m_tk = m_t[:, None] & m_k[None, :]
    b_k = tl.load(k + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0)
    b_g = tl.load(gc + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0)
    last = tl.minimum(i_t * BT + BT, seq_len) - 1
    b_gl = tl.load(gc + ((bos + last) * H + i_h) * K + o_k, mask=m_k, other=0.0)
    b_kg = (b_k * tl.exp2(b_gl[None, :] - b_g)).to(b_k.dtype)
    p_dh = dh + ((boh + i_t) * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :]
    b_dh = tl.load(p_dh, mask=m_k[:, None] & m_v[None, :], other=0.0).to(b_kg.dtype)
    b_dv += tl.dot(b_kg, b_dh, input_precision=DOT_PRECISION)
    tl.store(dv + row[:, None] * V + o_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)


@triton.jit(do_not_specialize=["T", "H"])
def chunk_bwd_intra_kernel(
    q, k, gc, dA, dq, dk, cu_seqlens, chunk_indices, T,
    H, K, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    NC: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Intra-chunk dq, dk of sub-chunk i: off-diagonal sub-chunk blocks by the bounded
    factorisation around a reference row, the diagonal block column by column."""
    i_c, i_i, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    t0 = i_t * BT + i_i * BC
    if t0 >= seq_len:
        return
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o_c = tl.arange(0, BC)
    o_i = t0 + o_c
    m_i = o_i < seq_len
    row_i = (bos + o_i) * H + i_h
    m_ik = m_i[:, None] & m_k[None, :]
    p_i = row_i[:, None] * K + o_k[None, :]
    b_g = tl.load(gc + p_i, mask=m_ik, other=0.0)

    # dq_i = sum_{j <= i} dA_ij k_j exp2(gc_i - gc_j)
    b_dq = tl.zeros([BC, BK], dtype=tl.float32)
    if i_i > 0:
        b_gn = tl.load(gc + ((bos + t0) * H + i_h) * K + o_k, mask=m_k, other=0.0)
        for i_j in range(0, i_i):
            o_j = i_t * BT + i_j * BC + o_c
            p_j = ((bos + o_j) * H + i_h)[:, None] * K + o_k[None, :]
            b_k = tl.load(k + p_j, mask=m_k[None, :], other=0.0)
            b_gk = tl.load(gc + p_j, mask=m_k[None, :], other=0.0)
            b_kg = b_k * tl.exp2(b_gn[None, :] - b_gk)
            b_dA = tl.load(dA + row_i[:, None] * BT + i_j * BC + o_c[None, :], mask=m_i[:, None], other=0.0)
            b_dq += tl.dot(b_dA, b_kg, input_precision=DOT_PRECISION)
        b_dq *= tl.exp2(b_g - b_gn[None, :])
    for j in range(0, BC):
        t_j = t0 + j
        m_j = (o_k * 0 + t_j) < seq_len
        p_kj = ((bos + t_j) * H + i_h) * K + o_k
        b_kj = tl.load(k + p_kj, mask=m_k & m_j, other=0.0).to(tl.float32)
        b_gkj = tl.load(gc + p_kj, mask=m_k & m_j, other=0.0)
        b_dAj = tl.load(dA + row_i * BT + i_i * BC + j, mask=m_i, other=0.0)
        m_s = (o_c[:, None] >= j) & m_i[:, None]
        b_dq += tl.where(m_s, b_dAj[:, None] * b_kj[None, :] * tl.exp2(b_g - b_gkj[None, :]), 0.0)
    tl.store(dq + p_i, b_dq, mask=m_ik)

    # dk_i = sum_{j >= i} dA_ji q_j exp2(gc_j - gc_i), reference row = last row of sub-chunk i
    b_dk = tl.zeros([BC, BK], dtype=tl.float32)
    last = tl.minimum(t0 + BC, seq_len) - 1
    b_gn = tl.load(gc + ((bos + last) * H + i_h) * K + o_k, mask=m_k, other=0.0)
    for i_j in range(i_i + 1, NC):
        o_j = i_t * BT + i_j * BC + o_c
        m_j = o_j < seq_len
        row_j = (bos + o_j) * H + i_h
        p_j = row_j[:, None] * K + o_k[None, :]
        b_q = tl.load(q + p_j, mask=m_j[:, None] & m_k[None, :], other=0.0)
        b_gq = tl.load(gc + p_j, mask=m_j[:, None] & m_k[None, :], other=0.0)
        b_qg = b_q * tl.where(m_j[:, None], tl.exp2(b_gq - b_gn[None, :]), 0.0)
        p_dAt = dA + row_j[None, :] * BT + i_i * BC + o_c[:, None]  # [key i, query j]
        b_dAt = tl.load(p_dAt, mask=m_j[None, :], other=0.0)
        b_dk += tl.dot(b_dAt, b_qg, input_precision=DOT_PRECISION)
    b_dk *= tl.exp2(b_gn[None, :] - b_g)
    for j in range(0, BC):
        t_j = t0 + j
        m_j = (o_k * 0 + t_j) < seq_len
        p_qj = ((bos + t_j) * H + i_h) * K + o_k
        b_qj = tl.load(q + p_qj, mask=m_k & m_j, other=0.0).to(tl.float32)
        b_gqj = tl.load(gc + p_qj, mask=m_k & m_j, other=0.0)
        m_jc = (o_c * 0 + t_j) < seq_len
        b_dAj = tl.load(dA + ((bos + t_j) * H + i_h) * BT + i_i * BC + o_c, mask=m_jc, other=0.0)
        m_s = (o_c[:, None] <= j) & m_jc[:, None]
        b_dk += tl.where(m_s, b_dAj[:, None] * b_qj[None, :] * tl.exp2(b_gqj[None, :] - b_g), 0.0)
    tl.store(dk + p_i, b_dk, mask=m_ik)


@triton.jit(do_not_specialize=["T", "H"])
def chunk_bwd_dqkg_kernel(
    q, k, v, gc, h, do, dh, dq, dk, dg, cu_seqlens, chunk_indices, chunk_offsets, scale, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Inter-chunk dq, dk, plus the intra parts already in dq/dk; then
    dg = reverse_cumsum(q dq - k dk) + exp2(gc_last) sum_v(h dh) + sum_t k dk_inter."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    boh = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN)
    o_t = i_t * BT + tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    m_t = o_t < seq_len
    m_k = o_k < K
    row = (bos + o_t) * H + i_h
    p_s = ((boh + i_t) * H + i_h) * K * V

    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_dgk = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        p_ht = p_s + o_k[None, :] * V + o_v[:, None]  # [BV, BK]: h[c]^T
        m_ht = m_v[:, None] & m_k[None, :]
        b_ht = tl.load(h + p_ht, mask=m_ht, other=0.0)
        b_dht = tl.load(dh + p_ht, mask=m_ht, other=0.0)
        b_do = tl.load(do + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0)
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0)
        b_dgk += tl.sum(b_ht * b_dht, 0)
        b_dq += tl.dot(b_do, b_ht.to(b_do.dtype), input_precision=DOT_PRECISION)
        b_dk += tl.dot(b_v, b_dht.to(b_v.dtype), input_precision=DOT_PRECISION)
    m_tk = m_t[:, None] & m_k[None, :]
    p_tk = row[:, None] * K + o_k[None, :]
    b_g = tl.load(gc + p_tk, mask=m_tk, other=0.0)
    last = tl.minimum(i_t * BT + BT, seq_len) - 1
    b_gl = tl.load(gc + ((bos + last) * H + i_h) * K + o_k, mask=m_k, other=0.0)
    b_dgk *= tl.exp2(b_gl)
    b_dq = b_dq * tl.exp2(b_g) * scale
    b_dk = b_dk * tl.exp2(b_gl[None, :] - b_g)
    b_q = tl.load(q + p_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_k = tl.load(k + p_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_dgk += tl.sum(b_dk * b_k, 0)
    b_dq += tl.load(dq + p_tk, mask=m_tk, other=0.0)
    b_dk += tl.load(dk + p_tk, mask=m_tk, other=0.0)
    b_dg = b_q * b_dq - b_k * b_dk
    b_dg = b_dg - tl.cumsum(b_dg, axis=0) + tl.sum(b_dg, 0)[None, :] + b_dgk[None, :]
    tl.store(dq + p_tk, b_dq, mask=m_tk)
    tl.store(dk + p_tk, b_dk, mask=m_tk)
    tl.store(dg + p_tk, b_dg.to(dg.dtype.element_ty), mask=m_tk)


# ---------------------------------------------------------------- host side


class ChunkLayout:
    """Chunk grid of a batch or a varlen pack: chunks to launch and per-sequence state offsets."""

    def __init__(self, B: int, T: int, BT: int, cu_seqlens: Optional[torch.Tensor], device):
        self.BT = BT
        self.varlen = cu_seqlens is not None
        if self.varlen:
            self.indices = prepare_chunk_indices(cu_seqlens, BT)
            counts = triton.cdiv(cu_seqlens[1:] - cu_seqlens[:-1], BT)
            self.offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int64)
            self.grid_chunks = self.indices.shape[0]  # B == 1
            self.num_states = int(self.offsets[-1])
        else:
            self.indices = self.offsets = None
            self.grid_chunks = triton.cdiv(T, BT)
            self.num_states = B * self.grid_chunks


def _blocks(K: int, V: int) -> tuple[int, int, int]:
    BK = next_pow2(K)
    BV = fma_block(V)
    return BK, BV, triton.cdiv(V, BV)


def chunk_local_cumsum(g: torch.Tensor, lay: ChunkLayout, cu_seqlens) -> torch.Tensor:
    B, T, H, K = g.shape
    gc = torch.empty_like(g, dtype=torch.float32)
    if lay.grid_chunks * B * H > 0:
        chunk_local_cumsum_kernel[(lay.grid_chunks, B * H)](
            g, gc, cu_seqlens, lay.indices, T, H=H, K=K, BT=lay.BT, BK=next_pow2(K),
            IS_VARLEN=lay.varlen,
        )
    return gc


def chunk_fwd_h(k, v, gc, h0, output_final_state, cu_seqlens, lay: ChunkLayout, N: int,
                state_dtype: torch.dtype):
    B, T, H, K = k.shape
    V = v.shape[-1]
    _, BV, NV = _blocks(K, V)
    BK = fma_block(K)
    h = k.new_empty(lay.num_states, H, K, V, dtype=state_dtype)
    ht = k.new_empty(N, H, K, V, dtype=torch.float32) if output_final_state else None
    if N * H > 0:
        chunk_fwd_h_kernel[(NV, N * H, triton.cdiv(K, BK))](
            k, v, gc, h, h0, ht, cu_seqlens, lay.offsets, T, H=H, K=K, V=V, BT=lay.BT, BK=BK,
            BV=BV, USE_H0=h0 is not None, STORE_HT=output_final_state, IS_VARLEN=lay.varlen,
            DOT_PRECISION=dot_precision(k.dtype),
        )
    return h, ht


def chunk_fwd_A(q, k, gc, scale, cu_seqlens, lay: ChunkLayout) -> torch.Tensor:
    B, T, H, K = q.shape
    BT = lay.BT
    BC = min(BC_MAX, BT)
    NC = BT // BC
    A = q.new_empty(B, T, H, BT, dtype=torch.float32)
    if lay.grid_chunks * B * H == 0:
        return A
    common = dict(H=H, K=K, BT=BT, BC=BC, BK=next_pow2(K), IS_VARLEN=lay.varlen)
    if NC > 1:
        chunk_fwd_A_inter_kernel[(lay.grid_chunks, NC * NC, B * H)](
            q, k, gc, A, cu_seqlens, lay.indices, scale, T, NC=NC,
            DOT_PRECISION=dot_precision(q.dtype), **common,
        )
    chunk_fwd_A_intra_kernel[(lay.grid_chunks, NC, B * H)](
        q, k, gc, A, cu_seqlens, lay.indices, scale, T, **common,
    )
    return A


def chunk_fwd_o(q, v, gc, h, A, scale, cu_seqlens, lay: ChunkLayout) -> torch.Tensor:
    B, T, H, K = q.shape
    V = v.shape[-1]
    _, BV, NV = _blocks(K, V)
    BK = fma_block(K)
    o = torch.empty_like(v, dtype=q.dtype)
    if lay.grid_chunks * B * H > 0:
        chunk_fwd_o_kernel[(NV, lay.grid_chunks, B * H)](
            q, v, gc, h, A, o, cu_seqlens, lay.indices, lay.offsets, scale, T, H=H, K=K, V=V,
            BT=lay.BT, BK=BK, BV=BV, IS_VARLEN=lay.varlen, DOT_PRECISION=dot_precision(q.dtype),
        )
    return o


def chunk_gla_fwd(q, k, v, g, scale, h0, output_final_state, cu_seqlens, N, BT):
    lay = ChunkLayout(q.shape[0], q.shape[1], BT, cu_seqlens, q.device)
    gc = chunk_local_cumsum(g, lay, cu_seqlens)
    h, ht = chunk_fwd_h(k, v, gc, h0, output_final_state, cu_seqlens, lay, N, k.dtype)
    A = chunk_fwd_A(q, k, gc, scale, cu_seqlens, lay)
    o = chunk_fwd_o(q, v, gc, h, A, scale, cu_seqlens, lay)
    return o, ht


def chunk_bwd_dh(q, gc, do, dht, want_dh0, scale, cu_seqlens, lay: ChunkLayout, N: int):
    B, T, H, K = q.shape
    V = do.shape[-1]
    BK, BV, NV = _blocks(K, V)
    dh = q.new_empty(lay.num_states, H, K, V, dtype=torch.float32)
    dh0 = q.new_empty(N, H, K, V, dtype=torch.float32) if want_dh0 else None
    if N * H > 0:
        chunk_bwd_dh_kernel[(NV, N * H)](
            q, gc, do, dh, dht, dh0, cu_seqlens, lay.offsets, scale, T, H=H, K=K, V=V, BT=lay.BT,
            BK=BK, BV=BV, USE_DHT=dht is not None, STORE_DH0=want_dh0, IS_VARLEN=lay.varlen,
            DOT_PRECISION=dot_precision(q.dtype),
        )
    return dh, dh0


def chunk_gla_bwd(q, k, v, g, do, dht, scale, h0, cu_seqlens, N, BT):
    """All gradients; gc, h (fp32) and A are recomputed from the inputs."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV = _blocks(K, V)
    BC = min(BC_MAX, BT)
    lay = ChunkLayout(B, T, BT, cu_seqlens, q.device)
    gc = chunk_local_cumsum(g, lay, cu_seqlens)
    h, _ = chunk_fwd_h(k, v, gc, h0, False, cu_seqlens, lay, N, torch.float32)
    A = chunk_fwd_A(q, k, gc, scale, cu_seqlens, lay)
    dh, dh0 = chunk_bwd_dh(q, gc, do, dht, h0 is not None, scale, cu_seqlens, lay, N)
    dA = q.new_empty(B, T, H, BT, dtype=torch.float32)
    dq = torch.empty_like(q, dtype=torch.float32)
    dk = torch.empty_like(k, dtype=torch.float32)
    dv = torch.empty_like(v)
    dg = torch.empty_like(g)
    if lay.grid_chunks * B * H > 0:
        prec = dot_precision(q.dtype)
        varlen = dict(IS_VARLEN=lay.varlen, DOT_PRECISION=prec)
        chunk_bwd_dA_kernel[(lay.grid_chunks, B * H)](
            v, do, dA, cu_seqlens, lay.indices, scale, T, H=H, V=V, BT=BT, BV=BV, **varlen)
        chunk_bwd_dv_kernel[(NV, lay.grid_chunks, B * H)](
            k, gc, A, do, dh, dv, cu_seqlens, lay.indices, lay.offsets, T, H=H, K=K, V=V, BT=BT,
            BK=BK, BV=BV, **varlen)
        chunk_bwd_intra_kernel[(lay.grid_chunks, BT // BC, B * H)](
            q, k, gc, dA, dq, dk, cu_seqlens, lay.indices, T, H=H, K=K, BT=BT, BC=BC, BK=BK,
            NC=BT // BC, **varlen)
        chunk_bwd_dqkg_kernel[(lay.grid_chunks, B * H)](
            q, k, v, gc, h, do, dh, dq, dk, dg, cu_seqlens, lay.indices, lay.offsets, scale, T,
            H=H, K=K, V=V, BT=BT, BK=BK, BV=BV, **varlen)
    return dq.to(q.dtype), dk.to(k.dtype), dv, dg, dh0


class GlaChunkFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, N, BT):
        o, ht = chunk_gla_fwd(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, N, BT)
        ctx.save_for_backward(q, k, v, g, initial_state, cu_seqlens)
        ctx.scale, ctx.N, ctx.BT = scale, N, BT
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, g, initial_state, cu_seqlens = ctx.saved_tensors
        dq, dk, dv, dg, dh0 = chunk_gla_bwd(
            q, k, v, g, do.contiguous(), None if dht is None else dht.contiguous(), ctx.scale,
            initial_state, cu_seqlens, ctx.N, ctx.BT,
        )
        if dh0 is not None:
            dh0 = dh0.to(initial_state.dtype)
        return dq, dk, dv, dg, None, dh0, None, None, None, None


def gla_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, g: Optional[torch.Tensor] = None,
    beta: Optional[torch.Tensor] = None, scale: Optional[float] = None,
    initial_state: Optional[torch.Tensor] = None, output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None, chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """GLA by fla's chunk algorithm (chunk_size in {16, 32, 64}); differentiable."""
    if chunk_size not in (16, 32, 64):
        raise ValueError(f"chunk_size must be 16, 32 or 64, got {chunk_size}")
    a = prepare_gla_args(q, k, v, g, beta, scale, initial_state, cu_seqlens)
    return GlaChunkFunction.apply(a.q, a.k, a.v, a.g, a.scale, a.initial_state,
                                  output_final_state, a.cu_seqlens, a.N, chunk_size)
