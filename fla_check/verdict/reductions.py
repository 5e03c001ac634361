"""The judge's device-side reductions: what it fetches about a reference, a kernel output
against it, and two modes' outputs against each other.

Every function here returns device scalars (0-d tensors) for the caller to fetch in one host
transfer (:func:`fla_check.verdict.host.to_host`). On a GPU each torch op is a kernel launch:
outputs of one shape and dtype (the same output of several modes, or of many cases judged
together by :func:`fla_check.engine.batched.check_cases`) are stacked and reduced row by row, one
set of ops for the group instead of one per output (issue 17, goal 3). A stacked row sums in
another order than the output alone: the values agree to float64 rounding, maxima and counts
exactly.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

STACK_ELEMENTS = 2**24  # float64 elements of one stacked operand (128 MB): a larger group is reduced in parts
OUTPUT_TERMS = 6  # device scalars per output (output_terms)
DIFFERENCE_TERMS = 5  # device scalars per pair of outputs (difference_terms)


def finite_mask(x: Tensor) -> Tensor:
    """``torch.isfinite(x)`` of a float tensor in two ops instead of its four: ``x - x`` is exactly 0
    for a finite x, NaN otherwise."""
    return (x - x) == 0


def nonfinite_mask(x: Tensor) -> Tensor:
    """``~torch.isfinite(x)`` of a float tensor in two ops (see :func:`finite_mask`)."""
    return (x - x) != 0


class ReferenceTerms:
    """The reductions of a reference tensor that every comparison against it repeats (its
    finite mask, finite count, rms and max|r| in float64), each computed once per tensor and
    device: one judge compares several modes, baselines and pairs with the same reference.
    Keyed by the tensor's identity, which it holds (so no other tensor takes its id); a
    reference must not change in place while cached."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, torch.device], tuple[Tensor, dict[str, Tensor]]] = {}

    def _found(self, ref: Tensor, device: Optional[torch.device]) -> tuple[torch.device, dict[str, Tensor]]:
        device = ref.device if device is None else torch.device(device)
        key = (id(ref), device)
        if key not in self._held:
            self._held[key] = (ref, {})
        return device, self._held[key][1]

    def _cached(self, ref: Tensor, device: Optional[torch.device], what: str) -> Tensor:
        device, found = self._found(ref, device)
        if what not in found:
            r = ref.detach().to(torch.float64).to(device)
            if what == "finite":
                found[what] = finite_mask(r)
            elif what == "count":
                found[what] = self._cached(ref, device, "finite").sum()
            elif what == "rms":
                found[what] = r.contiguous().square().mean().sqrt()
            else:  # max_abs
                found[what] = r.contiguous().abs().max()
        return found[what]

    def keep(self, ref: Tensor, **reductions: Tensor) -> None:
        """Cache reductions of `ref` computed elsewhere (a stacked row of them), on their device;
        those already cached stay."""
        _, found = self._found(ref, next(iter(reductions.values())).device)
        for what, value in reductions.items():
            found.setdefault(what, value)

    def finite(self, ref: Tensor, device: Optional[torch.device] = None) -> Tensor:
        """``finite_mask`` of `ref` in float64 (on `device`, default its own)."""
        return self._cached(ref, device, "finite")

    def finite_count(self, ref: Tensor, device: Optional[torch.device] = None) -> Tensor:
        """The number of finite entries of `ref` (an int64 device scalar)."""
        return self._cached(ref, device, "count")

    def rms(self, ref: Tensor, device: Optional[torch.device] = None) -> Tensor:
        """rms(`ref`) in float64, reduced in its contiguous logical order."""
        return self._cached(ref, device, "rms")

    def max_abs(self, ref: Tensor, device: Optional[torch.device] = None) -> Tensor:
        """max |`ref`| in float64."""
        return self._cached(ref, device, "max_abs")


def output_terms(pairs: Sequence[tuple[Tensor, Tensor]], refs: ReferenceTerms) -> list[list[Tensor]]:
    """Per (kernel, reference) pair, the device scalars of the verdict rule: kernel entries not
    finite where the reference is, finite reference entries, max |k - r|, rms(k - r), rms(r),
    max |r| (the last four exact when the reference is finite); none for an empty output. Pairs of
    one shape, dtype and device are reduced stacked."""
    out: list[list[Tensor]] = [[] for _ in pairs]
    key = lambda i: (tuple(pairs[i][0].shape), pairs[i][0].dtype, pairs[i][1].dtype, pairs[i][0].device)  # noqa: E731
    for group in _groups([i for i, (_, r) in enumerate(pairs) if r.numel()], key):
        if len(group) == 1:
            out[group[0]] = _output_terms(*pairs[group[0]], refs)
            continue
        for i, row in zip(group, _stacked_output_terms([pairs[i] for i in group], refs)):
            out[i] = row
    return out


