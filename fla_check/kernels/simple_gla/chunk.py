"""Simple GLA, chunked (fla's chunk_simple_gla algorithm), forward and backward in Triton.

The gate is one scalar natural-log decay per (token, head), so a chunk's decays form a single
cumulative sum per head and the intra-chunk decay is one [BT, BT] matrix, not one per channel:
  1. G = chunk-local inclusive cumsum of g (fla_check.kernels.common.cumsum, fp32, restarts at
     every chunk of BT in {16, 32, 64} tokens and every sequence start);
  2. state passing, one program per (sequence, head, V-block, K-block), looping over chunks:
     h[c] = state entering chunk c (stored, fp32);  h = exp(G_last) h + (k * exp(G_last - G))^T v;
  3. output, one program per (chunk, head, V-block), autotuned over BV (FWD_O_CONFIGS), K in blocks:
     o = scale * ((q * exp(G)) h[c] + tril(q k^T * exp(G_i - G_j)) v),
     the upper triangle discarded by tl.where selection (its overflow never leaks).
Everything is loaded to fp32 and every tl.dot is IEEE fp32 (declared: store fp32, dot ieee).
No guard against huge negative gates: like fla, a -0.1*finfo.max fill inside a chunk is
absorbed by the chunk-local cumsum (silently wrong) and -inf gives inf - inf = NaN.
Backward: dh[c] = gradient w.r.t. the state leaving chunk c (reverse over chunks,
dh = exp(G_last) dh + (scale q exp(G))^T do), then per chunk
  dq = scale exp(G) do h[c]^T + dM k,  dk = exp(G_last - G) v dh[c]^T + dM^T q,
  dv = A^T do + (k exp(G_last - G)) dh[c],  dM = scale tril(do v^T) * exp(G_i - G_j),
  dg = reverse_cumsum_t(sum_k(q dq - k dk)) + exp(G_last) sum(h[c] dh[c]) + sum(k dk_inter).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.autotune import pin_on_interpreter
from fla_check.kernels.common.cumsum import chunk_local_cumsum
from fla_check.kernels.common.varlen import chunk_bounds, first_chunk, sequence_bounds
from fla_check.kernels.gla.inputs import prepare_gla_args
from fla_check.kernels.utils import dot_precision, fma_block, next_pow2, prepare_chunk_indices

CHUNK_SIZES = (16, 32, 64)
MAX_HEAD_DIM = 256


@triton.jit(do_not_specialize=["T", "H"])
def simple_gla_fwd_h_kernel(
    k, v, g_cum, h, h0, ht, cu_seqlens, chunk_offsets, T,
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
        tl.store(h + ((boh + i_t) * H + i_h) * K * V + o_s, b_h, mask=m_h)
        o_t = i_t * BT + tl.arange(0, BT)
        m_t = o_t < seq_len
        row = (bos + o_t) * H + i_h
        b_kt = tl.load(k + row[None, :] * K + o_k[:, None], mask=m_k[:, None] & m_t[None, :],
                       other=0.0).to(tl.float32)
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :],
                      other=0.0).to(tl.float32)
        last = tl.minimum(i_t * BT + BT, seq_len) - 1
        b_gl = tl.load(g_cum + (bos + last) * H + i_h)
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
        b_v = b_v * tl.where(m_t, tl.exp(b_gl - b_g), 0.0)[:, None]
        b_h *= tl.exp(b_gl)
        b_h += tl.dot(b_kt, b_v, input_precision=DOT_PRECISION)
    if STORE_HT:
        tl.store(ht + i_nh * K * V + o_s, b_h, mask=m_h)


def _prune_bv(configs: list, named_args: dict, **kwargs) -> list:
    """Keep the V-blocks no wider than the head dim needs (BV <= next_pow2(V)); at least one."""
    V = kwargs.get("V", named_args.get("V"))
    return [c for c in configs if c.kwargs["BV"] <= next_pow2(V)] or configs[-1:]


# The output kernel is autotuned over its V-block (each V-block is independent: the results are
# identical at every BV) and num_warps. The first config surviving the pruning (what `--configs first`
# runs) is min(next_pow2(V), 32): its fp32 IEEE dots unroll to half the code of BV=64, and sm_90
# compiles it faster (bench/compile_seconds.py). The interpreter ignores num_warps.
FWD_O_CONFIGS = [triton.Config({"BV": 32}, num_warps=4), triton.Config({"BV": 64}, num_warps=4),
                 triton.Config({"BV": 16}, num_warps=4), triton.Config({"BV": 64}, num_warps=8)]


@triton.autotune(configs=FWD_O_CONFIGS, key=["K", "V", "BT"], prune_configs_by={"early_config_prune": _prune_bv})
@triton.jit(do_not_specialize=["T", "H"])
def simple_gla_fwd_o_kernel(
    q, k, v, g_cum, h, o, cu_seqlens, chunk_indices, chunk_offsets, scale, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """o = scale * ((q * exp(G)) h[c] + tril(q k^T * exp(G_i - G_j)) v) for one chunk and V-block.
    Both K reductions run over K-blocks of BK in a loop, each block's dot accumulated into the
    same fp32 accumulator (IEEE dots add the products in K order either way); a loop body of one
    block compiles to a fraction of the code of one dot over the whole head dim."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    i_s = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN) + i_t  # its row in h / dh
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < seq_len
    row = (bos + o_t) * H + i_h
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    m_tv = m_t[:, None] & m_v[None, :]

    b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0).to(tl.float32)
        b_kt = tl.load(k + row[None, :] * K + o_k[:, None], mask=m_k[:, None] & m_t[None, :], other=0.0).to(tl.float32)
        b_h = tl.load(h + (i_s * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :],
                      other=0.0)
        b_A = tl.dot(b_q, b_kt, b_A, input_precision=DOT_PRECISION)
        b_o = tl.dot(b_q * tl.exp(b_g)[:, None], b_h, b_o, input_precision=DOT_PRECISION)
    b_A = b_A * tl.exp(b_g[:, None] - b_g[None, :])
    b_A = tl.where((o_i[:, None] >= o_i[None, :]) & m_t[:, None] & m_t[None, :], b_A, 0.0)
    b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
    b_o = (b_o + tl.dot(b_A, b_v, input_precision=DOT_PRECISION)) * scale
    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)


