"""Which reset-mask fill values are safe, per mode and dtype (``fla-check sweep-mask-values``).

Users pack sequences into one row and reset the state with ``g.masked_fill(reset_mask, fill)``.
A fill too weak lets state cross the segment start; a fill too strong breaks chunked kernels
(absorption and cancellation in the chunk-local cumsum of log-gates, ``-inf - -inf = NaN``,
``exp(-G)`` overflow). This module runs every fill x mode x dtype on fixed packed cases
(:data:`LAYOUTS`: resets mid-chunk, on 16/64-token chunk boundaries, several per chunk,
length-1 segments; a seed per case) and judges each mode output against two float64
references on the SAME inputs:

- *truth*: :func:`~fla_check.references.reference` with ``reset_mask`` (each segment on its own);
- *literal*: the same reference applying the fill as a plain gate (what ``fla-check run`` uses).

Both judgements are :func:`fla_check.verdict.compare.compare` (the verdict rule) with the mode's
baseline: the error its declared arithmetic makes on the inputs the kernel sees (the filled
gate; :mod:`fla_check.verdict.baselines`), scaled by the RMS of the reference it is judged
against; ``steps`` = the longest segment for the truth, ``T`` for the literal reference. Per case:

    NONFINITE  NaN/Inf where the truth is finite
    OK         within tolerance of the truth
    LEAK       not within tolerance of the truth, but of the literal reference (the fill is too
               weak: state crosses the segment start)
    DIVERGED   within tolerance of neither (the kernel's arithmetic broke)

plus ERROR (the mode raised) and UNSUPPORTED (the mode cannot run the case, with the reason).
A cell is the worst of its cases. The ``cu_seqlens`` control row passes the same segments as
varlen sequences with no fill (the truth is then also the literal reference: OK or DIVERGED).
The safe interval of a mode and dtype is the longest contiguous run of OK fills, ordered by
the fill's value in that dtype.
"""
from __future__ import annotations

import enum
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor

from fla_check import __version__
from fla_check.backend import get_backend
from fla_check.cases import DTYPES, CaseConfig, CaseInputs, Fill, build_case, canonical_fill, dtype_name, resolve_fill
from fla_check.verdict.compare import Comparison, Metrics, Verdict, compare, json_float
from fla_check.ops import ModeSpec, OpSpec
from fla_check.references import reference
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.baselines import baseline_samples, noise_scales, sample_seed
from fla_check.engine.runner import (ModeLike, OpLike, mode_inputs, mode_label, named_outputs, resolve_modes,
                                     resolve_op, unsupported_reason)
from fla_check.errors import SweepError  # noqa: F401 (re-exported)

CONTROL = "cu_seqlens"
DEFAULT_VALUES: tuple[str, ...] = ("-1", "-5", "-10", "-20", "-50", "-100", "-1e3", "-1e4", "-1e6",
                                   "-0.1max", "-max", "-inf")
SHAPE = {"H": 1, "K": 16, "V": 16}  # per case; T is the sum of the layout's segments
TOLERANCE_RULE = ("fla_check.verdict.compare.compare (a=2, a_max=3, fp32 slack) vs the per-segment float64 truth, "
                  "baseline = the sampled error of the mode's declared arithmetic on the filled inputs; LEAK "
                  "when the same rule holds against the float64 reference applying the fill literally")


@dataclass(frozen=True)
class Layout:
    """A fixed packed row: segment lengths and what it exercises."""

    name: str
    segments: tuple[int, ...]
    what: str

    @property
    def T(self) -> int:
        return sum(self.segments)

    @property
    def starts(self) -> list[int]:
        return [sum(self.segments[:i]) for i in range(1, len(self.segments))]


LAYOUTS: tuple[Layout, ...] = (
    Layout("chunk-boundaries", (16, 48, 1, 15), "resets on a 16- and a 64-token chunk boundary, length-1 segment"),
    Layout("mid-chunk", (23, 30, 11), "resets inside 16- and 64-token chunks"),
    Layout("several-per-chunk", (1, 1, 4, 10, 6, 12, 30), "3 resets in a 16-token chunk, consecutive length-1"),
    Layout("dense", (2, 3, 2, 3, 2, 4, 48), "5 resets in 16 tokens (sums of fills overflow exp(-G))"),
)
DEFAULT_CASES = 3  # the first three layouts cover every property; more cycle with new seeds


