"""``fla-check selftest``'s whole run: the selected catalog entries, sequential or in worker
processes (``--jobs``), a CI job's share (``--shard``), results in catalog order.

Above :mod:`fla_check.commands.selftest.engine` (one entry) and
:mod:`fla_check.commands.selftest.jobs` (the worker pool, whose workers call the engine).
"""
from __future__ import annotations

import time
from typing import Mapping, Optional, Sequence

from fla_check.backend import select_backend
from fla_check.commands.selftest.costs import default_costs
from fla_check.commands.selftest.engine import (
    DEFAULT_PROFILE, EntryResult, OnResult, SelftestResult, crashed_entry, run_entry,
)
from fla_check.commands.selftest.jobs import Jobs, handout_order, resolve_jobs, run_jobs
from fla_check.commands.selftest.mutants import select
from fla_check.engine.isolation import sigterm_as_interrupt
from fla_check.engine.sharding import Shard


# New cases per killing search for shrinking the killing case (``run``'s ci profile: 40). What the
# selftest shows is the catch and the examples to it; the shrunk case is a by-product, and on a
# GPU every new shape compiles the mutant's kernels again: on the H200 58 % of the selftest's search
# seconds came after the first kill (docs/PERFORMANCE.md).
SHRINK_CASES = 10


def run_selftest(ops: Optional[Sequence[str]] = None, ids: Optional[Sequence[str]] = None, *,
                 profile: str = DEFAULT_PROFILE, examples: Optional[int] = None,
                 max_seq_len: Optional[int] = None, dtypes: Optional[Sequence[str]] = None,
                 device: Optional[str] = None, field_only: bool = False, shard: Optional[Shard] = None,
                 jobs: Jobs = 1, costs: Optional[Mapping[str, float]] = None,
                 on_result: Optional[OnResult] = None, shrink_cases: Optional[int] = None) -> SelftestResult:
    """Run every selected catalog entry (see :func:`fla_check.commands.selftest.mutants.select`;
    `field_only`: the field catalog only; `shard`: its share of them, :meth:`Shard.pick` by id).

    `jobs`: worker processes (:mod:`fla_check.commands.selftest.jobs`; 'auto': one per core);
    1 runs every entry in this process. Each entry runs as if alone in its process
    (:func:`run_entry`), so the results do not depend on `jobs` nor on the order; they are
    reported in catalog order. `costs` (seconds per id, e.g. of a previous result): hand the
    costliest entries out first; None with several workers: the shipped GPU seconds
    (:func:`fla_check.commands.selftest.costs.default_costs`). ``on_result(result, done, total)``
    as each entry finishes. `shrink_cases`: new cases per killing search for shrinking (default
    :data:`SHRINK_CASES`)."""
    shrink_cases = SHRINK_CASES if shrink_cases is None else shrink_cases
    entries = select(ops, ids, field_only)
    if shard is not None:
        entries = shard.pick(entries, key=lambda e: e.id)
    workers = resolve_jobs(jobs, len(entries))
    options = {"profile": profile, "examples": examples, "max_seq_len": max_seq_len,
               "dtypes": list(dtypes) if dtypes else None, "ops": list(ops) if ops else None,
               "mutants": [e.id for e in entries]}
    if field_only:
        options["field"] = True
    options["shrink_cases"] = shrink_cases
    if shard is not None:
        options["shard"] = str(shard)
    if workers > 1:
        options["jobs"] = workers
    out = SelftestResult(options)
    start = time.perf_counter()
    done: dict[int, list[EntryResult]] = {}

    def finish(index: int, results: list[EntryResult]) -> None:
        done[index] = results
        for result in results:
            if on_result:
                on_result(result, len(done), len(entries))

    run = dict(profile=profile, examples=examples, max_seq_len=max_seq_len, dtypes=dtypes, device=device,
               shrink_cases=shrink_cases)
    try:
        with sigterm_as_interrupt():
            if workers > 1 and len(entries) > 1:
                costs = default_costs() if costs is None else costs
                run_jobs(entries, run, jobs=workers, device=select_backend(device),
                         order=handout_order([e.id for e in entries], costs),
                         finish=lambda i, rows: finish(i, [EntryResult.from_json(r) for r in rows]),
                         crashed=crashed_entry)
            else:
                for index in handout_order([e.id for e in entries], costs):
                    finish(index, run_entry(entries[index], **run))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the entries finished so far are the result
        out.interrupted = len(entries) - len(done)
    out.results = [r for index in range(len(entries)) if index in done for r in done[index]]
    out.seconds = time.perf_counter() - start
    return out
