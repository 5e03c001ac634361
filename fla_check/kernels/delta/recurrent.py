"""Per-step fused recurrence of the (gated) delta rule; one kernel for DeltaNet and Gated DeltaNet.

Per step (fp32 state in registers): S' = exp(g_t) S (only when USE_G),
S = S' + k_t (beta_t (v_t - S'^T k_t))^T, o_t = S^T (scale q_t).
One program per (sequence, head, V-block) holds the full K in one block (next_pow2 + masks).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fla_check.kernels.utils import check_varlen, next_pow2, num_sequences


@triton.jit
def delta_rule_recurrent_fwd_kernel(
    q, k, v, g, beta, o, h0, ht, cu_seqlens, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_G: tl.constexpr, USE_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_state = i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]

    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        b_h += tl.load(h0 + p_state, mask=m_h, other=0.0).to(tl.float32)

    p_q = q + (bos * H + i_h) * K + o_k
    p_k = k + (bos * H + i_h) * K + o_k
    p_v = v + (bos * H + i_h) * V + o_v
    p_o = o + (bos * H + i_h) * V + o_v
    p_beta = beta + bos * H + i_h
    if USE_G:
        p_g = g + bos * H + i_h
    for _ in range(0, eos - bos):
        b_q = tl.load(p_q, mask=m_k, other=0.0).to(tl.float32) * scale
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(p_v, mask=m_v, other=0.0).to(tl.float32)
        b_beta = tl.load(p_beta).to(tl.float32)
        if USE_G:
            b_h *= tl.exp(tl.load(p_g).to(tl.float32))
            p_g += H
        b_v = (b_v - tl.sum(b_h * b_k[:, None], 0)) * b_beta
        b_h += b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0)
        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v)
        p_q += H * K
        p_k += H * K
        p_v += H * V
        p_o += H * V
        p_beta += H

    if STORE_FINAL_STATE:
        tl.store(ht + p_state, b_h, mask=m_h)


def delta_rule_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Uniform-signature forward; `g` (per-head log gate [B,T,H]) selects Gated DeltaNet.

    `beta=None` means ones (as in fla's fused_recurrent_delta_rule).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    check_varlen(q, cu_seqlens, initial_state)
    if g is not None and tuple(g.shape) != (B, T, H):
        raise ValueError(f"gate g must be [B,T,H]={(B, T, H)}, got {tuple(g.shape)}")
    if beta is None:
        beta = q.new_ones(B, T, H)
    if tuple(beta.shape) != (B, T, H):
        raise ValueError(f"beta must be [B,T,H]={(B, T, H)}, got {tuple(beta.shape)}")
    scale = K**-0.5 if scale is None else scale
    N = num_sequences(B, cu_seqlens)
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    ht = q.new_empty(N, H, K, V, dtype=torch.float32) if output_final_state else None
    h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
    BK = next_pow2(K)
    BV = min(64, next_pow2(V))
    if N * H > 0:
        delta_rule_recurrent_fwd_kernel[(triton.cdiv(V, BV), N * H)](
            q, k, v, None if g is None else g.contiguous(), beta, o, h0, ht, cu_seqlens,
            scale, T,
            H=H, K=K, V=V, BK=BK, BV=BV,
            USE_G=g is not None, USE_INITIAL_STATE=h0 is not None,
            STORE_FINAL_STATE=output_final_state, IS_VARLEN=cu_seqlens is not None,
        )
    return o, ht


def delta_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """DeltaNet, per-step fused recurrence. DeltaNet has no gate: `g` must be None."""
    if g is not None:
        raise ValueError("DeltaNet takes no gate g; use the gated_delta op for a gated delta rule")
    return delta_rule_recurrent(q, k, v, beta=beta, scale=scale, initial_state=initial_state,
                                output_final_state=output_final_state, cu_seqlens=cu_seqlens)
