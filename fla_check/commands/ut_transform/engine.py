"""Engine of ``fla-check ut-transform``: hypothesis-drawn chunks -> per-variant verdicts.

For every chunk (:mod:`fla_check.commands.ut_transform.cases`) the float64 ground truth is the explicit per-row
recursion, never a matrix inverse: ``w`` and ``u`` by :func:`fla_check.references.ut.ut_recursion`
and ``A_inv = (I + L)^-1`` by forward substitution ``t_r = e_r - sum_{i<r} L_ri t_i``
(:func:`inverse_recursion`), with ``L = strictly_lower(diag(beta) K K^T * exp(G_i - G_j))``.
Each variant (:mod:`fla_check.commands.ut_transform.variants`) is judged on A_inv, w and u in its own dtype.

Verdict: the error model of ``fla-check run`` (:mod:`fla_check.verdict.compare`). Each variant declares
its arithmetic (:class:`~fla_check.verdict.arithmetic.Arithmetic`: what it stores in which
dtype, its fp32 dot precision, its inverse's structure); the baseline is
:func:`~fla_check.verdict.emulation.emulate_ut` of that declaration on the chunk's own inputs
(padded to the chunk size, as the kernels pad), ``SAMPLES`` seeded float64 samples with rounding
noise where the declaration rounds, reduced against the ground truth per output to ``s`` (the
samples' largest rel-RMSE) and ``m`` (their largest max-abs error). Per output of an ``n``-row
chunk::

    OK  iff  relrms <= 2 s + TAU32  and  max-abs <= 3 m + 8 eps32 max|ref| sqrt(n)

(NONFINITE when NaN/Inf appear where the reference is finite). The seed comes from the case and
the declaration (:func:`~fla_check.verdict.baselines.sample_seed`): replays are exact. Stores
also flush to the store dtype's subnormal grid, which the emulation samples as absolute noise
of half that spacing (under strong decay all of w ~ exp(G) can lie below fp16's normal range).
The condition number ``cond(I + L)`` is reported, not used:
the emulation amplifies its noise through the same inverse. A sign error is an O(1) relative
error; the closed forms are judged against the built-in kernel's fp32 declaration.
"""
from __future__ import annotations

import math
import time
import warnings
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

import hypothesis
import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from torch import Tensor

from fla_check import __version__
from fla_check.seeded_draws import only_seeded_draws
from fla_check.verdict.compare import (A_FORWARD, A_MAX_FORWARD, SLACK_ULPS, TAU32, Comparison, Metrics, Verdict, compare,
                               json_float, worst)
from fla_check.commands.ut_transform.cases import UTCase, UTInputs, build_inputs, free_params, regimes
from fla_check.commands.ut_transform.variants import (FP32_BLOCKED, OUTPUT_NAMES, Variant, VariantUnsupported,
                                                     default_variants)
from fla_check.references.ut import condition, inverse_recursion, lower_matrix, ut_recursion  # noqa: F401 (re-exported)
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.baselines import noise_scales, sample_seed, single_thread
from fla_check.verdict.emulation import SAMPLES, emulate_ut

TOLERANCE_RULE = (f"relrms <= {A_FORWARD:g} s + {TAU32:g} and max-abs <= {A_MAX_FORWARD:g} m + "
                  f"{SLACK_ULPS:g} eps32 max|ref| sqrt(n); s, m = the largest rel-RMSE, max-abs error of "
                  f"{SAMPLES} seeded float64 emulations of the variant's declared arithmetic, n = chunk rows")
DEFAULT_EXAMPLES = 12
MINUS = "closed(-)"  # expected to diverge: it decides the sign, it does not fail a run
PLUS = "closed(+)"


