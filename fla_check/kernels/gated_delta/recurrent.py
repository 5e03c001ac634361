"""Gated DeltaNet, per-step fused recurrence (forward only, like fla): the shared delta-rule
kernel (fla_check.kernels.delta.recurrent) with USE_G."""
from __future__ import annotations

from typing import Optional

import torch

from fla_check.kernels.delta.recurrent import delta_rule_recurrent


def gated_delta_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Decay first (S' = exp(g_t) S), then the delta rule on S'. `g` [B,T,H] is required."""
    if g is None:
        raise ValueError("Gated DeltaNet needs a per-head log gate g [B,T,H]")
    return delta_rule_recurrent(q, k, v, g=g, beta=beta, scale=scale, initial_state=initial_state,
                                output_final_state=output_final_state, cu_seqlens=cu_seqlens)
