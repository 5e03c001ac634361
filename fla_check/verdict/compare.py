"""Metrics and the verdict rule: an error model (docs/verdict.md).

For one named output with ``r`` = the float64 reference and ``k`` = the kernel mode, the
*baseline* is the error the mode's declared arithmetic
(:class:`~fla_check.verdict.arithmetic.Arithmetic`) makes on the same inputs, sampled by a
Monte Carlo emulation (:mod:`fla_check.verdict.emulation`, :mod:`fla_check.verdict.baselines`):
``s`` = the samples' largest rel-RMSE, ``m`` = their largest max-abs error. Then ::

    NONFINITE  if k has NaN/Inf where r is finite
    DIVERGED   unless  relrms(k) <= a * s + TAU32 + cancel / rms(r)
                  and  max|k-r| <= a_max * m + SLACK_ULPS * eps32 * max|r| * sqrt(L) + cancel
    OK         otherwise

with ``relrms(x) = rms(x-r) / (rms(r) + 1e-8)`` (fla's ``get_err_ratio``), ``a = 2``,
``a_max = 3`` forward and ``3``, ``4`` backward (gradients: the backward kernels round on their
own, which the emulation's autograd does not sample).

fp32 slack. ``TAU32`` and the max-abs term are fp32-sized whatever the dtype: every mode
accumulates in fp32 in an order the emulation does not sample (``L`` = the longest sequence,
a random walk over the steps that feed one output). They matter only where the sampled error
is itself at fp32 level, and are 100x below a 0.3% error.

Cancelling sums (backward). The log-gate gradient ``dg`` is computed by every fast algorithm
(recurrent and chunk) as a reverse cumulative sum of ``q*dq - k*dk``, terms much larger than
the result, accumulated in fp32, while autograd on the emulation never forms them. For ``dg``
the caller passes a :class:`Cancellation` (:func:`fla_check.engine.gradients.cancellation_scales`):
for each entry ``t`` of dg, ``w_t = sqrt(sum_{s >= t} term_s^2)`` over its sequence (the spread of a
reverse cumsum of per-step errors proportional to the terms, plus the final-state term), of which
it keeps the largest and the RMS. Both bounds grow by ::

    cancel = c * max_t w_t   (max-abs)        c * rms_t w_t / rms(r)   (rel-RMSE)

with ``c`` from the mode's arithmetic (:meth:`Arithmetic.cancellation_allowance`): 8 fp32 ulps
(the sum's fp32 accumulation), or a quarter of a TF32 truncation, 2^-12, for fp32 inputs through TF32
dots, whose independently truncated operands make the terms themselves differ (fla's gated
chunk backward on an H200: dg 1.6 % of 2^-10 of the terms off; 4.8e-7 with IEEE dots,
docs/gpu/features-h200-5). ``w_t <= max term * sqrt(L)``, the cruder bound
(:meth:`Cancellation.bound`) used when only the largest term is known.

The gate cumsum's own rounding (what a -1e4 mask fill costs a chunk kernel: ``eps32 |G|`` in
the exponent) is not an allowance: the emulation of a chunk mode rounds its cumsum and so
samples it, scoped to the modes that take one; recurrent modes get none.

Host transfers. On a GPU every ``.item()`` waits for the device. :func:`compare_many` reduces
every metric of every output on the case's device and fetches them with one transfer
(:func:`fla_check.verdict.host.to_host`); :func:`agreements` does the same for the pairwise
check. Only a reference with non-finite entries (masked out) is measured per metric.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from fla_check.verdict.host import to_host
from fla_check.verdict.reductions import OUTPUT_TERMS, ReferenceTerms, difference_terms, output_terms

A_FORWARD = 2.0
A_MAX_FORWARD = 3.0
A_BACKWARD = 3.0
A_MAX_BACKWARD = 4.0
EPS32 = torch.finfo(torch.float32).eps
TAU32 = 2e-5  # fp32 slack, rel-RMSE
SLACK_ULPS = 8.0  # fp32 slack, max-abs: fp32 ulps at the output's scale times sqrt(L)
RMS_EPS = 1e-8  # fla's get_err_ratio denominator guard


class Verdict(str, enum.Enum):
    """Outcome for one output, one mode on one case, or one mode over a whole run."""

    OK = "OK"
    NONDETERMINISTIC = "NONDETERMINISTIC"  # within tolerance, but a second run on the same inputs differs
    NOT_INVARIANT = "NOT_INVARIANT"  # within tolerance, but a metamorphic variant (split, packing, ...) is not
    DIVERGED = "DIVERGED"
    NONFINITE = "NONFINITE"
    UNWRITTEN = "UNWRITTEN"  # an output slot still holds the poison its buffer was allocated with
    OVERREAD = "OVERREAD"  # NaN from the guards around the inputs (or padded tokens) reached the outputs
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"  # the mode's call ran past --case-timeout; its worker process was killed
    CRASHED = "CRASHED"  # the mode's call killed its worker process (abort, segfault, illegal memory access)
    UNSUPPORTED = "UNSUPPORTED"

    @property
    def failed(self) -> bool:
        return self in (Verdict.NONDETERMINISTIC, Verdict.NOT_INVARIANT, Verdict.DIVERGED, Verdict.NONFINITE,
                        Verdict.UNWRITTEN, Verdict.OVERREAD, Verdict.ERROR, Verdict.TIMEOUT, Verdict.CRASHED)


# Severity when combining verdicts: the worst one wins.
_SEVERITY = {Verdict.UNSUPPORTED: 0, Verdict.OK: 1, Verdict.NONDETERMINISTIC: 2, Verdict.NOT_INVARIANT: 3,
             Verdict.DIVERGED: 4, Verdict.NONFINITE: 5, Verdict.UNWRITTEN: 6, Verdict.OVERREAD: 6, Verdict.ERROR: 7,
             Verdict.TIMEOUT: 8, Verdict.CRASHED: 9}


def worst(verdicts) -> Verdict:
    """The most severe verdict (UNSUPPORTED < OK < NONDETERMINISTIC < NOT_INVARIANT < DIVERGED < NONFINITE
    < UNWRITTEN, OVERREAD < ERROR < TIMEOUT < CRASHED): wrong numbers (a metamorphic variant of the call
    disagrees, then the call itself), then wrong memory (the mode returned, but wrote too little or read
    too far), then a call that did not return normally (raised; never returned; killed its process)."""
    verdicts = list(verdicts)
    return max(verdicts, key=_SEVERITY.__getitem__) if verdicts else Verdict.UNSUPPORTED


@dataclass(frozen=True)
class Metrics:
    """Error of one tensor against the float64 reference."""

    max_abs: float  # max |x - r| over elements where r is finite (inf when x is not)
    rel_rms: float  # rms(x - r) / (rms(r) + 1e-8)
    nonfinite: int  # NaN/Inf elements of x where r is finite

    def to_json(self) -> dict[str, Any]:
        return {"max_abs": json_float(self.max_abs), "rel_rms": json_float(self.rel_rms), "nonfinite": self.nonfinite}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Metrics":
        return cls(float(d["max_abs"]), float(d["rel_rms"]), int(d["nonfinite"]))


def measure(x: Tensor, ref: Tensor) -> Metrics:
    """Max-abs error, fla-style relative RMSE and non-finite count of `x` against `ref`."""
    x = x.detach().to(torch.float64)
    ref = ref.detach().to(torch.float64)
    ok = torch.isfinite(ref)
    nonfinite = int((~torch.isfinite(x) & ok).sum())
    if nonfinite:
        return Metrics(math.inf, math.inf, nonfinite)
    if not bool(ok.any()):
        return Metrics(0.0, 0.0, 0)
    diff = (x - ref)[ok]
    rms_ref = ref[ok].square().mean().sqrt().item()
    return Metrics(diff.abs().max().item(), diff.square().mean().sqrt().item() / (rms_ref + RMS_EPS), 0)


@dataclass(frozen=True)
class Comparison:
    """One named output of one mode, judged against reference and baseline."""

    name: str
    kernel: Metrics
    baseline: Metrics  # the sampled error of the declared arithmetic (m, s)
    bound_max_abs: float  # a_max * m + slack (+ cancel)
    bound_rel_rms: float  # a * s + TAU32 (+ cancel)
    verdict: Verdict

    @property
    def ratio(self) -> float:
        """Kernel rel-RMSE over the baseline's, the baseline taken at least at the fp32 slack's
        share (TAU32 / a): how many times the error the declared arithmetic allows ("x base").
        A clean fp32 kernel whose bound is the slack then reads ~0.1x, not 10x its rounding."""
        return _ratio(self.kernel.rel_rms, max(self.baseline.rel_rms, TAU32 / A_FORWARD))

    @property
    def score(self) -> float:
        """Fraction of the allowed error used (> 1 means DIVERGED); 1e6 for non-finite."""
        if self.kernel.nonfinite:
            return 1e6
        return min(1e6, max(_ratio(self.kernel.max_abs, self.bound_max_abs),
                            _ratio(self.kernel.rel_rms, self.bound_rel_rms)))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict.value, "kernel": self.kernel.to_json(),
                "baseline": self.baseline.to_json(), "bound_max_abs": json_float(self.bound_max_abs),
                "bound_rel_rms": json_float(self.bound_rel_rms), "ratio": json_float(self.ratio),
                "score": json_float(self.score)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Comparison":
        return cls(d["name"], Metrics.from_json(d["kernel"]), Metrics.from_json(d["baseline"]),
                   float(d["bound_max_abs"]), float(d["bound_rel_rms"]), Verdict(d["verdict"]))


def _rms(ref: Tensor) -> float:
    finite = ref[torch.isfinite(ref)]
    return finite.square().mean().sqrt().item() if finite.numel() else 0.0


def _amax(ref: Tensor) -> float:
    finite = ref[torch.isfinite(ref)]
    return finite.abs().max().item() if finite.numel() else 0.0


@dataclass(frozen=True)
class Cancellation:
    """How far the terms of a cancelling sum reach (module doc, "Cancelling sums"): the largest and
    the RMS over the output's entries of ``sqrt(sum of the squared terms it sums)``."""

    walk_max: float
    walk_rms: float

    @classmethod
    def bound(cls, largest: float, steps: int) -> "Cancellation":
        """The crude form from the largest term alone: ``largest * sqrt(steps)`` for both."""
        w = largest * math.sqrt(max(1, steps))
        return cls(w, w)