# -- float64 ground truth ----------------------------------------------------------------------
def ground_truth(x: UTInputs, chunk_size: int) -> tuple[dict[str, Tensor], Tensor]:
    """The float64 A_inv [1,T,H,BT] (zero beyond column T), w, u of a one-chunk case (CPU
    tensors), and its ``L`` [H,T,T]."""
    w, u = ut_recursion(x.k, x.v, x.beta, x.g, chunk_size=chunk_size)
    L = lower_matrix(x.k, x.beta, x.g)
    _, T, H, _ = x.k.shape
    A = torch.zeros(1, T, H, chunk_size, dtype=torch.float64)
    A[0, :, :, :T] = inverse_recursion(L).transpose(0, 1)
    return dict(zip(OUTPUT_NAMES, (A, w, u))), L


# -- the baseline: the declared arithmetic, emulated ---------------------------------------------
def emulated_samples(case: UTCase, x: UTInputs, arith: Arithmetic) -> dict[str, Tensor]:
    """A_inv [S,1,T,H,BT], w [S,1,T,H,K], u [S,1,T,H,V]: :func:`emulate_ut` of `arith` on the
    chunk's inputs (their case-dtype values in float64), zero-padded to the chunk size as the
    kernels pad their loads (beta = 0 rows leave the first T rows unchanged)."""
    BT, T = case.chunk_size, case.T

    def samples(t: Optional[Tensor]) -> Optional[Tensor]:
        if t is None:
            return None
        t = t[0].detach().double().cpu().transpose(0, 1)  # [H,T,...]
        t = torch.cat([t, t.new_zeros((t.shape[0], BT - T) + tuple(t.shape[2:]))], 1)
        return t[None].expand((SAMPLES,) + tuple(t.shape))

    seed = sample_seed(case.seed, arith)
    out = emulate_ut(arith, *(samples(t) for t in (x.k, x.v, x.beta, x.g)), dtype=case.torch_dtype, seed=seed)
    return {n: y[:, :, :T].transpose(1, 2)[:, None] for n, y in out.items()}  # [S,H,BT,D] -> [S,1,T,H,D]


def baseline_scales(case: UTCase, x: UTInputs, arith: Arithmetic, refs: dict[str, Tensor]) -> dict[str, Metrics]:
    """Per output: the samples' largest max-abs error ``m`` and rel-RMSE ``s`` against `refs`
    (on one intra-op thread: see :func:`~fla_check.verdict.baselines.single_thread`)."""
    with single_thread():
        return noise_scales(emulated_samples(case, x, arith), refs)


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputCheck:
    """One output (A_inv, w or u) of one variant on one chunk: the error model's comparison."""

    comparison: Comparison  # kernel metrics, sampled baseline (m, s), bounds, verdict
    scale: float  # max |reference|

    @property
    def name(self) -> str:
        return self.comparison.name

    @property
    def verdict(self) -> Verdict:
        return self.comparison.verdict

    @property
    def max_abs(self) -> float:
        return self.comparison.kernel.max_abs

    @property
    def rel_rms(self) -> float:
        return self.comparison.kernel.rel_rms

    @property
    def nonfinite(self) -> int:
        return self.comparison.kernel.nonfinite

    @property
    def rel(self) -> float:
        """max|x - ref| / max|ref|."""
        return _div(self.max_abs, self.scale)

    @property
    def score(self) -> float:
        """Fraction of the bound used, the larger of max-abs and rel-RMSE (> 1: DIVERGED)."""
        return self.comparison.score

    def to_json(self) -> dict[str, Any]:
        return {**self.comparison.to_json(), "scale": json_float(self.scale)}


@dataclass(frozen=True)
class VariantCheck:
    """One variant on one chunk."""

    variant: str
    verdict: Verdict
    outputs: tuple[OutputCheck, ...] = ()
    reason: str = ""
    seconds: float = 0.0  # wall time of the variant's call

    def worst(self, attr: str) -> float:
        return max((getattr(o, attr) for o in self.outputs), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "reason": self.reason, "seconds": round(self.seconds, 4),
                "outputs": [o.to_json() for o in self.outputs]}


@dataclass(frozen=True)
class CaseCheck:
    """Every variant on one chunk, with the chunk's condition number (informational)."""

    case: UTCase
    cond: float
    variants: dict[str, VariantCheck]

    def to_json(self) -> dict[str, Any]:
        return {"config": self.case.to_json(), "cond": json_float(self.cond),
                "variants": {n: v.to_json() for n, v in self.variants.items()}}