def _output_terms(kernel: Tensor, ref: Tensor, refs: ReferenceTerms) -> list[Tensor]:
    """:func:`output_terms` of one pair, reduced in the logical order of the whole output."""
    x = kernel.detach().to(torch.float64)
    diff = (x - ref.detach().to(torch.float64)).contiguous()
    return [(nonfinite_mask(x) & refs.finite(ref)).sum(), refs.finite_count(ref), diff.abs().max(),
            diff.square().mean().sqrt(), refs.rms(ref), refs.max_abs(ref)]


def _stacked_output_terms(pairs: Sequence[tuple[Tensor, Tensor]], refs: ReferenceTerms) -> list[list[Tensor]]:
    """:func:`output_terms` of same-shaped pairs, one row each of stacked operands. A reference
    that several pairs share (the modes of one case) is stacked once per pair: fewer ops than
    gathering it. The references' own rows are kept in `refs` for the judge's later reductions."""
    x, r = _stacked([k for k, _ in pairs]), _stacked([ref for _, ref in pairs])
    finite = finite_mask(r)
    count, rms, largest = finite.sum(1), r.square().mean(1).sqrt(), r.abs().amax(1)
    diff = x - r
    rows = torch.stack([(nonfinite_mask(x) & finite).sum(1).to(torch.float64), count.to(torch.float64),
                        diff.abs().amax(1), diff.square().mean(1).sqrt(), rms, largest], 1)
    for j, (_, ref) in enumerate(pairs):
        refs.keep(ref, finite=finite[j].view(ref.shape), count=count[j], rms=rms[j], max_abs=largest[j])
    return [list(row.unbind()) for row in rows]


def difference_terms(items: Sequence[tuple[Tensor, Tensor, Tensor]], refs: ReferenceTerms) -> list[list[Tensor]]:
    """Per (a, b, reference) triple, the device scalars of the pairwise agreement: entries of
    a - b that are not finite, finite reference entries, max |a - b|, rms(a - b), rms(r); none
    for empty outputs. Triples of one shape, dtypes and device are reduced stacked."""
    out: list[list[Tensor]] = [[] for _ in items]
    key = lambda i: (tuple(items[i][0].shape), items[i][0].dtype, items[i][1].dtype, items[i][0].device)  # noqa: E731
    for group in _groups([i for i, (a, _, _) in enumerate(items) if a.numel()], key):
        if len(group) == 1:
            a, b, ref = items[group[0]]
            diff = a.detach().to(torch.float64) - b.detach().to(torch.float64)
            found = [nonfinite_mask(diff).sum(), diff.abs().max(), diff.square().mean().sqrt()]
        else:
            diff = _stacked([items[i][0] for i in group]) - _stacked([items[i][1] for i in group])
            rows = torch.stack([nonfinite_mask(diff).sum(1).to(torch.float64), diff.abs().amax(1),
                                diff.square().mean(1).sqrt()], 1)
        for j, i in enumerate(group):
            nonfinite, largest, rms = found if len(group) == 1 else rows[j].unbind()
            ref = items[i][2]
            out[i] = [nonfinite, refs.finite_count(ref), largest, rms, refs.rms(ref)]
    return out


def _stacked(tensors: Sequence[Tensor]) -> Tensor:
    """Same-shaped `tensors` as the float64 rows [len, numel] of one tensor."""
    return torch.stack([t.detach() for t in tensors]).to(torch.float64).flatten(1)


def _groups(indices: Sequence[int], key: Callable[[int], tuple]) -> list[list[int]]:
    """`indices` grouped by `key` (whose first item is the shape; groups in first-seen order), each
    group cut so that its stack holds at most :data:`STACK_ELEMENTS` elements."""
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for i in indices:
        by_key[key(i)].append(i)
    groups = []
    for members in by_key.values():
        each = max(1, math.prod(key(members[0])[0]))
        size = max(1, STACK_ELEMENTS // each)
        groups += [members[lo:lo + size] for lo in range(0, len(members), size)]
    return groups
