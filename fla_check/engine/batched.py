"""check_case over many cases with their float64 references batched (issue 17, goal 3).

:func:`check_cases` builds every case's inputs, runs the references of the forward cases in one
step loop (:func:`fla_check.references.batch.reference_batch`: whatever their dtypes, head counts,
head dims and packings; cases with and without an in-kernel gate input apart) and then judges
each case as :func:`~fla_check.engine.runner.check_case` does, with that reference. The verdicts are the
same; on a GPU the reference's launches are paid once per batch instead of once per case.
Backward cases (reference gradients through autograd) run one by one. A batch holds at most
:data:`BATCH_ELEMENTS` padded float64 elements; a longer list is cut into several. The search's
covering phase (:meth:`fla_check.engine.search._Evaluator.cover`) builds its cases this way
(:func:`build_ahead`).
"""
from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any, Callable, Optional, Sequence

from torch import Tensor

from fla_check.backend import get_backend
from fla_check.cases import CaseConfig, build_case
from fla_check.engine.out_of_memory import harness_stage
from fla_check.engine.runner import BuiltCase, CaseResult, ModeLike, OpLike, check_case, resolve_op
from fla_check.errors import CaseError
from fla_check.references.batch import RowCase, batch_key, reference_batch

BATCH_ELEMENTS = 2**25  # float64 elements of one batch's padded q, k, g, v and o (256 MB): longer runs split


def check_cases(op: OpLike, modes: Sequence[ModeLike], configs: Sequence[CaseConfig], *,
                device: Optional[str] = None, backward: bool = False, **kwargs: Any) -> list[CaseResult]:
    """:func:`check_case` of each of `configs` (same keywords), in order, the forward cases'
    float64 references computed in one batch (one per :func:`batch_key`)."""
    op_spec = resolve_op(op)
    if backward:
        return [check_case(op_spec, modes, c, device=device, backward=True, **kwargs) for c in configs]
    built = build_ahead(op_spec, configs, device)
    return [check_case(op_spec, modes, c, device=device, built=b, **kwargs) for c, b in zip(configs, built)]


def build_ahead(op: OpLike, configs: Sequence[CaseConfig], device: Optional[str] = None) -> list[BuiltCase]:
    """Each forward case's inputs and float64 reference (``check_case(..., built=)``), the
    references of cases of one :func:`batch_key` in one loop."""
    op_spec = resolve_op(op)
    foreign = [c.short() for c in configs if c.op != op_spec.name]
    if foreign:
        raise CaseError(f"cases for another op than {op_spec.name!r}: {', '.join(foreign[:3])}")
    dev = get_backend(device).device
    inputs = []
    groups: dict[Any, list[tuple[int, RowCase]]] = defaultdict(list)
    for i, config in enumerate(configs):
        with harness_stage("building the inputs", config, dev):
            x = build_case(config, dev)
        inputs.append(x)
        case = RowCase(x.tensors(), x.initial_state, x.cu_seqlens, x.prepare)
        groups[batch_key(op_spec.step, case)].append((i, case))
    refs: dict[int, dict[str, Tensor]] = {}
    for group in groups.values():
        for batch in _within(group, configs, BATCH_ELEMENTS):
            with harness_stage(f"the float64 reference of {len(batch)} cases in one batch", configs[batch[0][0]], dev):
                outs = reference_batch(op_spec.step, [case for _, case in batch])
            for (i, _), (o, ht) in zip(batch, outs):
                refs[i] = {"o": o, "ht": ht}
    return [BuiltCase(x, refs[i]) for i, x in enumerate(inputs)]


def _within(group: list[tuple[int, RowCase]], configs: Sequence[CaseConfig], elements: int) -> list[list]:
    """`group` cut into consecutive batches whose padded float64 inputs and outputs stay within
    about `elements` (one case at least per batch)."""
    batches: list[list] = [[]]
    rows = width = steps = 0
    for i, case in group:
        c = configs[i]
        own = (len(c.segments[0]) if c.varlen else c.B) * c.HV  # the case's rows: sequences x value heads
        r, w, t = rows + own, max(width, 3 * c.K + 2 * c.V), max(steps, c.T)
        if batches[-1] and r * w * t > elements:
            batches.append([])
            r, w, t = own, 3 * c.K + 2 * c.V, c.T
        batches[-1].append((i, case))
        rows, width, steps = r, w, t
    return batches


def takes_built(check: Callable[..., Any]) -> bool:
    """Whether `check` (a search's case check, maybe a partial) is :func:`check_case`: it then
    takes cases built ahead."""
    while isinstance(check, functools.partial):
        check = check.func
    return check is check_case