@dataclass(frozen=True)
class Judged:
    """One output to judge: `kernel` against `ref` by the verdict rule (:func:`compare`)."""

    name: str
    kernel: Tensor
    ref: Tensor
    baseline: Metrics
    steps: int
    backward: bool = False
    cancel: Optional[Cancellation] = None  # a cancelling sum's reach (dg)
    cancel_allowance: float = SLACK_ULPS * EPS32  # relative to it (Arithmetic.cancellation_allowance)


def compare(name: str, kernel: Tensor, ref: Tensor, baseline: Metrics, *, steps: int,
            backward: bool = False, cancel_scale: float = 0.0,
            cancel_allowance: float = SLACK_ULPS * EPS32) -> Comparison:
    """Apply the verdict rule (module doc) to one output: `baseline` is the sampled error
    (max-abs m, rel-RMSE s) of the mode's declared arithmetic, `steps` the accumulation length
    (longest sequence), `cancel_scale` the largest term of a cancelling sum (dg; its reach taken
    as :meth:`Cancellation.bound`) and `cancel_allowance` the allowance relative to it."""
    cancel = Cancellation.bound(cancel_scale, steps) if cancel_scale > 0 else None
    return compare_many([Judged(name, kernel, ref, baseline, steps, backward, cancel, cancel_allowance)])[0][0]


