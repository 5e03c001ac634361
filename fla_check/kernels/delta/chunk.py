"""Chunked delta rule forward, shared by DeltaNet (no gate) and Gated DeltaNet (USE_G).

Arithmetic (fla's): W, U, v_new and the states h are stored in `store_dtype(q, k, v)`, the
input dtype when q, k, v share one half dtype (fp32 for fp32 or mixed inputs); A_inv and
g_cum are fp32. Every dot takes its operands in the store dtype with fp32 accumulation -- half
inputs: half x half tensor-core dots, fp32 values (the state in registers, masked scores, the
scaled K, V of the UT transform) rounded to it as operands; q/k products in the inputs' own
dtype (exact). Dots left on fp32 operands (the UT inverse's merges, everything for fp32 or
mixed inputs) run at `operands_precision(k, v)`: IEEE for fp32 inputs, TF32 for half ones.
Gates in natural log, `exp` not `exp2`. Pipeline:
  1. g_cum = chunk-local cumsum of the per-head gate (fla_check.kernels.common.cumsum);
  2. A_inv, W, U = UT transform per chunk (fla_check.kernels.common.ut_transform, the same
     kernel as the public `ut_transform` entry, which stores W, U in fp32);
  3. state passing, one program per (sequence, head, V-block), looping over chunks, the state
     held as up to 4 key blocks of <= 64 rows (state_tiles):
     h_c is stored (state before chunk c), v_new = U - W h_c,
     h_{c+1} = exp(g_last) h_c + (K * exp(g_last - g))^T v_new;
  4. output, one program per (chunk, head, V-block), q h_c and q k^T summed over key blocks:
     o = scale * (exp(g) * (q h_c) + tril(q k^T * exp(g_i - g_j)) v_new),
     the upper triangle is discarded by tl.where selection (overflow there never leaks).
No guard against huge negative gates: like fla, a -0.1*finfo.max fill at a reset inside a
chunk is absorbed by the chunk-local cumsum (silently wrong) and -inf gives NaN.
`chunk_fwd` returns every intermediate; the public entries are differentiable (q, k, v, beta,
g, initial_state) through `ChunkDeltaRuleFunction`, whose Triton backward
(fla_check.kernels.delta.chunk_bwd) reuses them: the autograd graph keeps g_cum, A_inv, w,
v_new ([B,T,H,*]) and the per-chunk states h ([chunks,H,K,V]) alive until backward.
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
    store_dtype,
)

MAX_HEAD_DIM = 256


@triton.jit
def _state_block(i: tl.constexpr, BK: tl.constexpr, K, o_v, m_v, V):
    """Offsets (row-major [K, V]) and mask of key block i ([BK, BV] rows i*BK..) of a state tile."""
    o_k = i * BK + tl.arange(0, BK)
    m_k = o_k < K
    return o_k[:, None] * V + o_v[None, :], m_k[:, None] & m_v[None, :]


@triton.jit
def _w_times_h(w, row, m_t, i: tl.constexpr, BK: tl.constexpr, K, b_h, b_acc,
               DOT_PRECISION: tl.constexpr):
    """b_acc + W[:, block i] h_i for the chunk rows `row` (W [.., K] in the store dtype; the fp32
    state block is rounded to it for the dot: a half x half tensor-core dot for half inputs)."""
    o_k = i * BK + tl.arange(0, BK)
    b_w = tl.load(w + row[:, None] * K + o_k[None, :], mask=m_t[:, None] & (o_k < K)[None, :], other=0.0)
    return tl.dot(b_w, b_h.to(b_w.dtype), b_acc, input_precision=DOT_PRECISION)


@triton.jit
def _kt_times_v(k, row_k, m_t, i: tl.constexpr, BK: tl.constexpr, K, b_v, b_acc,
                DOT_PRECISION: tl.constexpr):
    """b_acc + K[:, block i]^T v for the chunk rows `row_k`: both operands in the dtype of `b_v`
    (the store dtype: keys exact in it, the gated v_new rounded to it by the caller)."""
    o_k = i * BK + tl.arange(0, BK)
    b_kt = tl.load(k + row_k[None, :] * K + o_k[:, None], mask=(o_k < K)[:, None] & m_t[None, :],
                   other=0.0).to(b_v.dtype)
    return tl.dot(b_kt, b_v, b_acc, input_precision=DOT_PRECISION)


@triton.jit(do_not_specialize=["T", "H", "HK"])
def chunk_delta_h_kernel(
    k, w, u, g_cum, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T, H, HK, K, V, BT: tl.constexpr,
    BK: tl.constexpr, NK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Inter-chunk state passing; writes h (before each chunk) and v_new = U - W h, both in the
    store dtype of `h` / `v_new` (the fp32 state itself never leaves registers but for ht).

    The [K, BV] state lives in registers as NK <= 4 key blocks b_h1..b_h4 of [BK, BV] (BK <= 64):
    every dot of a chunk works on one block (smaller tiles, fewer live registers)."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    NT = tl.cdiv(eos - bos, BT)
    boh = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN)
    o_i = tl.arange(0, BT)
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    p_s1, m_s1 = _state_block(0, BK, K, o_v, m_v, V)
    p_s2, m_s2 = _state_block(1, BK, K, o_v, m_v, V)
    p_s3, m_s3 = _state_block(2, BK, K, o_v, m_v, V)
    p_s4, m_s4 = _state_block(3, BK, K, o_v, m_v, V)

    b_h1 = tl.zeros([BK, BV], dtype=tl.float32)
    b_h2 = tl.zeros([BK, BV], dtype=tl.float32)
    b_h3 = tl.zeros([BK, BV], dtype=tl.float32)
    b_h4 = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        p_h0 = h0 + i_nh.to(tl.int64) * K * V
        b_h1 += tl.load(p_h0 + p_s1, mask=m_s1, other=0.0).to(tl.float32)
        if NK > 1:
            b_h2 += tl.load(p_h0 + p_s2, mask=m_s2, other=0.0).to(tl.float32)
        if NK > 2:
            b_h3 += tl.load(p_h0 + p_s3, mask=m_s3, other=0.0).to(tl.float32)
        if NK > 3:
            b_h4 += tl.load(p_h0 + p_s4, mask=m_s4, other=0.0).to(tl.float32)
    for i_t in range(0, NT):
        p_h = h + ((boh + i_t) * H + i_h) * K * V
        tl.store(p_h + p_s1, b_h1.to(h.dtype.element_ty), mask=m_s1)
        if NK > 1:
            tl.store(p_h + p_s2, b_h2.to(h.dtype.element_ty), mask=m_s2)
        if NK > 2:
            tl.store(p_h + p_s3, b_h3.to(h.dtype.element_ty), mask=m_s3)
        if NK > 3:
            tl.store(p_h + p_s4, b_h4.to(h.dtype.element_ty), mask=m_s4)
        o_t = i_t * BT + o_i
        m_t = o_t < eos - bos
        row = (bos + o_t) * H + i_h
        row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)
        m_tv = m_t[:, None] & m_v[None, :]
        b_wh = _w_times_h(w, row, m_t, 0, BK, K, b_h1, tl.zeros([BT, BV], dtype=tl.float32), DOT_PRECISION)
        if NK > 1:
            b_wh = _w_times_h(w, row, m_t, 1, BK, K, b_h2, b_wh, DOT_PRECISION)
        if NK > 2:
            b_wh = _w_times_h(w, row, m_t, 2, BK, K, b_h3, b_wh, DOT_PRECISION)
        if NK > 3:
            b_wh = _w_times_h(w, row, m_t, 3, BK, K, b_h4, b_wh, DOT_PRECISION)
        b_u = tl.load(u + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
        b_v = b_u - b_wh
        tl.store(v_new + row[:, None] * V + o_v[None, :], b_v.to(v_new.dtype.element_ty), mask=m_tv)
        if USE_G:
            last = tl.minimum(i_t * BT + BT, eos - bos) - 1
            b_g_last = tl.load(g_cum + (bos + last) * H + i_h)
            b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
            b_v = b_v * tl.where(m_t, tl.exp(b_g_last - b_g), 0.0)[:, None]
            b_decay = tl.exp(b_g_last)
            b_h1 *= b_decay
            b_h2 *= b_decay
            b_h3 *= b_decay
            b_h4 *= b_decay
        b_v = b_v.to(v_new.dtype.element_ty)  # the update's operand in the store dtype (as fla)
        b_h1 = _kt_times_v(k, row_k, m_t, 0, BK, K, b_v, b_h1, DOT_PRECISION)
        if NK > 1:
            b_h2 = _kt_times_v(k, row_k, m_t, 1, BK, K, b_v, b_h2, DOT_PRECISION)
        if NK > 2:
            b_h3 = _kt_times_v(k, row_k, m_t, 2, BK, K, b_v, b_h3, DOT_PRECISION)
        if NK > 3:
            b_h4 = _kt_times_v(k, row_k, m_t, 3, BK, K, b_v, b_h4, DOT_PRECISION)
    if STORE_FINAL_STATE:
        p_ht = ht + i_nh.to(tl.int64) * K * V
        tl.store(p_ht + p_s1, b_h1, mask=m_s1)
        if NK > 1:
            tl.store(p_ht + p_s2, b_h2, mask=m_s2)
        if NK > 2:
            tl.store(p_ht + p_s3, b_h3, mask=m_s3)
        if NK > 3:
            tl.store(p_ht + p_s4, b_h4, mask=m_s4)


@triton.jit(do_not_specialize=["T", "H", "HK"])
def chunk_delta_o_kernel(
    q, k, v_new, h, g_cum, o, cu_seqlens, chunk_indices, scale, T, H, HK, K, V, BT: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """o = scale * (exp(g) * (q h_c) + tril(q k^T * exp(g_i - g_j)) v_new) for one chunk, one
    V-block; q k^T and q h_c accumulate over key blocks of BK. h_c and v_new arrive in the store
    dtype; q meets h_c in it, the masked fp32 scores are rounded to it to meet v_new (half
    inputs: every dot a half x half tensor-core dot with fp32 accumulation)."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    i_tg = flat_chunk(i_c, i_b, T, BT, IS_VARLEN)
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < eos - bos
    row = (bos + o_t) * H + i_h
    row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    p_h = h + (i_tg * H + i_h) * K * V

    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):  # K in blocks of BK: smaller tiles, loads pipelined
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        b_q = tl.load(q + row_k[:, None] * K + o_k[None, :], mask=m_t[:, None] & m_k[None, :],
                      other=0.0)
        b_kt = tl.load(k + row_k[None, :] * K + o_k[:, None], mask=m_k[:, None] & m_t[None, :],
                       other=0.0)
        b_h = tl.load(p_h + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :], other=0.0)
        b_A = tl.dot(b_q, b_kt, b_A, input_precision=DOT_PRECISION)  # input dtype: exact products, fp32 sum
        b_o = tl.dot(b_q.to(b_h.dtype), b_h, b_o, input_precision=DOT_PRECISION)
    if USE_G:  # (q * exp(g)) h = exp(g) * (q h): the decay applied to the fp32 sum
        b_g = tl.load(g_cum + row, mask=m_t, other=0.0)
        b_o = b_o * tl.exp(b_g)[:, None]
        b_A = b_A * tl.exp(b_g[:, None] - b_g[None, :])
    m_A = (o_i[:, None] >= o_i[None, :]) & m_t[:, None] & m_t[None, :]
    b_A = tl.where(m_A, b_A, 0.0).to(v_new.dtype.element_ty)
    b_v = tl.load(v_new + row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :],
                  other=0.0)
    b_o = (b_o + tl.dot(b_A, b_v, input_precision=DOT_PRECISION)) * scale
    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty),
             mask=m_t[:, None] & m_v[None, :])


