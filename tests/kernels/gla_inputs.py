"""Input builder and error measure shared by the GLA kernel tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from device import DEVICE


def make_inputs(B: int, T: int, H: int, K: int, V: int, n_states: int, seed: int = 0,
                gate_norm: float = 8.0) -> tuple[torch.Tensor, ...]:
    """fp32 q, k, v, gate logsigmoid(x) / gate_norm [B,T,H,K] and h0 [n_states,H,K,V], drawn on
    the CPU from `seed` and moved to the backend's device.

    The default gate_norm 8 gives a weak decay, so the state carry matters.
    """
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen)
    g = F.logsigmoid(torch.randn(B, T, H, K, generator=gen)) / gate_norm
    h0 = torch.randn(n_states, H, K, V, generator=gen)
    return tuple(x.to(DEVICE) for x in (q, k, v, g, h0))


def rel_err(x: torch.Tensor, ref: torch.Tensor, floor: float = 1e-30) -> float:
    """max |x - ref| / max |ref| (the denominator clamped to `floor`), in float64."""
    return ((x.double() - ref).abs().max() / ref.abs().max().clamp_min(floor)).item()
