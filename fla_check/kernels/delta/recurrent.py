"""Per-step fused recurrence of the (gated) delta rule; one kernel for DeltaNet and Gated DeltaNet.

Per step (fp32 state in registers): S' = exp(g_t) S (only when USE_G),
S = S' + k_t (beta_t e_t)^T with e_t = v_t - S'^T k_t, o_t = S^T (scale q_t).
One program per (sequence, head, V-block) holds the full K in one block (next_pow2 + masks).
The forward loads step t + 1 while step t computes (its loads never wait for a step's arithmetic),
in 8-wide V-blocks on a GPU.

Gated DeltaNet's in-kernel options (fla's fused_recurrent_gated_delta_rule keywords), in fp32
per step: USE_GATE_IN_KERNEL reads the raw gate input a_t and computes
g_t = -exp(A_log[hv]) * softplus(a_t + dt_bias[hv]) (fla's softplus, kernels/common/gates.py);
USE_BETA_SIGMOID reads beta logits and takes their sigmoid.

Backward (DeltaNet only; Gated DeltaNet's recurrent mode is forward-only, as in fla). The
forward stores the prediction errors e_t (fp32 [B,T,H,V]: the only extra memory, no per-step
states). Then two passes per (sequence, head, V-block):
  1. reverse in time, carrying dS (fp32) from dht: dS += scale q_t do_t^T; du = dS^T k_t;
     dv_t = beta_t du; dbeta_t = du . e_t; dk_t = dS (beta_t e_t); dS -= k_t dv_t^T; dh0 = dS.
  2. forward in time, recomputing S from h0 and the stored e_t:
     dk_t -= S_{t-1} dv_t; S_t = S_{t-1} + k_t (beta_t e_t)^T; dq_t = scale S_t do_t.
dq, dk, dbeta are partial sums over V-blocks, reduced on the host.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.common.state import state_offsets
from fla_check.kernels.common.gates import softplus
from fla_check.kernels.common.varlen import sequence_bounds
from fla_check.kernels.utils import check_varlen, check_value_heads, next_pow2, num_sequences

L2NORM_EPS = tl.constexpr(1e-6)  # use_qk_l2norm_in_kernel: x / sqrt(sum x^2 + eps), fla's epsilon
FWD_BV = 8  # the forward's V-block on a GPU: more, shorter programs (H200, T = 1024: 850 us at 64 -> 361-385 us)
FWD_WARPS = 4  # the forward's warps per program
INTERPRETER_BV = 64  # its V-block in the CPU interpreter, which pays per program


@triton.jit(do_not_specialize=["T", "H", "HV"])
def delta_rule_recurrent_fwd_kernel(
    q, k, v, g, beta, A_log, dt_bias, o, h0, ht, err, cu_seqlens, scale, T,
    H, HV, K, V, BK: tl.constexpr, BV: tl.constexpr,
    USE_G: tl.constexpr, USE_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr,
    IS_VARLEN: tl.constexpr, STORE_ERR: tl.constexpr, USE_QK_L2NORM: tl.constexpr, STATE_V_FIRST: tl.constexpr,
    USE_GATE_IN_KERNEL: tl.constexpr, HAS_DT_BIAS: tl.constexpr, USE_BETA_SIGMOID: tl.constexpr,
):
    """Forward; with STORE_ERR also writes e_t = v_t - S'^T k_t (fp32) for the backward.
    One program per (sequence, value head, V-block); value head i_hv reads key head i_hv // (HV // H).
    USE_GATE_IN_KERNEL: g holds the raw a; g_t = -exp(A_log[i_hv]) softplus(a_t + dt_bias[i_hv])
    (HAS_DT_BIAS, else no bias). USE_BETA_SIGMOID: beta holds logits; beta_t = sigmoid(logit)."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_hv = i_nh // HV, i_nh % HV
    i_h = i_hv // (HV // H)
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_state = state_offsets(i_nh, o_k, o_v, K, V, STATE_V_FIRST)  # h0, ht / dht, dh0

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        b_h += tl.load(h0 + p_state, mask=m_h, other=0.0).to(tl.float32)

    p_q = q + (bos * H + i_h) * K + o_k
    p_k = k + (bos * H + i_h) * K + o_k
    p_v = v + (bos * HV + i_hv) * V + o_v
    p_o = o + (bos * HV + i_hv) * V + o_v - HV * V  # step -1's output (its store is masked off)
    p_beta = beta + bos * HV + i_hv
    if STORE_ERR:
        p_err = err + (bos * HV + i_hv) * V + o_v - HV * V
    if USE_G:
        p_g = g + bos * HV + i_hv
    if USE_GATE_IN_KERNEL:
        b_A = tl.exp(tl.load(A_log + i_hv).to(tl.float32))
        b_dt = 0.0
        if HAS_DT_BIAS:
            b_dt = tl.load(dt_bias + i_hv).to(tl.float32)
    # iteration t loads step t while it computes step t - 1 from the loads of the iteration before (as gla's
    # recurrent forward): the loads do not wait for the step's arithmetic and stores. Step -1 is neutral
    # (k = v = beta = 0 and g = 0 keep the state); its stores are masked off
    b_q = tl.zeros([BK], dtype=tl.float32)
    b_k = tl.zeros([BK], dtype=tl.float32)
    b_v = tl.zeros([BV], dtype=tl.float32)
    b_beta = tl.sum(b_v, 0)  # fp32 zeros of the loop's scalars
    b_g = tl.sum(b_v, 0)
    # the masks of step t are one comparison each (the CPU interpreter pays per operation): a lane loads
    # while t < its limit (0 outside K or V), and stores step t - 1 once t is past its floor (0 inside V)
    seq_len = eos - bos
    limit_k = tl.where(m_k, seq_len, 0)
    limit_v = tl.where(m_v, seq_len, 0)
    floor_v = tl.where(m_v, 0, seq_len + 1)
    for t in range(0, seq_len + 1):
        n_mk = limit_k > t
        n_mv = limit_v > t
        live = t < seq_len
        done = floor_v < t
        n_q = tl.load(p_q, mask=n_mk, other=0.0).to(tl.float32)
        n_k = tl.load(p_k, mask=n_mk, other=0.0).to(tl.float32)
        n_v = tl.load(p_v, mask=n_mv, other=0.0).to(tl.float32)
        if USE_QK_L2NORM:
            n_q = n_q / tl.sqrt(tl.sum(n_q * n_q, 0) + L2NORM_EPS)
            n_k = n_k / tl.sqrt(tl.sum(n_k * n_k, 0) + L2NORM_EPS)
        n_q = n_q * scale
        n_beta = tl.load(p_beta, mask=live, other=0.0).to(tl.float32)
        if USE_BETA_SIGMOID:
            n_beta = tl.sigmoid(n_beta)
        if USE_G:
            n_g = tl.load(p_g, mask=live, other=0.0).to(tl.float32)
            if USE_GATE_IN_KERNEL:
                n_g = -b_A * softplus(n_g + b_dt)
            b_h *= tl.exp(b_g)
        b_v = b_v - tl.sum(b_h * b_k[:, None], 0)
        if STORE_ERR:
            tl.store(p_err, b_v, mask=done)
            p_err += HV * V
        b_h += b_k[:, None] * (b_v * b_beta)[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0)
        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=done)
        b_q, b_k, b_v, b_beta = n_q, n_k, n_v, n_beta
        if USE_G:
            b_g = n_g
            p_g += HV
        p_q += H * K
        p_k += H * K
        p_v += HV * V
        p_o += HV * V
        p_beta += HV

    if STORE_FINAL_STATE:
        tl.store(ht + p_state, b_h, mask=m_h)


