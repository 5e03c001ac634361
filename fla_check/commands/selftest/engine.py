"""``fla-check selftest``: the normal search against planted kernel bugs (mutation testing).

For every :class:`~fla_check.commands.selftest.mutants.Mutant`, :func:`fla_check.engine.search.search` runs the
mutated mode (``mutant:<mode>``) with the same strategies, verdict rule and profile as
``fla-check run`` (with gradients, ``backward=True``, for a mutant planted in a backward
kernel). Killing follows mutation testing: a case *kills* the mutant when the mutant's verdict
on it is DIVERGED or NONFINITE and the clean mode passes it. The search is told so (its
``failing`` predicate runs the clean mode on each such failure of the mutant), so hypothesis
hunts and shrinks distinguishing cases -- a clean mode with failures of its own (fused_chunk
under strong decay) cannot hide a planted bug.

ERROR is not a kill: a mutant that does not compile or raises where the clean mode runs is a
*broken* mutant (a bad rewrite, not a caught numerical bug); so is a mutant whose rewrite no
longer applies to its function (missing, or a pattern matching 0 or several times in it). It is reported as such
(``status == "broken"``, with the error) and counts as not caught, whatever else its run found.
Reported per mutant and mode:

- ``examples`` / ``seconds``: distinct cases evaluated / seconds since the search started, up
  to and including the first killing case (what a user of ``fla-check run`` would wait);
- the shrunk case: the minimal killing case, with the clean verdict on it;
- ``control_failures``: cases of that same run, up to the killing one, that the clean mode
  fails (the control: the clean mode runs every one of them; 0 unless the clean mode has
  failures of its own in that space);
- ``status``: ``caught``, ``escaped`` or ``broken`` (then ``error`` is the mutant's first
  error and ``errors`` how many cases raised).

A :class:`~fla_check.commands.selftest.mutants.UsageCase` runs the clean modes, each in its own search, with the
given mask fills, and is caught when every flagged mode fails and every clean mode passes its
whole run (a flagged mode that raises is ``broken``). Mutation score = caught / total.

Field mutants (``Mutant.field``: the public thread of the bug they plant) run like the others;
one with ``repeat`` set is searched (and controlled) with the determinism check on
(``FLA_CHECK_REPEAT``), so NONDETERMINISTIC kills it. A mutant with ``gpu_only`` (a reason) is
*skipped* on the CPU interpreter, with that reason in its result (``status == "skipped"``); skipped
entries are listed but count neither as caught nor in the total. A mutant with ``large_index`` is
not searched: on a GPU its mutated and clean modes run on the large-index case of its op
(:func:`run_large_mutant`, :mod:`fla_check.engine.large_index`: a pack past 2^31 elements), and it is
caught when the mutant fails there and the clean mode passes.

Entries are independent: :func:`run_entry` runs one as if alone in its process, so ``--jobs N``
(:mod:`fla_check.commands.selftest.suite` over the worker pool of :mod:`fla_check.commands.selftest.jobs`) and ``--shard i/n`` (a CI job's share
of the entries) report, per entry, what a sequential run of the whole catalog reports.

:func:`replay_mutant` / :func:`replay_usage` judge one recorded case (a ``killing`` case of an
earlier run) with the same kill rule: the fast catalog test (tests/commands/killing_cases.json).
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from fla_check import __version__
from fla_check.backend import get_backend
from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Verdict
from fla_check.commands.selftest.mutants import Mutant, UsageCase
from fla_check.errors import MutationError, UsageError
from fla_check.ops import get_op
from fla_check.engine.configs import ConfigPolicy, parse_policy
from fla_check.engine.invariance import forget_seen
from fla_check.engine.large_index import check_budget, default_budget, large_index_case, run_large_index
from fla_check.engine.profiles import DEFAULT_PROFILE
from fla_check.engine.runner import REPEAT_ENV, CaseResult, check_case, forget_repeated, mode_label
from fla_check.engine.search import ProgressEvent, SearchResult, search

# the verdicts that can kill a mutant (not ERROR); UNWRITTEN/OVERREAD: the memory checks (engine/memory.py);
# NOT_INVARIANT: the metamorphic checks (engine/invariance.py); NONDETERMINISTIC: the determinism check
KILLING = (Verdict.DIVERGED, Verdict.NONFINITE, Verdict.UNWRITTEN, Verdict.OVERREAD, Verdict.NOT_INVARIANT,
           Verdict.NONDETERMINISTIC)
CAUGHT, ESCAPED, BROKEN, SKIPPED = "caught", "escaped", "broken", "skipped"


def numeric_failures(case: CaseResult) -> list[str]:
    """Modes whose verdict on `case` is a numerical or memory failure (a KILLING verdict, not ERROR)."""
    return [m for m, r in case.modes.items() if r.verdict in KILLING]


@dataclass
class EntryResult:
    """One catalog entry on one mode: caught or not, and how fast."""

    id: str
    kind: str
    op: str
    mode: str
    caught: bool
    examples: Optional[int] = None  # distinct cases evaluated up to the first killing case
    seconds: Optional[float] = None  # seconds from the search start to that case
    search_seconds: float = 0.0  # the whole search, shrinking included
    searched: int = 0  # distinct cases the search evaluated
    verdict: str = ""  # the mutant's verdict on the killing case
    killing: Optional[dict[str, Any]] = None  # CaseConfig JSON of the first killing case (large_index: the pack's)
    shrunk: Optional[dict[str, Any]] = None  # CaseConfig JSON of the shrunk failing case
    shrunk_verdict: str = ""  # the mutant's verdict on the shrunk case
    shrunk_control: str = ""  # the clean mode's verdict on the shrunk case
    control_failures: int = 0  # cases up to the killing one that the clean mode fails too
    note: str = ""
    status: str = ""  # CAUGHT, ESCAPED, BROKEN (raised where the clean mode runs) or SKIPPED (note: why)
    backward: bool = False  # searched with gradients (a mutant in a backward kernel)
    error: str = ""  # BROKEN: the mutant's first error
    errors: int = 0  # cases of the run on which the mutant raised and the clean mode did not
    field: Optional[str] = None  # the public thread of the field bug (Mutant.field); None: synthetic

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EntryResult":
        return cls(**d)


@dataclass
class SelftestResult:
    """Every entry's result; the mutation score."""

    options: dict[str, Any]
    results: list[EntryResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: int = 0  # entries not finished when Ctrl-C / SIGTERM ended the run (0: it ran them all)

    @property
    def caught(self) -> int:
        return sum(r.caught for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.status == SKIPPED for r in self.results)

    @property
    def total(self) -> int:
        """Entries run (skipped ones excluded)."""
        return len(self.results) - self.skipped

    @property
    def broken(self) -> int:
        return sum(r.status == BROKEN for r in self.results)

    @property
    def score(self) -> float:
        return self.caught / self.total if self.total else 1.0

    @property
    def all_caught(self) -> bool:
        return self.caught == self.total

    def to_json(self) -> dict[str, Any]:
        return {"tool": "fla-check", "version": __version__, "kind": "selftest", "options": self.options,
                "seconds": round(self.seconds, 3), "caught": self.caught, "total": self.total,
                "broken": self.broken, "skipped": self.skipped,
                "score": self.score, "results": [r.to_json() for r in self.results],
                **({"interrupted": self.interrupted} if self.interrupted else {})}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SelftestResult":
        return cls(dict(d.get("options", {})), [EntryResult.from_json(r) for r in d.get("results", [])],
                   float(d.get("seconds", 0.0)), int(d.get("interrupted", 0)))


OnResult = Callable[[EntryResult, int, int], None]  # (result, entries finished so far, entries in the run)


def run_entry(entry: Mutant | UsageCase, **options: Any) -> list[EntryResult]:
    """One catalog entry (:func:`run_mutant` or :func:`run_usage` with `options`), as if alone in
    its process: the process-wide memory of which compile buckets the invariance and
    determinism checks already covered (scope/policy ``bucket``) is forgotten first."""
    forget_seen()
    forget_repeated()
    run = run_usage if isinstance(entry, UsageCase) else run_mutant
    return run(entry, **options)


def crashed_entry(entry: Mutant | UsageCase, reason: str) -> list[EntryResult]:
    """The results of an entry whose process died running it: broken (not caught) on every
    mode it plants or flags, with `reason` (the exit, the process's last log lines)."""
    modes = entry.flagged if isinstance(entry, UsageCase) else entry.modes
    first = reason.splitlines()[0] if reason else "crashed"
    return [EntryResult(entry.id, entry.kind, entry.op, mode, caught=False, field=entry.field, status=BROKEN,
                        backward=getattr(entry, "backward", False), error=reason, errors=1,
                        note=f"crashed: {first}") for mode in modes]


class _Clock:
    """Progress callback: when each distinct case was first evaluated (seconds from start)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.at: dict[int, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        self.at.setdefault(event.examples, time.perf_counter() - self.start)


def _search(op: str, modes: list, clock: _Clock, *, profile, examples, max_seq_len, dtypes, device,
            mask_fills=None, failing=None, backward: bool = False, configs=None,
            state_layouts: Optional[Sequence[str]] = None, shrink_cases: Optional[int] = None) -> SearchResult:
    result = search(op, modes, dtypes=dtypes, examples=examples, max_seq_len=max_seq_len, mask_fills=mask_fills,
                    profile=profile, device=device, progress=clock, database_root=None, failing=failing,
                    backward=backward, configs=configs, state_layouts=state_layouts, shrink_cases=shrink_cases)
    if result.interrupted:  # the search turns Ctrl-C into a partial result; an entry cut short has none
        raise KeyboardInterrupt
    return result


def run_mutant(mutant: Mutant, *, profile: str = DEFAULT_PROFILE, examples: Optional[int] = None,
               max_seq_len: Optional[int] = None, dtypes: Optional[Sequence[str]] = None,
               device: Optional[str] = None, shrink_cases: Optional[int] = None) -> list[EntryResult]:
    """Search the mutated modes of `mutant` (with gradients for a backward mutant, drawing the
    mutant's state layouts); one result per affected mode. A mutant whose rewrite cannot be applied (its function is missing, or a
    pattern does not match exactly once inside it) is broken, with the reason, and not searched;
    a ``gpu_only`` mutant on the CPU interpreter is skipped, with its reason."""
    if mutant.gpu_only and get_backend(device).interpreter:
        return [EntryResult(mutant.id, mutant.kind, mutant.op, mode, caught=False, field=mutant.field,
                            status=SKIPPED, backward=mutant.backward,
                            note=f"skipped on the CPU interpreter (GPU only): {mutant.gpu_only}")
                for mode in mutant.modes]
    try:
        specs = mutant.mode_specs()
    except MutationError as exc:
        return [EntryResult(mutant.id, mutant.kind, mutant.op, mode, caught=False, field=mutant.field, status=BROKEN,
                            backward=mutant.backward, error=f"{mutant.target}: {exc}",
                            note=f"broken mutant: the rewrite does not apply to {mutant.target}: {exc}")
                for mode in mutant.modes]
    if mutant.large_index:
        return run_large_mutant(mutant, specs, device=device, dtypes=dtypes)
    clock = _Clock()
    policy = parse_policy(mutant.configs)
    controls = {mode_label(s): _Control(mutant.op, mode_label(get_op(mutant.op).modes[s.name]), device,
                                        mutant.backward, policy, mutant.repeat)
                for s in specs}

    def failing(case: CaseResult) -> list[str]:
        return [m for m in numeric_failures(case) if m not in controls or controls[m].passes(case.config)]

    with _repeat_policy(mutant.repeat):
        result = _search(mutant.op, specs, clock, profile=profile, examples=examples, max_seq_len=max_seq_len,
                         dtypes=dtypes, device=device, failing=failing, backward=mutant.backward, configs=policy,
                         state_layouts=mutant.state_layouts, shrink_cases=shrink_cases)
    out = []
    for spec in specs:
        label = mode_label(spec)
        entry = EntryResult(mutant.id, mutant.kind, mutant.op, spec.name, caught=False, field=mutant.field,
                            search_seconds=round(result.seconds, 3), searched=len(result.cases),
                            backward=mutant.backward)
        _find_kill(entry, result, label, controls[label], clock)
        _describe_shrunk(entry, result, label, controls[label])
        _check_broken(entry, result, label, controls[label])
        out.append(entry)
    return out


def replay_mutant(mutant: Mutant, config: CaseConfig, *, device: Optional[str] = None) -> list[EntryResult]:
    """Run `mutant` and its clean modes on one recorded case (e.g. the ``killing`` case of an
    earlier selftest) under the mutant's gradient, autotune-config and determinism policies, and
    judge it with the search's kill rule (:func:`_find_kill`, :func:`_check_broken`): caught when
    the mutant's verdict is a KILLING one and the clean mode passes; broken when it raises where
    the clean mode runs. The invariance checks run with scope ``all`` on both (the search's
    ``bucket`` scope depends on the cases seen before in the process). ``examples`` is 1 when
    caught. A ``gpu_only`` mutant on the interpreter is skipped; an unappliable rewrite is broken."""
    if mutant.large_index or (mutant.gpu_only and get_backend(device).interpreter):
        return run_mutant(mutant, device=device)  # skipped, or its one large-index case
    try:
        specs = mutant.mode_specs()
    except MutationError:
        return run_mutant(mutant, device=device)
    policy = parse_policy(mutant.configs)
    clock = _Clock()
    with _repeat_policy(mutant.repeat):
        case = check_case(mutant.op, specs, config, device=device, backward=mutant.backward, configs=policy,
                          invariance_scope="all")
    result = SearchResult(mutant.op, [mode_label(s) for s in specs], {}, cases=[case],
                          seconds=time.perf_counter() - clock.start)
    out = []
    for spec in specs:
        label = mode_label(spec)
        control = _Control(mutant.op, mode_label(get_op(mutant.op).modes[spec.name]), device, mutant.backward,
                           policy, mutant.repeat, invariance_scope="all")
        entry = EntryResult(mutant.id, mutant.kind, mutant.op, spec.name, caught=False, field=mutant.field,
                            search_seconds=round(result.seconds, 3), searched=1, backward=mutant.backward)
        _find_kill(entry, result, label, control, clock)
        _check_broken(entry, result, label, control)
        entry.verdict = case.modes[label].verdict.value  # the mutant's verdict on the case, killing or not
        entry.shrunk_control = control.verdict(config).value
        out.append(entry)
    return out


def run_large_mutant(mutant: Mutant, specs: Optional[list] = None, *, device: Optional[str] = None,
                     dtypes: Optional[Sequence[str]] = None, shape: Optional[dict[str, int]] = None,
                     budget_gib: Optional[float] = None) -> list[EntryResult]:
    """Check a ``large_index`` mutant on the large-index case of its op (the first of `dtypes`,
    default float32; `shape`: keyword arguments of :func:`large_index_case`, e.g. a tiny
    ``min_elements`` in tests), its mutated and clean modes on the same pack: caught when the
    mutant's verdict kills (a KILLING verdict) and the clean mode passes; broken when it raises
    where the clean mode runs. One case, so ``examples`` is 1. `budget_gib`: default
    :func:`default_budget`; a case that does not fit is skipped, with the need as its reason."""
    specs = mutant.mode_specs() if specs is None else specs
    op = get_op(mutant.op)
    backend = get_backend(device)
    case = large_index_case(mutant.op, (dtypes or ("float32",))[0], **(shape or {}))
    clean = [op.modes[s.name] for s in specs]
    labels = [mode_label(s) for s in specs] + [mode_label(c) for c in clean]
    budget = default_budget(backend.device) if budget_gib is None else budget_gib
    try:
        check_budget([case], list(specs) + clean, backend.device, budget)
    except UsageError as exc:  # a device too small for the pack: the rest of the selftest still runs
        return [EntryResult(mutant.id, mutant.kind, mutant.op, s.name, caught=False, field=mutant.field,
                            status=SKIPPED, note=f"skipped: the large-index case does not fit: {exc}") for s in specs]
    start = time.perf_counter()
    result = run_large_index(op, list(specs) + clean, case, device=backend.device, labels=labels)
    seconds = round(time.perf_counter() - start, 3)
    out = []
    for spec, control in zip(specs, clean):
        mine, theirs = result.modes[mode_label(spec)], result.modes[mode_label(control)]
        entry = EntryResult(mutant.id, mutant.kind, mutant.op, spec.name, caught=False, field=mutant.field,
                            search_seconds=seconds, searched=1, verdict=mine.verdict.value, killing=case.to_json(),
                            shrunk_control=theirs.verdict.value, control_failures=int(theirs.verdict.failed))
        if mine.verdict is Verdict.ERROR and theirs.verdict is not Verdict.ERROR:
            entry.status, entry.errors, entry.error = BROKEN, 1, mine.reason
            entry.note = f"broken mutant: raised on the large-index case where the clean mode runs: {mine.reason}"
        elif mine.verdict in KILLING and not theirs.verdict.failed:
            entry.caught, entry.status, entry.examples, entry.seconds = True, CAUGHT, 1, seconds
            entry.note = f"large-index case ({case.describe()}): {mine.reason}"
        else:
            entry.status = ESCAPED
            entry.note = (f"large-index case ({case.describe()}): mutant {mine.verdict.value}, "
                          f"clean {theirs.verdict.value}" + (f" ({theirs.reason})" if theirs.reason else ""))
        out.append(entry)
    return out


@contextlib.contextmanager
def _repeat_policy(policy: str):
    """The determinism check's policy (``FLA_CHECK_REPEAT``) for the calls inside, restored after;
    "off" leaves the environment as it is."""
    if policy == "off":
        yield
        return
    before = os.environ.get(REPEAT_ENV)
    os.environ[REPEAT_ENV] = policy
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(REPEAT_ENV, None)
        else:
            os.environ[REPEAT_ENV] = before


class _Control:
    """The clean mode's results on the cases of a mutant's run (memoised by configuration), under
    the mutant's autotune-config and determinism policies (`invariance_scope`: None, the
    search's default, or "all" for a replayed case)."""

    def __init__(self, op: str, clean: str, device: Optional[str], backward: bool = False,
                 configs: Optional[ConfigPolicy] = None, repeat: Optional[str] = None,
                 invariance_scope: Optional[str] = None):
        self.op, self.clean, self.device, self.backward, self.configs = op, clean, device, backward, configs
        self.repeat = None if repeat == "off" else repeat
        self.invariance_scope = invariance_scope
        self.cache: dict[CaseConfig, CaseResult] = {}

    def verdict(self, config: CaseConfig):
        if config not in self.cache:
            self.cache[config] = check_case(self.op, [self.clean], config, device=self.device,
                                            backward=self.backward, configs=self.configs, repeat=self.repeat,
                                            invariance_scope=self.invariance_scope)
        return self.cache[config].modes[self.clean].verdict

    def passes(self, config: CaseConfig) -> bool:
        return not self.verdict(config).failed


def _find_kill(entry: EntryResult, result: SearchResult, label: str, control: _Control, clock: _Clock) -> None:
    """The first case (search order) that `label` fails numerically (DIVERGED or NONFINITE)
    and the clean mode passes; the clean mode also runs every case before it (the same run must
    not fail the clean kernel)."""
    for index, case in enumerate(result.cases, start=1):
        if label not in case.modes:
            continue
        clean_ok = control.passes(case.config)
        entry.control_failures += not clean_ok
        if case.modes[label].verdict in KILLING and clean_ok:
            entry.caught, entry.status = True, CAUGHT
            entry.examples = index
            entry.seconds = round(clock.at.get(index, result.seconds), 3)
            entry.verdict = case.modes[label].verdict.value
            entry.killing = case.config.to_json()
            return
    entry.status = ESCAPED
    failed = sum(label in numeric_failures(c) for c in result.cases)
    entry.note = (f"the clean mode fails all {failed} failing case(s) of the mutant too" if failed
                  else f"no DIVERGED/NONFINITE case in {len(result.cases)} case(s)")


def _check_broken(entry: EntryResult, result: SearchResult, label: str, control: _Control) -> None:
    """A mutant that raised (ERROR) on a case the clean mode runs without error is broken:
    not caught, whatever else its run found."""
    for case in result.cases:
        mode = case.modes.get(label)
        if mode is None or mode.verdict is not Verdict.ERROR or control.verdict(case.config) is Verdict.ERROR:
            continue
        entry.errors += 1
        entry.error = entry.error or mode.reason
    if entry.errors:
        entry.caught, entry.status = False, BROKEN
        entry.note = (f"broken mutant: raised on {entry.errors} case(s) where the clean mode runs: "
                      f"{entry.error.splitlines()[0] if entry.error else 'ERROR'}")


def _describe_shrunk(entry: EntryResult, result: SearchResult, label: str, control: _Control) -> None:
    index = result.failures.get(label)
    if index is None:
        return
    case = result.cases[index]
    entry.shrunk = case.config.to_json()
    entry.shrunk_verdict = case.modes[label].verdict.value
    entry.shrunk_control = control.verdict(case.config).value


def run_usage(case: UsageCase, *, profile: str = DEFAULT_PROFILE, examples: Optional[int] = None,
              max_seq_len: Optional[int] = None, dtypes: Optional[Sequence[str]] = None,
              device: Optional[str] = None, shrink_cases: Optional[int] = None) -> list[EntryResult]:
    """Search each mode of `case` with its mask fills: flagged modes must fail, clean ones pass."""
    runs: dict[str, tuple[SearchResult, _Clock]] = {}
    for mode in case.modes:  # one search per mode: a clean mode's run does not pay for the others
        clock = _Clock()
        runs[mode] = _search(case.op, [mode], clock, profile=profile, examples=examples, max_seq_len=max_seq_len,
                             dtypes=dtypes, device=device, mask_fills=case.mask_fills,
                             failing=numeric_failures if mode in case.flagged else None,
                             shrink_cases=shrink_cases), clock
    failed_clean = [m for m in case.clean if runs[m][0].failed]
    out = []
    for mode in case.flagged:
        result, clock = runs[mode]
        entry = EntryResult(case.id, case.kind, case.op, mode, caught=False, field=case.field,
                            search_seconds=round(sum(r.seconds for r, _ in runs.values()), 3),
                            searched=sum(len(r.cases) for r, _ in runs.values()),
                            control_failures=sum(m in c.failed_modes for m in case.clean for c in runs[m][0].cases))
        first = result.first_failure.get(mode)
        if first:
            entry.examples = int(first["example"])
            entry.seconds = round(clock.at.get(entry.examples, float(first["seconds"])), 3)
            killing = result.cases[entry.examples - 1]
            entry.verdict = killing.modes[mode].verdict.value
            entry.killing = killing.config.to_json()
        index = result.failures.get(mode)
        if index is not None:
            entry.shrunk = result.cases[index].config.to_json()
            entry.shrunk_verdict = result.cases[index].modes[mode].verdict.value
        entry.shrunk_control = ", ".join(
            f"{m}: {'FAIL' if m in failed_clean else 'OK'} ({len(runs[m][0].cases)} cases)" for m in case.clean)
        errors = [c.modes[mode].reason for c in result.cases
                  if mode in c.modes and c.modes[mode].verdict is Verdict.ERROR]
        entry.errors, entry.error = len(errors), errors[0] if errors else ""
        entry.caught = bool(first) and not failed_clean and not errors
        entry.status = CAUGHT if entry.caught else BROKEN if errors else ESCAPED
        if errors:
            entry.note = f"{mode} raised on {len(errors)} case(s): {errors[0].splitlines()[0] if errors[0] else 'ERROR'}"
        elif not first:
            entry.note = f"{mode} had no DIVERGED/NONFINITE case in {len(result.cases)} case(s)"
        elif failed_clean:
            entry.note = "a mode that must pass failed: " + ", ".join(failed_clean)
        out.append(entry)
    return out


def replay_usage(case: UsageCase, config: CaseConfig, *, device: Optional[str] = None) -> list[EntryResult]:
    """Run every mode of usage case `case` on one recorded case (its mask fill in `config`): per
    flagged mode, caught when that mode's verdict is a KILLING one and every clean mode passes
    (broken when the flagged mode raises). The one-case form of :func:`run_usage`, whose clean
    modes must pass their whole search."""
    start = time.perf_counter()
    result = check_case(case.op, list(case.modes), config, device=device)
    seconds = round(time.perf_counter() - start, 3)
    failed_clean = [m for m in case.clean if result.modes[m].verdict.failed]
    out = []
    for mode in case.flagged:
        mine = result.modes[mode]
        entry = EntryResult(case.id, case.kind, case.op, mode, caught=False, field=case.field, search_seconds=seconds,
                            searched=1, verdict=mine.verdict.value, killing=config.to_json(),
                            control_failures=len(failed_clean),
                            shrunk_control=", ".join(f"{m}: {result.modes[m].verdict.value}" for m in case.clean))
        if mine.verdict is Verdict.ERROR:
            entry.status, entry.errors, entry.error = BROKEN, 1, mine.reason
            entry.note = f"{mode} raised: {mine.reason.splitlines()[0] if mine.reason else 'ERROR'}"
        elif mine.verdict in KILLING and not failed_clean:
            entry.caught, entry.status, entry.examples, entry.seconds = True, CAUGHT, 1, seconds
        else:
            entry.status = ESCAPED
            entry.note = (f"{mode} {mine.verdict.value} on the case; " if mine.verdict not in KILLING else "") + \
                (f"a mode that must pass failed: {', '.join(failed_clean)}" if failed_clean else "")
        out.append(entry)
    return out
