"""check_case over many cases with their float64 references batched (issue 17, goal 3).

:func:`check_cases` builds every case's inputs, runs the references of the forward cases in one
step loop (:func:`fla_check.references.batch.reference_batch`: whatever their dtypes, head counts,
head dims and packings; cases with and without an in-kernel gate input apart) and then checks the
cases together with :func:`~fla_check.engine.runner.check_many`: every case through every mode,
every output of every case judged in one set of stacked reductions and one host transfer, the
pairwise agreements in one more. The verdicts are those of :func:`~fla_check.engine.runner.check_case`
case by case; on a GPU the launches of the references and the judge are paid once per batch
instead of once per case. Backward cases (reference gradients through autograd) build their
references one by one. A reference batch holds at most :func:`reference_elements` padded float64
elements; a longer list is cut into several. The search's covering phase
(:meth:`fla_check.engine.search._Evaluator.cover`) builds its cases this way (:func:`build_ahead`).
The readout terms of recurrent fp32 baselines (a second reference, on absolute values) join the
same loop. :func:`check_cases` also samples and reduces the baselines of cases of one shape, dtype
and declaration together (:func:`baselines_ahead`): the same samples, one emulation's launches;
the search draws cases of different shapes, so its covering phase does not.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from fla_check.backend import Backend, get_backend
from fla_check.cases import CaseConfig, CaseInputs, build_case
from fla_check.engine.out_of_memory import harness_stage
from fla_check.engine.runner import (BuiltCase, CaseResult, ModeLike, OpLike, check_case, check_many, resolve_modes,
                                     resolve_op, unsupported_reason)
from fla_check.errors import CaseError, HarnessOutOfMemory
from fla_check.references.batch import RowCase, batch_key, reference_batch
from fla_check.verdict.baselines import (baseline_key, batched_deviations, memory_budget, readout_inputs, rounds_exact,
                                        sample_bytes, sample_seed)
from fla_check.verdict.emulation import SAMPLES

BUILD_THREADS = 8  # threads drawing the cases' inputs (built_inputs)
BATCH_ELEMENTS = 2**25  # float64 elements of one batch's padded q, k, g, v and o (256 MB): longer runs split
REFERENCE_COPIES = 4  # on a GPU: a batch's padded elements held at once (inputs, outputs, the step's temporaries)
BaselineGroups = dict[Any, tuple[list[int], int]]  # baseline_key -> (its cases' indices, one case's peak bytes)


def reference_elements(device: Any) -> int:
    """Padded float64 elements one reference batch may hold: :data:`BATCH_ELEMENTS`, on a GPU as many
    as fit :data:`REFERENCE_COPIES` times in the harness's share of its free memory
    (:func:`~fla_check.verdict.baselines.memory_budget`) when that is more: a batch's launches do not
    grow with its size, so at T = 1024 one batch instead of three (64 cases, H=4, K=V=64)."""
    if torch.device(device).type != "cuda":
        return BATCH_ELEMENTS
    return max(BATCH_ELEMENTS, memory_budget(device) // (8 * REFERENCE_COPIES))


def check_cases(op: OpLike, modes: Sequence[ModeLike], configs: Sequence[CaseConfig], *,
                device: Optional[str] = None, backward: bool = False, overlap: Optional[bool] = None,
                **kwargs: Any) -> list[CaseResult]:
    """:func:`check_case` of each of `configs` (same keywords), in order, the forward cases'
    float64 references computed in one batch (one per :func:`batch_key`, :func:`build_ahead`) and
    their baselines per shape, dtype and declaration (:func:`baselines_ahead`), the cases judged
    together (:func:`~fla_check.engine.runner.check_many`). `overlap`: the baselines computed
    while the modes run (:class:`baselines_behind`; default: on a GPU); the same numbers either way."""
    op_spec = resolve_op(op)
    if backward:
        return check_many(op_spec, modes, configs, device=device, backward=True, **kwargs)
    built = build_ahead(op_spec, configs, device, readout=wants_readout(op_spec, modes))
    with baselines_behind(op_spec, modes, configs, built, device, thread=overlap) as baselines, \
            ahead_of(baselines.stream):
        return check_many(op_spec, modes, configs, device=device, built=built, baselines=baselines, **kwargs)


def wants_readout(op: OpLike, modes: Sequence[ModeLike]) -> bool:
    """Whether one of `modes` has a recurrent fp32 baseline, whose readout terms
    (:func:`~fla_check.verdict.baselines.readout_inputs`) :func:`build_ahead` can batch too."""
    return any(rounds_exact(spec.arithmetic) for spec in resolve_modes(resolve_op(op), modes))


def build_ahead(op: OpLike, configs: Sequence[CaseConfig], device: Optional[str] = None, *,
                readout: bool = False) -> list[BuiltCase]:
    """Each forward case's inputs and float64 reference (``check_case(..., built=)``), the
    references of cases of one :func:`batch_key` in one loop; with `readout`, the readout terms
    of the recurrent fp32 baselines in the same loop (more rows, no more steps)."""
    op_spec = resolve_op(op)
    foreign = [c.short() for c in configs if c.op != op_spec.name]
    if foreign:
        raise CaseError(f"cases for another op than {op_spec.name!r}: {', '.join(foreign[:3])}")
    dev = get_backend(device).device
    inputs = built_inputs(configs, dev)
    groups: dict[Any, list[tuple[int, str, RowCase]]] = defaultdict(list)  # (case, output, problem)
    for i, x in enumerate(inputs):
        problems = {"ref": RowCase(x.tensors(), x.initial_state, x.cu_seqlens, x.prepare)}
        absolute = readout_inputs(x) if readout else None
        if absolute is not None:
            problems["readout"] = RowCase(absolute[0], absolute[1], x.cu_seqlens)
        for name, case in problems.items():
            groups[batch_key(op_spec.step, case)].append((i, name, case))
    outs: dict[tuple[int, str], tuple[Tensor, Tensor]] = {}
    elements = reference_elements(dev)
    for group in groups.values():
        for batch in _within(group, configs, elements):
            with harness_stage(f"the float64 reference of {len(batch)} problems in one batch",
                               configs[batch[0][0]], dev):
                results = reference_batch(op_spec.step, [case for _, _, case in batch])
            outs.update({(i, name): out for (i, name, _), out in zip(batch, results)})
    return [BuiltCase(x, dict(zip(("o", "ht"), outs[i, "ref"])), outs.get((i, "readout"), (None,))[0])
            for i, x in enumerate(inputs)]


def built_inputs(configs: Sequence[CaseConfig], device: Any) -> list[CaseInputs]:
    """Each case's inputs (:func:`~fla_check.cases.build_case`), built in up to :data:`BUILD_THREADS`
    threads: a case draws its tensors on the CPU from its own generator (the same case on every
    device), torch's ops let go of the GIL meanwhile, and at T = 1024 the draws were a third of a
    warm case on the H200 (5.6 of 16.6 ms, docs/gpu/perf-h200-19). The same tensors as one by one."""
    def one(config: CaseConfig) -> CaseInputs:
        with harness_stage("building the inputs", config, device):
            return build_case(config, device)

    threads = min(BUILD_THREADS, len(configs), os.cpu_count() or 1)
    if threads < 2:
        return [one(c) for c in configs]
    with ThreadPoolExecutor(threads, thread_name_prefix="fla-check-build") as pool:
        return list(pool.map(one, configs))


def baselines_ahead(op: OpLike, modes: Sequence[ModeLike], configs: Sequence[CaseConfig], built: Sequence[BuiltCase],
                   device: Optional[str] = None, budget: Optional[int] = None,
                   groups: Optional[BaselineGroups] = None) -> list[BuiltCase]:
    """`built` with the baselines of every mode that runs each case, cases of one
    :func:`~fla_check.verdict.baselines.baseline_key` (declaration, dtype, shapes) sampled and
    reduced together (:func:`~fla_check.verdict.baselines.batched_deviations`: each case's samples
    are those it gets alone), as many at once as fit `budget` bytes (default: the baseline's
    memory budget). A case alone in its key, or too large for a batch, is left to its judge.
    `groups`: :func:`baseline_groups` of these cases, where the caller has them already."""
    op_spec, backend = resolve_op(op), get_backend(device)
    ready: list[dict] = [dict(case.baselines) for case in built]
    budget = memory_budget(backend.device) if budget is None else budget
    if groups is None:
        groups = baseline_groups(op_spec, modes, configs, built, backend)
    for (arith, dtype, *_), (members, each) in groups.items():
        pending = even_batches(members, max(1, budget // each))
        while pending:
            batch = pending.pop(0)
            if len(batch) < 2:
                continue
            readouts = [built[i].readout for i in batch]  # computed with the references, where they were
            try:
                with harness_stage(f"the float64 baseline ({arith.algorithm}) of {len(batch)} cases in one batch",
                                   configs[batch[0]], backend.device):
                    found = batched_deviations(op_spec, arith, [built[i].inputs for i in batch], dtype,
                                               [sample_seed(configs[i].seed, arith) for i in batch],
                                               [built[i].ref for i in batch],
                                               None if any(r is None for r in readouts) else readouts)
            except HarnessOutOfMemory:  # the budget is an estimate: halves (their cache released), down to one
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                continue
            for i, worst in zip(batch, found):
                ready[i][arith] = worst
    return [replace(case, baselines=own) for case, own in zip(built, ready)]


def even_batches(members: list[int], size: int) -> list[list[int]]:
    """`members` cut into as few consecutive batches of at most `size` as can be, their sizes within
    one of each other (64 by 21: 16 each, not 21, 21, 21 and one left alone)."""
    count = -(-len(members) // max(1, size))
    bounds = [len(members) * j // count for j in range(count + 1)] if members else [0]
    return [members[a:b] for a, b in zip(bounds, bounds[1:])]


def baseline_groups(op: OpLike, modes: Sequence[ModeLike], configs: Sequence[CaseConfig], built: Sequence[BuiltCase],
                    backend: Backend) -> BaselineGroups:
    """Per :func:`~fla_check.verdict.baselines.baseline_key` of the modes that run the cases: its
    cases (indices) and the peak bytes of one case's samples."""
    specs = resolve_modes(resolve_op(op), modes)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, (config, case) in enumerate(zip(configs, built)):
        arithmetics = {spec.declared(config.chunk_size) for spec in specs
                       if unsupported_reason(spec, config, backend) is None}
        for arith in arithmetics:
            key = baseline_key(arith, case.inputs, config.torch_dtype)
            if key is not None:
                groups[key].append(i)
    return {key: (members, SAMPLES * sample_bytes(built[members[0]].inputs, key[0], backward=False,
                                                  shortcut=rounds_exact(key[0])))
            for key, members in groups.items()}


