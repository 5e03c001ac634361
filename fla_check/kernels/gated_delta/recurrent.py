"""Gated DeltaNet, per-step fused recurrence (forward only, like fla): the shared delta-rule
kernel (fla_check.kernels.delta.recurrent) with USE_G. Grouped value heads (v, g, beta with
HV = r H heads; value head j reads key head j // r) and fla's in-kernel options are done in the
kernel, in fp32: use_qk_l2norm_in_kernel (q, k normalized before the scale), use_gate_in_kernel
(g is the raw `a`; g_t = -exp(A_log) softplus(a_t + dt_bias), A_log and dt_bias per value head,
fla's softplus threshold 20) and use_beta_sigmoid_in_kernel (beta holds logits)."""
from __future__ import annotations

from typing import Optional

import torch

from fla_check.kernels.delta.recurrent import delta_rule_recurrent


def gated_delta_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
    use_qk_l2norm_in_kernel: bool = False, state_v_first: bool = False, use_gate_in_kernel: bool = False,
    A_log: Optional[torch.Tensor] = None, dt_bias: Optional[torch.Tensor] = None,
    use_beta_sigmoid_in_kernel: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Decay first (S' = exp(g_t) S), then the delta rule on S'. `g` [B,T,HV] is required: the
    log gate, or with `use_gate_in_kernel` the raw gate input (keywords as fla's
    fused_recurrent_gated_delta_rule; A_log, dt_bias are ignored without it, as there).
    `state_v_first`: [N, HV, V, K] initial and final states, indexed so by the kernel."""
    if g is None:
        raise ValueError("Gated DeltaNet needs a per-head log gate g [B,T,HV]")
    return delta_rule_recurrent(q, k, v, g=g, beta=beta, scale=scale, initial_state=initial_state,
                                output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel, state_v_first=state_v_first,
                                use_gate_in_kernel=use_gate_in_kernel, A_log=A_log, dt_bias=dt_bias,
                                use_beta_sigmoid_in_kernel=use_beta_sigmoid_in_kernel)
