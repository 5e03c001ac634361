"""Random inputs of the built-in ops, shared by tests in several folders."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def random_inputs(op: str, B: int, T: int, H: int, K: int, V: int,
                  gen: torch.Generator) -> tuple[Optional[torch.Tensor], ...]:
    """fp32 q, k, v, g, beta of `op` ("gla", "simple_gla", "delta", "gated_delta", "kda"), drawn from `gen`
    in that order.

    g is logsigmoid noise ([B,T,H,K] for gla and kda, [B,T,H] for simple_gla and gated_delta, else None); the delta
    rules get L2-normalised keys and beta in [0, 1).
    """
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen)
    g = beta = None
    if op in ("gla", "kda"):
        g = F.logsigmoid(torch.randn(B, T, H, K, generator=gen))
    if op in ("simple_gla", "gated_delta"):
        g = F.logsigmoid(torch.randn(B, T, H, generator=gen))
    if op in ("delta", "gated_delta", "kda"):
        k = F.normalize(k, dim=-1)
        beta = torch.rand(B, T, H, generator=gen)
    return q, k, v, g, beta