@triton.jit(do_not_specialize=["T", "PART_K", "PART_B", "H"])
def delta_rule_recurrent_bwd_reverse_kernel(
    q, k, err, beta, do, dht, dk, dv, dbeta, dh0, cu_seqlens, scale, T, PART_K, PART_B,
    H, K, V, BK: tl.constexpr, BV: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr, USE_FINAL_STATE_GRADIENT: tl.constexpr,
    IS_VARLEN: tl.constexpr, STATE_V_FIRST: tl.constexpr,
):
    """Pass 1 (reverse in time): dv (fp32, complete), partial dk = dS (beta e), partial dbeta, dh0.
    PART_K / PART_B: element counts of one V-block slice of dk / dbeta."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_state = state_offsets(i_nh, o_k, o_v, K, V, STATE_V_FIRST)  # h0, ht / dht, dh0

    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_FINAL_STATE_GRADIENT:
        b_dh += tl.load(dht + p_state, mask=m_h, other=0.0).to(tl.float32)
    last = eos - 1
    p_q = q + (last * H + i_h) * K + o_k
    p_k = k + (last * H + i_h) * K + o_k
    p_dk = dk + i_v * PART_K + (last * H + i_h) * K + o_k
    p_err = err + (last * H + i_h) * V + o_v
    p_do = do + (last * H + i_h) * V + o_v
    p_dv = dv + (last * H + i_h) * V + o_v
    p_beta = beta + last * H + i_h
    p_dbeta = dbeta + i_v * PART_B + last * H + i_h
    for _ in range(0, eos - bos):
        b_q = tl.load(p_q, mask=m_k, other=0.0).to(tl.float32) * scale
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_e = tl.load(p_err, mask=m_v, other=0.0)
        b_do = tl.load(p_do, mask=m_v, other=0.0).to(tl.float32)
        b_beta = tl.load(p_beta).to(tl.float32)
        b_dh += b_q[:, None] * b_do[None, :]
        b_du = tl.sum(b_dh * b_k[:, None], 0)
        b_dv = b_beta * b_du
        tl.store(p_dv, b_dv, mask=m_v)
        tl.store(p_dbeta, tl.sum(b_du * b_e, 0))
        tl.store(p_dk, tl.sum(b_dh * (b_beta * b_e)[None, :], 1), mask=m_k)
        b_dh -= b_k[:, None] * b_dv[None, :]
        p_q -= H * K
        p_k -= H * K
        p_dk -= H * K
        p_err -= H * V
        p_do -= H * V
        p_dv -= H * V
        p_beta -= H
        p_dbeta -= H
    if USE_INITIAL_STATE:
        tl.store(dh0 + p_state, b_dh, mask=m_h)


@triton.jit(do_not_specialize=["T", "PART_K", "H"])
def delta_rule_recurrent_bwd_forward_kernel(
    k, err, beta, do, dv, h0, dq, dk, cu_seqlens, scale, T, PART_K,
    H, K, V, BK: tl.constexpr, BV: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr, IS_VARLEN: tl.constexpr, STATE_V_FIRST: tl.constexpr,
):
    """Pass 2 (forward in time, S recomputed from h0 and e): dk -= S_{t-1} dv, dq = scale S_t do."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        p_state = state_offsets(i_nh, o_k, o_v, K, V, STATE_V_FIRST)
        b_h += tl.load(h0 + p_state, mask=m_h, other=0.0).to(tl.float32)
    p_k = k + (bos * H + i_h) * K + o_k
    p_dq = dq + i_v * PART_K + (bos * H + i_h) * K + o_k
    p_dk = dk + i_v * PART_K + (bos * H + i_h) * K + o_k
    p_err = err + (bos * H + i_h) * V + o_v
    p_do = do + (bos * H + i_h) * V + o_v
    p_dv = dv + (bos * H + i_h) * V + o_v
    p_beta = beta + bos * H + i_h
    for _ in range(0, eos - bos):
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_e = tl.load(p_err, mask=m_v, other=0.0)
        b_do = tl.load(p_do, mask=m_v, other=0.0).to(tl.float32)
        b_dv = tl.load(p_dv, mask=m_v, other=0.0)
        b_beta = tl.load(p_beta).to(tl.float32)
        b_dk = tl.load(p_dk, mask=m_k, other=0.0) - tl.sum(b_h * b_dv[None, :], 1)
        tl.store(p_dk, b_dk, mask=m_k)
        b_h += b_k[:, None] * (b_beta * b_e)[None, :]
        tl.store(p_dq, tl.sum(b_h * b_do[None, :], 1) * scale, mask=m_k)
        p_k += H * K
        p_dq += H * K
        p_dk += H * K
        p_err += H * V
        p_do += H * V
        p_dv += H * V
        p_beta += H


