"""KDA (Kimi Delta Attention), chunked forward in Triton: the delta rule with a per-key-channel gate.

Pipeline (all fp32 inside, natural-log gates, `exp`), per chunk of BT in {16, 32, 64} tokens:
  1. G = chunk-local inclusive cumsum of g [B,T,H,K] (the per-head cumsum kernel run on H*K
     "heads", fla_check.kernels.common.cumsum);
  2. intra-chunk scores, sub-chunks of BC = 16 rows:
        Akk_ij = beta_i sum_c k_ic k_jc exp(G_ic - G_jc)   (i > j, strictly lower)
        Aqk_ij = scale  sum_c q_ic k_jc exp(G_ic - G_jc)   (i >= j)
     off-diagonal sub-chunk blocks by one dot of (x_i exp(G_i - G_n)) (k_j exp(G_n - G_j))^T with
     G_n the first row of row i's sub-chunk (j < n <= i: both exponents <= 0, nothing overflows);
     diagonal blocks column by column with the exact exp(G_i - G_j), upper part discarded;
  3. UT transform: A_inv = (I + Akk)^-1 (the "+" form), blocked as fla's solve_tril: 16x16
     diagonal blocks by negated forward substitution, merged with IEEE fp32 dots (the shared
     helpers of fla_check.kernels.common.ut_transform), w = A_inv (beta k exp(G)), u = A_inv (beta v);
  4. state passing, one program per (sequence, head, V-block): h_c stored, v_new = u - w h_c,
     h_{c+1} = Diag(exp G_last) h_c + (k exp(G_last - G))^T v_new;
  5. output: o = scale (q exp(G)) h_c + Aqk v_new.
Like fla, no guard against huge negative gates: a -0.1*finfo.max fill inside a chunk is absorbed
by the chunk-local cumsum (silently wrong), -inf gives NaN. Forward only.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.cumsum import chunk_local_cumsum
from fla_check.kernels.common.ut_transform import BLOCK as UT_BLOCK
from fla_check.kernels.common.ut_transform import check_chunk_size, invert_diagonal_blocks, merge_blocks
from fla_check.kernels.common.varlen import chunk_bounds, first_chunk, flat_chunk, sequence_bounds
from fla_check.kernels.delta.chunk import chunk_layout
from fla_check.kernels.utils import FMA_BLOCK, check_varlen, dot_precision, num_sequences, whole_dim_block

MAX_HEAD_DIM = 256
BC = 16  # sub-chunk rows of the intra-chunk scores


@triton.jit(do_not_specialize=["T", "H"])
def kda_intra_kernel(
    q, k, g_cum, beta, Aqk, Akk, cu_seqlens, chunk_indices, scale, T,
    H, K, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    NC: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One program per (chunk, batch*head): Aqk (scale folded in) and Akk (beta folded in)."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    o_c = tl.arange(0, BC)
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    for i_i in range(0, NC):  # runtime loops: unrolled, the four sub-chunk rows made its compile 4x longer
        o_i = i_t * BT + i_i * BC + o_c
        m_i = o_i < eos - bos
        row_i = (bos + o_i) * H + i_h
        m_ik = m_i[:, None] & m_k[None, :]
        p_i = row_i[:, None] * K + o_k[None, :]
        b_q = tl.load(q + p_i, mask=m_ik, other=0.0).to(tl.float32)
        b_k = tl.load(k + p_i, mask=m_ik, other=0.0).to(tl.float32)
        b_g = tl.load(g_cum + p_i, mask=m_ik, other=0.0)
        b_beta = tl.load(beta + row_i, mask=m_i, other=0.0).to(tl.float32)
        b_gn = tl.load(g_cum + ((bos + i_t * BT + i_i * BC) * H + i_h) * K + o_k,
                       mask=m_k & ((o_k * 0 + i_t * BT + i_i * BC) < eos - bos), other=0.0)
        b_en = tl.where(m_ik, tl.exp(b_g - b_gn[None, :]), 0.0)
        b_qn = b_q * b_en
        b_kn = b_k * b_en
        for i_j in range(0, i_i):  # off-diagonal blocks, j < i: bounded factorisation
            o_j = i_t * BT + i_j * BC + o_c
            m_jk = m_k[:, None] & (o_j < eos - bos)[None, :]
            p_jt = ((bos + o_j) * H + i_h)[None, :] * K + o_k[:, None]  # [BK, BC]
            b_kt = tl.load(k + p_jt, mask=m_jk, other=0.0).to(tl.float32)
            b_gt = tl.load(g_cum + p_jt, mask=m_jk, other=0.0)
            b_kt = b_kt * tl.where(m_jk, tl.exp(b_gn[:, None] - b_gt), 0.0)
            p_A = row_i[:, None] * BT + i_j * BC + o_c[None, :]
            tl.store(Aqk + p_A, tl.dot(b_qn, b_kt, input_precision=DOT_PRECISION) * scale, mask=m_i[:, None])
            tl.store(Akk + p_A, tl.dot(b_kn, b_kt, input_precision=DOT_PRECISION) * b_beta[:, None],
                     mask=m_i[:, None])
        for j in range(0, BC):  # diagonal block, one column at a time, exact gate differences
            t_j = i_t * BT + i_i * BC + j
            m_j = m_k & ((o_k * 0 + t_j) < eos - bos)
            p_j = ((bos + t_j) * H + i_h) * K + o_k
            b_kj = tl.load(k + p_j, mask=m_j, other=0.0).to(tl.float32)
            b_gj = tl.load(g_cum + p_j, mask=m_j, other=0.0)
            b_e = tl.exp(b_g - b_gj[None, :])
            b_aqk = tl.sum(b_q * b_kj[None, :] * b_e, 1)
            b_akk = tl.sum(b_k * b_kj[None, :] * b_e, 1)
            p_col = row_i * BT + i_i * BC + j  # its own name: p_A above is 2-D (compiled Triton keeps loop types)
            tl.store(Aqk + p_col, tl.where(o_c >= j, b_aqk * scale, 0.0), mask=m_i)
            tl.store(Akk + p_col, tl.where(o_c > j, b_akk * b_beta, 0.0), mask=m_i)


@triton.jit(do_not_specialize=["T", "H"])
def kda_ut_kernel(
    k, v, g_cum, beta, Akk, w, u, cu_seqlens, chunk_indices, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, BC: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One program per (chunk, batch*head): A_inv = (I + Akk)^-1 (blocked; overwrites Akk's rows
    of the chunk when BT > BC), w, u."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    o_i = tl.arange(0, BT)
    m_t = i_t * BT + o_i < eos - bos
    row = (bos + i_t * BT + o_i) * H + i_h
    m_A = (o_i[:, None] > o_i[None, :]) & m_t[:, None] & m_t[None, :]
    b_A = tl.load(Akk + row[:, None] * BT + o_i[None, :], mask=m_t[:, None], other=0.0)
    # sign trick: negated strictly-lower part; 16x16 diagonal blocks by substitution, then merged
    # with dots in place in Akk (fla_check.kernels.common.ut_transform's blocked inverse)
    b_Ai = -tl.where(m_A, b_A, 0.0)
    b_Ai = invert_diagonal_blocks(b_Ai, BT, BC)
    if BT > BC:
        tl.store(Akk + row[:, None] * BT + o_i[None, :], b_Ai, mask=m_t[:, None])
        merge_blocks(Akk + ((bos + i_t * BT) * H + i_h) * BT, H * BT, eos - bos - i_t * BT, BT, BC,
                     DOT_PRECISION)
        b_Ai = tl.load(Akk + row[:, None] * BT + o_i[None, :], mask=m_t[:, None], other=0.0)

    b_beta = tl.load(beta + row, mask=m_t, other=0.0).to(tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):  # w by K-blocks: each column's dot is the same, less code
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        p_k = row[:, None] * K + o_k[None, :]
        b_k = tl.load(k + p_k, mask=m_tk, other=0.0).to(tl.float32)
        b_g = tl.load(g_cum + p_k, mask=m_tk, other=0.0)
        b_kb = b_k * tl.where(m_tk, tl.exp(b_g), 0.0) * b_beta[:, None]
        tl.store(w + p_k, tl.dot(b_Ai, b_kb, input_precision=DOT_PRECISION), mask=m_tk)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        p_v = row[:, None] * V + o_v[None, :]
        b_v = tl.load(v + p_v, mask=m_tv, other=0.0).to(tl.float32)
        tl.store(u + p_v, tl.dot(b_Ai, b_v * b_beta[:, None], input_precision=DOT_PRECISION), mask=m_tv)


@triton.jit(do_not_specialize=["T", "H"])
def kda_h_kernel(
    k, w, u, g_cum, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, USE_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Inter-chunk state passing; writes h (before each chunk) and v_new = u - w h."""
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
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_w = tl.load(w + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0)
        b_u = tl.load(u + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0)
        b_v = b_u - tl.dot(b_w, b_h, input_precision=DOT_PRECISION)
        tl.store(v_new + row[:, None] * V + o_v[None, :], b_v, mask=m_tv)
        last = tl.minimum(i_t * BT + BT, eos - bos) - 1
        b_gl = tl.load(g_cum + ((bos + last) * H + i_h) * K + o_k, mask=m_k, other=0.0)
        m_kt = m_k[:, None] & m_t[None, :]
        p_kt = row[None, :] * K + o_k[:, None]
        b_kt = tl.load(k + p_kt, mask=m_kt, other=0.0).to(tl.float32)
        b_gt = tl.load(g_cum + p_kt, mask=m_kt, other=0.0)
        b_kt = b_kt * tl.where(m_kt, tl.exp(b_gl[:, None] - b_gt), 0.0)
        b_h = b_h * tl.exp(b_gl)[:, None] + tl.dot(b_kt, b_v, input_precision=DOT_PRECISION)
    if STORE_FINAL_STATE:
        tl.store(ht + i_nh.to(tl.int64) * K * V + p_state, b_h, mask=m_h)