def state_tiles(K: int, V: int, ieee: bool) -> tuple[int, int, int, int]:
    """(BK, NK, BV, num_warps) of the state-passing kernel: NK <= 4 key blocks of BK rows.

    The grid is V / BV programs per (sequence, head), each looping over its chunks: at the
    benchmark shape (B*H = 128, K = V = 128, half inputs) 512 programs of 4 warps, two per SM
    (177 registers, 112 KB shared memory with 2 pipeline stages, bench/compile_sm90.py). IEEE
    fp32 dots (fp32 inputs) are FMA loops holding whole operand rows per thread: narrower tiles."""
    if ieee:
        BK, BV = min(32 if K <= 128 else 64, next_pow2(K)), min(16, next_pow2(V))
    else:
        BK = min(64, next_pow2(K))
        BV = min(64 if BK <= 32 else 32, next_pow2(V))
    return BK, triton.cdiv(next_pow2(K), BK), BV, 4


def output_tiles(K: int, V: int, ieee: bool, half: bool) -> tuple[int, int, int]:
    """(BK, BV, num_warps) of the output kernel: one program per (V-block, chunk, head), looping
    over key blocks of BK. Half operands (`half`: h and v_new stored in the half input dtype):
    [64, 64] tiles, one warpgroup, about 56 KB of shared memory with 2 stages (three programs per
    SM; q k^T is recomputed per V-block, a small share of the work). fp32 operands: TF32 dots
    on the whole V = 128 in one block, 8 warps; IEEE FMA dots: narrower V-blocks."""
    if half:
        return min(64, next_pow2(K)), min(64, next_pow2(V)), 4
    return min(64, next_pow2(K)), min(32 if ieee else 128, next_pow2(V)), 8


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
    """The output, the final state and every intermediate a backward pass may reuse (w, u, h,
    v_new in the store dtype, the rest fp32)."""

    o: torch.Tensor  # [B,T,H,V], q.dtype
    final_state: Optional[torch.Tensor]  # [N,H,K,V] fp32, or None
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
    A_inv, w, u = ut_transform_fwd(k, v, beta, g_cum, BT, cu_seqlens, chunk_indices,
                                   store=store_dtype(q, k, v))

    f32 = dict(device=q.device, dtype=torch.float32)
    stored = dict(device=q.device, dtype=store_dtype(q, k, v))
    h = torch.empty(NT_total, H, K, V, **stored)
    v_new = torch.empty(B, T, H, V, **stored)
    ht = torch.empty(N, H, K, V, **f32) if output_final_state else None
    h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    precision = operands_precision(k, v)
    meta = dict(H=H, HK=HK, K=K, V=V, BT=BT, USE_G=g is not None, IS_VARLEN=cu_seqlens is not None,
                DOT_PRECISION=precision, num_stages=2 if K % 16 == 0 and V % 16 == 0 else 1)
    if N * H > 0:
        BK, NK, BV, warps = state_tiles(K, V, precision == "ieee")
        chunk_delta_h_kernel[(triton.cdiv(V, BV), N * H)](
            k, w, u, g_cum, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T, BK=BK, NK=NK, BV=BV,
            num_warps=warps, USE_INITIAL_STATE=h0 is not None, STORE_FINAL_STATE=output_final_state, **meta,
        )
    NT = triton.cdiv(T, BT) if cu_seqlens is None else NT_total
    if NT * B * H > 0:
        BK, BV, warps = output_tiles(K, V, precision == "ieee", h.dtype != torch.float32)
        chunk_delta_o_kernel[(triton.cdiv(V, BV), NT, B * H)](
            q, k, v_new, h, g_cum, o, cu_seqlens, chunk_indices, scale, T, BK=BK, BV=BV, num_warps=warps,
            **meta,
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
