"""dg formed as the kernels form it: a wrapper of a control mode whose backward returns the
mode's own dq, dk, dv, dh0 and, for the log gate, ``dg_t = sum_{s >= t} (q_s dq_s - k_s dk_s)
+ sum_v ht dht`` (GLA, per key channel; batch rows, no varlen) instead of autograd's dg. A
per-head gate ([B, T, H]: simple GLA) runs the GLA proxy with the gate on every key channel and
sums the formed dg over K, as simple GLA / Gated DeltaNet kernels do.

With the fla-like proxy (TF32-truncated dots, tests/controls/fla_like.py) on fp32 inputs, dq and
dk carry independent TF32 truncations, so the identity the sum relies on holds only to 2^-10 of
its terms: the mechanism of the dg errors measured on fla's gated chunk backward on an H200
(docs/gpu/features-h200-5), reproduced on the CPU.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor


def formed_dg(q: Tensor, k: Tensor, dq: Tensor, dk: Tensor, ht: Optional[Tensor], dht: Optional[Tensor]) -> Tensor:
    """revcumsum_t(q dq - k dk) [B,T,H,K] (+ sum_v ht dht per sequence, head and channel)."""
    terms = q.double() * dq.double() - k.double() * dk.double()
    dg = terms.flip(1).cumsum(1).flip(1)
    if ht is not None and dht is not None:
        dg = dg + (ht.double() * dht.double()).sum(-1)[:, None]  # [B,1,H,K]
    return dg


class _KernelDg(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn: Callable, scale: float, factor: float, q: Tensor, k: Tensor, v: Tensor, g: Tensor,
                h0: Optional[Tensor]):  # noqa: D102
        ctx.factor, ctx.per_head = factor, g.dim() == 3
        leaves = [x.detach().requires_grad_() if x is not None else None for x in (q, k, v, g, h0)]
        with torch.enable_grad():
            gate = leaves[3][..., None].expand(q.shape) if ctx.per_head else leaves[3]
            o, ht = fn(*leaves[:3], g=gate, scale=scale, initial_state=leaves[4], output_final_state=True)
        ctx.graph = (leaves, o, ht)
        return o.detach(), ht.detach()

    @staticmethod
    def backward(ctx, do: Tensor, dht: Tensor):  # noqa: D102
        leaves, o, ht = ctx.graph
        wanted = [x for x in leaves if x is not None]
        grads = iter(torch.autograd.grad((o, ht), wanted, (do, dht), allow_unused=True))
        dq, dk, dv, _autograd_dg = (next(grads) for _ in range(4))
        dh0 = next(grads) if leaves[4] is not None else None
        dg = formed_dg(leaves[0].detach(), leaves[1].detach(), dq, dk, ht.detach(), dht) * ctx.factor
        if ctx.per_head:
            dg = dg.sum(-1)
        return None, None, None, dq, dk, dv, dg.to(leaves[3].dtype), dh0


def kernel_dg_mode(fn: Callable, factor: float = 1.0) -> Callable:
    """A GLA / simple GLA mode calling `fn` (a GLA mode) whose dg is formed from its dq, dk (times
    `factor`: a planted bug)."""

    def mode(q, k, v, *, g=None, beta=None, scale=None, initial_state=None, output_final_state=False,
             cu_seqlens=None):
        if cu_seqlens is not None or beta is not None:
            raise NotImplementedError("kernel-formed dg control: GLA batch rows only")
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        o, ht = _KernelDg.apply(fn, scale, factor, q, k, v, g, initial_state)
        return o, (ht if output_final_state else None)

    return mode
