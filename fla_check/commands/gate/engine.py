"""Baseline regression gate and report diffs (``fla-check gate`` / ``fla-check compare``).

A saved run report is a list of cases, each with its full configuration and, per mode and
output, the kernel's error against float64 (max-abs, rel-RMSE) and the allowed error. Cases are
identified by their configuration (canonical JSON), never by position, so two reports from
different commits line up on exactly the cases both ran.

:func:`diff_reports` pairs every (case, mode, output) present in both reports and gives it a
status:

- ``new failure``: failed now (DIVERGED / NONFINITE / ERROR), not in the baseline;
- ``regressed``: max-abs or rel-RMSE grew by more than ``factor`` over the baseline and the
  new error uses at least ``min_score`` of the allowed error (so a kernel whose error went
  from 1e-9 to 3e-9 of a 1e-5 allowance is not a regression: that is rounding noise);
  this fires even when the verdict is still OK;
- ``improved``: both metrics shrank by more than ``factor`` (informational);
- ``not compared``: a side did not run it (UNSUPPORTED, e.g. bf16 on the interpreter);
- ``same`` otherwise.

The gate fails on any ``new failure`` or ``regressed`` entry. Failures already present in the
baseline only fail it if they got worse. :func:`rerun` replays a report's cases (the same
configurations, hence the same tensors) through the current kernels.
"""
from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from fla_check.verdict.compare import Verdict, json_float
from fla_check.errors import GateError  # noqa: F401 (re-exported)

METRICS = ("max_abs", "rel_rms")
DEFAULT_FACTOR = 2.0
DEFAULT_MIN_SCORE = 0.05
FAILING = ("new failure", "regressed")


def case_key(config: dict[str, Any]) -> str:
    """Identity of a case across reports: its configuration, normalised through
    :class:`~fla_check.cases.CaseConfig` when it parses, as canonical JSON."""
    from fla_check.cases import CaseConfig

    try:
        config = CaseConfig.from_json(config).to_json()
    except Exception:  # noqa: BLE001 - a config of another version still pairs by its text
        pass
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def ratio(new: float, base: float) -> float:
    """new / base with 0/0 = 1, x/0 = inf and inf/inf = 1 (both non-finite: no change)."""
    if math.isinf(new) and math.isinf(base):
        return 1.0
    if base == 0:
        return 1.0 if new == 0 else math.inf
    return new / base


@dataclass(frozen=True)
class Row:
    """One (case, mode, output) present in both reports; output '-' for a mode without outputs."""

    case: int  # index of the case in the baseline report
    case_id: str
    mode: str
    output: str
    base_verdict: str
    new_verdict: str
    base: dict[str, float]  # metric -> error (empty for a mode without outputs)
    new: dict[str, float]
    bound: dict[str, float]  # metric -> allowed error in the new report
    status: str
    reason: str = ""  # why a side has no outputs (ERROR / UNSUPPORTED reason)

    def ratio(self, metric: str) -> float:
        if metric not in self.base or metric not in self.new:
            return math.nan
        return ratio(self.new[metric], self.base[metric])

    def score(self, metric: str) -> float:
        """Fraction of the allowed error the new value uses."""
        new, bound = self.new.get(metric, math.nan), self.bound.get(metric, math.nan)
        if math.isinf(new):
            return math.inf
        return new / bound if bound > 0 else (0.0 if new == 0 else math.inf)

    @property
    def worst_ratio(self) -> float:
        values = [r for r in (self.ratio(m) for m in METRICS) if not math.isnan(r)]
        return max(values, default=math.nan)

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case, "case_id": self.case_id, "mode": self.mode, "output": self.output,
                "status": self.status, "base_verdict": self.base_verdict, "new_verdict": self.new_verdict,
                "base": {k: json_float(v) for k, v in self.base.items()},
                "new": {k: json_float(v) for k, v in self.new.items()},
                "bound": {k: json_float(v) for k, v in self.bound.items()},
                "ratio": {m: json_float(self.ratio(m)) for m in METRICS if m in self.base and m in self.new},
                "reason": self.reason}


