"""The float64 reference of several cases in one step-wise loop (issue 17, goal 3).

The reference of one case is a loop of one step per token, a few torch ops each: on a GPU its
cost is the number of launches, not their size (a T = 64 case: about 265 launches of some 900
for the whole warm case, bench/op_counts.py). Cases of one op can share that loop: every
(sequence, value head) of every case becomes a row of one padded batch (:func:`run_rows`), each
row running for its own length, so the loop costs the launches of the longest case once.

Per case, first what :func:`run_recurrence` does to it alone: its options (``prepare``), its keys
and queries expanded per value head, its queries scaled by its own ``K ** -0.5``. Then its
sequences (batch rows, or ``cu_seqlens`` segments) times value heads become rows of one head, the
head dims zero-padded to the batch's widest. A padded key channel holds a zero key, a zero query
and a zero (log-)gate: its state row stays zero and adds exact zeros to every sum; a padded value
channel's outputs are dropped. Mask fills are part of the gate (the run's reference applies them
literally), so a mask case is rows too. Per row the arithmetic is the one :func:`reference` does on
the case alone; float64 reductions over the padded dims may round differently in the last bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fla_check.references.options import expand_heads
from fla_check.references.recurrence import StepFn, run_rows


@dataclass(frozen=True)
class RowCase:
    """One case for :func:`reference_batch`: its tensors q, k, v, g, beta (kernel dtype), initial
    state, cu_seqlens and the `prepare` of its options (as :func:`reference` takes them)."""

    tensors: Sequence[Optional[Tensor]]
    initial_state: Optional[Tensor] = None
    cu_seqlens: Optional[Tensor] = None
    prepare: Optional[Callable] = None


@dataclass
class _Prepared:
    """A case as its rows are cut: float64 q (scaled), k per value head, v, g, beta; h0; sequences."""

    q: Tensor
    k: Tensor
    v: Tensor
    g: Optional[Tensor]
    beta: Optional[Tensor]
    h0: Optional[Tensor]
    bounds: list[tuple[int, int, int]]  # (batch row, start, end) per sequence
    varlen: bool


def batch_key(step: StepFn, case: RowCase) -> Hashable:
    """Cases with equal keys can share one :func:`reference_batch`: the step and which of the gate
    and beta exist, with the gate's rank (head counts and head dims may differ)."""
    q, k, v, g, beta = case.tensors
    return step, None if g is None else g.dim(), beta is not None


def reference_batch(step: StepFn, cases: Sequence[RowCase]) -> list[tuple[Tensor, Tensor]]:
    """(o, final state) in float64 of each of `cases`, as :func:`reference` with
    ``output_final_state=True`` returns them, from one loop over the longest sequence. The cases
    must share :func:`batch_key` (ValueError otherwise)."""
    if not cases:
        return []
    if len({batch_key(step, c) for c in cases}) > 1:
        raise ValueError("reference_batch needs cases of one step, with the same gate and beta inputs")
    prepared = [_prepare(c) for c in cases]
    K = max(p.q.shape[-1] for p in prepared)
    V = max(p.v.shape[-1] for p in prepared)
    lengths = [e - s for p in prepared for _, s, e in p.bounds for _ in range(p.v.shape[2])]
    t_max = max(lengths, default=0)
    widths = {"q": K, "k": K, "v": V, "g": K, "beta": None}  # the padded last dim (scalar gates, beta: none)
    padded = [None if getattr(prepared[0], name) is None
              else torch.cat([_rows(getattr(p, name), p, t_max, width) for p in prepared])
              for name, width in widths.items()]
    states = torch.cat([_initial_rows(p, K, V) for p in prepared])
    ragged = any(n != t_max for n in lengths)  # rows of one length need no per-step mask
    o, ht = run_rows(step, *padded, scale=1.0, initial_state=states, lengths=lengths if ragged else None,
                     windows=True)
    out, first = [], 0
    for p in prepared:
        n, HV, Kc, Vc = len(p.bounds), p.v.shape[2], p.q.shape[-1], p.v.shape[-1]
        per_seq = o[first:first + n * HV, :, 0, :Vc].reshape(n, HV, t_max, Vc).transpose(1, 2)  # [n, t, HV, V]
        if p.varlen:
            o_case = torch.cat([per_seq[i, :e - s] for i, (_, s, e) in enumerate(p.bounds)])[None]
        else:
            o_case = per_seq[:, :p.v.shape[1]]
        out.append((o_case.contiguous(), ht[first:first + n * HV, 0, :Kc, :Vc].reshape(n, HV, Kc, Vc)))
        first += n * HV
    return out


def _prepare(case: RowCase) -> _Prepared:
    """`case`'s float64 inputs as :func:`run_recurrence` runs them, and its sequences."""
    q, k, v, g, beta = (None if t is None else t.to(torch.float64) for t in case.tensors)
    if case.prepare is not None:
        q, k, v, g, beta = case.prepare(q, k, v, g, beta)
    HV = v.shape[2]
    q, k = expand_heads(q, HV), expand_heads(k, HV)
    q = q * q.shape[-1] ** -0.5  # the case's own scale: the batch's loop runs at scale 1
    if case.cu_seqlens is None:
        bounds = [(b, 0, q.shape[1]) for b in range(q.shape[0])]
    else:
        cu = case.cu_seqlens.tolist()
        bounds = [(0, s, e) for s, e in zip(cu[:-1], cu[1:])]
    return _Prepared(q, k, v, g, beta, case.initial_state, bounds, case.cu_seqlens is not None)


def _initial_rows(p: _Prepared, K: int, V: int) -> Tensor:
    """The case's initial states as rows [sequences x value heads, 1, K, V] (zeros if none)."""
    n, HV, Kc, Vc = len(p.bounds), p.v.shape[2], p.q.shape[-1], p.v.shape[-1]
    h0 = p.v.new_zeros(n, HV, Kc, Vc) if p.h0 is None else p.h0.to(torch.float64)
    return F.pad(h0, (0, V - Vc, 0, K - Kc)).reshape(n * HV, 1, K, V)


def _rows(x: Optional[Tensor], p: _Prepared, t_max: int, width: Optional[int]) -> Optional[Tensor]:
    """One input of case `p` as rows of one head, [sequences x value heads, t_max, 1, (width)]:
    its sequences' steps, zeros after each end and past its own last dim (up to `width`)."""
    if x is None:
        return None
    if p.varlen:  # [1, total, HV, ...] -> [n, t_max, HV, ...], one slice per sequence
        x = torch.stack([F.pad(x[0, s:e], (0, 0) * (x.dim() - 3) + (0, 0, 0, t_max - (e - s))) for _, s, e in p.bounds])
    else:
        x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, 0, 0, t_max - x.shape[1]))
    x = x.transpose(1, 2)  # [n, HV, t_max, ...]
    x = x.reshape((-1, t_max, 1) + tuple(x.shape[3:]))
    return x if width is None or x.dim() == 3 else F.pad(x, (0, width - x.shape[-1]))
