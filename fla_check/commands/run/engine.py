"""``fla-check run``: the example budget of a (shard of a) run, the search, the report file.

The search itself is :func:`fla_check.engine.search.search`; this module adds what the command
does around it: the profile's budget split over shards, the commit, the report file (written
as the run goes: atomic checkpoints, so a killed run leaves every finished case on disk), SIGTERM
handled like Ctrl-C, where mode calls ran (isolation), the rule that a run which checked no
case proves nothing, and the large-index check (``--large-index``, on by default in the nightly
profile on a GPU: :mod:`fla_check.engine.large_index`, one pack past 2^31 elements per dtype, its
memory need checked against the budget before the search starts).
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from fla_check.backend import get_backend
from fla_check.cases import CaseConfig, Fill
from fla_check.commands.run.sanitizer import SanitizerPolicy, sanitize
from fla_check.commands.gate.engine import git_commit
from fla_check.engine.configs import ConfigPolicy
from fla_check.engine.isolation import Isolation, in_process_modes, sigterm_as_interrupt
from fla_check.engine import invariance as invariance_checks
from fla_check.engine import large_index as large
from fla_check.engine.runner import resolve_modes, unsupported_reason
from fla_check.engine.profiles import get_profile
from fla_check.engine import warm_ledger, warmup as warmup_module, warmup_pool
from fla_check.engine import search as search_module  # called through the module: tests and benches wrap it
from fla_check.engine.search import ProgressEvent
from fla_check.engine.sharding import Shard, run_budget
from fla_check.engine.warmup import Bucket
from fla_check.errors import RunInterrupted, UsageError
from fla_check.ops import OpSpec
from fla_check.report.storage import Checkpoints, default_report_path, write_report
from fla_check.verdict.results import SearchResult


def run(op: OpSpec, modes: Sequence[str], *, dtypes: Optional[Sequence[str]] = None, examples: Optional[int] = None,
        seed: Optional[int] = None, max_seq_len: Optional[int] = None, mask_fills: Optional[Sequence[Fill]] = None,
        backward: bool = False, profile: str = "ci", shard: Optional[Shard] = None, device: Optional[str] = None,
        report: Optional[Path] = None, progress: Optional[Callable[[ProgressEvent], None]] = None,
        value_ratios: Optional[Sequence[int]] = None,
        kernel_options: Optional[Sequence[str]] = None,
        chunk_sizes: Optional[Sequence[Optional[int]]] = None, state_layouts: Optional[Sequence[str]] = None,
        configs: Optional[ConfigPolicy] = None, isolation: Optional[Isolation] = None,
        sanitizer: Optional[SanitizerPolicy] = None, providers: Sequence[str] = (),
        preset: Optional[str] = None, invariance: Optional[str] = None,
        invariance_scope: Optional[str] = None, large_index: bool = False,
        large_index_budget: Optional[float] = None, warmup: str = "off", warmup_buckets: Optional[int] = None,
        warmup_seconds: Optional[float] = None,
        warmup_progress: Optional[Callable[[int, int, Bucket], None]] = None) -> tuple[SearchResult, Path]:
    """Search `modes` of `op` within the (shard's share of the) budget; the result and where its
    report was written. `preset` draws only what that model calls `op` with
    (:mod:`fla_check.presets`). `chunk_sizes` and `state_layouts` draw those dimensions
    (:func:`fla_check.engine.search.search`). The report is checkpointed as the run goes; Ctrl-C or SIGTERM during the
    search ends it with a partial result (``interrupted``), written too. `isolation` (default: no
    isolation) is recorded in ``options.isolation``, with ``in_process``: the modes the worker
    could not load. With `sanitizer`, the picked cases' replays are re-run under
    compute-sanitizer (:mod:`fla_check.commands.run.sanitizer`; `providers`: what the replays
    load) and its record is ``options.sanitizer`` of the report.
    `large_index` (or the nightly profile on a GPU, :func:`large_index_wanted`) adds the large-index
    check after the search, within `large_index_budget` GiB (default
    :func:`fla_check.engine.large_index.default_budget`; a UsageError naming the need, before
    the search, when a dtype's case does not fit); its results are ``large_index`` of the report.
    `warmup` compiles the run's buckets in parallel processes (:mod:`fla_check.engine.warmup`):
    ``on`` before the search's clock starts (`warmup_seconds`: at most that long;
    `warmup_progress` after each bucket), ``background`` while the search runs (``auto``: that
    on a GPU, off in the interpreter); `warmup_buckets`: only the first that many; recorded in
    ``options.warmup`` when it ran. On a GPU, without providers, a run whose plan an earlier run
    compiled into the same cache skips it (:mod:`fla_check.engine.warm_ledger`; ``skipped``).
    Raises :class:`UsageError` for a shard left without an example and
    :class:`RunInterrupted` for an interrupt outside the search's own handling (e.g. its setup)."""
    isolation = isolation or Isolation()
    prof = get_profile(profile)
    total = prof.examples if examples is None else examples
    examples, seed = run_budget(prof.examples, examples, seed, prof.derandomize, shard)
    if examples < 1:
        raise UsageError(f"--shard {shard}: this shard has no example ({total} example(s) over {shard.count} "
                         "shards); use fewer shards or more --examples")
    path = report or default_report_path(op.name)
    extra = dict(shard=str(shard) if shard else None, commit=git_commit(), isolation=isolation.to_json())
    plans = []
    if large_index_wanted(large_index, profile, device) and (shard is None or shard.index == 1):  # once per run
        budget = large_index_budget
        if budget is None:
            budget = large.default_budget(get_backend(device).device)
        plans = large_index_plans(op, modes, dtypes, device, budget)
        extra["large_index"] = {"budget_gib": budget, "min_elements": large.INDEX_LIMIT,
                                "cases": len(plans)}
    warming = warmup_module.resolve(warmup, get_backend(device).interpreter)
    background, signature = None, None
    if warming != "off":
        warm_checks = ",".join(invariance_checks.parse_checks(invariance)) or "none"
        plan_args = dict(dtypes=dtypes, examples=examples, seed=seed, max_seq_len=max_seq_len, mask_fills=mask_fills,
                         profile=profile, device=device, backward=backward, preset=preset, value_ratios=value_ratios,
                         kernel_options=kernel_options, chunk_sizes=chunk_sizes, state_layouts=state_layouts)
        if not providers and not get_backend(device).interpreter and warm_ledger.enabled():
            signature = warm_ledger.fingerprint(op.name, modes, warm_checks, dict(plan_args, limit=warmup_buckets))
            if warm_ledger.holds(signature):
                extra["warmup"] = {"skipped": WARMED_BEFORE, "cache_dir": warmup_module.cache_dir()}
                warming = "off"
        if warming == "on":
            extra["warmup"] = _warm_up(op, modes, providers, warmup_buckets, warmup_seconds, warmup_progress,
                                       warm_checks, **plan_args)
        elif warming == "background":
            plan = functools.partial(warmup_module.run_buckets, op.name, tuple(modes), limit=warmup_buckets,
                                     **plan_args)
            backend_device = get_backend(device).device
            # skip: the first case's buckets, one per mode, which the search compiles at once itself (on the
            # H200 a warm-up process compiling them beside it only took a core: docs/gpu/perf-h200-10)
            background = warmup_module.BackgroundWarmup(plan, backend_device, backward=backward,
                                                        providers=providers, invariance=warm_checks, skip=len(modes),
                                                        pool=warmup_pool.take_prestarted_warmup(backend_device))
    if background is None:
        warmup_pool.discard_prestarted_warmup()  # the CLI started processes this run does not warm with
    checkpoints = Checkpoints(path, extra)
    try:
        with sigterm_as_interrupt(), _stopped_with_search(background, extra):
            result = search_module.search(op, list(modes), dtypes=dtypes, examples=examples, seed=seed,
                                          max_seq_len=max_seq_len, mask_fills=mask_fills, profile=profile,
                                          device=device, progress=progress, backward=backward,
                                          value_ratios=value_ratios, kernel_options=kernel_options,
                                          chunk_sizes=chunk_sizes, state_layouts=state_layouts, configs=configs,
                                          isolation=isolation, checkpoint=checkpoints, preset=preset,
                                          invariance=invariance, invariance_scope=invariance_scope)
    except KeyboardInterrupt:  # outside the search's own handling (e.g. while it was setting up)
        saved = f"partial report with {checkpoints.written} case(s): {path}" if checkpoints.written else "no report"
        raise RunInterrupted(f"interrupted; {saved}") from None
    result.options.update(extra)
    if signature and _compiled_its_plan(result, extra.get("warmup")):
        warm_ledger.add(signature)
    in_process = in_process_modes(result.modes) if isolation.isolated else {}
    if in_process:
        result.options["isolation"] = {**isolation.to_json(), "in_process": in_process}
    write_report(result.to_json(), path)
    if plans and not result.interrupted:
        try:
            with sigterm_as_interrupt():
                for case in plans:
                    result.large_index.append(check_large_index(op, result.modes, case, device, progress))
                    write_report(result.to_json(), path)
        except KeyboardInterrupt:
            result.interrupted = True
            write_report(result.to_json(), path)
    if sanitizer is not None:
        result.options["sanitizer"] = sanitize(result, path, sanitizer, get_backend(device).device, tuple(providers))
        write_report(result.to_json(), path)
    return result, path


def large_index_wanted(flag: bool, profile: str, device: Optional[str]) -> bool:
    """Whether a run does the large-index check: asked for, or the nightly profile on a GPU."""
    return flag or (profile == "nightly" and get_backend(device).device == "cuda")


def large_index_plans(op: OpSpec, modes: Sequence[str], dtypes: Optional[Sequence[str]], device: Optional[str],
                      budget_gib: float) -> list[large.LargeIndexCase]:
    """One large-index case per dtype of the run (UsageError when one does not fit `budget_gib`)."""
    backend = get_backend(device)
    plans = [large.plan(op.name, d) for d in (dtypes or search_module.default_dtypes(device))]
    specs = resolve_modes(op, modes)
    for plan in plans:
        large.check_device(plan, backend.device)
        runnable = [s for s in specs if not _unsupported(op, s, plan, backend.device)]
        large.check_budget([plan], runnable, backend.device, budget_gib)
    return plans


def _unsupported(op: OpSpec, spec, case: large.LargeIndexCase, device: str) -> Optional[str]:
    config = CaseConfig(op.name, case.dtype, 1, case.seq_len, case.H, case.K, case.V, packing="varlen",
                        segments=((case.seq_len,),))
    return unsupported_reason(spec, config, get_backend(device))


def check_large_index(op: OpSpec, modes: Sequence[str], case: large.LargeIndexCase, device: Optional[str],
                      progress: Optional[Callable] = None):
    """The large-index check of `case` over the run's `modes` (UNSUPPORTED where a mode cannot run
    a varlen case of that dtype)."""
    backend = get_backend(device)
    return large.run_large_index(op, resolve_modes(op, modes), case, device=backend.device, labels=list(modes),
                                 unsupported=lambda s: _unsupported(op, s, case, backend.device),
                                 progress=progress)


def replay_large_index(op: OpSpec, modes: Sequence[str], case_json: dict, device: Optional[str], budget_gib: float,
                       progress: Optional[Callable] = None):
    """Re-run a report's large-index case (its JSON) with `modes`, within `budget_gib`."""
    case = large.LargeIndexCase.from_json(case_json)
    backend = get_backend(device)
    specs = [s for s in resolve_modes(op, modes) if not _unsupported(op, s, case, backend.device)]
    large.check_device(case, backend.device)
    large.check_budget([case], specs, backend.device, budget_gib)
    return check_large_index(op, modes, case, device, progress)


WARMED_BEFORE = f"an earlier run with this plan compiled its buckets into this cache ({warm_ledger.LEDGER_NAME})"


@contextlib.contextmanager
def _stopped_with_search(background: Optional["warmup_module.BackgroundWarmup"], extra: dict) -> Iterator[None]:
    """Around the search: end `background` warm-up processes with it, their record in ``extra``."""
    try:
        yield
    finally:
        if background is not None:
            extra["warmup"] = background.stop().to_json()


def _warm_up(op: OpSpec, modes: Sequence[str], providers: Sequence[str], limit: Optional[int],
             seconds: Optional[float], progress: Optional[Callable[[int, int, Bucket], None]], checks: str,
             **search_args: Any) -> dict:
    """Warm the buckets of the cases the run's search will draw (:mod:`fla_check.engine.warmup`);
    the record for ``options.warmup``."""
    device = get_backend(search_args["device"]).device
    buckets = warmup_module.run_buckets(op.name, modes, limit=limit, **search_args)
    try:
        warmed = warmup_module.warm(buckets, device, backward=search_args["backward"], providers=providers,
                                    seconds=seconds, progress=progress, invariance=checks)
    except KeyboardInterrupt:
        raise RunInterrupted("interrupted while warming the compile cache; no report") from None
    return warmed.to_json()


def _compiled_its_plan(result: SearchResult, record: Optional[dict]) -> bool:
    """Whether every planned bucket is compiled now: the search drew the whole plan (it ended
    without a failure: with one, shrinking departs from the plan) or the warm-up did them all."""
    if result.interrupted:
        return False
    warmed_all = bool(record) and not record.get("stopped") and record.get("warmed") == record.get("buckets")
    return not result.failures or warmed_all


def unchecked_reason(result: SearchResult) -> Optional[str]:
    """Why no mode of `result` checked a single case (no case drawn, or every mode UNSUPPORTED on
    every case), or None when one did. Such a run proves nothing, so it is never reported OK."""
    if any(result.summary(m).cases for m in result.modes):
        return None
    if not result.cases:
        return "no case was drawn"
    why = "; ".join(f"{m}: {result.summary(m).reason}" for m in result.modes if result.summary(m).reason)
    return "every mode was UNSUPPORTED on every case" + (f" ({why})" if why else "")