@dataclass
class GateResult:
    """Every row of a diff plus what could not be paired."""

    op: str
    factor: float
    min_score: float
    rows: list[Row] = field(default_factory=list)
    matched: int = 0  # cases present in both reports
    only_base: int = 0  # baseline cases the new report lacks
    only_new: int = 0
    modes: list[str] = field(default_factory=list)  # modes compared
    modes_only_base: list[str] = field(default_factory=list)
    modes_only_new: list[str] = field(default_factory=list)
    base_label: str = ""
    new_label: str = ""

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.status in FAILING]

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    def count(self, status: str, mode: Optional[str] = None) -> int:
        return sum(r.status == status and (mode is None or r.mode == mode) for r in self.rows)

    def worst(self, mode: str, metric: str) -> float:
        values = [r.ratio(metric) for r in self.rows if r.mode == mode and r.status != "not compared"]
        return max((v for v in values if not math.isnan(v)), default=math.nan)

    def to_json(self) -> dict[str, Any]:
        statuses = ("same", "improved", "regressed", "new failure", "not compared")
        return {"tool": "fla-check", "kind": "gate", "op": self.op, "factor": self.factor,
                "min_score": self.min_score, "verdict": "FAIL" if self.failed else "OK",
                "baseline": self.base_label, "new": self.new_label, "matched_cases": self.matched,
                "only_in_baseline": self.only_base, "only_in_new": self.only_new, "modes": self.modes,
                "modes_only_in_baseline": self.modes_only_base, "modes_only_in_new": self.modes_only_new,
                "counts": {s: self.count(s) for s in statuses},
                "worst_ratio": {m: {k: json_float(self.worst(m, k)) for k in METRICS} for m in self.modes},
                "regressions": [r.to_json() for r in self.regressions],
                "rows": [r.to_json() for r in self.rows]}


# -- diff ------------------------------------------------------------------------------------
def check_run_report(data: Any, label: str = "report") -> dict[str, Any]:
    """`data` if it is a run report (op, modes, cases with configs), else GateError."""
    if not isinstance(data, dict) or "op" not in data or not isinstance(data.get("cases"), list) \
            or not isinstance(data.get("modes"), list):
        raise GateError(f"{label} is not a fla-check run report (no op/modes/cases)")
    if any(not isinstance(c, dict) or "config" not in c for c in data["cases"]):
        raise GateError(f"{label}: a case has no 'config'")
    return data


def check_thresholds(factor: float, min_score: float) -> None:
    if not factor > 1.0:
        raise GateError(f"--factor must be > 1, got {factor}")
    if not 0.0 <= min_score < 1.0:
        raise GateError(f"--min-score must be in [0, 1), got {min_score}")


def diff_reports(base: dict[str, Any], new: dict[str, Any], *, factor: float = DEFAULT_FACTOR,
                 min_score: float = DEFAULT_MIN_SCORE, base_label: str = "baseline",
                 new_label: str = "new") -> GateResult:
    """Pair the cases of two run reports by configuration and classify every (case, mode, output)."""
    check_thresholds(factor, min_score)
    check_run_report(base, base_label)
    check_run_report(new, new_label)
    if base["op"] != new["op"]:
        raise GateError(f"{base_label} is for op {base['op']!r}, {new_label} for {new['op']!r}")
    modes = [m for m in base["modes"] if m in new["modes"]]
    result = GateResult(op=base["op"], factor=factor, min_score=min_score, modes=modes,
                        modes_only_base=[m for m in base["modes"] if m not in new["modes"]],
                        modes_only_new=[m for m in new["modes"] if m not in base["modes"]],
                        base_label=base_label, new_label=new_label)
    new_cases: dict[str, dict[str, Any]] = {}
    for case in new["cases"]:
        new_cases.setdefault(case_key(case["config"]), case)
    seen = set()
    for index, case in enumerate(base["cases"]):
        key = case_key(case["config"])
        if key in seen:
            continue
        seen.add(key)
        other = new_cases.get(key)
        if other is None:
            result.only_base += 1
            continue
        result.matched += 1
        for mode in modes:
            result.rows += _mode_rows(index, case, other, mode, factor, min_score)
    result.only_new = len(set(new_cases) - seen)
    return result


def _mode_rows(index: int, base_case: dict, new_case: dict, mode: str, factor: float,
               min_score: float) -> list[Row]:
    case_id = _case_id(base_case["config"])
    b, n = base_case.get("modes", {}).get(mode), new_case.get("modes", {}).get(mode)
    if b is None or n is None:
        return []
    b_out = {o["name"]: o for o in b.get("outputs", [])}
    n_out = {o["name"]: o for o in n.get("outputs", [])}
    common = [name for name in b_out if name in n_out]
    if not common:  # a side without outputs: ERROR or UNSUPPORTED
        status = _mode_status(Verdict(b["verdict"]), Verdict(n["verdict"]))
        reason = n.get("reason") or b.get("reason") or ""
        return [Row(index, case_id, mode, "-", b["verdict"], n["verdict"], {}, {}, {}, status, reason)]
    rows = []
    for name in common:
        bo, no = b_out[name], n_out[name]
        base_m = {m: float(bo["kernel"][m]) for m in METRICS}
        new_m = {m: float(no["kernel"][m]) for m in METRICS}
        bound = {"max_abs": float(no["bound_max_abs"]), "rel_rms": float(no["bound_rel_rms"])}
        row = Row(index, case_id, mode, name, bo["verdict"], no["verdict"], base_m, new_m, bound, "")
        rows.append(_with_status(row, factor, min_score))
    return rows