# ---------------------------------------------------------------- backward kernels


@triton.jit(do_not_specialize=["T", "H"])
def simple_gla_bwd_dh_kernel(
    q, g_cum, do, dh, dht, dh0, cu_seqlens, chunk_offsets, scale, T,
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
    for i_r in range(0, NT):
        i_t = NT - 1 - i_r
        tl.store(dh + ((boh + i_t) * H + i_h) * K * V + o_s, b_dh, mask=m_h)
        o_t = i_t * BT + tl.arange(0, BT)
        m_t = o_t < seq_len
        row = (bos + o_t) * H + i_h
        b_qt = tl.load(q + row[None, :] * K + o_k[:, None], mask=m_k[:, None] & m_t[None, :],
                       other=0.0).to(tl.float32)
        b_do = tl.load(do + row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :],
                       other=0.0).to(tl.float32)
        last = tl.minimum(i_t * BT + BT, seq_len) - 1
        b_gl = tl.load(g_cum + (bos + last) * H + i_h)
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
        b_dh *= tl.exp(b_gl)
        b_dh += tl.dot(b_qt * (tl.exp(b_g) * scale)[None, :], b_do, input_precision=DOT_PRECISION)
    if STORE_DH0:
        tl.store(dh0 + i_nh * K * V + o_s, b_dh, mask=m_h)