class Outcome(str, enum.Enum):
    """Classification of one mode on one case (or the worst over a cell's cases)."""

    OK = "OK"
    LEAK = "LEAK"
    DIVERGED = "DIVERGED"
    NONFINITE = "NONFINITE"
    ERROR = "ERROR"
    UNSUPPORTED = "UNSUPPORTED"

    @property
    def flagged(self) -> bool:
        """The fill is unusable for this mode and dtype (its arithmetic broke)."""
        return self in (Outcome.DIVERGED, Outcome.NONFINITE, Outcome.ERROR)


_SEVERITY = {Outcome.UNSUPPORTED: 0, Outcome.OK: 1, Outcome.LEAK: 2, Outcome.DIVERGED: 3, Outcome.NONFINITE: 4,
             Outcome.ERROR: 5}


def worst_outcome(outcomes: Iterable[Outcome]) -> Outcome:
    """The most severe outcome (UNSUPPORTED < OK < LEAK < DIVERGED < NONFINITE < ERROR)."""
    return max(outcomes, key=_SEVERITY.__getitem__, default=Outcome.UNSUPPORTED)


# -- fill values ---------------------------------------------------------------------------
def fill_label(fill: Union[Fill, str]) -> str:
    """Compact label: '-0.1max', 'cu_seqlens', '-20', '-1e4', '-2.5e6'."""
    if isinstance(fill, str):
        return fill
    if abs(fill) < 1000:
        return f"{fill:g}"
    mantissa, exponent = f"{fill:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def effective_fill(fill: Fill, dtype: torch.dtype) -> float:
    """The gate value a kernel of `dtype` sees (filled in fp32, then cast: may become -inf)."""
    return float(torch.tensor(resolve_fill(fill, dtype), dtype=torch.float32).to(dtype))


def parse_values(values: Optional[Sequence[Union[str, float]]]) -> list[Fill]:
    """Canonical fills, deduplicated, ordered from weak to strong (fp32 values; raises CaseError)."""
    fills = [canonical_fill(v) for v in (DEFAULT_VALUES if values is None else values)]
    unique = list(dict.fromkeys(fills))
    if not unique:
        raise SweepError("empty value list; use e.g. --values=-1,-20,-0.1max,-inf")
    return sorted(unique, key=lambda f: -effective_fill(f, torch.float32))


def parse_value_list(text: str) -> list[Fill]:
    """A comma list of fills ('cu_seqlens' is accepted and ignored: the control row is always run)."""
    tokens = [t.strip() for t in text.split(",") if t.strip() and t.strip() != CONTROL]
    if not tokens:
        raise SweepError("empty value list; use e.g. --values=-1,-20,-0.1max,-inf")
    return parse_values(tokens)


# -- results -------------------------------------------------------------------------------
@dataclass
class CaseOutcome:
    """One mode on one case at one fill."""

    case: int
    outcome: Outcome
    error: float = 0.0  # worst rel-RMSE vs the per-segment truth over outputs (inf: non-finite)
    score: float = 0.0  # worst fraction of the allowed error vs the truth
    literal_error: Optional[float] = None  # worst rel-RMSE vs the literal-fill reference
    reason: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        lit = None if self.literal_error is None else json_float(self.literal_error)
        return {"case": self.case, "outcome": self.outcome.value, "error": json_float(self.error),
                "score": json_float(self.score), "literal_error": lit, "reason": self.reason,
                "seconds": round(self.seconds, 4)}


@dataclass
class Cell:
    """One fill value x mode x dtype, over the sweep's cases."""

    value: str
    mode: str
    dtype: str
    cases: list[CaseOutcome] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        return worst_outcome(c.outcome for c in self.cases)

    @property
    def error(self) -> Optional[float]:
        """Worst rel-RMSE vs truth over the cases that ran (None when none did)."""
        ran = [c.error for c in self.cases if c.outcome not in (Outcome.UNSUPPORTED, Outcome.ERROR)]
        return max(ran) if ran else None

    @property
    def reason(self) -> str:
        return next((c.reason for c in self.cases if c.outcome is self.outcome and c.reason), "")

    def to_json(self) -> dict[str, Any]:
        err = self.error
        return {"value": self.value, "mode": self.mode, "dtype": self.dtype, "outcome": self.outcome.value,
                "error": None if err is None else json_float(err), "reason": self.reason,
                "cases": [c.to_json() for c in self.cases]}


