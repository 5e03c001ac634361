"""Hypothesis-driven search over a configuration space (``fla-check run``).

:func:`search` draws case configurations (:mod:`fla_check.strategies`), runs each through
:func:`fla_check.engine.runner.check_case`, steers hypothesis towards the worst error with
``hypothesis.target`` and, when a mode fails, lets hypothesis shrink the case to a minimal
failing configuration. Targets: the case's digits at risk
(:func:`fla_check.strategies.digits_at_risk`: length, chunk-local gate cumsum, UT inverse),
which hypothesis climbs first, so that its targeting phase moves towards long and
ill-conditioned cases; then one label per mode, the fraction of the allowed error used.

A run never counts a configuration twice: a draw equal to one the run already made is
answered from the cache and the run goes on until it has drawn its budget of different
configurations. Profiles with ``cover`` (ci, nightly) add a covering phase after the runs:
one case per stratum of :func:`fla_check.strategies.strata` (T beyond one, two and three
64-chunks for every dtype; beyond one, two, three 16-sub-chunks), see :func:`search`.

One hypothesis run per mode, in the order given: run ``m`` raises (and so stops generating
and shrinks) only when ``m`` fails, so every failing mode gets its own minimal configuration
and a mode that fails everywhere (fused_chunk at -0.1*finfo.max) cannot hide the others.
Every case runs all modes and is memoised by configuration: the runs draw the same cases
(same seed, same targets) and share their results, so a later run mostly replays the cache.

After ``Profile.shrink_cases`` new cases past a run's first failure, new shrink candidates
are rejected (a count, not a time, so runs stay deterministic); then the case is cut further
by :func:`fla_check.engine.simplify.simplify` within the same count. Ctrl-C returns what was found so far
(``interrupted=True``; a mode without a finished shrink gets its smallest failing case).
An out-of-memory of the harness on a case (:class:`~fla_check.errors.HarnessOutOfMemory`: the
reference, the baseline, ... not a kernel) is no failing example: the run stops there like an
interrupt, hypothesis does not shrink it, and :attr:`SearchResult.stopped` says why and holds the case.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import hypothesis
from hypothesis import given, reject, target

from fla_check.backend import get_backend
from fla_check.cases import DTYPES, OPTION_OPS, CaseConfig, Fill, dtype_name, op_options, usable_options
from fla_check.engine import invariance as invariance_checks
from fla_check.engine.configs import FIRST, ConfigPolicy
from fla_check.engine.batched import build_ahead, takes_built, wants_readout
from fla_check.engine.isolation import Isolation
from fla_check.engine.profiles import DEFAULT_PROFILE, REPORTS_DIR, database_dir, get_profile, hypothesis_settings
from fla_check.engine.runner import BuiltCase, ModeLike, OpLike, check_case, mode_label, resolve_modes, resolve_op
from fla_check.seeded_draws import only_seeded_draws
from fla_check.engine.simplify import simplify
from fla_check.errors import HarnessOutOfMemory, PresetError
from fla_check.ops import ModeSpec
from fla_check.presets import GPU_MAX_SEQ_LEN as PRESET_GPU_MAX_SEQ_LEN
from fla_check.presets import Preset, get_preset, preset_op
from fla_check.strategies import SpaceOptions, case_configs, covering_configs, digits_at_risk, strata
from fla_check.verdict.compare import Verdict
from fla_check.verdict.results import (CaseResult, ModeResult, ModeSummary, PairSummary,  # noqa: F401 (re-exported)
                                       SearchResult)

CPU_MAX_SEQ_LEN = 256  # four 64-chunks: the covering phase reaches beyond three
CPU_BACKWARD_MAX_SEQ_LEN = 80  # interpreted backward kernels cost ~5x the forward; still > one 64-chunk
GPU_MAX_SEQ_LEN = 512
TINY_T = 2  # see tiny_quota
DIGITS_LABEL = "digits at risk"  # hypothesis.target label of fla_check.strategies.digits_at_risk


def tiny_quota(distinct: int) -> int:
    """How many of a run's `distinct` configurations may have T <= 2: hypothesis keeps coming
    back to that corner (its simplest examples, mutations of a tiny one) and it is cheap to
    cover; later such draws are skipped (passing, no target observed)."""
    return max(3, distinct // 6)


class _BudgetSpent(BaseException):
    """Ends a mode's hypothesis run once it has drawn its budget of different configurations
    (a BaseException, so hypothesis does not take it for a failure of the test). Rejecting the
    repeated draws instead would make hypothesis report a flaky test: it sometimes replays a
    choice sequence it has run, which must then give the same outcome."""


class _HarnessStop(BaseException):
    """Ends the run on a harness out-of-memory (a BaseException, so hypothesis neither takes it
    for a failure of the test nor shrinks it). :meth:`record` is the report's ``stopped``."""

    def __init__(self, error: HarnessOutOfMemory, config: CaseConfig):
        super().__init__(str(error))
        self.error, self.config = error, config

    def record(self) -> dict[str, Any]:
        return {"reason": str(self.error), "stage": self.error.stage, "elements": self.error.elements,
                "config": self.config.to_json()}