def compare_many(items: Sequence[Judged], extra: Sequence[Tensor] = ()) -> tuple[list[Comparison], list[float]]:
    """:func:`compare` for each of `items`, every metric reduced on the device and fetched in
    one host transfer together with the device scalars `extra` (returned as floats). An output
    whose reference has non-finite entries (never for the built-in ops) is measured by
    :func:`measure` afterwards: masking them out needs the mask's size on the host."""
    terms = metric_terms([(item.kernel, item.ref) for item in items])
    values = to_host(terms + list(extra))
    return judged(items, values[:len(terms)]), values[len(terms):]


def metric_terms(pairs: Sequence[tuple[Tensor, Tensor]], refs: Optional[ReferenceTerms] = None) -> list[Tensor]:
    """The device scalars :func:`judged` needs for each (kernel, reference) pair, in order: a
    caller can fetch them with other scalars of its own in one transfer. `refs`: the
    references' own reductions, kept across calls (default: computed for this call). Pairs of
    one shape and dtype are reduced together (:func:`~fla_check.verdict.reductions.output_terms`)."""
    return [t for terms in output_terms(pairs, ReferenceTerms() if refs is None else refs) for t in terms]


def judged(items: Sequence[Judged], values: Sequence[float]) -> list[Comparison]:
    """The verdict rule on each of `items` from the fetched :func:`metric_terms` of their
    (kernel, ref) pairs."""
    out, at = [], 0
    for item in items:
        n = OUTPUT_TERMS if item.ref.numel() else 0
        out.append(_judge(item, list(values[at:at + n])))
        at += n
    return out