@triton.jit(do_not_specialize=["T", "H"])
def simple_gla_bwd_dv_kernel(
    q, k, g_cum, do, dh, dv, cu_seqlens, chunk_indices, chunk_offsets, scale, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dv = A^T do + (k * exp(G_last - G)) dh[c], A = scale tril(q k^T * exp(G_i - G_j))."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    i_s = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN) + i_t  # its row in h / dh
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < seq_len
    row = (bos + o_t) * H + i_h
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_tk = m_t[:, None] & m_k[None, :]
    m_tv = m_t[:, None] & m_v[None, :]
    b_k = tl.load(k + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
    b_qt = tl.load(q + row[None, :] * K + o_k[:, None], mask=m_k[:, None] & m_t[None, :], other=0.0).to(tl.float32)
    b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
    last = tl.minimum(i_t * BT + BT, seq_len) - 1
    b_gl = tl.load(g_cum + (bos + last) * H + i_h)
    b_At = tl.dot(b_k, b_qt, input_precision=DOT_PRECISION) * tl.exp(b_g[None, :] - b_g[:, None])  # [j, i]
    b_At = tl.where((o_i[:, None] <= o_i[None, :]) & m_t[:, None] & m_t[None, :], b_At * scale, 0.0)
    b_do = tl.load(do + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
    b_dh = tl.load(dh + (i_s * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :],
                   mask=m_k[:, None] & m_v[None, :], other=0.0)
    b_kg = b_k * tl.where(m_t, tl.exp(b_gl - b_g), 0.0)[:, None]
    b_dv = tl.dot(b_At, b_do, input_precision=DOT_PRECISION) + tl.dot(b_kg, b_dh, input_precision=DOT_PRECISION)
    tl.store(dv + row[:, None] * V + o_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)


@triton.jit(do_not_specialize=["T", "H"])
def simple_gla_bwd_dqkg_kernel(
    q, k, v, g_cum, h, do, dh, dq, dk, dg, cu_seqlens, chunk_indices, chunk_offsets, scale, T,
    H, K, V, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dq, dk and dg of one chunk (all V-blocks looped here: dg needs complete dq, dk)."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    seq_len = eos - bos
    i_s = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN) + i_t  # its row in h / dh
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < seq_len
    row = (bos + o_t) * H + i_h
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    p_s = (i_s * H + i_h) * K * V

    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    b_dgh = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        p_ht = p_s + o_k[None, :] * V + o_v[:, None]  # [BV, BK]: h[c]^T
        m_ht = m_v[:, None] & m_k[None, :]
        b_ht = tl.load(h + p_ht, mask=m_ht, other=0.0)
        b_dht = tl.load(dh + p_ht, mask=m_ht, other=0.0)
        b_do = tl.load(do + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
        b_dgh += tl.sum(b_ht * b_dht, 0)
        b_dq += tl.dot(b_do, b_ht, input_precision=DOT_PRECISION)
        b_dk += tl.dot(b_v, b_dht, input_precision=DOT_PRECISION)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=DOT_PRECISION)
    m_tk = m_t[:, None] & m_k[None, :]
    p_tk = row[:, None] * K + o_k[None, :]
    b_q = tl.load(q + p_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_k = tl.load(k + p_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
    last = tl.minimum(i_t * BT + BT, seq_len) - 1
    b_gl = tl.load(g_cum + (bos + last) * H + i_h)
    b_dM = b_dA * tl.exp(b_g[:, None] - b_g[None, :])
    b_dM = tl.where((o_i[:, None] >= o_i[None, :]) & m_t[:, None] & m_t[None, :], b_dM * scale, 0.0)
    b_dq = b_dq * (tl.exp(b_g) * scale)[:, None] + tl.dot(b_dM, b_k, input_precision=DOT_PRECISION)
    b_dk = b_dk * tl.where(m_t, tl.exp(b_gl - b_g), 0.0)[:, None]
    b_dg_last = tl.exp(b_gl) * tl.sum(b_dgh, 0) + tl.sum(tl.sum(b_dk * b_k, 1), 0)
    b_dk += tl.dot(tl.trans(b_dM), b_q, input_precision=DOT_PRECISION)
    b_dg = tl.sum(b_q * b_dq - b_k * b_dk, 1)
    b_dg = b_dg - tl.cumsum(b_dg, axis=0) + tl.sum(b_dg, 0) + b_dg_last
    tl.store(dq + p_tk, b_dq, mask=m_tk)
    tl.store(dk + p_tk, b_dk, mask=m_tk)
    tl.store(dg + row, b_dg.to(dg.dtype.element_ty), mask=m_t)


# ---------------------------------------------------------------- host side


class ChunkGrid:
    """Chunks to launch and per-sequence first-chunk offsets of a batch or a varlen pack."""

    def __init__(self, B: int, T: int, BT: int, cu_seqlens: Optional[torch.Tensor]):
        self.varlen = cu_seqlens is not None
        if self.varlen:
            self.indices = prepare_chunk_indices(cu_seqlens, BT)
            counts = triton.cdiv(cu_seqlens[1:] - cu_seqlens[:-1], BT)
            self.offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int64)
            self.chunks = self.indices.shape[0]  # grid chunks (B == 1)
            self.states = int(self.offsets[-1])
        else:
            self.indices = self.offsets = None
            self.chunks = triton.cdiv(T, BT)
            self.states = B * self.chunks


def _blocks(K: int, V: int) -> tuple[int, int, int]:
    BK = next_pow2(K)
    BV = fma_block(V)
    return BK, BV, triton.cdiv(V, BV)


def _fwd_h(k, v, g_cum, h0, output_final_state, cu_seqlens, grid: ChunkGrid, N: int, BT: int):
    B, T, H, K = k.shape
    V = v.shape[-1]
    _, BV, NV = _blocks(K, V)
    BK = fma_block(K)
    h = k.new_empty(grid.states, H, K, V, dtype=torch.float32)
    ht = k.new_empty(N, H, K, V, dtype=torch.float32) if output_final_state else None
    if N * H > 0:
        simple_gla_fwd_h_kernel[(NV, N * H, triton.cdiv(K, BK))](
            k, v, g_cum, h, h0, ht, cu_seqlens, grid.offsets, T, H=H, K=K, V=V, BT=BT, BK=BK, BV=BV,
            USE_H0=h0 is not None, STORE_HT=output_final_state, IS_VARLEN=grid.varlen,
            DOT_PRECISION=dot_precision(torch.float32),
        )
    return h, ht


def simple_gla_chunk_fwd(q, k, v, g, scale, h0, output_final_state, cu_seqlens, N, BT):
    """(o, final state, g_cum, h): the output and what the backward reuses."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    if K > MAX_HEAD_DIM:
        raise ValueError(f"chunk kernel supports K <= {MAX_HEAD_DIM}, got {K}")
    grid = ChunkGrid(B, T, BT, cu_seqlens)
    g_cum = chunk_local_cumsum(g, BT, cu_seqlens, grid.indices)
    h, ht = _fwd_h(k, v, g_cum, h0, output_final_state, cu_seqlens, grid, N, BT)
    o = torch.empty_like(v, dtype=q.dtype)
    BK = fma_block(K)
    if grid.chunks * B * H > 0:
        pin_on_interpreter()
        simple_gla_fwd_o_kernel[lambda meta: (triton.cdiv(V, meta["BV"]), grid.chunks, B * H)](
            q, k, v, g_cum, h, o, cu_seqlens, grid.indices, grid.offsets, scale, T, H=H, K=K, V=V, BT=BT,
            BK=BK, IS_VARLEN=grid.varlen, DOT_PRECISION=dot_precision(torch.float32),
        )
    return o, ht, g_cum, h


def simple_gla_chunk_bwd(q, k, v, g, g_cum, h, do, dht, scale, h0, cu_seqlens, N, BT):
    """dq, dk, dv, dg, dh0 from the forward's g_cum and h."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV = _blocks(K, V)
    grid = ChunkGrid(B, T, BT, cu_seqlens)
    prec = dict(IS_VARLEN=grid.varlen, DOT_PRECISION=dot_precision(torch.float32))
    dh = q.new_empty(grid.states, H, K, V, dtype=torch.float32)
    dh0 = q.new_empty(N, H, K, V, dtype=torch.float32) if h0 is not None else None
    dq = torch.zeros_like(q, dtype=torch.float32)
    dk = torch.zeros_like(k, dtype=torch.float32)
    dv = torch.zeros_like(v)
    dg = torch.zeros_like(g)
    if N * H > 0:
        simple_gla_bwd_dh_kernel[(NV, N * H)](
            q, g_cum, do, dh, dht, dh0, cu_seqlens, grid.offsets, scale, T, H=H, K=K, V=V, BT=BT, BK=BK,
            BV=BV, USE_DHT=dht is not None, STORE_DH0=h0 is not None, **prec,
        )
    if grid.chunks * B * H > 0:
        simple_gla_bwd_dv_kernel[(NV, grid.chunks, B * H)](
            q, k, g_cum, do, dh, dv, cu_seqlens, grid.indices, grid.offsets, scale, T, H=H, K=K, V=V, BT=BT,
            BK=BK, BV=BV, **prec,
        )
        simple_gla_bwd_dqkg_kernel[(grid.chunks, B * H)](
            q, k, v, g_cum, h, do, dh, dq, dk, dg, cu_seqlens, grid.indices, grid.offsets, scale, T, H=H, K=K,
            V=V, BT=BT, BK=BK, BV=BV, **prec,
        )
    return dq.to(q.dtype), dk.to(k.dtype), dv, dg, dh0


class SimpleGlaChunkFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, N, BT):
        h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
        o, ht, g_cum, h = simple_gla_chunk_fwd(q, k, v, g, scale, h0, output_final_state, cu_seqlens, N, BT)
        ctx.save_for_backward(q, k, v, g, g_cum, h, h0, cu_seqlens)
        ctx.scale, ctx.N, ctx.BT = scale, N, BT
        ctx.h0_dtype = None if initial_state is None else initial_state.dtype
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, g, g_cum, h, h0, cu_seqlens = ctx.saved_tensors
        dq, dk, dv, dg, dh0 = simple_gla_chunk_bwd(
            q, k, v, g, g_cum, h, do.contiguous(), None if dht is None else dht.contiguous(), ctx.scale,
            h0, cu_seqlens, ctx.N, ctx.BT,
        )
        if dh0 is not None:
            dh0 = dh0.to(ctx.h0_dtype)
        return dq, dk, dv, dg, None, dh0, None, None, None, None


def simple_gla_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, g: Optional[torch.Tensor] = None,
    beta: Optional[torch.Tensor] = None, scale: Optional[float] = None,
    initial_state: Optional[torch.Tensor] = None, output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None, chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Simple GLA by the chunk algorithm (chunk_size in {16, 32, 64}); differentiable in q, k, v,
    g and initial_state."""
    if chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_size must be 16, 32 or 64, got {chunk_size}")
    a = prepare_gla_args(q, k, v, g, beta, scale, initial_state, cu_seqlens, per_head_gate=True)
    return SimpleGlaChunkFunction.apply(a.q, a.k, a.v, a.g, a.scale, a.initial_state,
                                        output_final_state, a.cu_seqlens, a.N, chunk_size)
