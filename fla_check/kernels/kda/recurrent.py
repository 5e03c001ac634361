"""KDA (Kimi Delta Attention), per-step fused recurrence, forward and backward in Triton.

Per step (fp32 state in registers, natural-log gate per key channel, decay first):
    S' = Diag(exp g_t) S_{t-1},  e_t = v_t - S'^T k_t,  S_t = S' + k_t (beta_t e_t)^T,
    o_t = S_t^T (scale q_t).
One program per (sequence, head, V-block) holds the full K in one block
(:func:`~fla_check.kernels.utils.whole_dim_block` + masks: K = 16..64 share a binary).

Backward, checkpointed: with gradients the forward also stores the state entering every block
of ``CKPT`` steps (fp32 [blocks, H, K, V]). One program per (sequence, head, V-block) then walks
the blocks in reverse: it recomputes the block's decayed states S'_t from its checkpoint into a
per-program fp32 scratch [CKPT, BK, BV], then steps backward through the block carrying dS:
    dS += scale q_t do_t^T;  dq_t = scale S_t do_t;  du = dS^T k_t;  dv_t = beta_t du;
    dbeta_t = du . e_t;  dk_t = dS (beta_t e_t) - S' (beta_t du);  dS' = dS - k_t (beta_t du)^T;
    dg_t = rowsum(dS' * S');  dS = Diag(exp g_t) dS'.
dq, dk, dg, dbeta are partial sums over V-blocks, reduced on the host; dv is complete.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.state import state_offsets
from fla_check.kernels.common.varlen import first_chunk, sequence_bounds
from fla_check.kernels.utils import HEAD_BLOCK, check_varlen, num_sequences, whole_dim_block

CKPT = 16  # steps between stored states in the forward (the backward recomputes inside a block)


@triton.jit(do_not_specialize=["T", "H"])
def kda_recurrent_fwd_kernel(
    q, k, v, g, beta, o, h0, ht, ckpt, ckpt_offsets, cu_seqlens, scale, T,
    H, K, V, BK: tl.constexpr, BV: tl.constexpr,
    CK: tl.constexpr, USE_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr,
    SAVE_CKPT: tl.constexpr, IS_VARLEN: tl.constexpr, STATE_V_FIRST: tl.constexpr,
):
    """Forward; with SAVE_CKPT also stores the state entering every block of CK steps."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    boc = first_chunk(ckpt_offsets, i_n, T, CK, IS_VARLEN)  # its first checkpoint block
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_state = o_k[:, None] * V + o_v[None, :]  # in a checkpoint ([K, V])
    p_io = state_offsets(i_nh, o_k, o_v, K, V, STATE_V_FIRST)  # h0, ht / dht, dh0

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        b_h += tl.load(h0 + p_io, mask=m_h, other=0.0).to(tl.float32)
    p_q = q + (bos * H + i_h) * K + o_k
    p_k = k + (bos * H + i_h) * K + o_k
    p_g = g + (bos * H + i_h) * K + o_k
    p_v = v + (bos * H + i_h) * V + o_v
    p_o = o + (bos * H + i_h) * V + o_v
    p_beta = beta + bos * H + i_h
    for t in range(0, eos - bos):
        if SAVE_CKPT:
            if t % CK == 0:
                tl.store(ckpt + ((boc + t // CK) * H + i_h) * K * V + p_state, b_h, mask=m_h)
        b_q = tl.load(p_q, mask=m_k, other=0.0).to(tl.float32) * scale
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_g = tl.load(p_g, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(p_v, mask=m_v, other=0.0).to(tl.float32)
        b_beta = tl.load(p_beta).to(tl.float32)
        b_h *= tl.exp(b_g)[:, None]
        b_v = b_v - tl.sum(b_h * b_k[:, None], 0)
        b_h += b_k[:, None] * (b_v * b_beta)[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0)
        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v)
        p_q += H * K
        p_k += H * K
        p_g += H * K
        p_v += H * V
        p_o += H * V
        p_beta += H
    if STORE_FINAL_STATE:
        tl.store(ht + p_io, b_h, mask=m_h)


@triton.jit(do_not_specialize=["T", "PART_K", "PART_B", "H"])
def kda_recurrent_bwd_kernel(
    q, k, v, g, beta, do, dht, ckpt, ckpt_offsets, scratch, dq, dk, dv, dg, dbeta, dh0,
    cu_seqlens, scale, T, PART_K, PART_B,
    H, K, V, BK: tl.constexpr, BV: tl.constexpr,
    CK: tl.constexpr, USE_INITIAL_STATE: tl.constexpr, USE_FINAL_STATE_GRADIENT: tl.constexpr,
    IS_VARLEN: tl.constexpr, STATE_V_FIRST: tl.constexpr,
):
    """Reverse over checkpoint blocks: recompute S' into scratch, then step backward.
    PART_K / PART_B: element counts of one V-block slice of the partial dq, dk, dg / dbeta."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    boc = first_chunk(ckpt_offsets, i_n, T, CK, IS_VARLEN)  # its first checkpoint block
    seq_len = eos - bos
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_state = o_k[:, None] * V + o_v[None, :]  # in a checkpoint ([K, V])
    p_io = state_offsets(i_nh, o_k, o_v, K, V, STATE_V_FIRST)  # h0, ht / dht, dh0
    p_scratch = scratch + (i_v * tl.num_programs(1) + i_nh).to(tl.int64) * CK * BK * BV \
        + o_k[:, None] * BV + tl.arange(0, BV)[None, :]

    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_FINAL_STATE_GRADIENT:
        b_dh += tl.load(dht + p_io, mask=m_h, other=0.0).to(tl.float32)
    NB = tl.cdiv(seq_len, CK)
    for i_s in range(0, NB):
        i_b = NB - 1 - i_s
        t0 = i_b * CK
        n = tl.minimum(CK, seq_len - t0)
        b_h = tl.load(ckpt + ((boc + i_b) * H + i_h) * K * V + p_state, mask=m_h, other=0.0)
        for j in range(0, n):  # recompute the decayed states S'_t of the block
            row = bos + t0 + j
            b_k = tl.load(k + (row * H + i_h) * K + o_k, mask=m_k, other=0.0).to(tl.float32)
            b_g = tl.load(g + (row * H + i_h) * K + o_k, mask=m_k, other=0.0).to(tl.float32)
            b_v = tl.load(v + (row * H + i_h) * V + o_v, mask=m_v, other=0.0).to(tl.float32)
            b_beta = tl.load(beta + row * H + i_h).to(tl.float32)
            b_h *= tl.exp(b_g)[:, None]
            tl.store(p_scratch + j * BK * BV, b_h)
            b_e = b_v - tl.sum(b_h * b_k[:, None], 0)
            b_h += b_k[:, None] * (b_e * b_beta)[None, :]
        for jj in range(0, n):  # backward through the block
            j = n - 1 - jj
            row = bos + t0 + j
            p_tk = (row * H + i_h) * K + o_k
            p_tv = (row * H + i_h) * V + o_v
            b_hp = tl.load(p_scratch + j * BK * BV)
            b_q = tl.load(q + p_tk, mask=m_k, other=0.0).to(tl.float32) * scale
            b_k = tl.load(k + p_tk, mask=m_k, other=0.0).to(tl.float32)
            b_g = tl.load(g + p_tk, mask=m_k, other=0.0).to(tl.float32)
            b_v = tl.load(v + p_tv, mask=m_v, other=0.0).to(tl.float32)
            b_do = tl.load(do + p_tv, mask=m_v, other=0.0).to(tl.float32)
            b_beta = tl.load(beta + row * H + i_h).to(tl.float32)
            b_e = b_v - tl.sum(b_hp * b_k[:, None], 0)
            b_be = b_beta * b_e
            b_hn = b_hp + b_k[:, None] * b_be[None, :]
            tl.store(dq + i_v * PART_K + p_tk, tl.sum(b_hn * b_do[None, :], 1) * scale, mask=m_k)
            b_dh += b_q[:, None] * b_do[None, :]
            b_du = tl.sum(b_dh * b_k[:, None], 0)
            b_bdu = b_beta * b_du
            tl.store(dv + p_tv, b_bdu, mask=m_v)
            tl.store(dbeta + i_v * PART_B + row * H + i_h, tl.sum(b_du * b_e, 0))
            b_dk = tl.sum(b_dh * b_be[None, :], 1) - tl.sum(b_hp * b_bdu[None, :], 1)
            tl.store(dk + i_v * PART_K + p_tk, b_dk, mask=m_k)
            b_dh -= b_k[:, None] * b_bdu[None, :]
            tl.store(dg + i_v * PART_K + p_tk, tl.sum(b_dh * b_hp, 1), mask=m_k)
            b_dh *= tl.exp(b_g)[:, None]
    if USE_INITIAL_STATE:
        tl.store(dh0 + p_io, b_dh, mask=m_h)


def _ckpt_layout(B: int, T: int, cu_seqlens: Optional[torch.Tensor]) -> tuple[Optional[torch.Tensor], int]:
    """(first checkpoint of each sequence or None, total number of checkpoints)."""
    if cu_seqlens is None:
        return None, B * triton.cdiv(T, CKPT)
    counts = triton.cdiv(cu_seqlens[1:] - cu_seqlens[:-1], CKPT)
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
    return offsets, int(counts.sum())


def kda_recurrent_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float, initial_state: Optional[torch.Tensor], output_final_state: bool,
    cu_seqlens: Optional[torch.Tensor], save_ckpt: bool = False, state_v_first: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Launch the forward on contiguous inputs: (o, final state or None, checkpoints or None).
    Initial and final states are [N, H, K, V] or, `state_v_first`, [N, H, V, K]; the
    checkpoints are [K, V] either way."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = num_sequences(B, cu_seqlens)
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    state = (N, H, V, K) if state_v_first else (N, H, K, V)
    ht = q.new_empty(state, dtype=torch.float32) if output_final_state else None
    offsets, n_ckpt = _ckpt_layout(B, T, cu_seqlens)
    ckpt = q.new_empty(n_ckpt, H, K, V, dtype=torch.float32) if save_ckpt else None
    h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
    BK = whole_dim_block(K)
    BV = HEAD_BLOCK
    if N * H > 0:
        kda_recurrent_fwd_kernel[(triton.cdiv(V, BV), N * H)](
            q, k, v, g, beta, o, h0, ht, ckpt, offsets, cu_seqlens, scale, T,
            H=H, K=K, V=V, BK=BK, BV=BV, CK=CKPT, USE_INITIAL_STATE=h0 is not None,
            STORE_FINAL_STATE=output_final_state, SAVE_CKPT=save_ckpt, IS_VARLEN=cu_seqlens is not None,
            STATE_V_FIRST=state_v_first,
        )
    return o, ht, ckpt


def kda_recurrent_bwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    ckpt: torch.Tensor, do: torch.Tensor, dht: Optional[torch.Tensor], scale: float,
    initial_state: Optional[torch.Tensor], cu_seqlens: Optional[torch.Tensor], state_v_first: bool = False,
) -> tuple[torch.Tensor, ...]:
    """KDA gradients (fp32): dq, dk, dv, dg, dbeta, dh0 (None without an initial state); dht and
    dh0 in the layout of the forward's states (`state_v_first`: [N, H, V, K])."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = num_sequences(B, cu_seqlens)
    BK = whole_dim_block(K)
    BV = HEAD_BLOCK
    NV = triton.cdiv(V, BV)
    f32 = dict(device=q.device, dtype=torch.float32)
    dq, dk, dg = (torch.zeros(NV, B, T, H, K, **f32) for _ in range(3))
    dbeta = torch.zeros(NV, B, T, H, **f32)
    dv = torch.zeros(B, T, H, V, **f32)
    dh0 = None if initial_state is None else torch.empty((N, H, V, K) if state_v_first else (N, H, K, V), **f32)
    offsets, _ = _ckpt_layout(B, T, cu_seqlens)
    if N * H > 0:
        scratch = torch.empty(NV * N * H, CKPT, BK, BV, **f32)
        kda_recurrent_bwd_kernel[(NV, N * H)](
            q, k, v, g, beta, do, dht, ckpt, offsets, scratch, dq, dk, dv, dg, dbeta, dh0,
            cu_seqlens, scale, T, B * T * H * K, B * T * H,
            H=H, K=K, V=V, BK=BK, BV=BV, CK=CKPT, USE_INITIAL_STATE=dh0 is not None,
            USE_FINAL_STATE_GRADIENT=dht is not None, IS_VARLEN=cu_seqlens is not None,
            STATE_V_FIRST=state_v_first,
        )
    return dq.sum(0), dk.sum(0), dv, dg.sum(0), dbeta.sum(0), dh0


class KdaRecurrentFunction(torch.autograd.Function):
    """The KDA recurrence with the checkpointed Triton backward above."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens, state_v_first):
        save = any(ctx.needs_input_grad)
        o, ht, ckpt = kda_recurrent_fwd(q, k, v, g, beta, scale, initial_state, output_final_state,
                                        cu_seqlens, save_ckpt=save, state_v_first=state_v_first)
        ctx.save_for_backward(q, k, v, g, beta, ckpt, initial_state, cu_seqlens)
        ctx.scale, ctx.state_v_first = scale, state_v_first
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, g, beta, ckpt, initial_state, cu_seqlens = ctx.saved_tensors
        dq, dk, dv, dg, dbeta, dh0 = kda_recurrent_bwd(
            q, k, v, g, beta, ckpt, do.contiguous(), None if dht is None else dht.contiguous(),
            ctx.scale, initial_state, cu_seqlens, ctx.state_v_first,
        )
        if dh0 is not None:
            dh0 = dh0.to(initial_state.dtype)
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dg.to(g.dtype), dbeta.to(beta.dtype),
                None, dh0, None, None, None)


def kda_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None, state_v_first: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Uniform-signature KDA recurrence: `g` [B,T,H,K] natural-log gate (required), `beta`
    [B,T,H] (None: ones). Differentiable in q, k, v, g, beta and initial_state. `state_v_first`:
    initial and final states [N, H, V, K] (fla's layout of that name), read and written in place
    by the kernels (dht, dh0 too); else [N, H, K, V]."""
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
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    return KdaRecurrentFunction.apply(q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens,
                                      state_v_first)