@triton.jit(do_not_specialize=["T", "H"])
def kda_o_kernel(
    q, g_cum, Aqk, v_new, h, o, cu_seqlens, chunk_indices, scale, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """o = scale (q exp(G)) h_c + Aqk v_new for one chunk and V-block; the K reduction over
    K-blocks of BK in a loop, each block's dot accumulated into one fp32 accumulator (an IEEE dot
    adds the products in K order either way; one block's body compiles to a fraction of the code)."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    i_tg = flat_chunk(i_c, i_b, T, BT, IS_VARLEN)
    o_i = tl.arange(0, BT)
    m_t = i_t * BT + o_i < eos - bos
    row = (bos + i_t * BT + o_i) * H + i_h
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    m_tv = m_t[:, None] & m_v[None, :]
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_tk = m_t[:, None] & m_k[None, :]
        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_g = tl.load(g_cum + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0)
        b_qg = b_q * tl.where(m_tk, tl.exp(b_g), 0.0)
        b_h = tl.load(h + (i_tg * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :],
                      mask=m_k[:, None] & m_v[None, :], other=0.0)
        b_o = tl.dot(b_qg, b_h, b_o, input_precision=DOT_PRECISION)
    b_o = b_o * scale
    b_A = tl.load(Aqk + row[:, None] * BT + o_i[None, :], mask=m_t[:, None], other=0.0)
    b_A = tl.where((o_i[:, None] >= o_i[None, :]) & m_t[None, :], b_A, 0.0)
    b_v = tl.load(v_new + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0)
    b_o += tl.dot(b_A, b_v, input_precision=DOT_PRECISION)
    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)


def kda_chunk_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float, initial_state: Optional[torch.Tensor], output_final_state: bool,
    cu_seqlens: Optional[torch.Tensor], chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The chunked forward on contiguous inputs: (o in q.dtype, fp32 final state or None)."""
    check_chunk_size(chunk_size)
    B, T, H, K = q.shape
    V = v.shape[-1]
    if K > MAX_HEAD_DIM:
        raise ValueError(f"KDA chunk kernel supports K <= {MAX_HEAD_DIM}, got {K}")
    BT = chunk_size
    N = num_sequences(B, cu_seqlens)
    chunk_indices, chunk_offsets, NT_total = chunk_layout(B, T, cu_seqlens, BT)
    g_cum = chunk_local_cumsum(g.reshape(B, T, H * K), BT, cu_seqlens, chunk_indices).view(B, T, H, K)
    f32 = dict(device=q.device, dtype=torch.float32)
    Aqk = torch.zeros(B, T, H, BT, **f32)
    Akk = torch.zeros(B, T, H, BT, **f32)
    w = torch.empty(B, T, H, K, **f32)
    u = torch.empty(B, T, H, V, **f32)
    h = torch.empty(NT_total, H, K, V, **f32)
    v_new = torch.empty(B, T, H, V, **f32)
    ht = torch.empty(N, H, K, V, **f32) if output_final_state else None
    h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    BK = whole_dim_block(K)
    BV = FMA_BLOCK
    NV = triton.cdiv(V, BV)
    NT = triton.cdiv(T, BT) if cu_seqlens is None else NT_total
    grid_b = 1 if cu_seqlens is not None else B
    meta = dict(H=H, K=K, BT=BT, BK=BK, IS_VARLEN=cu_seqlens is not None,
                DOT_PRECISION=dot_precision(torch.float32))
    if NT * grid_b * H == 0:
        if output_final_state:
            ht = torch.zeros(N, H, K, V, **f32) if h0 is None else h0.clone()
        return o, ht
    kda_intra_kernel[(NT, grid_b * H)](q, k, g_cum, beta, Aqk, Akk, cu_seqlens, chunk_indices, scale, T,
                                       BC=min(BC, BT), NC=BT // min(BC, BT), num_stages=1, **meta)
    kda_ut_kernel[(NT, grid_b * H)](k, v, g_cum, beta, Akk, w, u, cu_seqlens, chunk_indices, T,
                                    V=V, BV=BV, BC=UT_BLOCK, **dict(meta, BK=FMA_BLOCK))
    kda_h_kernel[(NV, N * H)](k, w, u, g_cum, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T, V=V, BV=BV,
                              USE_INITIAL_STATE=h0 is not None, STORE_FINAL_STATE=output_final_state,
                              num_stages=1, **meta)  # pipelined [BT, BK] fp32 tiles overflow an H200's smem
    kda_o_kernel[(NV, NT, grid_b * H)](q, g_cum, Aqk, v_new, h, o, cu_seqlens, chunk_indices, scale, T,
                                       V=V, BV=BV, **dict(meta, BK=FMA_BLOCK))
    return o, ht


def kda_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Uniform-signature chunked KDA (forward only): `g` [B,T,H,K] natural-log gate (required),
    `beta` [B,T,H] (None: ones), chunks of `chunk_size` (16/32/64)."""
    B, T, H, K = q.shape
    check_varlen(q, cu_seqlens, initial_state)
    if g is None or tuple(g.shape) != (B, T, H, K):
        raise ValueError(f"KDA needs a per-key-channel log gate g [B,T,H,K]={(B, T, H, K)}, "
                         f"got {None if g is None else tuple(g.shape)}")
    if beta is None:
        beta = q.new_ones(B, T, H)
    if tuple(beta.shape) != (B, T, H):
        raise ValueError(f"beta must be [B,T,H]={(B, T, H)}, got {tuple(beta.shape)}")
    scale = K**-0.5 if scale is None else scale
    q, k, v, g, beta = (x.detach().contiguous() for x in (q, k, v, g, beta))
    return kda_chunk_fwd(q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens, chunk_size)
