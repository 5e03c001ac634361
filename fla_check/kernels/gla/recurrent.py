"""GLA, per-step recurrence (fla's fused_recurrent_gla), forward and backward in Triton.

One program per (sequence, head, V-block) keeps the state tile S [BK, BV] in fp32 registers:
    S_t = S_{t-1} * exp(g_t)[:, None] + k_t v_t^T,   o_t = sum(S_t * (scale q_t)[:, None], 0).
The forward loads step t + 1 while step t computes (its loads never wait for a step's arithmetic).
Backward: a forward-in-time pass recomputes S for dq, a reverse-in-time pass carries
dS (dS += scale q_t do_t^T; dk_t = dS v_t; dv_t = dS^T k_t; dS *= exp(g_t)) down to dh0, and
dg_t = sum_{s >= t} (q_s dq_s - k_s dk_s) + sum_v(dht * S_T) by a reverse cumulative sum.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.state import state_offsets
from fla_check.kernels.common.varlen import sequence_bounds
from fla_check.kernels.gla.inputs import prepare_gla_args
from fla_check.kernels.utils import next_pow2


@triton.jit(do_not_specialize=["T", "H"])
def gla_recurrent_fwd_kernel(
    q, k, v, g, o, h0, ht, cu_seqlens, scale, T,
    H, K, V, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, IS_VARLEN: tl.constexpr, STATE_V_FIRST: tl.constexpr,
):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    seq_len = eos - bos
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_q = q + (bos * H + i_h) * K + o_k
    p_k = k + (bos * H + i_h) * K + o_k
    p_g = g + (bos * H + i_h) * K + o_k
    p_v = v + (bos * H + i_h) * V + o_v
    p_o = o + (bos * H + i_h) * V + o_v
    p_s = state_offsets(i_nh, o_k, o_v, K, V, STATE_V_FIRST)  # h0, ht / dht, dh0

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_h += tl.load(h0 + p_s, mask=m_h, other=0.0).to(tl.float32)
    # iteration t loads step t while it computes step t - 1 from the loads of the iteration before: the
    # loads do not wait for the step's arithmetic and store (4x on an H200 at T = 1024 with BV = 16,
    # bench/recurrent_prefetch.py). Step -1 is neutral (k = v = g = 0 keep the state); its store is masked off
    b_q = tl.zeros([BK], dtype=tl.float32)
    b_k = tl.zeros([BK], dtype=tl.float32)
    b_g = tl.zeros([BK], dtype=tl.float32)
    b_v = tl.zeros([BV], dtype=tl.float32)
    p_o -= H * V
    for t in range(0, seq_len + 1):
        n_mk = m_k & (o_k * 0 + t < seq_len)  # blocks, not a scalar: the CPU interpreter's masks are arrays
        n_mv = m_v & (o_v * 0 + t < seq_len)
        n_q = tl.load(p_q, mask=n_mk, other=0.0).to(tl.float32) * scale
        n_k = tl.load(p_k, mask=n_mk, other=0.0).to(tl.float32)
        n_g = tl.load(p_g, mask=n_mk, other=0.0).to(tl.float32)  # masked: #1165
        n_v = tl.load(p_v, mask=n_mv, other=0.0).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0)
        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v & (o_v * 0 + t > 0))
        b_q, b_k, b_g, b_v = n_q, n_k, n_g, n_v
        p_q += H * K
        p_k += H * K
        p_g += H * K
        p_v += H * V
        p_o += H * V
    if STORE_HT:
        tl.store(ht + p_s, b_h, mask=m_h)


@triton.jit(do_not_specialize=["T", "PART", "H"])
def gla_recurrent_bwd_kernel(
    q, k, v, g, do, h0, dht, dq, dk, dv, dh0, dg_last, cu_seqlens, scale, T, PART,
    H, K, V, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, USE_DHT: tl.constexpr, IS_VARLEN: tl.constexpr, STATE_V_FIRST: tl.constexpr,
):
    """dq, dk are partial sums over this V-block ([NV, ...]); dv, dh0 are complete.
    dg_last[i_v] = sum_v dht * S_T (the final-state term of dg), also partial over V.
    PART is the element count of one V-block slice of dq / dk."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    seq_len = eos - bos
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_s = state_offsets(i_nh, o_k, o_v, K, V, STATE_V_FIRST)  # h0, ht / dht, dh0

    # forward in time: recompute S_t, dq_t = scale * S_t do_t
    base_k = (bos * H + i_h) * K + o_k
    base_v = (bos * H + i_h) * V + o_v
    p_k, p_g, p_v, p_do = k + base_k, g + base_k, v + base_v, do + base_v
    part = tl.cast(i_v, tl.int64) * PART
    p_dq = dq + part + base_k
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_h += tl.load(h0 + p_s, mask=m_h, other=0.0).to(tl.float32)
    for _ in range(0, seq_len):
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_g = tl.load(p_g, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(p_v, mask=m_v, other=0.0).to(tl.float32)
        b_do = tl.load(p_do, mask=m_v, other=0.0).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_dq = tl.sum(b_h * b_do[None, :], 1) * scale
        tl.store(p_dq, b_dq, mask=m_k)
        p_k += H * K
        p_g += H * K
        p_v += H * V
        p_do += H * V
        p_dq += H * K
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_DHT:
        b_dh += tl.load(dht + p_s, mask=m_h, other=0.0).to(tl.float32)
        p_dgl = dg_last + (i_v * tl.num_programs(1) + i_nh) * K + o_k
        tl.store(p_dgl, tl.sum(b_dh * b_h, 1), mask=m_k)

    # reverse in time: dS_t = dS_{t+1} * exp(g_{t+1}) + scale q_t do_t^T
    last_k = base_k + (seq_len - 1) * H * K
    last_v = base_v + (seq_len - 1) * H * V
    p_q, p_k, p_g, p_dk = q + last_k, k + last_k, g + last_k, dk + part + last_k
    p_v, p_do, p_dv = v + last_v, do + last_v, dv + last_v
    for _ in range(0, seq_len):
        b_q = tl.load(p_q, mask=m_k, other=0.0).to(tl.float32) * scale
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_g = tl.load(p_g, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(p_v, mask=m_v, other=0.0).to(tl.float32)
        b_do = tl.load(p_do, mask=m_v, other=0.0).to(tl.float32)
        b_dh += b_q[:, None] * b_do[None, :]
        tl.store(p_dk, tl.sum(b_dh * b_v[None, :], 1), mask=m_k)
        tl.store(p_dv, tl.sum(b_dh * b_k[:, None], 0).to(p_dv.dtype.element_ty), mask=m_v)
        b_dh = b_dh * tl.exp(b_g)[:, None]
        p_q -= H * K
        p_k -= H * K
        p_g -= H * K
        p_dk -= H * K
        p_v -= H * V
        p_do -= H * V
        p_dv -= H * V
    if USE_H0:
        tl.store(dh0 + p_s, b_dh.to(dh0.dtype.element_ty), mask=m_h)


@triton.jit(do_not_specialize=["T", "H"])
def gla_recurrent_bwd_dg_kernel(
    q, k, dq, dk, dg_last, dg, cu_seqlens, T,
    H, K, BK: tl.constexpr,
    USE_DHT: tl.constexpr, IS_VARLEN: tl.constexpr,
):
    """dg_t = sum_{s >= t} (q_s dq_s - k_s dk_s) + dg_last, reverse in time, one program per (n, h)."""
    i_nh = tl.program_id(0)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    seq_len = eos - bos
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    last = (bos * H + i_h) * K + (seq_len - 1) * H * K + o_k
    p_q, p_k, p_dq, p_dk, p_dg = q + last, k + last, dq + last, dk + last, dg + last
    b_dg = tl.zeros([BK], dtype=tl.float32)
    if USE_DHT:
        b_dg += tl.load(dg_last + i_nh * K + o_k, mask=m_k, other=0.0)
    for _ in range(0, seq_len):
        b_q = tl.load(p_q, mask=m_k, other=0.0).to(tl.float32)
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_dq = tl.load(p_dq, mask=m_k, other=0.0).to(tl.float32)
        b_dk = tl.load(p_dk, mask=m_k, other=0.0).to(tl.float32)
        b_dg += b_q * b_dq - b_k * b_dk
        tl.store(p_dg, b_dg.to(p_dg.dtype.element_ty), mask=m_k)
        p_q -= H * K
        p_k -= H * K
        p_dq -= H * K
        p_dk -= H * K
        p_dg -= H * K


BV_MAX = 64  # widest V-block (the backward's)
# the forward's V-block on a GPU: more, shorter programs (H200, bf16, T = 1024: 1445 us at 64, 346 at 16, 275 at 4;
# docs/gpu/perf-h200-31, -38)
FWD_BV = 4
INTERPRETER_BV = BV_MAX  # the forward's V-block in the CPU interpreter, which pays per program


def _blocks(K: int, V: int, widest: int = BV_MAX) -> tuple[int, int, int]:
    BK = next_pow2(K)
    BV = min(next_pow2(V), widest)
    return BK, BV, triton.cdiv(V, BV)


def gla_recurrent_fwd(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, N,
                      state_v_first: bool = False):
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV = _blocks(K, V, FWD_BV if q.is_cuda else INTERPRETER_BV)
    o = torch.empty_like(v, dtype=q.dtype)
    state = (N, H, V, K) if state_v_first else (N, H, K, V)
    ht = q.new_empty(state, dtype=torch.float32) if output_final_state else None
    if N * H > 0:
        gla_recurrent_fwd_kernel[(NV, N * H)](
            q, k, v, g, o, initial_state, ht, cu_seqlens, scale, T,
            H=H, K=K, V=V, BK=BK, BV=BV, USE_H0=initial_state is not None,
            STORE_HT=output_final_state, IS_VARLEN=cu_seqlens is not None, STATE_V_FIRST=state_v_first,
        )
    return o, ht


def gla_recurrent_bwd(q, k, v, g, do, dht, scale, initial_state, cu_seqlens, N,
                      state_v_first: bool = False):
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV = _blocks(K, V)
    dq = q.new_zeros(NV, B, T, H, K, dtype=torch.float32)
    dk = q.new_zeros(NV, B, T, H, K, dtype=torch.float32)
    dv = torch.empty_like(v)
    dh0 = torch.empty_like(initial_state, dtype=torch.float32) if initial_state is not None else None
    dg_last = q.new_zeros(NV, N, H, K, dtype=torch.float32) if dht is not None else None
    is_varlen = cu_seqlens is not None
    if N * H > 0:
        gla_recurrent_bwd_kernel[(NV, N * H)](
            q, k, v, g, do, initial_state, dht, dq, dk, dv, dh0, dg_last, cu_seqlens, scale, T,
            B * T * H * K, H=H, K=K, V=V, BK=BK, BV=BV, USE_H0=initial_state is not None,
            USE_DHT=dht is not None, IS_VARLEN=is_varlen, STATE_V_FIRST=state_v_first,
        )
    dq, dk = dq.sum(0), dk.sum(0)
    dg = torch.empty_like(g)
    if N * H > 0:
        gla_recurrent_bwd_dg_kernel[(N * H,)](
            q, k, dq, dk, None if dg_last is None else dg_last.sum(0), dg, cu_seqlens, T,
            H=H, K=K, BK=BK, USE_DHT=dht is not None, IS_VARLEN=is_varlen,
        )
    return dq.to(q.dtype), dk.to(k.dtype), dv, dg, dh0


class GlaRecurrentFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, N, state_v_first):
        o, ht = gla_recurrent_fwd(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, N,
                                  state_v_first)
        ctx.save_for_backward(q, k, v, g, initial_state, cu_seqlens)
        ctx.scale, ctx.N, ctx.state_v_first = scale, N, state_v_first
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, g, initial_state, cu_seqlens = ctx.saved_tensors
        dq, dk, dv, dg, dh0 = gla_recurrent_bwd(
            q, k, v, g, do.contiguous(), None if dht is None else dht.contiguous(), ctx.scale,
            initial_state, cu_seqlens, ctx.N, ctx.state_v_first,
        )
        if dh0 is not None:
            dh0 = dh0.to(initial_state.dtype)
        return dq, dk, dv, dg, None, dh0, None, None, None, None


def gla_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, g: Optional[torch.Tensor] = None,
    beta: Optional[torch.Tensor] = None, scale: Optional[float] = None,
    initial_state: Optional[torch.Tensor] = None, output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None, state_v_first: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """GLA by the per-step recurrence; differentiable in q, k, v, g and initial_state.
    `state_v_first`: initial and final states [N, H, V, K] (fla's layout of that name), read and
    written in place by the kernels (dht, dh0 too); else [N, H, K, V]."""
    a = prepare_gla_args(q, k, v, g, beta, scale, initial_state, cu_seqlens, state_v_first=state_v_first)
    return GlaRecurrentFunction.apply(a.q, a.k, a.v, a.g, a.scale, a.initial_state,
                                      output_final_state, a.cu_seqlens, a.N, state_v_first)
