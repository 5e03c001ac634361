"""Host-side argument handling shared by the GLA and simple GLA modes (uniform mode signature)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from fla_check.kernels.utils import check_varlen, num_sequences


@dataclass
class GlaArgs:
    """Validated, contiguous GLA / simple GLA inputs."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    g: torch.Tensor  # [B,T,H,K] (GLA) or [B,T,H] (simple GLA)
    scale: float
    initial_state: Optional[torch.Tensor]
    cu_seqlens: Optional[torch.Tensor]
    N: int  # number of independent sequences (states)


def prepare_gla_args(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: Optional[torch.Tensor],
                     beta: Optional[torch.Tensor], scale: Optional[float],
                     initial_state: Optional[torch.Tensor],
                     cu_seqlens: Optional[torch.Tensor], per_head_gate: bool = False,
                     state_v_first: bool = False) -> GlaArgs:
    """Check shapes (fla's contract), default the scale to K**-0.5 and a missing gate to 0. The
    gate is per key channel [B,T,H,K] (GLA) or, `per_head_gate`, one per head [B,T,H] (simple GLA);
    the initial state is [N,H,K,V] or, `state_v_first`, [N,H,V,K]."""
    name = "simple GLA" if per_head_gate else "GLA"
    if beta is not None:
        raise ValueError(f"{name} takes no beta")
    B, T, H, K = q.shape
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    gate_shape = (B, T, H) if per_head_gate else tuple(q.shape)
    if g is None:
        g = q.new_zeros(gate_shape)
    if tuple(g.shape) != gate_shape:
        layout = "[B,T,H]" if per_head_gate else "[B,T,H,K]"
        raise ValueError(f"{name} gate must be {layout} = {gate_shape}, got {tuple(g.shape)}")
    check_varlen(q, cu_seqlens, initial_state)
    N = num_sequences(B, cu_seqlens)
    state = (N, H, v.shape[-1], K) if state_v_first else (N, H, K, v.shape[-1])
    if initial_state is not None and tuple(initial_state.shape) != state:
        raise ValueError(f"initial_state must be {state}, got {tuple(initial_state.shape)}")
    if cu_seqlens is not None:
        cu_seqlens = cu_seqlens.to(device=q.device, dtype=torch.int64).contiguous()
    return GlaArgs(
        q=q.contiguous(), k=k.contiguous(), v=v.contiguous(), g=g.contiguous(),
        scale=K**-0.5 if scale is None else float(scale),
        initial_state=None if initial_state is None else initial_state.contiguous(),
        cu_seqlens=cu_seqlens, N=N,
    )