def _mode_status(base: Verdict, new: Verdict) -> str:
    if Verdict.UNSUPPORTED in (base, new):
        return "not compared"
    if new.failed and not base.failed:
        return "new failure"
    if base.failed and not new.failed:
        return "improved"
    return "same"


def _with_status(row: Row, factor: float, min_score: float) -> Row:
    base_failed, new_failed = Verdict(row.base_verdict).failed, Verdict(row.new_verdict).failed
    if new_failed and not base_failed:
        status = "new failure"
    elif any(row.ratio(m) > factor and row.score(m) >= min_score for m in METRICS):
        status = "regressed"
    elif all(row.ratio(m) < 1.0 / factor for m in METRICS):
        status = "improved"
    else:
        status = "same"
    return Row(row.case, row.case_id, row.mode, row.output, row.base_verdict, row.new_verdict, row.base,
               row.new, row.bound, status)


def _case_id(config: dict[str, Any]) -> str:
    from fla_check.cases import CaseConfig

    try:
        return CaseConfig.from_json(config).short()
    except Exception:  # noqa: BLE001 - an id is cosmetic; an unknown config still compares
        return case_key(config)


# -- re-run ----------------------------------------------------------------------------------
def resolve_report_modes(op: str, modes: Sequence[str], providers: Sequence[str] = ()) -> list[str]:
    """Load `providers` ('module:object' or entry-point names), then check every mode of a
    report resolves; a 'prov:mode' whose provider is not loaded is tried as an entry point."""
    from fla_check.ops import UnknownNameError, get_mode, get_op
    from fla_check.providers import ProviderError, load_provider

    for spec in providers:
        try:
            load_provider(spec)
        except ProviderError as exc:
            raise GateError(str(exc)) from None
    try:
        op_spec = get_op(op)
    except UnknownNameError as exc:
        raise GateError(str(exc)) from None
    for mode in modes:
        try:
            get_mode(op_spec, mode)
            continue
        except UnknownNameError:
            pass
        provider = mode.rpartition(":")[0]
        try:
            if provider:
                load_provider(provider)
            get_mode(op_spec, mode)
        except (ProviderError, UnknownNameError) as exc:
            hint = " (load its provider with --provider module:object)" if provider else ""
            raise GateError(f"cannot re-run mode {mode!r} of the baseline: {exc}{hint}") from None
    return list(modes)


def rerun(report: dict[str, Any], *, device: Optional[str] = None, providers: Sequence[str] = (),
          progress: Optional[Callable[[int, int], None]] = None, source: str = "", isolation: Any = None) -> Any:
    """Re-run every case of `report` (same configurations) through its modes now (`isolation`:
    as :func:`fla_check.engine.runner.check_case`; when given, recorded as ``options.isolation``).

    Returns a :class:`fla_check.engine.search.SearchResult` (a run report of its own: it can be the
    next baseline); each failing mode points at its first failing case.
    """
    from fla_check.cases import CaseConfig
    from fla_check.engine.runner import check_case
    from fla_check.engine.search import SearchResult

    check_run_report(report, source or "baseline")
    modes = resolve_report_modes(report["op"], report["modes"], providers)
    configs, seen = [], set()
    for case in report["cases"]:
        key = case_key(case["config"])
        if key not in seen:
            seen.add(key)
            configs.append(CaseConfig.from_json(case["config"]))
    options = dict(report.get("options", {}))
    options.update(replayed_from=source or None, commit=git_commit())
    if isolation is not None:
        from fla_check.engine.isolation import Isolation

        options["isolation"] = Isolation.of(isolation).to_json()
    result = SearchResult(op=report["op"], modes=list(modes), options=options)
    start = time.perf_counter()
    for i, config in enumerate(configs):
        try:
            result.cases.append(check_case(report["op"], modes, config, device=device, isolation=isolation,
                                           backward=bool(options.get("backward"))))  # gradients too
        except KeyboardInterrupt:
            result.interrupted = True
            break
        if progress:
            progress(i + 1, len(configs))
    result.seconds = time.perf_counter() - start
    for mode in result.modes:
        failing = [i for i, c in enumerate(result.cases) if mode in c.failed_modes]
        if failing:
            result.failures[mode] = failing[0]
    return result


def git_commit(cwd: Optional[Path] = None) -> Optional[str]:
    """HEAD of the git repository at `cwd` (the kernel repo being gated), or None."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def report_label(path: Path, data: dict[str, Any]) -> str:
    """'path (commit abc1234)' when the report recorded its commit."""
    commit = (data.get("options") or {}).get("commit") or data.get("commit")
    return f"{path} (commit {commit[:10]})" if commit else str(path)