_STOPS = (KeyboardInterrupt, _HarnessStop)  # what ends a run early, keeping what it found


class ModeFailure(Exception):
    """Raised inside the hypothesis test for a failing mode (one subclass per mode name)."""

    mode = ""

    def __init__(self, case: CaseResult):
        super().__init__(f"{self.mode}: {case.modes[self.mode].verdict.value} on {case.config.short()}")
        self.case = case


_FAILURE_TYPES: dict[str, type] = {}


def failure_type(mode: str) -> type:
    """The ModeFailure subclass of `mode` (distinct types = distinct bugs for hypothesis)."""
    if mode not in _FAILURE_TYPES:
        _FAILURE_TYPES[mode] = type(f"ModeFailure[{mode}]", (ModeFailure,), {"mode": mode})
    return _FAILURE_TYPES[mode]


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to the progress callback after each newly evaluated case."""

    examples: int  # distinct cases evaluated so far
    budget: int  # the example budget of one mode's run (shrinking runs past it)
    phase: str  # "search" until the active mode fails, then "shrink"; "cover": the covering phase
    case: CaseResult
    failing: tuple[str, ...]  # modes that failed so far
    mode: str = ""  # the mode whose hypothesis run is active ("" in the covering phase)
    calls: int = 0  # test calls in that run (cache hits included)


def default_dtypes(device: Optional[str] = None) -> tuple[str, ...]:
    """Every dtype the backend can test (bf16 only where its tl.dot works)."""
    backend = get_backend(device)
    return tuple(d for d in ("float32", "float16", "bfloat16")
                 if backend.dtype_unsupported_reason(DTYPES[d]) is None)


def default_max_seq_len(device: Optional[str] = None, backward: bool = False) -> int:
    if get_backend(device).interpreter:
        return CPU_BACKWARD_MAX_SEQ_LEN if backward else CPU_MAX_SEQ_LEN
    return GPU_MAX_SEQ_LEN


class _Evaluator:
    """Memoised check_case shared by the per-mode runs: progress and the shrink budget.

    While a run searches, a new case runs every mode; once the run's mode has failed, shrink
    candidates run that mode only (the others have their own runs), and :meth:`complete`
    later re-runs the final failing cases with every mode for the report.
    """

    # modes that count as failing a case (search's `failing`; default: verdict failed)
    counts: Callable[[CaseResult], Sequence[str]] = staticmethod(lambda case: case.failed_modes)

    def __init__(self, op, specs, device, budget: int, shrink_cases: int,
                 progress: Optional[Callable[[ProgressEvent], None]], backward: bool = False,
                 check: Callable[..., CaseResult] = check_case):
        self.op, self.device, self.backward, self.check = op, device, backward, check
        self.specs = {mode_label(s): s for s in specs}
        self.budget, self.shrink_cases, self.progress = budget, shrink_cases, progress
        self.cache: dict[CaseConfig, CaseResult] = {}
        self.cases: list[CaseResult] = []
        self.start = time.perf_counter()
        self.first_failure: dict[str, dict[str, Any]] = {}  # mode -> {"example", "seconds"}
        self.failing: list[str] = []
        self.mode, self.calls, self.mode_failed_at = "", 0, None  # mode_failed_at: len(cases) then
        self.seen: set[CaseConfig] = set()  # configurations the active run has drawn
        self.after_case: Optional[Callable[[], None]] = None  # called after each evaluation (checkpoints)
        self.phase = "search"

    def begin(self, mode: str, distinct: int) -> None:
        """Start the hypothesis run that hunts for failures of `mode`; it ends (searching) after
        `distinct` different configurations, at most `tiny_quota(distinct)` of them with T <= 2."""
        self.mode, self.calls, self.mode_failed_at = mode, 0, None
        self.seen, self.distinct, self.tiny = set(), distinct, tiny_quota(distinct)

    def __call__(self, config: CaseConfig) -> Optional[CaseResult]:
        """`config`'s result; None for a T <= 2 draw past the run's quota (not run, not counted)."""
        self.calls += 1
        shrinking = self.mode_failed_at is not None
        if not shrinking and config not in self.seen:  # a repeated draw is answered, not counted
            if len(self.seen) >= self.distinct:
                raise _BudgetSpent
            if config.T <= TINY_T:
                if self.tiny <= 0:
                    return None
                self.tiny -= 1
            self.seen.add(config)
        result = self.cache.get(config)
        if result is None or self.mode not in result.modes:
            if shrinking and len(self.cases) - self.mode_failed_at >= self.shrink_cases:
                reject()  # shrink budget spent: only already-seen cases are answered
            wanted = [self.mode] if shrinking else list(self.specs)
            result = self._evaluate(config, [m for m in wanted if result is None or m not in result.modes])
        if self.mode in self.counts(result) and self.mode_failed_at is None:
            self.mode_failed_at = len(self.cases)
        self._report(result)
        return result

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def cover(self, configs: Sequence[CaseConfig]) -> None:
        """The covering phase: run `configs` with every mode that has not failed yet (their float64
        references in one batch, :func:`_built_ahead`)."""
        self.mode, self.mode_failed_at, self.phase = "", None, "cover"
        self.calls = self.budget - len(configs)  # the progress bar's last steps
        built = self._built_ahead([c for c in configs if c not in self.cache])
        for config in configs:
            wanted = [m for m in self.specs if m not in self.failing]
            if not wanted:
                return
            self.calls += 1
            result = self.cache.get(config)
            missing = [m for m in wanted if result is None or m not in result.modes]
            if missing:
                result = self._evaluate(config, missing, built.pop(config, None))
            self._report(result)

    def _built_ahead(self, configs: list[CaseConfig]) -> dict[CaseConfig, BuiltCase]:
        """`configs`' inputs and float64 references, the references in one step loop
        (:mod:`fla_check.engine.batched`); none for a backward run, a check that is not check_case,
        or when every mode has failed already (the covering phase then runs nothing)."""
        if self.backward or len(configs) < 2 or not takes_built(self.check) or set(self.specs) <= set(self.failing):
            return {}
        try:
            live = [spec for label, spec in self.specs.items() if label not in self.failing]
            return dict(zip(configs, build_ahead(self.op, configs, self.device, readout=wants_readout(self.op, live))))
        except HarnessOutOfMemory as exc:
            raise _HarnessStop(exc, configs[0]) from exc

    def _check(self, config: CaseConfig, specs: list[ModeSpec], built: Optional[BuiltCase] = None) -> CaseResult:
        """check(config) with `specs` (`built`: its inputs and reference computed ahead); a harness
        out-of-memory ends the run (:class:`_HarnessStop`)."""
        extra = {} if built is None else {"built": built}
        try:
            return self.check(self.op, specs, config, device=self.device, backward=self.backward, **extra)
        except HarnessOutOfMemory as exc:
            raise _HarnessStop(exc, config) from exc

    def _evaluate(self, config: CaseConfig, labels: list[str], built: Optional[BuiltCase] = None) -> CaseResult:
        fresh = self._check(config, [self.specs[m] for m in labels], built)
        result = self.cache.get(config)
        if result is None:
            result = self.cache[config] = fresh
            self.cases.append(result)
        else:  # add the missing modes (no pairs across separately run modes)
            merged = {**result.modes, **fresh.modes}
            result.modes = {m: merged[m] for m in self.specs if m in merged}
            result.pairs += fresh.pairs
            result.seconds += fresh.seconds
        for mode in self.counts(result):
            if mode not in self.failing:
                self.failing.append(mode)
                self.first_failure[mode] = {"example": len(self.cases), "seconds": round(self.elapsed(), 3)}
        if self.after_case:
            self.after_case()
        return result

    def mode_result(self, mode: str, config: CaseConfig):
        """`mode` on `config` (cached; runs that mode only when missing)."""
        result = self.cache.get(config)
        if result is None or mode not in result.modes:
            result = self._evaluate(config, [mode])
        return result.modes[mode]

    def complete(self, case: CaseResult) -> None:
        """Re-run `case` with every mode (pairs included) if shrinking ran only some."""
        if list(case.modes) == list(self.specs) and len(case.pairs) == len(self.specs) * (len(self.specs) - 1) // 2:
            return
        full = self._check(case.config, list(self.specs.values()))
        for mode, old in case.modes.items():  # a failure that does not reproduce (a crash on the
            new = full.modes.get(mode)  # worker's n-th call, a race) keeps its evidence
            if old.verdict.failed and new is not None and not new.verdict.failed:
                old.reason = f"{old.reason} (not reproduced when re-run with every mode: {new.verdict.value})"
                full.modes[mode] = old
        for label, old in case.modes.items():  # invariance checks of scope bucket do not run twice
            new = full.modes.get(label)
            if new is not None and new is not old and old.invariance and not new.invariance:
                new.invariance = old.invariance
                failed = [i for i in old.invariance if i.verdict.failed]
                if failed and not new.verdict.failed:
                    new.verdict, new.reason = Verdict.NOT_INVARIANT, failed[0].reason
        case.modes, case.pairs, case.baseline = full.modes, full.pairs, full.baseline
        case.seconds += full.seconds

    def _report(self, result: CaseResult) -> None:
        if self.progress:
            phase = "shrink" if self.mode_failed_at is not None else self.phase
            self.progress(ProgressEvent(len(self.cases), self.budget, phase, result, tuple(self.failing),
                                        self.mode, self.calls))


def search(op: Optional[OpLike], modes: Sequence[ModeLike], *, dtypes: Optional[Sequence[str]] = None,
           examples: Optional[int] = None, seed: Optional[int] = None,
           max_seq_len: Optional[int] = None, mask_fills: Optional[Sequence[Fill]] = None,
           profile: str = DEFAULT_PROFILE, device: Optional[str] = None,
           progress: Optional[Callable[[ProgressEvent], None]] = None,
           database_root: Optional[Path] = REPORTS_DIR, backward: bool = False,
           failing: Optional[Callable[[CaseResult], Sequence[str]]] = None,
           value_ratios: Optional[Sequence[int]] = None,
           kernel_options: Optional[Sequence[str]] = None,
           chunk_sizes: Optional[Sequence[Optional[int]]] = None, state_layouts: Optional[Sequence[str]] = None,
           configs: Optional[ConfigPolicy] = None,
           preset: Optional[Union[str, Preset]] = None, isolation: Union[Isolation, str, None] = None,
           checkpoint: Optional[Callable[[SearchResult], None]] = None, invariance: Optional[str] = None,
           invariance_scope: Optional[str] = None, shrink_cases: Optional[int] = None) -> SearchResult:
    """Search `op`'s configuration space for cases where some of `modes` fail (`shrink_cases`:
    new cases per failing mode for shrinking, instead of the profile's).

    One hypothesis run per mode, in order, each hunting (and shrinking) that mode's failures;
    every case runs all modes and is memoised, so the runs share their cases. A run draws
    `examples` different configurations (a repeated draw is answered from the cache and not
    counted; T <= 2 draws past :func:`tiny_quota` are skipped). Profiles with ``cover`` (ci, nightly) then run a covering phase: one case per stratum of
    :func:`fla_check.strategies.strata` (beyond one, two, three 64-chunks for every dtype;
    beyond one, two, three 16-sub-chunks), drawn from the same strategy with a fixed seed (the
    run's seed if given; random in non-derandomized profiles), with every mode that has not
    failed yet; the hypothesis runs get the rest of the budget. It is left out where it would
    take more than half the budget. A failure found there is not shrunk by hypothesis, only
    simplified (:mod:`fla_check.engine.simplify`). `mask_fills`
    restricts packing to reset masks filled with those values (the space the masking bug lives
    in); otherwise every packing is drawn with the default fills (plus the extreme ones in the
    nightly profile). `examples` overrides the profile's budget (per mode run); `seed` makes
    the run depend on the seed alone. `progress` is called after every case. `backward`
    checks the gradients too (:mod:`fla_check.engine.gradients`; modes without backward are
    UNSUPPORTED) and is recorded in the options.
    `failing(case)` names the modes that count as failing a case (default: those whose verdict
    failed); ``fla-check selftest`` counts a planted bug only where the clean kernel passes.
    `value_ratios` restricts the grouped-value-head ratios drawn (GVA ops; default all of
    GVA_RATIOS); `kernel_options` the in-kernel options (default: every option at least one of
    `modes` declares; a case asking for one a mode lacks is UNSUPPORTED for that mode).
    `chunk_sizes` (None for the kernel's default, 16, 32, 64) and `state_layouts` ('kv', 'vk')
    are drawn only when given (default: the kernel's chunk size and [K, V] states, drawn as
    before these dimensions existed, so seeded runs keep their cases); a mode that does not take
    one a case asks for is UNSUPPORTED, a recurrent mode runs it without the chunk size
    (:mod:`fla_check.ops`).
    `configs`: the autotune-config policy every case runs under (:mod:`fla_check.engine.configs`;
    default first configs), recorded in the options when it is not the default.
    `preset` (a name of :data:`fla_check.presets.PRESETS` or a Preset) draws only what that model
    calls the op with; `op` may then be None (else it must be the preset's op), `dtypes` must be
    among the preset's, `value_ratios`, `kernel_options` and `mask_fills` must be left out, and the
    default longest T is the preset's on a GPU (:data:`fla_check.presets.GPU_MAX_SEQ_LEN`), the usual
    cap on CPU. Shrinking and simplification stay inside the preset.
    `isolation`: where mode calls run (:func:`fla_check.engine.runner.check_case`; ``fla-check run``
    passes ``process``): a CRASHED or TIMEOUT case is a failure like any other and shrinks
    (the worker restarts after each). `checkpoint(partial)` is called after every evaluated
    case with the run so far (``interrupted`` set): ``fla-check run`` writes it to the report
    file, so a killed run leaves every finished case on disk.
    `invariance` ('split,layout', 'all', 'none'; None: ``FLA_CHECK_INVARIANCE`` or layout)
    and `invariance_scope` (bucket, all) select the metamorphic checks
    (:mod:`fla_check.engine.invariance`); both are recorded in the options (replay uses them).
    """
    checks = ",".join(invariance_checks.parse_checks(invariance)) or "none"
    scope = invariance_checks.parse_scope(invariance_scope)
    check = functools.partial(check_case, isolation=Isolation.of(isolation), invariance=checks,
                              invariance_scope=scope)
    return _search(op, modes, dtypes=dtypes, examples=examples, seed=seed, max_seq_len=max_seq_len,
                   mask_fills=mask_fills, profile=profile, device=device, progress=progress,
                   database_root=database_root, backward=backward, failing=failing, check=check,
                   value_ratios=value_ratios, kernel_options=kernel_options, configs=configs,
                   checkpoint=checkpoint, preset=preset, invariance=(checks, scope),
                   layouts=(chunk_sizes, state_layouts), shrink_cases=shrink_cases)


def planned_cases(op: Optional[OpLike], *, modes: Sequence[ModeLike] = ("recurrent",),
                  dtypes: Optional[Sequence[str]] = None,
                  examples: Optional[int] = None, seed: Optional[int] = None, max_seq_len: Optional[int] = None,
                  mask_fills: Optional[Sequence[Fill]] = None, profile: str = DEFAULT_PROFILE,
                  device: Optional[str] = None, backward: bool = False,
                  preset: Optional[Union[str, Preset]] = None, value_ratios: Optional[Sequence[int]] = None,
                  kernel_options: Optional[Sequence[str]] = None,
                  chunk_sizes: Optional[Sequence[Optional[int]]] = None,
                  state_layouts: Optional[Sequence[str]] = None,
                  on_case: Optional[Callable[[CaseConfig], None]] = None) -> list[CaseConfig]:
    """The configurations a search with these arguments draws when every case passes with a
    score of 0, in order, without running a kernel (the hypothesis runs and the covering phase
    as :func:`search`; a real run differs where hypothesis' targeting follows the scores).
    `on_case(config)` as each is drawn (a warm-up starts compiling before the plan is done)."""
    check = _passing_check if on_case is None else functools.partial(_reporting_check, on_case)
    result = _search(op, modes, dtypes=dtypes, examples=examples, seed=seed, max_seq_len=max_seq_len,
                     mask_fills=mask_fills, profile=profile, device=device, database_root=None,
                     backward=backward, check=check, preset=preset, value_ratios=value_ratios,
                     kernel_options=kernel_options, layouts=(chunk_sizes, state_layouts))
    return [c.config for c in result.cases]


def _reporting_check(on_case: Callable[[CaseConfig], None], op, modes, config: CaseConfig, **kwargs) -> CaseResult:
    """:func:`_passing_check`, telling `on_case` first."""
    on_case(config)
    return _passing_check(op, modes, config, **kwargs)


def _passing_check(op, modes, config: CaseConfig, *, device=None, backward: bool = False) -> CaseResult:
    """check_case's stand-in for :func:`planned_cases`: every mode OK, no outputs (score 0)."""
    return CaseResult(config, {mode_label(m): ModeResult(mode_label(m), Verdict.OK) for m in modes},
                      backward=backward)


@only_seeded_draws()  # every draw of the run, the covering phase's included
def _search(op, modes, *, dtypes, examples, seed, max_seq_len, mask_fills, profile, device,
            database_root, backward, failing=None, progress=None,
            check: Callable[..., CaseResult] = check_case, value_ratios=None, kernel_options=None,
            configs: Optional[ConfigPolicy] = None, preset=None,
            checkpoint: Optional[Callable[[SearchResult], None]] = None,
            invariance: Optional[tuple[str, str]] = None, shrink_cases: Optional[int] = None,
            layouts: tuple[Optional[Sequence], Optional[Sequence]] = (None, None)) -> SearchResult:
    if preset is not None:
        preset = get_preset(preset)
        op = preset_op(preset, None if op is None else resolve_op(op).name)
        dtypes = _preset_dtypes(preset, dtypes, device, value_ratios, kernel_options, mask_fills)
        if max_seq_len is None and not get_backend(device).interpreter:
            max_seq_len = PRESET_GPU_MAX_SEQ_LEN
    op_spec = resolve_op(op)
    specs = resolve_modes(op_spec, modes)
    if not specs:
        raise ValueError("no modes to check")
    prof = get_profile(profile)
    options = None if preset is not None else _drawn_options(op_spec.name, specs, kernel_options)
    space = _space(op_spec.name, prof, dtypes, max_seq_len or default_max_seq_len(device, backward), mask_fills,
                   device, value_ratios, options, preset, layouts)
    labels = [mode_label(s) for s in specs]
    budget = prof.examples if examples is None else examples
    result = SearchResult(op=op_spec.name, modes=labels,
                          options=_options_json(space, prof.name, budget, seed, device))
    if backward:
        result.options["backward"] = True
    caveats = {label: spec.caveat for label, spec in zip(labels, specs) if spec.caveat}
    if caveats:  # a provider changed how its library behaves for these modes (e.g. lifted a guard)
        result.options["caveats"] = caveats
    if configs is not None and configs != FIRST:
        result.options.update(configs.to_json())
        check = functools.partial(check, configs=configs)
    if invariance is not None:
        result.options["invariance"], result.options["invariance_scope"] = invariance
    cover = _covering(space, prof, budget, seed)
    result.options["covering"] = len(cover)
    shrink_cases = prof.shrink_cases if shrink_cases is None else shrink_cases
    evaluate = _Evaluator(op_spec, specs, device, budget, shrink_cases, progress, backward, check)
    if failing is not None:
        evaluate.counts = failing
    if checkpoint is not None:
        evaluate.after_case = lambda: checkpoint(_partial(result, evaluate))
    shrunk: dict[str, CaseResult] = {}
    for label in labels if budget > len(cover) else []:
        db = database_dir(json.dumps([result.options, label], sort_keys=True), database_root) \
            if database_root else None
        distinct = budget - len(cover)
        # room for repeated draws (answered from the cache, not counted); hypothesis' targeting
        # starts at half of max_examples
        settings = hypothesis_settings(prof, examples=distinct + distinct // 4, seed=seed, database=db)
        evaluate.begin(label, distinct)
        try:
            _hypothesis_test(space, evaluate, label, settings, seed)()
        except _BudgetSpent:
            pass
        except _STOPS as exc:
            _stop(result, exc)
            break
        except ModeFailure as exc:
            shrunk[label] = exc.case
    if cover and not result.interrupted:
        try:
            evaluate.cover(cover)
        except _STOPS as exc:
            _stop(result, exc)
    result.first_failure = evaluate.first_failure
    _assign_failures(result, shrunk, evaluate.cases, evaluate.counts)
    if not result.interrupted:
        _simplify_failures(result, evaluate, shrink_cases, preset)
    result.cases = evaluate.cases
    try:
        for index in sorted(set(result.failures.values())) if not result.interrupted else []:
            evaluate.complete(result.cases[index])
    except _STOPS as exc:
        _stop(result, exc)
    result.seconds = evaluate.elapsed()
    return result


def _stop(result: SearchResult, exc: BaseException) -> None:
    """Mark `result` ended early by `exc` (an interrupt, or a harness out-of-memory: recorded)."""
    result.interrupted = True
    if isinstance(exc, _HarnessStop):
        result.stopped = exc.record()


def _partial(result: SearchResult, evaluate: _Evaluator) -> SearchResult:
    """The run so far, as an interrupted run's report (each failing mode at its smallest case)."""
    partial = SearchResult(result.op, list(result.modes), dict(result.options), list(evaluate.cases),
                           seconds=evaluate.elapsed(), interrupted=True, first_failure=dict(evaluate.first_failure))
    _assign_failures(partial, {}, partial.cases, evaluate.counts)
    return partial


def _covering(space: SpaceOptions, prof, budget: int, seed: Optional[int]) -> list[CaseConfig]:
    """The covering phase's cases (none where the profile has none, or they would take more
    than half of `budget`)."""
    if not prof.cover or 2 * len(strata(space)) > budget:
        return []
    return covering_configs(space, seed if seed is not None else 0 if prof.derandomize else None)


def _preset_dtypes(preset: Preset, dtypes, device, value_ratios, kernel_options, mask_fills) -> tuple[str, ...]:
    """The dtypes of a preset run (the preset's, or the asked ones among them); PresetError for a
    knob the preset fixes or a dtype the preset or the backend cannot run."""
    fixed = [name for name, value in (("value ratios", value_ratios), ("kernel options", kernel_options),
                                      ("mask fills", mask_fills)) if value]
    if fixed:
        raise PresetError(f"preset {preset.name} fixes the {', '.join(fixed)} (as {preset.model} calls "
                          f"{preset.op}); leave them out")
    wanted = tuple(dtype_name(d) for d in dtypes) if dtypes else preset.dtypes
    outside = [d for d in wanted if d not in preset.dtypes]
    if outside:
        raise PresetError(f"preset {preset.name} runs {', '.join(preset.dtypes)}, not {', '.join(outside)}")
    backend = get_backend(device)
    for d in wanted:
        reason = backend.dtype_unsupported_reason(DTYPES[d])
        if reason:
            raise PresetError(f"preset {preset.name}: {d} cannot be checked on {backend.describe()}: {reason}")
    return wanted


def _space(op: str, prof, dtypes, max_seq_len, mask_fills, device, value_ratios=None,
           kernel_options=None, preset: Optional[Preset] = None,
           layouts: tuple[Optional[Sequence], Optional[Sequence]] = (None, None)) -> SpaceOptions:
    chunk_sizes, state_layouts = layouts
    return SpaceOptions(
        op=op, dtypes=tuple(dtypes) if dtypes else default_dtypes(device),
        max_seq_len=max_seq_len or default_max_seq_len(device),
        mask_fills=tuple(mask_fills) if mask_fills else None, extreme_fills=prof.extreme_fills,
        small=get_backend(device).interpreter,
        value_ratios=tuple(value_ratios) if value_ratios else None,
        kernel_options=None if kernel_options is None else tuple(kernel_options), preset=preset,
        chunk_sizes=None if chunk_sizes is None else tuple(chunk_sizes),
        state_layouts=None if state_layouts is None else tuple(state_layouts))


def _drawn_options(op: str, specs: Sequence[ModeSpec], wanted: Optional[Sequence[str]]) -> Optional[tuple[str, ...]]:
    """The in-kernel options a run draws: `wanted`, else those some mode declares (in catalog order)."""
    if wanted is not None:
        return tuple(wanted)
    if op not in OPTION_OPS:
        return None
    return usable_options(o for o in op_options(op) if any(o in s.options for s in specs))


def _hypothesis_test(space: SpaceOptions, evaluate: _Evaluator, mode: str, settings, seed: Optional[int]):
    """The test of one mode's run: targets the case's digits at risk, then every mode's score
    (so all runs draw alike)."""

    @settings
    @given(case_configs(space))
    def run_case(config: CaseConfig) -> None:
        result = evaluate(config)
        if result is None:  # a T <= 2 draw past the quota: invalid for hypothesis, so it does not use up
            reject()  # max_examples (the run must still reach its distinct configurations)
        target(digits_at_risk(config), label=DIGITS_LABEL)  # first: hypothesis climbs it first
        for label, r in result.modes.items():
            if r.verdict is not Verdict.UNSUPPORTED:
                target(float(r.score), label=label)
        if mode in evaluate.counts(result):
            raise failure_type(mode)(result)

    return hypothesis.seed(seed)(run_case) if seed is not None else run_case


def _assign_failures(result: SearchResult, shrunk: dict[str, CaseResult], cases: list[CaseResult],
                     counts: Callable[[CaseResult], Sequence[str]]) -> None:
    """Mode -> index of its shrunk case, or of its smallest failing case (interrupted runs)."""
    index = {id(c): i for i, c in enumerate(cases)}
    for mode in result.modes:
        case = shrunk.get(mode)
        if case is None:
            failing = [c for c in cases if mode in counts(c)]
            if not failing:
                continue
            case = min(failing, key=lambda c: _size(c.config))
        else:
            result.shrunk.append(mode)
        result.failures[mode] = index[id(case)]


def _simplify_failures(result: SearchResult, evaluate: _Evaluator, budget: int,
                       preset: Optional[Preset] = None) -> None:
    """Localization-guided simplification of each failing mode's case (see fla_check.engine.simplify),
    inside the preset's space when there is one."""
    allowed = None if preset is None else preset.admits
    for mode, i in list(result.failures.items()):
        case = evaluate.cases[i]
        verdict = case.modes[mode].verdict

        def fails(config: CaseConfig, mode=mode, verdict=verdict):
            r = evaluate.mode_result(mode, config)
            return r if r.verdict is verdict and mode in evaluate.counts(evaluate.cache[config]) else None

        try:
            config = simplify(case.config, case.modes[mode], fails, budget, allowed)
        except _STOPS as exc:
            _stop(result, exc)
            return
        if config != case.config:
            found = evaluate.cache[config]
            result.failures[mode] = next(j for j, c in enumerate(evaluate.cases) if c is found)
            result.simplified.append(mode)


def _size(c: CaseConfig) -> tuple:
    return (c.T, c.B * c.HV, c.K + c.V, sum(len(r) for r in c.segments), c.initial_state, len(c.options),
            c.chunk_size is not None, c.state_v_first, c.seed)


def _options_json(space: SpaceOptions, profile: str, budget: int, seed: Optional[int],
                  device: Optional[str]) -> dict[str, Any]:
    out = {"profile": profile, "examples": budget, "seed": seed, "device": get_backend(device).device,
           "dtypes": list(space.dtypes), "max_seq_len": space.max_seq_len,
           "mask_fills": list(space.mask_fills) if space.mask_fills else None,
           "extreme_fills": space.extreme_fills}
    if space.preset is not None:
        out["preset"] = space.preset.name
    if space.ratios() != (1,) or space.options_to_draw():  # GVA / option ops only
        out.update(value_ratios=sorted(set(space.ratios())), kernel_options=list(space.options_to_draw()))
    if space.chunk_sizes is not None:  # recorded only when drawn (reports of other runs read as before)
        out["chunk_sizes"] = list(dict.fromkeys(space.chunk_draws()))
    if space.state_layouts is not None:
        out["state_layouts"] = list(dict.fromkeys(space.layout_draws()))
    return out


def dtype_list(text: str) -> tuple[str, ...]:
    """Parse 'fp32,fp16' into canonical dtype names."""
    return tuple(dtype_name(t) for t in text.split(",") if t.strip())