# of the baselines' memory budget (itself GPU_SHARE of the free memory: the rest stays for the kernels), for baselines
# computed beside the kernels' calls. 0.5 before: at T = 1024 (gla chunk, 3.7 GiB per case) that cut 64 cases into
# 8 emulations instead of 4, each paying the chunk loops' launches again
BEHIND_SHARE = 1.0
# a case's baselines worth a thread: their peak bytes per case, a proxy of their GPU work (H200, perf-h200-24/25:
# a gain from gla T = 256 (2 GiB per case) and gated_delta T = 1024 (1 GiB), none or a loss below, where the
# thread's hold on Python's interpreter lock costs the host-bound calls more than it hides)
BEHIND_BYTES = 2**30


_STREAMS: dict[tuple[torch.device, int], Any] = {}  # (device, priority) -> the process's stream of them
CALL_PRIORITY = -1  # the calls' stream beside the baselines' (0, torch's default priority): a higher one


def process_stream(device: torch.device, priority: int = 0) -> "torch.cuda.Stream":
    """One CUDA stream of `device` and `priority` for the whole process: what
    :class:`baselines_behind` (priority 0) and :func:`ahead_of` run on. torch's caching allocator
    reuses a freed block only on the stream that allocated it, and each ``torch.cuda.Stream()`` is
    the next of a pool of 32: a stream per batch could reuse none of the last batches' blocks, so
    the cache grew by every batch's baselines until an allocation failed and torch freed the whole
    cache and retried (perf-h200-55: 413 cudaFree in two batches of 64 gla cases at T = 1024, after
    fp32 batches; none in a fresh process's first batches)."""
    key = (device, priority)
    if key not in _STREAMS:
        _STREAMS[key] = torch.cuda.Stream(device, priority=priority)
    return _STREAMS[key]


