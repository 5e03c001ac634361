"""Metrics and the verdict rule (DESIGN.md, "Verdict rule").

For one named output with ``r`` = float64 reference, ``p`` = the naive recurrence in the kernel
dtype (the precision baseline) and ``k`` = the kernel mode::

    NONFINITE  if k has NaN/Inf where r is finite
    DIVERGED   unless  max|k-r| <= a*max|p-r| + floor   and   relrms(k) <= a*relrms(p) + tau
    OK         otherwise

with ``relrms(x) = rms(x-r) / (rms(r) + 1e-8)`` (fla's ``get_err_ratio``), ``a = 2`` forward and
``3`` backward. The floors are per kernel dtype (:data:`FLOORS`):

    floor = floor_ulps * eps(dtype) * max|r| * sqrt(L)     (L = accumulation length in steps)
    tau   = the rel-RMSE floor

``floor`` is a few ulps at the output's scale, grown like a random walk over the steps that
feed one output; it only matters when the baseline happens to be (nearly) exact. ``tau`` sits
near fla's own ratios for fp16/bf16 (0.004-0.008) and far below them for fp32.

Gate allowance. Chunked algorithms hold a chunk-local cumulative log-gate ``G`` in fp32 and
take differences ``G_i - G_j``; after a large offset (a mask fill of -1e4, say) those
differences lose ``eps32 * |G|`` absolutely, whatever the kernel does right. That loss is the
algorithm's, not a bug, so both bounds grow by ::

    allowance = min(GATE_CAP, GATE_ULPS * eps32 * M)      (relative; times max|r| for max-abs)
    M = max_i |G_i| * exp(g_i)   over steps i that are not first in their 64-step chunk

``M`` only counts cumulative gates behind a non-negligible decay factor (strong decay is
harmless: its differences multiply terms that are ~0). It is 0 for ops without a gate and
for moderate gates, and capped at ``GATE_CAP`` (about fla's own ratios) so a fill that
destroys the result (-0.1*finfo.max: error ~1) or a NaN is still flagged.
Calibration on the built-in kernels: ``tests/test_compare.py::test_calibration_margins``.

Cancelling sums (backward). Some gradients are computed by every fast algorithm as a sum of
terms much larger than the result: the log-gate gradient ``dg`` is a reverse cumulative sum of
``q*dq - k*dk`` (fla's identity, used by recurrent and chunk kernels alike, accumulated in
fp32), while the autograd baseline never forms those terms. For such an output the caller
passes ``scale``, the magnitude of the terms (:func:`fla_check.gradients.cancellation_scales`),
and both bounds grow by the fp32 rounding of that sum ::

    cancel = FLOORS[fp32].floor_ulps * eps32 * scale * sqrt(L)     (max-abs; / rms(r) for rel-RMSE)

so ``dg = 0`` exactly (a gate that cannot matter, e.g. ``T = 1`` without states: relative
error undefined, measured 4.8e-7 absolute in fp32) is not DIVERGED at rounding noise. fp32,
not the kernel dtype: the kernel dtype's rounding is the baseline's business, and an fp16
``eps`` here would hide a dg that is 20% off. The chunk kernels' loss under strong decay
(fp32 rel. error 2.2e-5 at gate/0.1, the same algorithm as fla) is the gate allowance's
(it scores 0.23 of the bound without ``cancel``). ``dh0``, every term of which is scaled by
``exp(G_t)``, gets a gate mass of its own (:func:`fla_check.gradients.state_gate_masses`).
Calibration: ``tests/test_gradients.py``.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

A_FORWARD = 2.0
GATE_CHUNK = 64
GATE_ULPS = 4.0
GATE_CAP = 1e-2
EPS32 = torch.finfo(torch.float32).eps
A_BACKWARD = 3.0
RMS_EPS = 1e-8  # fla's get_err_ratio denominator guard


class Verdict(str, enum.Enum):
    """Outcome for one output, one mode on one case, or one mode over a whole run."""

    OK = "OK"
    DIVERGED = "DIVERGED"
    NONFINITE = "NONFINITE"
    ERROR = "ERROR"
    UNSUPPORTED = "UNSUPPORTED"

    @property
    def failed(self) -> bool:
        return self in (Verdict.DIVERGED, Verdict.NONFINITE, Verdict.ERROR)


# Severity when combining verdicts: the worst one wins.
_SEVERITY = {Verdict.UNSUPPORTED: 0, Verdict.OK: 1, Verdict.DIVERGED: 2, Verdict.NONFINITE: 3,
             Verdict.ERROR: 4}


def worst(verdicts) -> Verdict:
    """The most severe verdict (UNSUPPORTED < OK < DIVERGED < NONFINITE < ERROR)."""
    verdicts = list(verdicts)
    return max(verdicts, key=_SEVERITY.__getitem__) if verdicts else Verdict.UNSUPPORTED


@dataclass(frozen=True)
class Floors:
    """Per-dtype absolute floor (in ulps at the output scale) and rel-RMSE floor."""

    floor_ulps: float
    tau: float


# The documented table (see module doc). eps: fp32 1.2e-7, fp16 9.8e-4, bf16 7.8e-3.
FLOORS: dict[torch.dtype, Floors] = {
    torch.float32: Floors(floor_ulps=8.0, tau=2e-5),
    torch.float16: Floors(floor_ulps=4.0, tau=3e-3),
    torch.bfloat16: Floors(floor_ulps=4.0, tau=4e-3),
}


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
    baseline: Metrics
    bound_max_abs: float  # a * baseline.max_abs + floor
    bound_rel_rms: float  # a * baseline.rel_rms + tau
    verdict: Verdict

    @property
    def ratio(self) -> float:
        """Kernel rel-RMSE over baseline rel-RMSE (how many times the baseline's error)."""
        return _ratio(self.kernel.rel_rms, self.baseline.rel_rms)

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


def abs_floor(ref: Tensor, dtype: torch.dtype, steps: int) -> float:
    """floor_ulps * eps(dtype) * max|ref| * sqrt(steps) (ulps at the output scale, random walk)."""
    return FLOORS[dtype].floor_ulps * torch.finfo(dtype).eps * _amax(ref) * math.sqrt(max(1, steps))


def gate_mass(g: Optional[Tensor], cu_seqlens: Optional[Tensor] = None, chunk: int = GATE_CHUNK) -> float:
    """M = max |G_i| * exp(g_i) over steps not first in their chunk (G: chunk-local cumsum,
    restarting at varlen sequence starts). `g` is [B,T,H] or [B,T,H,K]; None gives 0."""
    if g is None or g.numel() == 0:
        return 0.0
    g = g.detach().to(torch.float64)
    if cu_seqlens is None:
        return _chunk_mass(g, chunk)
    bounds = cu_seqlens.tolist()
    return max((_chunk_mass(g[:, s:e], chunk) for s, e in zip(bounds[:-1], bounds[1:]) if e > s), default=0.0)


def _chunk_mass(g: Tensor, chunk: int) -> float:
    B, T = g.shape[:2]
    pad = (-T) % chunk
    if pad:
        g = torch.cat([g, g.new_full((B, pad) + tuple(g.shape[2:]), -math.inf)], 1)  # no mass
    g = g.reshape((B, -1, chunk) + tuple(g.shape[2:]))
    G = g.cumsum(2)
    mass = (G.abs() * g.exp())[:, :, 1:].nan_to_num(nan=0.0, posinf=math.inf)
    return float(mass.max()) if mass.numel() else 0.0


def gate_allowance(mass: float) -> float:
    """Relative error a chunked algorithm may lose to a cumulative log-gate of size `mass`."""
    return min(GATE_CAP, GATE_ULPS * EPS32 * mass)


def compare(name: str, kernel: Tensor, baseline: Tensor, ref: Tensor, *, dtype: torch.dtype,
            steps: int, gate: float = 0.0, backward: bool = False, scale: float = 0.0,
            floor_dtype: Optional[torch.dtype] = None) -> Comparison:
    """Apply the verdict rule to one output. `dtype` is the kernel dtype (`floor_dtype`, when
    given, the dtype whose floors apply: see ModeSpec.floor_dtype), `steps` the
    accumulation length (longest sequence) that grows the absolute floor, `gate` the
    :func:`gate_mass` of the case's gate, `scale` the magnitude of the terms of a cancelling
    sum (module doc; 0: none)."""
    a = A_BACKWARD if backward else A_FORWARD
    k, p = measure(kernel, ref), measure(baseline, ref)
    r = ref.detach().double()
    allowance = gate_allowance(gate)
    floors = floor_dtype or dtype
    bound_max = a * p.max_abs + abs_floor(r, floors, steps) + allowance * _amax(r)
    bound_rms = a * p.rel_rms + FLOORS[floors].tau + allowance
    if scale > 0:
        cancel = FLOORS[torch.float32].floor_ulps * EPS32 * scale * math.sqrt(max(1, steps))
        bound_max += cancel
        bound_rms += cancel / (_rms(r) + RMS_EPS)
    if k.nonfinite:
        verdict = Verdict.NONFINITE
    elif k.max_abs <= bound_max and k.rel_rms <= bound_rms:
        verdict = Verdict.OK
    else:
        verdict = Verdict.DIVERGED
    return Comparison(name, k, p, bound_max, bound_rms, verdict)


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
    a64, b64, r64 = (t.detach().to(torch.float64) for t in (a, b, ref))
    diff = a64 - b64
    if not bool(torch.isfinite(diff).all()):
        both_nan = torch.isnan(a64) & torch.isnan(b64)
        same = bool(((a64 == b64) | both_nan).all())
        return Agreement(name, 0.0 if same else math.inf, 0.0 if same else math.inf, same)
    rms_ref = r64[torch.isfinite(r64)].square().mean().sqrt().item() if r64.numel() else 0.0
    max_abs = diff.abs().max().item() if diff.numel() else 0.0
    rel = diff.square().mean().sqrt().item() / (rms_ref + RMS_EPS) if diff.numel() else 0.0
    return Agreement(name, max_abs, rel, max_abs <= bound_a + bound_b)


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
