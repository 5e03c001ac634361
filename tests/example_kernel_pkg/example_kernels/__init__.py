"""A tiny stand-in for a user's kernel repository: GLA modes in plain PyTorch and the provider
objects that plug them into fla-check (a real repository wraps its Triton kernels the same way).

Modes (all with fla-check's uniform mode signature, varlen and initial state supported):

- ``example:recurrent`` -- the per-step recurrence in fp32: correct.
- ``example:buggy`` -- decays the new ``k v^T`` too (``S = (S + k v^T) * exp(g)``): wrong.
- ``example:fused`` -- an fp32 kernel whose error is ``ERROR_SCALE`` times that of the fp32 loop
  (``o = o64 + s * (o32 - o64)``): correct, with a known, tunable error.

``provider`` is "main"; ``provider_v2`` is "the next commit": the same modes, but ``fused``'s
error is 3x larger while still inside the verdict tolerance -- what ``fla-check gate`` must flag.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from fla_check.ops import ModeSpec
from fla_check.providers import Provider

ERROR_SCALE = 0.4
ERROR_SCALE_V2 = 3 * ERROR_SCALE


def _decay_then_add(S: Tensor, k: Tensor, v: Tensor, g: Tensor) -> Tensor:
    return S * g.exp()[..., None] + k[..., None] * v[..., None, :]


def _add_then_decay(S: Tensor, k: Tensor, v: Tensor, g: Tensor) -> Tensor:
    return (S + k[..., None] * v[..., None, :]) * g.exp()[..., None]  # the planted bug


def _loop(update: Callable, q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: float,
          h0: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """One sequence batch [B,T,H,*] in the dtype of q: per-step state update and readout."""
    B, T, H, K = q.shape
    S = q.new_zeros(B, H, K, v.shape[-1]) if h0 is None else h0.to(q.dtype).clone()
    out = []
    for t in range(T):
        S = update(S, k[:, t], v[:, t], g[:, t])
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S))
    o = torch.stack(out, 1) if out else v.new_zeros(B, 0, H, v.shape[-1]).to(q.dtype)
    return o, S


def _gla(update: Callable, q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: Optional[float],
         initial_state: Optional[Tensor], cu_seqlens: Optional[Tensor], dtype: torch.dtype):
    """Run `update` in `dtype` over every sequence (cu_seqlens: each one separately)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v, g = (x.to(dtype) for x in (q, k, v, g))
    if cu_seqlens is None:
        return _loop(update, q, k, v, g, scale, initial_state)
    outs, states = [], []
    bounds = cu_seqlens.tolist()
    for i, (s, e) in enumerate(zip(bounds[:-1], bounds[1:])):
        h0 = None if initial_state is None else initial_state[i : i + 1]
        o, S = _loop(update, q[:, s:e], k[:, s:e], v[:, s:e], g[:, s:e], scale, h0)
        outs.append(o)
        states.append(S)
    return torch.cat(outs, 1), torch.cat(states, 0)


def gla_recurrent(q, k, v, *, g=None, beta=None, scale=None, initial_state=None, output_final_state=False,
                  cu_seqlens=None):
    o, S = _gla(_decay_then_add, q, k, v, g, scale, initial_state, cu_seqlens, torch.float32)
    return o.to(q.dtype), S.float() if output_final_state else None


def gla_buggy(q, k, v, *, g=None, beta=None, scale=None, initial_state=None, output_final_state=False,
              cu_seqlens=None):
    o, S = _gla(_add_then_decay, q, k, v, g, scale, initial_state, cu_seqlens, torch.float32)
    return o.to(q.dtype), S.float() if output_final_state else None


def make_fused(error_scale: float) -> Callable:
    """A mode whose output error is `error_scale` times the fp32 loop's (state exact)."""

    def gla_fused(q, k, v, *, g=None, beta=None, scale=None, initial_state=None, output_final_state=False,
                  cu_seqlens=None):
        o64, S64 = _gla(_decay_then_add, q, k, v, g, scale, initial_state, cu_seqlens, torch.float64)
        o32, _ = _gla(_decay_then_add, q, k, v, g, scale, initial_state, cu_seqlens, torch.float32)
        o = o64 + error_scale * (o32.double() - o64)
        return o.to(q.dtype), S64.float() if output_final_state else None

    return gla_fused


def _modes(error_scale: float) -> dict[str, list[ModeSpec]]:
    return {"gla": [
        ModeSpec("recurrent", "example", gla_recurrent, description="fp32 per-step recurrence"),
        ModeSpec("buggy", "example", gla_buggy, description="planted bug: decays the new k v^T"),
        ModeSpec("fused", "example", make_fused(error_scale),
                 description=f"error {error_scale:g}x the fp32 loop's"),
    ]}


provider = Provider("example", _modes(ERROR_SCALE), description="example kernel package (main)")
provider_v2 = Provider("example", _modes(ERROR_SCALE_V2),
                       description="example kernel package, next commit: fused error x3")