@contextlib.contextmanager
def ahead_of(behind: Optional["torch.cuda.Stream"]) -> Iterator[None]:
    """Within the block, the caller's GPU work runs on a high-priority stream of `behind`'s device
    (one per device), after what the caller's stream had queued and before what it queues next: the
    modes' kernels, each call waited for before the next (:func:`fla_check.engine.call.call_mode`),
    are then scheduled ahead of the baselines' queued blocks on `behind` instead of after them.
    Nothing changes with no stream behind (the CPU, baselines computed ahead)."""
    if behind is None:
        yield
        return
    device = behind.device
    caller = torch.cuda.current_stream(device)
    calls = process_stream(device, CALL_PRIORITY)
    calls.wait_stream(caller)
    try:
        with torch.cuda.stream(calls):
            yield
    finally:
        caller.wait_stream(calls)


def worth_a_thread(groups: BaselineGroups, cases: int) -> bool:
    """Whether the baselines of `cases` cases (their :func:`baseline_groups`) hold :data:`BEHIND_BYTES`
    per case on average (at their peak): enough GPU work for :class:`baselines_behind` to run them
    in a thread."""
    return cases > 0 and sum(len(members) * each for members, each in groups.values()) >= BEHIND_BYTES * cases


class baselines_behind:
    """:func:`baselines_ahead`'s baselines of `built`, computed while the caller runs the cases'
    modes (a context manager; calling it returns each case's baselines, as
    :attr:`~fla_check.engine.runner.BuiltCase.baselines`, for ``check_many(baselines=)``).

    With `thread` (default: on a GPU, for cases whose baselines hold :data:`BEHIND_BYTES` each on
    average) they run in a background thread, on a CUDA stream of their own (:func:`process_stream`): the emulated
    baselines' GPU work overlaps the modes' calls (launches, synchronizations, the recurrent
    kernels' latency). Their stream starts after the caller's (the inputs and references), the
    caller's stream waits for theirs before it reads them, and they hold :data:`BEHIND_SHARE` of
    the memory budget (itself a share of the free memory: the rest stays for the kernels).
    Otherwise they are computed at once, as :func:`baselines_ahead` computes them."""

    def __init__(self, op: OpLike, modes: Sequence[ModeLike], configs: Sequence[CaseConfig],
                 built: Sequence[BuiltCase], device: Optional[str] = None, thread: Optional[bool] = None):
        backend = get_backend(device)
        dev = torch.device(backend.device)
        cuda = dev.type == "cuda"
        groups = baseline_groups(op, modes, configs, built, backend)  # once: the choice and the batches
        compute = functools.partial(baselines_ahead, op, modes, configs, built, device, groups=groups)
        if thread is None:
            thread = cuda and worth_a_thread(groups, len(built))
        self.stream: Optional[torch.cuda.Stream] = None
        if not thread:
            self.pool, self.found = None, compute()
            return
        budget = int(BEHIND_SHARE * memory_budget(dev))
        if cuda:
            self.stream = process_stream(dev)
            self.stream.wait_stream(torch.cuda.current_stream(dev))

        def behind() -> list[BuiltCase]:
            if self.stream is None:
                return compute(budget=budget)
            with torch.cuda.stream(self.stream):
                return compute(budget=budget)

        self.pool = ThreadPoolExecutor(1, thread_name_prefix="fla-check-baselines")
        self.future = self.pool.submit(behind)

    def __call__(self) -> list[dict]:
        """Each case's baselines (joining the thread; its errors raise here)."""
        if self.pool is not None:
            self.found = self.future.result()
            if self.stream is not None:
                reader = torch.cuda.current_stream(self.stream.device)
                reader.wait_stream(self.stream)
                for case in self.found:  # tensors of the baselines' stream, read and freed on the caller's
                    for deviations in case.baselines.values():
                        for rows in deviations.values():
                            for t in rows:
                                t.record_stream(reader)
        return [dict(case.baselines) for case in self.found]

    def __enter__(self) -> "baselines_behind":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:  # the thread and its GPU work end before the caller goes on, even after an error
            self.pool.shutdown(wait=True)
            if self.stream is not None:
                self.stream.synchronize()  # nothing of it still reads the caller's inputs once they are freed


def _within(group: list[tuple[int, str, RowCase]], configs: Sequence[CaseConfig], elements: int) -> list[list]:
    """`group` cut into consecutive batches whose padded float64 inputs and outputs stay within
    about `elements` (one problem at least per batch)."""
    batches: list[list] = [[]]
    rows = width = steps = 0
    for entry in group:
        c = configs[entry[0]]
        own = (len(c.segments[0]) if c.varlen else c.B) * c.HV  # the problem's rows: sequences x value heads
        r, w, t = rows + own, max(width, 3 * c.K + 2 * c.V), max(steps, c.T)
        if batches[-1] and r * w * t > elements:
            batches.append([])
            r, w, t = own, 3 * c.K + 2 * c.V, c.T
        batches[-1].append(entry)
        rows, width, steps = r, w, t
    return batches


def takes_built(check: Callable[..., Any]) -> bool:
    """Whether `check` (a search's case check, maybe a partial) is :func:`check_case`: it then
    takes cases built ahead."""
    while isinstance(check, functools.partial):
        check = check.func
    return check is check_case
