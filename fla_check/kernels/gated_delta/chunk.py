"""Gated DeltaNet, chunked: the shared delta-rule chunk kernels (fla_check.kernels.delta.chunk)
with USE_G (gated UT transform, decayed state passing and output).

Grouped value heads (v, g, beta with HV = r H heads; value head j reads key head j // r) are
mapped inside every kernel; dq, dk are summed over each key head's value heads. With
use_qk_l2norm_in_kernel, q and k go through a separate Triton kernel first
(fla_check.kernels.common.l2norm, fp32 out, as fla's chunk mode calls l2norm_fwd before its
chunk kernels), then the chunk kernels run on the normalized fp32 q, k and o is cast back to
the input dtype (the same single rounding the kernel does when it stores o).
"""
from __future__ import annotations

from typing import Optional

import torch

from fla_check.kernels.common.l2norm import l2norm
from fla_check.kernels.delta.chunk import chunk_delta_rule


def gated_delta_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
    chunk_size: int = 64, use_qk_l2norm_in_kernel: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Decay first, then the delta rule, in chunks of `chunk_size` (16/32/64). `g` is required."""
    if g is None:
        raise ValueError("Gated DeltaNet needs a per-head log gate g [B,T,HV]")
    dtype = q.dtype
    if use_qk_l2norm_in_kernel:
        q, k = l2norm(q), l2norm(k)
    o, ht = chunk_delta_rule(q, k, v, g=g, beta=beta, scale=scale, initial_state=initial_state,
                             output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                             chunk_size=chunk_size)
    return o.to(dtype), ht