@dataclass(frozen=True)
class VariantSummary:
    """One variant over all chunks of one dtype (closed forms: all chunks, dtype float64)."""

    variant: str
    dtype: str
    verdict: Verdict
    cases: int
    failed: int
    unsupported: int
    max_abs: float
    max_rel: float  # max-abs / max|ref|
    rel_rms: float  # the worst rel-RMSE
    score: float  # the largest fraction of a bound used (> 1: DIVERGED)
    cond: float  # worst cond(I + L) over the chunks it ran
    worst_case: Optional[int]  # index of the chunk with the largest score
    seconds: float = 0.0  # total wall time of the variant's calls
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.variant, "dtype": self.dtype, "verdict": self.verdict.value, "cases": self.cases,
                "failed": self.failed, "unsupported": self.unsupported, "max_abs": json_float(self.max_abs),
                "max_rel": json_float(self.max_rel), "rel_rms": json_float(self.rel_rms),
                "score": json_float(self.score),
                "cond": json_float(self.cond), "worst_case": self.worst_case, "seconds": round(self.seconds, 3),
                "reason": self.reason}


@dataclass
class UTResult:
    """A whole ``ut-transform`` run; JSON via :meth:`to_json`."""

    options: dict[str, Any]
    variants: list[Variant]
    cases: list[CaseCheck] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def summaries(self) -> list[VariantSummary]:
        rows = []
        for v in self.variants:
            dtypes = ["float64"] if v.float64 else list(dict.fromkeys(c.case.dtype for c in self.cases))
            for dt in dtypes:
                idx = [i for i, c in enumerate(self.cases) if v.float64 or c.case.dtype == dt]
                rows.append(self._summary(v.name, dt, idx))
        return rows

    def _summary(self, name: str, dtype: str, idx: list[int]) -> VariantSummary:
        checks = [(i, self.cases[i].variants[name]) for i in idx if name in self.cases[i].variants]
        ran = [(i, r) for i, r in checks if r.verdict is not Verdict.UNSUPPORTED]
        failed = [r for _, r in ran if r.verdict.failed]
        worst_i = max(ran, key=lambda ir: ir[1].worst("score"))[0] if ran else None
        reason = next((r.reason for _, r in [*ran, *checks] if r.reason), "")
        return VariantSummary(
            variant=name, dtype=dtype, verdict=worst(r.verdict for _, r in ran) if ran else Verdict.UNSUPPORTED,
            cases=len(ran), failed=len(failed), unsupported=len(checks) - len(ran),
            max_abs=max((r.worst("max_abs") for _, r in ran), default=0.0),
            max_rel=max((r.worst("rel") for _, r in ran), default=0.0),
            rel_rms=max((r.worst("rel_rms") for _, r in ran), default=0.0),
            score=max((r.worst("score") for _, r in ran), default=0.0),
            cond=max((self.cases[i].cond for i, _ in ran), default=0.0), worst_case=worst_i,
            seconds=sum(r.seconds for _, r in checks), reason=reason)

    @property
    def failed(self) -> bool:
        """Any variant other than closed(-) DIVERGED, was NONFINITE or raised."""
        return any(s.verdict.failed for s in self.summaries() if s.variant != MINUS)

    def correct_sign(self) -> Optional[str]:
        """'+' or '-' when exactly one closed form matches the recursion on every chunk, else None."""
        verdicts = {s.variant: s.verdict for s in self.summaries() if s.variant in (PLUS, MINUS) and s.cases}
        if len(verdicts) < 2 or (verdicts[PLUS] is Verdict.OK) == (verdicts[MINUS] is Verdict.OK):
            return None
        return "+" if verdicts[PLUS] is Verdict.OK else "-"

    def conclusion(self) -> str:
        """One line naming the correct sign and the implementations' verdicts."""
        by = {(s.variant, s.dtype): s for s in self.summaries()}
        plus, minus = by.get((PLUS, "float64")), by.get((MINUS, "float64"))
        sign = self.correct_sign()
        if sign == "+":
            head = (f"correct sign: +, A_inv = (I + A)^-1 matches the recursion (rel. error {_g(plus.max_rel)}); "
                    f"the GDN paper's (I - A)^-1 is off by up to {_g(minus.max_rel)}")
        elif sign == "-":
            head = "correct sign: -, (I - A)^-1 matches the recursion and (I + A)^-1 does not (reference broken?)"
        else:
            head = "sign undetermined on these chunks (both or neither closed form match the recursion)"
        impl = [f"{s.variant} {s.dtype} {s.verdict.value}" for s in by.values() if s.variant not in (PLUS, MINUS)]
        return head + ("; " + ", ".join(impl) if impl else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": "fla-check", "version": __version__, "kind": "ut-transform", "options": self.options,
            "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
            "verdict": "FAIL" if self.failed else "OK", "correct_sign": self.correct_sign(),
            "conclusion": self.conclusion(),
            "tolerance": TOLERANCE_RULE,
            "variants": {v.name: v.description for v in self.variants},
            "arithmetic": {v.name: {k: a for k, a in v.arithmetic.to_json().items() if k in ("store", "dot", "inverse")}
                           for v in self.variants},
            "summary": [s.to_json() for s in self.summaries()],
            "cases": [c.to_json() for c in self.cases],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "UTResult":
        """The result a ut-transform report holds, for rendering: its variants keep their names,
        descriptions and declared arithmetic but cannot run again."""
        float64 = {s["variant"] for s in d.get("summary", []) if s["dtype"] == "float64"}
        declared = d.get("arithmetic", {})
        variants = [Variant(name, text, _not_rerunnable, replace(FP32_BLOCKED, **declared.get(name, {})),
                            float64=name in float64) for name, text in d.get("variants", {}).items()]
        cases = [CaseCheck(UTCase.from_json(c["config"]), float(c["cond"]), {
            n: VariantCheck(n, Verdict(v["verdict"]),
                            tuple(OutputCheck(Comparison.from_json(o), float(o["scale"])) for o in v.get("outputs", [])),
                            v.get("reason", ""), float(v.get("seconds", 0.0)))
            for n, v in c.get("variants", {}).items()}) for c in d.get("cases", [])]
        return cls(dict(d.get("options", {})), variants, cases, float(d.get("seconds", 0.0)),
                   bool(d.get("interrupted", False)))


def _not_rerunnable(x: UTInputs, chunk_size: int) -> Any:
    raise VariantUnsupported("a variant read back from a report cannot run")


def _div(x: float, bound: float) -> float:
    if x == 0:
        return 0.0
    return math.inf if bound <= 0 or math.isinf(x) else x / bound


def _g(x: float) -> str:
    return f"{x:.1e}"


# -- one chunk ---------------------------------------------------------------------------------
def check_chunk(case: UTCase, variants: Sequence[Variant], device: str = "cpu", *,
                interpreter: bool = True) -> CaseCheck:
    """Run every variant on `case` and judge A_inv, w, u against the float64 recursion, with
    the emulated baseline of each variant's declared arithmetic (one emulation per declaration)."""
    x = build_inputs(case, device)
    cpu = UTInputs(*(None if t is None else t.cpu() for t in (x.k, x.v, x.beta, x.g)))
    refs, L = ground_truth(cpu, case.chunk_size)
    scales: dict[Arithmetic, dict[str, Metrics]] = {}

    def baseline(arith: Arithmetic) -> dict[str, Metrics]:
        if arith not in scales:
            scales[arith] = baseline_scales(case, cpu, arith, refs)
        return scales[arith]

    out = {v.name: _check_variant(v, case, x, refs, baseline, interpreter) for v in variants}
    return CaseCheck(case, condition(L), out)


def _check_variant(v: Variant, case: UTCase, x: UTInputs, refs: dict[str, Tensor],
                   baseline: Callable[[Arithmetic], dict[str, Metrics]], interpreter: bool) -> VariantCheck:
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # exp/0*inf of the discarded upper triangle (interpreter)
            warnings.filterwarnings("ignore", message="(overflow|invalid value) encountered",
                                    category=RuntimeWarning)
            got = v.run(x, case.chunk_size)
    except VariantUnsupported as exc:
        return VariantCheck(v.name, Verdict.UNSUPPORTED, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a variant that raises is a result, not a crash
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if v.external and interpreter:
            reason = f"raised under the Triton interpreter: {reason}"
            return VariantCheck(v.name, Verdict.UNSUPPORTED, reason=reason)
        return VariantCheck(v.name, Verdict.ERROR, reason=reason)
    seconds = time.perf_counter() - start
    scales = baseline(v.declared(case.chunk_size))
    checks = []
    for name, y in zip(OUTPUT_NAMES, got):
        ref = refs[name]
        comp = compare(name, y.detach().cpu(), ref, scales[name], steps=case.T)
        checks.append(OutputCheck(comp, ref.abs().max().item() if ref.numel() else 0.0))
    return VariantCheck(v.name, worst(c.verdict for c in checks), tuple(checks), seconds=seconds)


# -- drawing and the run -----------------------------------------------------------------------
def draw_cases(chunk_sizes: Sequence[int], dtypes: Sequence[str], gated: bool, examples: int,
               seed: int = 0) -> list[UTCase]:
    """`examples` chunks per chunk size and dtype (rounded up to cover every regime at least
    once). Hypothesis draws T, H, K, V and the tensor seed of each, reproducibly from `seed`;
    the regimes are assigned round-robin, so every regime gets its share."""
    regs = regimes(gated)
    n = len(regs) * max(1, math.ceil(examples / len(regs)))
    cases: list[UTCase] = []
    for cs in chunk_sizes:
        for dt in dtypes:
            drawn: list[dict] = []

            @settings(max_examples=n, deadline=None, derandomize=False, database=None,
                      phases=(Phase.generate,), suppress_health_check=list(HealthCheck),
                      verbosity=Verbosity.quiet)
            @given(free_params(cs))
            def collect(p: dict) -> None:
                drawn.append(p)

            with only_seeded_draws():
                hypothesis.seed(zlib.crc32(f"{seed}:{cs}:{dt}:{gated}".encode()))(collect)()
            for i, p in enumerate(drawn[:n]):
                reg = regs[i % len(regs)]
                cases.append(UTCase(cs, dt, beta_max=reg.beta_max, keys=reg.keys, decay=reg.decay, **p))
    return list(dict.fromkeys(cases))


def check_ut(chunk_sizes: Sequence[int] = (16, 32, 64), *, gated: bool = False,
             dtypes: Optional[Sequence[str]] = None, examples: int = DEFAULT_EXAMPLES, seed: int = 0,
             variants: Optional[Sequence[Variant]] = None, device: Optional[str] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> UTResult:
    """Draw the chunks and run every variant on each; `progress(done, total)` after each chunk.
    Ctrl-C returns the chunks done so far (``interrupted=True``)."""
    from fla_check.backend import get_backend

    backend = get_backend(device)
    if dtypes is None:
        dtypes = tuple(d for d, t in (("float32", torch.float32), ("float16", torch.float16),
                                      ("bfloat16", torch.bfloat16)) if backend.dtype_unsupported_reason(t) is None)
    variants = list(default_variants() if variants is None else variants)
    cases = draw_cases(chunk_sizes, dtypes, gated, examples, seed)
    options = {"chunk_sizes": list(chunk_sizes), "gated": gated, "dtypes": list(dtypes), "examples": examples,
               "seed": seed, "device": backend.device, "backend": backend.describe()}
    result = UTResult(options, variants)
    start = time.perf_counter()
    try:
        for case in cases:
            result.cases.append(check_chunk(case, variants, backend.device, interpreter=backend.interpreter))
            if progress:
                progress(len(result.cases), len(cases))
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = time.perf_counter() - start
    return result
