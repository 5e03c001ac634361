"""Gradients of one case (``fla-check run --backward``): upstream gradients, fresh leaves, autograd.

Every pass differentiates the same scalar ::

    L = <o, do> + <ht, dht>        (float64 sums)

with upstream gradients ``do [B,T,H,V]`` and ``dht [N,H,K,V]`` drawn from the case seed
(:func:`upstream`), so a printed configuration rebuilds them exactly (replay). The gradients
are taken w.r.t. every differentiable input: ``dq``, ``dk``, ``dv``, ``dg`` (gated ops),
``dbeta`` (delta-rule ops) and ``dh0`` (cases with an initial state).

Each pass builds FRESH leaf tensors and calls :func:`torch.autograd.grad`; no ``.grad`` is
ever read or accumulated (fla's ``test_delta.py::test_chunk_varlen`` compares gradients with
themselves because its leaves' ``.grad`` is never cleared between the passes).

- reference: float64 leaves through :func:`fla_check.references.reference`;
- baseline: per-sample float64 leaves through the emulation of the mode's declared arithmetic
  (:mod:`fla_check.verdict.baselines`);
- a mode: NaN-guarded kernel-dtype leaves (:func:`fla_check.cases.guarded`) through its entry.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from fla_check.cases import (GRAD_NAMES, GRADIENTS, CaseInputs, Upstream, guarded,  # noqa: F401 (re-exported)
                             upstream)  # noqa: F401
from fla_check.errors import GradientError
from fla_check.ops import OpSpec
from fla_check.verdict.compare import Cancellation
from fla_check.verdict.host import to_host

def grad_names(inputs: CaseInputs) -> list[str]:
    """The gradient names of a case, in signature order (dq, dk, dv[, dg][, dbeta][, dh0])."""
    return [GRAD_NAMES[n] for n, x in _inputs(inputs).items() if x is not None]


def _inputs(inputs: CaseInputs) -> dict[str, Optional[Tensor]]:
    return {"q": inputs.q, "k": inputs.k, "v": inputs.v, "g": inputs.g, "beta": inputs.beta,
            "initial_state": inputs.initial_state}


def _leaves(inputs: CaseInputs, make: Callable[[Tensor], Tensor]) -> dict[str, Optional[Tensor]]:
    """Fresh leaves (``make(x)`` detached, requiring grad) for every input present."""
    return {n: None if x is None else make(x).detach().requires_grad_() for n, x in _inputs(inputs).items()}


def _grads(loss: Tensor, leaves: dict[str, Optional[Tensor]]) -> dict[str, Optional[Tensor]]:
    present = {n: x for n, x in leaves.items() if x is not None}
    got = torch.autograd.grad(loss, list(present.values()), allow_unused=True)
    return {GRAD_NAMES[n]: None if d is None else d.detach() for n, d in zip(present, got)}


def recurrence_outputs(op: OpSpec, inputs: CaseInputs, up: Upstream, fn: Callable,
                       dtype: Optional[torch.dtype] = None) -> dict[str, Tensor]:
    """o, ht and the gradients of the step-wise recurrence `fn` (the reference).

    `dtype` None keeps the kernel dtype (baseline; fp32 h0), else every leaf is cast to it.
    """
    leaves = _leaves(inputs, (lambda x: x.clone()) if dtype is None else (lambda x: x.to(dtype, copy=True)))
    with torch.enable_grad():
        o, ht = fn(op.step, *(leaves[n] for n in ("q", "k", "v", "g", "beta")),
                   initial_state=leaves["initial_state"], output_final_state=True, cu_seqlens=inputs.cu_seqlens,
                   prepare=inputs.prepare)
        grads = _grads(up.loss(o, ht), leaves)
    return {"o": o.detach(), "ht": ht.detach(), **grads}


def mode_outputs(fn: Callable, inputs: CaseInputs, up: Upstream, guard: float = math.nan,
                 keep: Optional[int] = None) -> tuple[Any, dict[str, Optional[Tensor]]]:
    """A mode's raw return value and its gradients (None where the mode gave none).

    `guard`: the fill around the leaves (:func:`guarded`). `keep`: the number of tokens that
    count when `inputs` carry padded tokens after them (``o`` and the per-token gradients are
    cut to it; the loss sees only those). The gradients are empty when the raw value is not
    ``(o, ht)`` of the expected shapes (the runner reports that). Raises :class:`GradientError`
    when ``o`` has no graph.
    """
    leaves = _leaves(inputs, lambda x: guarded(x, guard))
    with torch.enable_grad():
        raw = fn(leaves["q"], leaves["k"], leaves["v"], g=leaves["g"], beta=leaves["beta"], scale=None,
                 initial_state=leaves["initial_state"], output_final_state=True,
                 cu_seqlens=None if inputs.cu_seqlens is None else inputs.cu_seqlens.clone(),
                 **inputs.option_kwargs())
        if keep is not None:
            raw = cut_tokens(raw, keep)
        if not _well_formed(raw, up):
            return raw, {}
        o, ht = raw
        if not (o.requires_grad or ht.requires_grad):
            raise GradientError("the mode's outputs are not differentiable (no autograd graph)")
        grads = _grads(up.loss(o, ht), leaves)
    if keep is not None:
        grads = {n: d if d is None or n == "dh0" else d[:, :keep] for n, d in grads.items()}
    return (o.detach(), ht.detach()), grads


def cut_tokens(raw: Any, keep: int) -> Any:
    """``(o[:, :keep], ht)`` when ``o`` is longer than `keep` tokens, else `raw`."""
    if isinstance(raw, (tuple, list)) and len(raw) == 2 and isinstance(raw[0], Tensor) \
            and raw[0].dim() >= 2 and raw[0].shape[1] > keep:
        return (raw[0][:, :keep], raw[1])
    return raw


def _well_formed(raw: Any, up: Upstream) -> bool:
    if not isinstance(raw, (tuple, list)) or len(raw) != 2:
        return False
    o, ht = raw
    return (isinstance(o, Tensor) and isinstance(ht, Tensor) and tuple(o.shape) == tuple(up.do.shape)
            and tuple(ht.shape) == tuple(up.dht.shape))


def cancellation_scales(inputs: CaseInputs, ref: dict[str, Tensor], up: Upstream,
                        step: Optional[Callable] = None) -> dict[str, Cancellation]:
    """Per gradient, how far the terms it is a cancelling sum of reach (see
    :mod:`fla_check.verdict.compare`, "Cancelling sums"); only ``dg`` has one.

    Kernels compute the log-gate gradient from ``dL/dG_t = q_t dq_t - k_t dk_t`` (plus
    ``sum_v ht dht`` for the final state) by a reverse cumulative sum over t; a per-head gate
    (Gated DeltaNet) sums those terms over K as well. The terms are taken in absolute value from
    the float64 reference gradients; their reach per entry is :func:`_reach`. With grouped value
    heads or in-kernel options (and the op's reference `step`), the terms are those of the
    kernel's own variables: q, k per value head after the options, the log gate (times its slope
    when the kernel computes it from a raw input), from one more float64 pass (:func:`_effective_terms`).
    """
    if "dg" not in ref or inputs.g is None:
        return {}
    state = (ref["ht"].double() * up.dht).abs().sum(-1)  # [N,HV,K]
    if step is not None and (inputs.options or inputs.v.shape[2] != inputs.q.shape[2]):
        terms, slope = _effective_terms(inputs, up, step)
        reach = _reach(terms, state if inputs.g.dim() == 4 else state.sum(-1), inputs.cu_seqlens)
        return {"dg": Cancellation(slope * reach.walk_max, slope * reach.walk_rms)}
    terms = (inputs.q.double() * ref["dq"]).abs() + (inputs.k.double() * ref["dk"]).abs()  # [B,T,H,K]
    if inputs.g.dim() == 3:
        terms, state = terms.sum(-1), state.sum(-1)
    return {"dg": _reach(terms, state, inputs.cu_seqlens)}


def _reach(terms: Tensor, state: Tensor, cu_seqlens: Optional[Tensor]) -> Cancellation:
    """For each entry t of dg, ``sqrt(sum_{s >= t} terms_s^2 + state^2)`` within its sequence (a
    batch row, or a segment of a varlen pack): its largest value and its RMS, in one transfer.
    `terms` [B, T, H(, K)], `state` [N, H(, K)] (the final-state term of each sequence)."""
    if terms.numel() == 0:
        return Cancellation(0.0, 0.0)
    squares = terms.square()
    after = squares.flip(1).cumsum(1).flip(1)  # sum over s >= t along the row
    if cu_seqlens is None:
        per_t_state = state.unsqueeze(1)  # [B, 1, H(, K)]
    else:
        ends = cu_seqlens[1:].long()
        seg = torch.searchsorted(ends, torch.arange(terms.shape[1], device=terms.device), right=True)
        padded = torch.cat([after, torch.zeros_like(after[:, :1])], dim=1)
        after = after - padded[:, ends[seg]]  # sum over t <= s < the segment's end
        per_t_state = state[seg].unsqueeze(0)
    walk = (after.clamp_min(0) + per_t_state.square()).sqrt()
    walk_max, walk_rms = to_host([walk.max(), walk.square().mean().sqrt()])
    return Cancellation(walk_max, walk_rms)


def _effective_terms(inputs: CaseInputs, up: Upstream, step: Callable) -> tuple[Tensor, float]:
    """|q_e . dq_e| + |k_e . dk_e| per (t, value head) for the prepared (expanded, normalized)
    q_e, k_e of a per-head gate (per key channel too for KDA's), and the largest
    |d g_log / d g_passed| (1 without gate_in_kernel)."""
    from fla_check.references import reference
    from fla_check.references.options import expand_heads

    x = {n: None if t is None else t.detach().double() for n, t in _inputs(inputs).items()}
    with torch.enable_grad():
        g_raw = x["g"].clone().requires_grad_()
        q, k, v, g, beta = (inputs.prepare or (lambda *a: a))(x["q"], x["k"], x["v"], g_raw, x["beta"])
        slope = float(torch.autograd.grad(g.sum(), g_raw)[0].abs().max()) if g.requires_grad else 1.0
        heads = v.shape[2]
        q_e, k_e = (expand_heads(t, heads).detach().requires_grad_() for t in (q, k))
        o, ht = reference(step, q_e, k_e, v, g.detach(), None if beta is None else beta.detach(),
                          initial_state=x["initial_state"], output_final_state=True, cu_seqlens=inputs.cu_seqlens)
        dq, dk = torch.autograd.grad(up.loss(o, ht), [q_e, k_e])
    terms = (q_e.detach() * dq).abs() + (k_e.detach() * dk).abs()  # [B,T,HV,K]
    return (terms if g.dim() == 4 else terms.sum(-1)), slope  # per key channel for a per-channel gate (KDA)
