"""The result types every command reports and reads back: one mode on one case
(:class:`ModeResult`), two modes' agreement (:class:`PairResult`), every mode on one case
(:class:`CaseResult`), a whole run (:class:`SearchResult`, the run report) and its per-mode and
per-pair summaries. All JSON round-trippable; computed by :mod:`fla_check.engine`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from fla_check import __version__
from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Agreement, Comparison, Metrics, Verdict, json_float, worst
from fla_check.verdict.localize import Localization


@dataclass
class ConfigResult:
    """One mode on one case under one autotune config of one kernel (``--configs all|sample:N``)."""

    kernel: str
    index: int
    config: str  # 'BV=16, num_warps=4, num_stages=3'
    verdict: Verdict
    score: float = 0.0
    reason: str = ""  # ERROR summary, or why the config was not run (a duplicate under the interpreter)

    @property
    def ref(self) -> str:
        """``KERNEL:INDEX``, as ``--config`` takes it."""
        return f"{self.kernel}:{self.index}"

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "index": self.index, "config": self.config, "verdict": self.verdict.value,
                "score": json_float(self.score), "reason": self.reason}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ConfigResult":
        return cls(d["kernel"], int(d["index"]), d.get("config", ""), Verdict(d["verdict"]),
                   float(d.get("score") or 0.0), d.get("reason", ""))


@dataclass
class InvarianceResult:
    """One metamorphic check of one mode on one case (:mod:`fla_check.engine.invariance`): the
    variant's outputs, reassembled into the case's shapes, judged against the case's float64
    reference by the same error model (same baseline, same bounds) as the whole run."""

    check: str  # split, packing, batch, layout
    variant: str  # what was run, e.g. "split at t=37 (inside a 16-chunk)"
    verdict: Verdict  # OK or NOT_INVARIANT
    outputs: list[Comparison] = field(default_factory=list)
    bitwise: Optional[bool] = None  # the reassembled outputs equal the whole run's bit for bit
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "variant": self.variant, "verdict": self.verdict.value,
                "bitwise": self.bitwise, "reason": self.reason, "outputs": [c.to_json() for c in self.outputs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "InvarianceResult":
        return cls(d["check"], d.get("variant", ""), Verdict(d["verdict"]),
                   [Comparison.from_json(c) for c in d.get("outputs", [])], d.get("bitwise"), d.get("reason", ""))


@dataclass
class ModeResult:
    """One mode on one case."""

    mode: str
    verdict: Verdict
    outputs: list[Comparison] = field(default_factory=list)
    localization: Optional[Localization] = None
    reason: str = ""  # UNSUPPORTED reason or ERROR / CRASHED / TIMEOUT summary
    traceback: str = ""  # ERROR: the kernel's traceback
    seconds: float = 0.0
    config: str = ""  # KERNEL:INDEX of the autotune config the verdict is about ("": the first configs)
    configs: list[ConfigResult] = field(default_factory=list)  # the other configs run (--configs all|sample:N)
    stderr: str = ""  # CRASHED / TIMEOUT: the last lines the worker process wrote
    invariance: list[InvarianceResult] = field(default_factory=list)  # metamorphic checks run

    @property
    def score(self) -> float:
        """Largest fraction of the allowed error used by any output (> 1: DIVERGED)."""
        if self.verdict in (Verdict.ERROR, Verdict.CRASHED, Verdict.TIMEOUT):
            return 1e6
        return max((c.score for c in self.outputs), default=0.0)

    def metric(self, name: str) -> float:
        """Worst kernel metric ('max_abs', 'rel_rms') or 'ratio' over the outputs."""
        if name == "ratio":
            return max((c.ratio for c in self.outputs), default=0.0)
        return max((getattr(c.kernel, name) for c in self.outputs), default=0.0)

    @property
    def nonfinite(self) -> int:
        return sum(c.kernel.nonfinite for c in self.outputs)

    def to_json(self) -> dict[str, Any]:
        out = {"mode": self.mode, "verdict": self.verdict.value, "reason": self.reason,
               "traceback": self.traceback, "seconds": round(self.seconds, 4),
               "outputs": [c.to_json() for c in self.outputs],
               "localization": self.localization.to_json() if self.localization else None}
        if self.config or self.configs:  # only runs with --configs all|sample:N or --config carry them
            out.update(config=self.config, configs=[c.to_json() for c in self.configs])
        if self.stderr:  # only CRASHED / TIMEOUT results carry the worker's stderr
            out["stderr"] = self.stderr
        if self.invariance:  # only modes whose metamorphic checks ran carry them
            out["invariance"] = [i.to_json() for i in self.invariance]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModeResult":
        loc = d.get("localization")
        return cls(d["mode"], Verdict(d["verdict"]), [Comparison.from_json(c) for c in d.get("outputs", [])],
                   Localization.from_json(loc) if loc else None, d.get("reason", ""),
                   d.get("traceback", ""), float(d.get("seconds", 0.0)), d.get("config", ""),
                   [ConfigResult.from_json(c) for c in d.get("configs", [])], d.get("stderr", ""),
                   [InvarianceResult.from_json(i) for i in d.get("invariance", [])])


@dataclass
class PairResult:
    """Agreement of two modes on one case (only when both produced outputs)."""

    a: str
    b: str
    outputs: list[Agreement] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return all(o.agree for o in self.outputs)

    def metric(self, name: str) -> float:
        return max((getattr(o, name) for o in self.outputs), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "agree": self.agree, "outputs": [o.to_json() for o in self.outputs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PairResult":
        return cls(d["a"], d["b"], [Agreement.from_json(o) for o in d.get("outputs", [])])


class _ModesVerdict:
    """The verdict of a result holding per-mode results in ``modes``: the worst mode's, and
    the modes that failed."""

    modes: dict[str, "ModeResult"]

    @property
    def verdict(self) -> Verdict:
        return worst(r.verdict for r in self.modes.values())

    @property
    def failed_modes(self) -> list[str]:
        return [m for m, r in self.modes.items() if r.verdict.failed]


@dataclass
class CaseResult(_ModesVerdict):
    """Every requested mode on one case."""

    config: CaseConfig
    modes: dict[str, ModeResult]
    pairs: list[PairResult] = field(default_factory=list)
    baseline: dict[str, Metrics] = field(default_factory=dict)  # the first judged mode's baseline, per output
    seconds: float = 0.0
    backward: bool = False  # gradients were checked too

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_json(), "verdict": self.verdict.value,
                "seconds": round(self.seconds, 4), "backward": self.backward,
                "baseline": {k: m.to_json() for k, m in self.baseline.items()},
                "modes": {k: r.to_json() for k, r in self.modes.items()},
                "pairs": [p.to_json() for p in self.pairs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CaseResult":
        return cls(CaseConfig.from_json(d["config"]),
                   {k: ModeResult.from_json(r) for k, r in d.get("modes", {}).items()},
                   [PairResult.from_json(p) for p in d.get("pairs", [])],
                   {k: Metrics.from_json(m) for k, m in d.get("baseline", {}).items()},
                   float(d.get("seconds", 0.0)), bool(d.get("backward", False)))


@dataclass
class SequenceResult:
    """One sampled sequence of a large-index case, one mode: its slice of the kernel's output and
    its final state judged against the float64 reference run on that sequence alone."""

    index: int  # the sequence's index in the pack
    offset: int  # element offset of its first token in the largest [1, T, H, max(K, V)] tensor
    verdict: Verdict
    outputs: list[Comparison] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "offset": self.offset, "verdict": self.verdict.value,
                "outputs": [c.to_json() for c in self.outputs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SequenceResult":
        return cls(int(d["index"]), int(d["offset"]), Verdict(d["verdict"]),
                   [Comparison.from_json(c) for c in d.get("outputs", [])])


@dataclass
class LargeIndexResult(_ModesVerdict):
    """The large-index check (``--large-index``) of one op and dtype: every mode on one varlen pack
    whose index arithmetic passes 2^31, judged on its sampled sequences. ``case`` is the pack's
    JSON (:class:`fla_check.engine.large_index.LargeIndexCase`); ``modes`` the verdict per mode
    (its outputs: the worst comparison per output over the sampled sequences), ``sequences`` the
    per-sequence detail."""

    case: dict[str, Any]
    modes: dict[str, ModeResult] = field(default_factory=dict)
    sequences: dict[str, list[SequenceResult]] = field(default_factory=dict)
    seconds: float = 0.0
    label: str = "large-index"

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "case": self.case, "verdict": self.verdict.value,
                "seconds": round(self.seconds, 4), "modes": {k: r.to_json() for k, r in self.modes.items()},
                "sequences": {k: [s.to_json() for s in v] for k, v in self.sequences.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "LargeIndexResult":
        return cls(dict(d["case"]), {k: ModeResult.from_json(r) for k, r in d.get("modes", {}).items()},
                   {k: [SequenceResult.from_json(s) for s in v] for k, v in d.get("sequences", {}).items()},
                   float(d.get("seconds", 0.0)), d.get("label", "large-index"))


@dataclass
class ModeSummary:
    """One mode over a whole run: worst metrics and verdict."""

    mode: str
    verdict: Verdict
    cases: int  # cases the mode ran
    unsupported: int
    failed: int
    max_abs: Optional[float]  # None when no case produced outputs
    rel_rms: Optional[float]
    ratio: Optional[float]
    nonfinite: int
    reason: str = ""  # first ERROR/UNSUPPORTED reason

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "verdict": self.verdict.value, "cases": self.cases,
                "unsupported": self.unsupported, "failed": self.failed, "max_abs": _opt(self.max_abs),
                "rel_rms": _opt(self.rel_rms), "ratio": _opt(self.ratio), "nonfinite": self.nonfinite,
                "reason": self.reason}


@dataclass
class PairSummary:
    """Two modes over a whole run: worst disagreement."""

    a: str
    b: str
    cases: int
    max_abs: float
    rel_rms: float
    agree: bool


@dataclass
class SearchResult:
    """Everything a run found; JSON round-trippable (the report file)."""

    op: str
    modes: list[str]
    options: dict[str, Any]
    cases: list[CaseResult] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # mode -> index of its minimal failing case
    shrunk: list[str] = field(default_factory=list)  # modes hypothesis shrank itself
    simplified: list[str] = field(default_factory=list)  # modes whose case fla_check.engine.simplify cut further
    seconds: float = 0.0
    interrupted: bool = False
    first_failure: dict[str, dict[str, Any]] = field(default_factory=dict)  # mode -> {"example", "seconds"}
    large_index: list[LargeIndexResult] = field(default_factory=list)  # --large-index: one per dtype
    # a run the harness's out-of-memory stopped: {"reason", "stage", "elements", "config"} (the case)
    stopped: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.failures) or any(r.failed_modes for r in self.large_index)

    def summary(self, mode: str) -> ModeSummary:
        results = [c.modes[mode] for c in self.cases if mode in c.modes]
        ran = [r for r in results if r.verdict is not Verdict.UNSUPPORTED]
        measured = [r for r in ran if r.outputs]
        failed = [r for r in ran if r.verdict.failed]
        reason = next((r.reason for r in failed + results if r.reason), "")
        worst_of = lambda name: max((r.metric(name) for r in measured), default=None)  # noqa: E731
        return ModeSummary(
            mode=mode, verdict=worst(r.verdict for r in ran) if ran else Verdict.UNSUPPORTED,
            cases=len(ran), unsupported=len(results) - len(ran), failed=len(failed),
            max_abs=worst_of("max_abs"), rel_rms=worst_of("rel_rms"), ratio=worst_of("ratio"),
            nonfinite=sum(r.nonfinite for r in measured), reason=reason)

    def drawn(self) -> list[tuple[str, int]]:
        """(value, cases that drew it) for every value the run asked to draw along a case
        dimension with a choice: in-kernel options, GVA ratios, chunk sizes, state layouts (a
        value no case drew was asked for but never checked)."""
        opts, configs = self.options, [c.config for c in self.cases]
        out = [(name, sum(name in c.options for c in configs)) for name in opts.get("kernel_options") or ()]
        choices = (("value_ratios", lambda r: f"HV={r}H", lambda c, r: c.value_ratio == r),
                   ("chunk_sizes", lambda s: f"chunk {s or 'default'}", lambda c, s: c.chunk_size == s),
                   ("state_layouts", lambda lay: f"state {lay}", lambda c, lay: c.state_v_first == (lay == "vk")))
        for key, label, has in choices:
            values = opts.get(key) or ()
            if len(values) > 1:
                out += [(label(v), sum(has(c, v) for c in configs)) for v in values]
        return out

    def pair_summaries(self) -> list[PairSummary]:
        out: dict[tuple[str, str], list] = {}
        for case in self.cases:
            for p in case.pairs:
                out.setdefault((p.a, p.b), []).append(p)
        return [PairSummary(a, b, len(ps), max(p.metric("max_abs") for p in ps),
                            max(p.metric("rel_rms") for p in ps), all(p.agree for p in ps))
                for (a, b), ps in out.items()]

    def to_json(self) -> dict[str, Any]:
        out = self._to_json()
        if self.large_index:  # only runs with the large-index check carry it
            out["large_index"] = [r.to_json() for r in self.large_index]
        if self.stopped:  # only runs a harness out-of-memory stopped
            out["stopped"] = self.stopped
        return out

    def _to_json(self) -> dict[str, Any]:
        return {
            "tool": "fla-check", "version": __version__, "kind": "run", "op": self.op, "modes": self.modes,
            "options": self.options, "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
            "examples": len(self.cases), "first_failure": self.first_failure,
            "verdict": "FAIL" if self.failed else "OK",
            "summary": {m: self.summary(m).to_json() for m in self.modes},
            "pairs": [dict(a=p.a, b=p.b, cases=p.cases, max_abs=json_float(p.max_abs), rel_rms=json_float(p.rel_rms),
                           agree=p.agree) for p in self.pair_summaries()],
            "failures": self.failures, "shrunk": self.shrunk, "simplified": self.simplified,
            "cases": [c.to_json() for c in self.cases],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SearchResult":
        return cls(op=d["op"], modes=list(d["modes"]), options=dict(d.get("options", {})),
                   cases=[CaseResult.from_json(c) for c in d.get("cases", [])],
                   failures={m: int(i) for m, i in d.get("failures", {}).items()},
                   shrunk=list(d.get("shrunk", [])), simplified=list(d.get("simplified", [])), seconds=float(d.get("seconds", 0.0)),
                   interrupted=bool(d.get("interrupted", False)), first_failure=dict(d.get("first_failure") or {}),
                   large_index=[LargeIndexResult.from_json(r) for r in d.get("large_index", [])],
                   stopped=dict(d.get("stopped") or {}))


def _opt(x: Optional[float]) -> Any:
    return None if x is None else json_float(x)