@dataclass
class SweepResult:
    """All cells of a sweep, the safe intervals and the advice derived from them."""

    op: str
    modes: list[str]
    dtypes: list[str]
    values: list[str]  # fill labels, weak to strong, then CONTROL
    fills: dict[str, Fill]  # label -> canonical fill
    varlen: dict[str, bool]  # mode -> supports cu_seqlens
    cases: list[dict[str, Any]]
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

    def cell(self, value: str, mode: str, dtype: str) -> Optional[Cell]:
        return self.cells.get((value, mode, dtype))

    def outcome(self, value: str, mode: str, dtype: str) -> Optional[Outcome]:
        c = self.cell(value, mode, dtype)
        return None if c is None else c.outcome

    def ordered_fills(self, dtype: str) -> list[str]:
        """Fill labels (no control) from weak to strong as `dtype` sees them."""
        dt = DTYPES[dtype]
        labels = [v for v in self.values if v != CONTROL]
        return sorted(labels, key=lambda v: -effective_fill(self.fills[v], dt))

    def safe_interval(self, mode: str, dtype: str) -> Optional[tuple[str, str]]:
        """(weakest, strongest) label of the longest contiguous run of OK fills, or None."""
        return _longest_run(self.ordered_fills(dtype), lambda v: self.outcome(v, mode, dtype) is Outcome.OK)

    def common_safe(self) -> Optional[tuple[str, str]]:
        """The longest contiguous run of rows that are OK in every mode and dtype."""
        cols = [(m, d) for m in self.modes for d in self.dtypes]
        rows = [v for v in self.values if v != CONTROL]
        return _longest_run(rows, lambda v: all(self.outcome(v, m, d) is Outcome.OK for m, d in cols))

    @property
    def failed(self) -> bool:
        """A mode raised, or failed the cu_seqlens control (broken whatever the fill)."""
        if any(c.outcome is Outcome.ERROR for c in self.cells.values()):
            return True
        return any(c.outcome.flagged for (v, _, _), c in self.cells.items() if v == CONTROL)

    def advice(self) -> list[str]:
        """Plain-language recommendations (cu_seqlens first, then a fill range)."""
        lines = []
        varlen = [m for m in self.modes if self.varlen.get(m)]
        if varlen:
            ok = [m for m in varlen if all(self.outcome(CONTROL, m, d) in (Outcome.OK, None) for d in self.dtypes)]
            bad = [m for m in varlen if m not in ok]
            if ok:
                lines.append(f"pack with cu_seqlens instead of a fill where the mode supports it: {', '.join(ok)}"
                             " (exact per-sequence reset, no fill to choose)")
            if bad:
                lines.append(f"cu_seqlens control FAILED for {', '.join(bad)}: that kernel is wrong whatever the fill")
        no_varlen = [m for m in self.modes if not self.varlen.get(m)]
        if no_varlen:
            lines.append(f"no cu_seqlens support: {', '.join(no_varlen)}; use a fill within its safe interval")
        common = self.common_safe()
        if common:
            lines.append(f"if you must fill: {_span(common)} is OK for every mode and dtype swept")
        else:
            lines.append("no fill value is OK for every mode and dtype swept")
        return lines

    def to_json(self) -> dict[str, Any]:
        safe = []
        for m in self.modes:
            for d in self.dtypes:
                iv = self.safe_interval(m, d)
                ctrl = self.outcome(CONTROL, m, d)
                safe.append({"mode": m, "dtype": d, "from": iv[0] if iv else None, "to": iv[1] if iv else None,
                             "cu_seqlens_supported": self.varlen.get(m, False),
                             "cu_seqlens": ctrl.value if ctrl else None})
        common = self.common_safe()
        resolved = {v: {d: json_float(effective_fill(f, DTYPES[d])) for d in self.dtypes} for v, f in self.fills.items()}
        return {"kind": "sweep-mask-values", "version": __version__, "op": self.op, "modes": self.modes,
                "dtypes": self.dtypes, "values": self.values, "resolved": resolved, "cases": self.cases,
                "options": self.options, "tolerance": TOLERANCE_RULE, "seconds": round(self.seconds, 3),
                "interrupted": self.interrupted, "failed": self.failed,
                "cells": [c.to_json() for c in self.cells.values()], "safe": safe,
                "common_safe": list(common) if common else None, "advice": self.advice()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SweepResult":
        """The result a sweep report holds (fills from their labels, cu_seqlens support from "safe")."""
        cells = {}
        for c in d.get("cells", []):
            outcomes = [CaseOutcome(o["case"], Outcome(o["outcome"]), float(o["error"]), float(o["score"]),
                                    None if o.get("literal_error") is None else float(o["literal_error"]),
                                    o.get("reason", ""), float(o.get("seconds", 0.0))) for o in c.get("cases", [])]
            cells[(c["value"], c["mode"], c["dtype"])] = Cell(c["value"], c["mode"], c["dtype"], outcomes)
        return cls(op=d["op"], modes=list(d["modes"]), dtypes=list(d["dtypes"]), values=list(d["values"]),
                   fills={v: canonical_fill(v) for v in d["values"] if v != CONTROL},
                   varlen={s["mode"]: bool(s.get("cu_seqlens_supported")) for s in d.get("safe", [])},
                   cases=list(d.get("cases", [])), cells=cells, options=dict(d.get("options", {})),
                   seconds=float(d.get("seconds", 0.0)), interrupted=bool(d.get("interrupted", False)))


def _longest_run(labels: list[str], ok: Callable[[str], bool]) -> Optional[tuple[str, str]]:
    best: Optional[tuple[int, int]] = None
    start = None
    for i, label in enumerate(labels + [None]):
        if label is not None and ok(label):
            start = i if start is None else start
            continue
        if start is not None and (best is None or i - start > best[1] - best[0]):
            best = (start, i)
        start = None
    return None if best is None else (labels[best[0]], labels[best[1] - 1])


def _span(interval: tuple[str, str]) -> str:
    lo, hi = interval
    return lo if lo == hi else f"{lo} .. {hi}"


# -- the engine ----------------------------------------------------------------------------
def case_layouts(cases: int) -> list[Layout]:
    """The layouts of `cases` cases (cycling through LAYOUTS)."""
    return [LAYOUTS[i % len(LAYOUTS)] for i in range(cases)]


def case_config(op: str, dtype: str, layout: Layout, seed: int, value: Union[Fill, str]) -> CaseConfig:
    """A mask-packed case (or, for CONTROL, the same segments as cu_seqlens)."""
    common = dict(op=op, dtype=dtype, B=1, T=layout.T, seed=seed, segments=(layout.segments,), **SHAPE)
    if value == CONTROL:
        return CaseConfig(packing="varlen", **common)
    return CaseConfig(packing="mask", mask_fill=value, **common)


def sweep(op: OpLike, modes: Optional[Sequence[ModeLike]] = None, *, dtypes: Optional[Sequence[str]] = None,
          values: Optional[Sequence[Union[str, float]]] = None, cases: int = DEFAULT_CASES, seed: int = 0,
          device: Optional[str] = None, progress: Optional[Callable[[int, int, str], None]] = None) -> SweepResult:
    """Run every fill value (plus the cu_seqlens control) x mode x dtype on `cases` packed cases.

    `modes` default to the op's built-in modes, `dtypes` to those the backend supports. Ctrl-C
    returns the cells done so far (``interrupted=True``)."""
    spec = resolve_op(op)
    if spec.gate is None:
        raise SweepError(f"op {spec.name} has no gate to fill (DeltaNet); pack its sequences with cu_seqlens")
    if cases < 1:
        raise SweepError(f"cases must be >= 1, got {cases}")
    mode_specs = resolve_modes(spec, modes or [m for m in spec.modes.values() if m.provider == "builtin"])
    backend = get_backend(device)
    dtype_names = [dtype_name(d) for d in dtypes] if dtypes else [
        d for d, t in DTYPES.items() if backend.dtype_unsupported_reason(t) is None]
    fills = {fill_label(f): f for f in parse_values(values)}
    labels = list(fills) + [CONTROL]
    layouts = case_layouts(cases)
    result = SweepResult(
        op=spec.name, modes=[mode_label(m) for m in mode_specs], dtypes=dtype_names, values=labels, fills=fills,
        varlen={mode_label(m): m.varlen for m in mode_specs},
        cases=[{"case": i, "layout": lay.name, "what": lay.what, "T": lay.T, "segments": list(lay.segments),
                "starts": lay.starts, "seed": seed + i, **SHAPE} for i, lay in enumerate(layouts)],
        options={"cases": cases, "seed": seed, "device": backend.device, "backend": backend.describe()})
    total, done = len(labels) * len(dtype_names) * len(layouts) * len(mode_specs), 0
    start = time.perf_counter()
    try:
        for dtype in dtype_names:
            for i, layout in enumerate(layouts):
                for label in labels:
                    config = case_config(spec.name, dtype, layout, seed + i, fills.get(label, CONTROL))
                    judge = _CaseJudge.build(spec, config, backend.device)
                    for mode in mode_specs:
                        cell = result.cells.setdefault((label, mode_label(mode), dtype),
                                                       Cell(label, mode_label(mode), dtype))
                        cell.cases.append(judge.run(mode, i, backend))
                        done += 1
                        if progress:
                            progress(done, total, f"{dtype} {layout.name} {label} {mode_label(mode)}")
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class _CaseJudge:
    """One case's inputs and references, and how to classify a mode on it."""

    op: OpSpec
    config: CaseConfig
    inputs: CaseInputs
    truth: dict[str, Tensor]
    literal: Optional[dict[str, Tensor]]  # None for the control (truth == literal)
    scales: dict[Arithmetic, tuple[dict[str, Metrics], Optional[dict[str, Metrics]]]] = field(default_factory=dict)

    @classmethod
    def build(cls, op: OpSpec, config: CaseConfig, device: str) -> "_CaseJudge":
        inputs = build_case(config, device)
        truth = _outputs(op, inputs, cu_seqlens=inputs.cu_seqlens, reset_mask=inputs.reset_mask)
        literal = None if config.varlen else _outputs(op, inputs)
        return cls(op, config, inputs, truth, literal)

    def baseline(self, arith: Arithmetic) -> tuple[dict[str, Metrics], Optional[dict[str, Metrics]]]:
        """The sampled error of `arith` on the inputs the kernel sees (the filled gate), scaled
        by the truth's RMS and by the literal reference's (once per declaration)."""
        if arith not in self.scales:
            c = self.config
            exact = self.truth if self.literal is None else self.literal
            samples = baseline_samples(self.op, arith, self.inputs, c.torch_dtype, sample_seed(c.seed, arith),
                                       exact=exact)
            self.scales[arith] = (noise_scales(samples, exact, self.truth),
                                  None if self.literal is None else noise_scales(samples, exact))
        return self.scales[arith]

    def run(self, mode: ModeSpec, index: int, backend) -> CaseOutcome:
        reason = unsupported_reason(mode, self.config, backend)
        if reason:
            return CaseOutcome(index, Outcome.UNSUPPORTED, reason=reason)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():  # overflow in discarded lanes is the verdict's business
                warnings.simplefilter("ignore", RuntimeWarning)
                x = mode_inputs(mode, self.inputs)
                raw = x.state_layout(mode.load())(x.q.clone(), x.k.clone(), x.v.clone(), **x.mode_kwargs())
        except Exception as exc:  # noqa: BLE001 - a raising kernel is an outcome
            return CaseOutcome(index, Outcome.ERROR, reason=f"{type(exc).__name__}: {exc}",
                               seconds=time.perf_counter() - start)
        seconds = time.perf_counter() - start
        out, problem = named_outputs(raw, self.truth)
        if problem:
            return CaseOutcome(index, Outcome.ERROR, reason=problem, seconds=seconds)
        return self.classify(out, index, mode.declared(self.config.chunk_size), seconds)

    def classify(self, out: dict[str, Tensor], index: int, arith: Arithmetic, seconds: float = 0.0) -> CaseOutcome:
        """OK / NONFINITE / LEAK / DIVERGED of a mode's outputs (see the module doc)."""
        c = self.config
        vs_truth_scale, vs_literal_scale = self.baseline(arith)
        vs_truth = _compare(out, self.truth, vs_truth_scale, c.max_segment_len())
        error = max(x.kernel.rel_rms for x in vs_truth)
        score = max(x.score for x in vs_truth)
        lit_error = None
        if any(x.kernel.nonfinite for x in vs_truth):
            outcome = Outcome.NONFINITE
        elif all(x.verdict is Verdict.OK for x in vs_truth):
            outcome = Outcome.OK
        elif self.literal is None:
            outcome = Outcome.DIVERGED
        else:
            vs_lit = _compare(out, self.literal, vs_literal_scale, c.T)
            lit_error = max(x.kernel.rel_rms for x in vs_lit)
            outcome = Outcome.LEAK if all(x.verdict is Verdict.OK for x in vs_lit) else Outcome.DIVERGED
        return CaseOutcome(index, outcome, error, score, lit_error, seconds=seconds)


def _compare(out: dict[str, Tensor], ref: dict[str, Tensor], scales: dict[str, Metrics],
             steps: int) -> list[Comparison]:
    return [compare(name, out[name], ref[name], scales[name], steps=steps) for name in ref]


def _outputs(op: OpSpec, inputs: CaseInputs, **split: Any) -> dict[str, Tensor]:
    """The float64 reference's o and ht (split: cu_seqlens / reset_mask)."""
    o, ht = reference(op.step, *inputs.tensors(), initial_state=inputs.initial_state, output_final_state=True,
                      prepare=inputs.prepare, **split)
    return {"o": o, "ht": ht}