def _check_args(q, v, g, beta):
    B, T, _, _ = q.shape
    HV = check_value_heads(q, v)
    if g is not None and tuple(g.shape) != (B, T, HV):
        raise ValueError(f"gate g must be [B,T,HV]={(B, T, HV)}, got {tuple(g.shape)}")
    if beta is not None and tuple(beta.shape) != (B, T, HV):
        raise ValueError(f"beta must be [B,T,HV]={(B, T, HV)}, got {tuple(beta.shape)}")


def _gate_params(g: Optional[torch.Tensor], heads: int, A_log: Optional[torch.Tensor],
                 dt_bias: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Contiguous fp32 (A_log, dt_bias) of use_gate_in_kernel, checked as fla requires them
    (A_log and a raw gate g given; per value head, [HV])."""
    if A_log is None:
        raise ValueError("`A_log` must be provided when `use_gate_in_kernel=True`")
    if g is None:
        raise ValueError("`g` (raw pre-activation) must be provided when `use_gate_in_kernel=True`")
    for name, x in (("A_log", A_log), ("dt_bias", dt_bias)):
        if x is not None and tuple(x.shape) != (heads,):
            raise ValueError(f"{name} must be [HV]=[{heads}] (one per value head), got {tuple(x.shape)}")
    return A_log.to(torch.float32).contiguous(), None if dt_bias is None else dt_bias.to(torch.float32).contiguous()


def delta_rule_recurrent_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: Optional[torch.Tensor],
    beta: torch.Tensor, scale: float, initial_state: Optional[torch.Tensor],
    output_final_state: bool, cu_seqlens: Optional[torch.Tensor], store_err: bool = False,
    qk_l2norm: bool = False, state_v_first: bool = False, A_log: Optional[torch.Tensor] = None,
    dt_bias: Optional[torch.Tensor] = None, beta_sigmoid: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Launch the forward kernel on contiguous inputs: (o, final state or None, e or None).
    v, g, beta may have HV = r H heads (grouped value heads); o and the states have HV.
    The states are [N, HV, K, V] or, `state_v_first`, [N, HV, V, K].
    `A_log` (fp32 [HV], with optional `dt_bias`): g is the raw gate input, the gate is computed
    in the kernel; `beta_sigmoid`: beta holds logits."""
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[-1]
    N = num_sequences(B, cu_seqlens)
    o = torch.empty(B, T, HV, V, device=q.device, dtype=q.dtype)
    state = (N, HV, V, K) if state_v_first else (N, HV, K, V)
    ht = q.new_empty(state, dtype=torch.float32) if output_final_state else None
    err = q.new_zeros(B, T, HV, V, dtype=torch.float32) if store_err else None
    h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
    BK = next_pow2(K)
    BV = min(FWD_BV if q.is_cuda else INTERPRETER_BV, next_pow2(V))
    if N * HV > 0:
        delta_rule_recurrent_fwd_kernel[(triton.cdiv(V, BV), N * HV)](
            q, k, v, g, beta, A_log, dt_bias, o, h0, ht, err, cu_seqlens, scale, T,
            H=H, HV=HV, K=K, V=V, BK=BK, BV=BV,
            USE_G=g is not None, USE_INITIAL_STATE=h0 is not None,
            STORE_FINAL_STATE=output_final_state, IS_VARLEN=cu_seqlens is not None,
            STORE_ERR=store_err, USE_QK_L2NORM=qk_l2norm, STATE_V_FIRST=state_v_first,
            USE_GATE_IN_KERNEL=A_log is not None, HAS_DT_BIAS=dt_bias is not None, USE_BETA_SIGMOID=beta_sigmoid,
            num_warps=FWD_WARPS,
        )
    return o, ht, err


def delta_rule_recurrent_bwd(
    q: torch.Tensor, k: torch.Tensor, err: torch.Tensor, beta: torch.Tensor, do: torch.Tensor,
    dht: Optional[torch.Tensor], scale: float, initial_state: Optional[torch.Tensor],
    cu_seqlens: Optional[torch.Tensor], state_v_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """DeltaNet gradients (fp32): dq, dk, dv, dbeta, dh0 (None without an initial state); dht,
    h0 and dh0 in the layout of the forward's states (`state_v_first`: [N, H, V, K])."""
    B, T, H, K = q.shape
    V = err.shape[-1]
    N = num_sequences(B, cu_seqlens)
    BK = next_pow2(K)
    BV = min(64, next_pow2(V))
    NV = triton.cdiv(V, BV)
    f32 = dict(device=q.device, dtype=torch.float32)
    dq = torch.zeros(NV, B, T, H, K, **f32)
    dk = torch.zeros(NV, B, T, H, K, **f32)
    dbeta = torch.zeros(NV, B, T, H, **f32)
    dv = torch.zeros(B, T, H, V, **f32)
    h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
    dh0 = None if h0 is None else torch.empty_like(h0)
    meta = dict(H=H, K=K, V=V, BK=BK, BV=BV, USE_INITIAL_STATE=h0 is not None,
                IS_VARLEN=cu_seqlens is not None, STATE_V_FIRST=state_v_first)
    if N * H > 0:
        delta_rule_recurrent_bwd_reverse_kernel[(NV, N * H)](
            q, k, err, beta, do, dht, dk, dv, dbeta, dh0, cu_seqlens, scale, T,
            B * T * H * K, B * T * H, USE_FINAL_STATE_GRADIENT=dht is not None, **meta,
        )
        delta_rule_recurrent_bwd_forward_kernel[(NV, N * H)](
            k, err, beta, do, dv, h0, dq, dk, cu_seqlens, scale, T, B * T * H * K, **meta,
        )
    return dq.sum(0), dk.sum(0), dv, dbeta.sum(0), dh0


class DeltaRuleRecurrentFunction(torch.autograd.Function):
    """DeltaNet (no gate) recurrence with the Triton backward above."""

    @staticmethod
    def forward(ctx, q, k, v, beta, scale, initial_state, output_final_state, cu_seqlens, state_v_first):
        o, ht, err = delta_rule_recurrent_fwd(q, k, v, None, beta, scale, initial_state,
                                              output_final_state, cu_seqlens, store_err=True,
                                              state_v_first=state_v_first)
        ctx.save_for_backward(q, k, err, beta, initial_state, cu_seqlens)
        ctx.scale, ctx.state_v_first = scale, state_v_first
        ctx.dtypes = (v.dtype, beta.dtype)
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, err, beta, initial_state, cu_seqlens = ctx.saved_tensors
        dq, dk, dv, dbeta, dh0 = delta_rule_recurrent_bwd(
            q, k, err, beta, do.contiguous(), None if dht is None else dht.contiguous(),
            ctx.scale, initial_state, cu_seqlens, ctx.state_v_first,
        )
        v_dtype, beta_dtype = ctx.dtypes
        if dh0 is not None:
            dh0 = dh0.to(initial_state.dtype)
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v_dtype), dbeta.to(beta_dtype), None, dh0,
                None, None, None)


