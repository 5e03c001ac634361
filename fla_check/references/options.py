"""What a kernel is asked to do to its raw inputs before the recurrence, applied exactly.

Gated DeltaNet as production models call it (fla 0.6.0's ``chunk_gated_delta_rule`` and
``fused_recurrent_gated_delta_rule`` keywords):

- ``use_qk_l2norm_in_kernel``: ``q, k <- x / sqrt(sum x^2 + 1e-6)`` (fla's epsilon, inside the root);
- ``use_gate_in_kernel``: the gate passed is the raw ``a``; ``g = -exp(A_log) * softplus(a + dt_bias)``
  (``A_log``, ``dt_bias`` per value head ``[HV]``);
- ``use_beta_sigmoid_in_kernel``: the beta passed is a logit; ``beta <- sigmoid(beta)``;
- KDA (fla 0.6.0's ``chunk_kda``, ``fused_recurrent_kda``) takes the same three per key channel:
  ``A_log`` per value head ``[HV]``, ``dt_bias`` per channel ``[HV * K]``; its ``lower_bound`` (with
  ``use_gate_in_kernel``) swaps the gate for ``g = lower_bound * sigmoid(exp(A_log) * (a + dt_bias))``
  (fla's ``kda_gate_chunk_cumsum`` and the recurrent kernel; ``naive_kda_lowerbound_gate``), in
  ``(lower_bound, 0)``. ``safe_gate`` changes no arithmetic here (a kernel path: fla's diagonal
  blocks on tensor cores, licensed by the bound), so the reference ignores it;
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


def kda_gate(a: Tensor, A_log: Tensor, dt_bias: Optional[Tensor], lower_bound: Optional[float] = None) -> Tensor:
    """KDA's in-kernel gate of the raw ``a`` [..., HV, K]: per value head ``A = exp(A_log)`` [HV], per
    channel ``x = a + dt_bias`` (dt_bias [HV * K]); ``-A * softplus(x)`` (softplus exact), or with
    `lower_bound` ``lower_bound * sigmoid(A * x)``."""
    heads, channels = a.shape[-2:]
    x = a if dt_bias is None else a + dt_bias.to(a).view(heads, channels)
    A = A_log.to(a).exp().view(heads, 1)
    if lower_bound is None:
        return -A * torch.logaddexp(x, torch.zeros_like(x))
    return lower_bound * torch.sigmoid(A * x)


def expand_heads(x: Tensor, value_heads: int) -> Tensor:
    """[..., H, D] -> [..., HV, D]: value head j gets key head j // (HV // H)."""
    heads = x.shape[-2]
    if value_heads == heads:
        return x
    if value_heads % heads:
        raise ValueError(f"GVA needs HV ({value_heads}) to be a multiple of H ({heads})")
    return x.repeat_interleave(value_heads // heads, dim=-2)


def make_prepare(*, qk_l2norm: bool = False, beta_sigmoid: bool = False, A_log: Optional[Tensor] = None,
                 dt_bias: Optional[Tensor] = None, key_gate: bool = False,
                 lower_bound: Optional[float] = None) -> Prepare:
    """The transform (q, k, v, g, beta) -> what the recurrence runs on: the options in the
    order the kernels apply them (norm, then the GVA head mapping), in the inputs' dtype.
    `key_gate`: the gate is KDA's, per key channel (:func:`kda_gate`, with `lower_bound`);
    else Gated DeltaNet's per head (:func:`gdn_gate`)."""
    if lower_bound is not None and not (key_gate and A_log is not None):
        raise ValueError("lower_bound is a form of KDA's in-kernel gate (key_gate with A_log)")

    def gate(a: Tensor) -> Tensor:
        return kda_gate(a, A_log, dt_bias, lower_bound) if key_gate else gdn_gate(a, A_log, dt_bias)

    def prepare(q: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], beta: Optional[Tensor]) -> Prepared:
        if qk_l2norm:
            q, k = l2norm(q), l2norm(k)
        if A_log is not None and g is not None:
            g = gate(g)
        if beta_sigmoid and beta is not None:
            beta = torch.sigmoid(beta)
        heads = v.shape[-2]
        return expand_heads(q, heads), expand_heads(k, heads), v, g, beta

    prepare.gate_scale = gate_scale(A_log, key_gate, lower_bound)  # type: ignore[attr-defined]
    return prepare


def gate_scale(A_log: Optional[Tensor], key_gate: bool, lower_bound: Optional[float]) -> Optional[Tensor]:
    """The scale of an in-kernel gate's absolute fp32 error (the emulation's error model), shaped to
    broadcast over the gate: ``exp(A_log)`` per value head for the softplus gates ([HV], or [HV, 1]
    over KDA's channels); ``|lower_bound|`` for the bounded one (its sigmoid's argument rounding
    moves ``lower_bound * sigmoid`` by at most ``|lower_bound| max|x s'(x)| u < 0.23 |lower_bound| u``)."""
    if A_log is None:
        return None
    if lower_bound is not None:
        return torch.tensor(abs(float(lower_bound)), dtype=torch.float64)
    scale = A_log.exp()
    return scale.view(-1, 1) if key_gate else scale