def _judge(item: Judged, v: list[float]) -> Comparison:
    """The verdict rule on one output's fetched scalars `v` (:func:`~fla_check.verdict.reductions.output_terms`)."""
    r = item.ref
    if not v or v[1] == 0:  # nothing finite to compare against
        k, rms_r, amax_r = Metrics(0.0, 0.0, 0), 0.0, 0.0
    elif v[1] < r.numel():  # a reference with non-finite entries: masked, on the host's schedule
        k, rms_r, amax_r = measure(item.kernel, r), _rms(r.detach().double()), _amax(r.detach().double())
    elif v[0]:
        k, rms_r, amax_r = Metrics(math.inf, math.inf, int(v[0])), v[4], v[5]
    else:
        k, rms_r, amax_r = Metrics(v[2], v[3] / (v[4] + RMS_EPS), 0), v[4], v[5]
    a, a_max = (A_BACKWARD, A_MAX_BACKWARD) if item.backward else (A_FORWARD, A_MAX_FORWARD)
    walk = math.sqrt(max(1, item.steps))
    bound_max = a_max * item.baseline.max_abs + SLACK_ULPS * EPS32 * amax_r * walk
    bound_rms = a * item.baseline.rel_rms + TAU32
    if item.cancel is not None:
        bound_max += item.cancel_allowance * item.cancel.walk_max
        bound_rms += item.cancel_allowance * item.cancel.walk_rms / (rms_r + RMS_EPS)
    if k.nonfinite:
        verdict = Verdict.NONFINITE
    elif k.max_abs <= bound_max and k.rel_rms <= bound_rms:
        verdict = Verdict.OK
    else:
        verdict = Verdict.DIVERGED
    return Comparison(item.name, k, item.baseline, bound_max, bound_rms, verdict)


@dataclass(frozen=True)
class Agreement:
    """Mode-vs-mode difference on one output: max|a-b| and rms(a-b)/rms(ref)."""

    name: str
    max_abs: float
    rel_rms: float
    agree: bool  # max|a-b| <= bound_a + bound_b (both within their bound implies this)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "max_abs": json_float(self.max_abs), "rel_rms": json_float(self.rel_rms),
                "agree": self.agree}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Agreement":
        return cls(d["name"], float(d["max_abs"]), float(d["rel_rms"]), bool(d["agree"]))


def agreement(name: str, a: Tensor, b: Tensor, ref: Tensor, bound_a: float, bound_b: float) -> Agreement:
    """Pairwise agreement of two modes on one output (scaled by the reference's RMS)."""
    return agreements([(name, a, b, ref, bound_a, bound_b)])[0]


def agreements(items: Sequence[tuple[str, Tensor, Tensor, Tensor, float, float]],
               refs: Optional[ReferenceTerms] = None) -> list[Agreement]:
    """:func:`agreement` of each (name, a, b, ref, bound_a, bound_b), fetched in one host transfer
    (`refs`: the references' own reductions, kept across calls; default: computed here)."""
    found = difference_terms([(a, b, ref) for _, a, b, ref, _, _ in items], ReferenceTerms() if refs is None else refs)
    terms = [t for each in found for t in each]
    values = to_host(terms)
    out, at = [], 0
    for name, a, b, ref, bound_a, bound_b in items:
        if not a.numel():
            out.append(Agreement(name, 0.0, 0.0, 0.0 <= bound_a + bound_b))
            continue
        nonfinite, ref_ok, max_abs, rms, rms_ref = values[at:at + 5]
        at += 5
        if nonfinite:  # NaN / Inf in a difference (rare): agreement is bitwise equality, fetched on its own
            same = _bitwise_same(a, b)
            out.append(Agreement(name, 0.0 if same else math.inf, 0.0 if same else math.inf, same))
            continue
        if ref_ok < ref.numel():  # non-finite reference entries: masked out on the host's schedule
            r64 = ref.detach().to(torch.float64)
            rms_ref = r64[torch.isfinite(r64)].square().mean().sqrt().item()
        out.append(Agreement(name, max_abs, rms / (rms_ref + RMS_EPS), max_abs <= bound_a + bound_b))
    return out


def _bitwise_same(a: Tensor, b: Tensor) -> bool:
    """Whether `a` and `b` hold the same values, NaN where the other has NaN."""
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    return bool(((a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))).all())


def _ratio(x: float, bound: float) -> float:
    if x == 0:
        return 0.0
    if bound <= 0 or math.isinf(x):
        return math.inf
    return x / bound


def json_float(x: float) -> Any:
    """JSON-safe float: non-finite values become the strings 'inf', '-inf', 'nan'."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
