"""What a kernel is asked to do to its raw inputs before the recurrence, applied exactly.

Gated DeltaNet as production models call it (fla 0.6.0's ``chunk_gated_delta_rule`` and
``fused_recurrent_gated_delta_rule`` keywords):

- ``use_qk_l2norm_in_kernel``: ``q, k <- x / sqrt(sum x^2 + 1e-6)`` (fla's epsilon, inside the root);
- ``use_gate_in_kernel``: the gate passed is the raw ``a``; ``g = -exp(A_log) * softplus(a + dt_bias)``
  (``A_log``, ``dt_bias`` per value head ``[HV]``);
- ``use_beta_sigmoid_in_kernel``: the beta passed is a logit; ``beta <- sigmoid(beta)``;
- grouped value heads (GVA): q, k have H heads, v, g, beta and the state HV = r H; value head
  ``j`` reads key head ``j // r`` (fla's ``i_h = i_hv // (HV // H)``). The reference expands
  q and k per value head, so under autograd dq and dk sum over the r value heads of a key head.

:func:`make_prepare` builds the transform of one case (None when there is nothing to do); the
reference and the emulation apply it on their own (float64) leaves, so it is differentiable.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

L2NORM_EPS = 1e-6
Prepared = tuple[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor]]
Prepare = Callable[[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor]], Prepared]


def l2norm(x: Tensor) -> Tensor:
    """x / sqrt(sum x^2 + 1e-6) over the last dim (fla's use_qk_l2norm_in_kernel)."""
    return x / torch.sqrt(x.square().sum(-1, keepdim=True) + L2NORM_EPS)


def gdn_gate(a: Tensor, A_log: Tensor, dt_bias: Optional[Tensor]) -> Tensor:
    """g = -exp(A_log) * softplus(a + dt_bias), per value head (last dim); softplus exact."""
    x = a if dt_bias is None else a + dt_bias.to(a)
    return -A_log.to(a).exp() * torch.logaddexp(x, torch.zeros_like(x))


def expand_heads(x: Tensor, value_heads: int) -> Tensor:
    """[..., H, D] -> [..., HV, D]: value head j gets key head j // (HV // H)."""
    heads = x.shape[-2]
    if value_heads == heads:
        return x
    if value_heads % heads:
        raise ValueError(f"GVA needs HV ({value_heads}) to be a multiple of H ({heads})")
    return x.repeat_interleave(value_heads // heads, dim=-2)


def make_prepare(*, qk_l2norm: bool = False, beta_sigmoid: bool = False, A_log: Optional[Tensor] = None,
                 dt_bias: Optional[Tensor] = None) -> Prepare:
    """The transform (q, k, v, g, beta) -> what the recurrence runs on: the options in the
    order the kernels apply them (norm, then the GVA head mapping), in the inputs' dtype."""

    def prepare(q: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], beta: Optional[Tensor]) -> Prepared:
        if qk_l2norm:
            q, k = l2norm(q), l2norm(k)
        if A_log is not None and g is not None:
            g = gdn_gate(g, A_log, dt_bias)
        if beta_sigmoid and beta is not None:
            beta = torch.sigmoid(beta)
        heads = v.shape[-2]
        return expand_heads(q, heads), expand_heads(k, heads), v, g, beta

    # the scale of the in-kernel gate, exp(A_log) per value head (its fp32 error model needs it)
    prepare.gate_scale = None if A_log is None else A_log.exp()  # type: ignore[attr-defined]
    return prepare
