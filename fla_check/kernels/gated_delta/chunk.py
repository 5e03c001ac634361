"""Gated DeltaNet, chunked: the shared delta-rule chunk kernels (fla_check.kernels.delta.chunk)
with USE_G (gated UT transform, decayed state passing and output)."""
from __future__ import annotations

from typing import Optional

import torch

from fla_check.kernels.delta.chunk import chunk_delta_rule


def gated_delta_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    g: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
    scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Decay first, then the delta rule, in chunks of `chunk_size` (16/32/64). `g` is required."""
    if g is None:
        raise ValueError("Gated DeltaNet needs a per-head log gate g [B,T,H]")
    return chunk_delta_rule(q, k, v, g=g, beta=beta, scale=scale, initial_state=initial_state,
                            output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                            chunk_size=chunk_size)