def delta_rule_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
    use_qk_l2norm_in_kernel: bool = False, state_v_first: bool = False, use_gate_in_kernel: bool = False,
    A_log: Optional[torch.Tensor] = None, dt_bias: Optional[torch.Tensor] = None,
    use_beta_sigmoid_in_kernel: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Uniform-signature forward; `g` (per-head log gate [B,T,HV]) selects Gated DeltaNet.
    `state_v_first`: initial and final states [N, HV, V, K] (fla's layout of that name), read
    and written in place by the kernels (dht, dh0 too); else [N, HV, K, V].

    `beta=None` means ones (as in fla's fused_recurrent_delta_rule). Without a gate the result
    is differentiable (q, k, v, beta, initial_state); with a gate it is forward-only, and then
    takes grouped value heads (v, g, beta with HV = r H heads) and fla's in-kernel options:
    `use_qk_l2norm_in_kernel`, `use_gate_in_kernel` (g is the raw `a`; `A_log`, `dt_bias` [HV];
    ignored without it, as in fla) and `use_beta_sigmoid_in_kernel` (beta holds logits).
    """
    B, T, H, K = q.shape
    check_varlen(q, cu_seqlens, initial_state)
    _check_args(q, v, g, beta)
    if g is None and (v.shape[2] != H or use_qk_l2norm_in_kernel or use_gate_in_kernel or use_beta_sigmoid_in_kernel):
        raise ValueError("grouped value heads and the in-kernel options need the gated (forward-only) path")
    if beta is None:
        beta = q.new_ones(B, T, v.shape[2])
    scale = K**-0.5 if scale is None else scale
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    if g is not None:
        A_log, dt_bias = _gate_params(g, v.shape[2], A_log, dt_bias) if use_gate_in_kernel else (None, None)
        o, ht, _ = delta_rule_recurrent_fwd(q, k, v, g.contiguous(), beta, scale, initial_state,
                                            output_final_state, cu_seqlens, qk_l2norm=use_qk_l2norm_in_kernel,
                                            state_v_first=state_v_first, A_log=A_log, dt_bias=dt_bias,
                                            beta_sigmoid=use_beta_sigmoid_in_kernel)
        return o, ht
    return DeltaRuleRecurrentFunction.apply(q, k, v, beta, scale, initial_state,
                                            output_final_state, cu_seqlens, state_v_first)


def delta_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None, state_v_first: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """DeltaNet, per-step fused recurrence. DeltaNet has no gate: `g` must be None.
    `state_v_first`: [N, H, V, K] initial and final states (see :func:`delta_rule_recurrent`)."""
    if g is not None:
        raise ValueError("DeltaNet takes no gate g; use the gated_delta op for a gated delta rule")
    return delta_rule_recurrent(q, k, v, beta=beta, scale=scale, initial_state=initial_state,
                                output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                state_v_first=state_v_first)
