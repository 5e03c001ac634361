"""Engine of ``fla-check ut-transform``: hypothesis-drawn chunks -> per-variant verdicts.

For every chunk (:mod:`fla_check.ut_cases`) the float64 ground truth is the explicit per-row
recursion, never a matrix inverse: ``w`` and ``u`` by :func:`fla_check.references.ut.ut_recursion`
and ``A_inv = (I + L)^-1`` by forward substitution ``t_r = e_r - sum_{i<r} L_ri t_i``
(:func:`inverse_recursion`), with ``L = strictly_lower(diag(beta) K K^T * exp(G_i - G_j))``.
Each variant (:mod:`fla_check.ut_variants`) is judged on A_inv, w and u in its own dtype.

Tolerance rule (per output of one chunk of ``n`` rows, ``s = max|ref|``)::

    allowed = ULPS * cond(I + L) * (n * eps(arithmetic) * gate * s + max(eps(storage) * s, n * tiny(storage)))

a few ulps of the arithmetic per row of the forward substitution plus the rounding to the
storage dtype (its subnormal spacing ``tiny`` included: under strong decay w ~ exp(G) is far
below fp16's normal range), amplified by the 2-norm condition number of ``I + L`` (float64,
worst head of the chunk): the standard normwise bound for a triangular solve. ``gate`` is 1
without decay; gated kernels take exp of differences of fp32 chunk cumsums ``G``, whose
absolute error grows with ``|G|``, so ``gate = 1 + max |G_i| exp(G_i - G_j)`` over the entries
that use it (``i > j`` in L; ``i >= j = 0`` for ``exp(G_i)`` in w). ``eps`` is that of float64 for the closed
forms, fp32 for the kernels' arithmetic, and the input dtype for the outputs fla stores in it.
NaN/Inf where the reference is finite is NONFINITE; above ``allowed`` is DIVERGED. A sign
error is an O(1) relative error, so it is caught on every well-conditioned chunk (cond up to
a few hundred in these regimes); when ``n * eps * gate * cond`` nears 1 the bound says
nothing, and the table's condition column shows it.
"""
from __future__ import annotations

import math
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import hypothesis
import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from torch import Tensor

from fla_check import __version__
from fla_check.compare import Verdict, json_float, measure, worst
from fla_check.ut_cases import UTCase, UTInputs, build_inputs, free_params, regimes
from fla_check.ut_variants import OUTPUT_NAMES, Variant, VariantUnsupported, default_variants

ULPS = 4.0
TOLERANCE_RULE = (f"{ULPS:g} * cond(I + A) * (n * eps(arithmetic) * gate * s + max(eps(storage) * s, "
                  "n * tiny(storage))), s = max|ref|, n = chunk rows, gate = 1 + max |G_i| exp(G_i - G_j)")
DEFAULT_EXAMPLES = 12
MINUS = "closed(-)"  # expected to diverge: it decides the sign, it does not fail a run
PLUS = "closed(+)"


# -- float64 ground truth ----------------------------------------------------------------------
def lower_matrix(x: UTInputs) -> Tensor:
    """[H, n, n] float64 ``strictly_lower(diag(beta) K K^T * exp(G_i - G_j))`` of a one-chunk case."""
    k = x.k[0].double().cpu().transpose(0, 1)  # [H,n,K]
    beta = x.beta[0].double().cpu().transpose(0, 1)  # [H,n]
    L = beta[..., None] * (k @ k.transpose(1, 2))
    if x.g is not None:
        G = x.g[0].double().cpu().transpose(0, 1).cumsum(-1)
        L = L * (G[:, :, None] - G[:, None, :]).tril(-1).exp()
    return L.tril(-1)


def inverse_recursion(L: Tensor) -> Tensor:
    """``(I + L)^-1`` for strictly lower ``L`` [H,n,n] by forward substitution, row by row."""
    H, n, _ = L.shape
    T = torch.zeros_like(L)
    for r in range(n):
        T[:, r, r] = 1.0
        if r:
            T[:, r] -= (L[:, r, :r, None] * T[:, :r]).sum(1)
    return T


def condition(L: Tensor) -> float:
    """2-norm condition number of ``I + L``, worst head (float64)."""
    eye = torch.eye(L.shape[-1], dtype=L.dtype)
    return float(torch.linalg.cond(eye + L).max()) if L.numel() else 1.0


def gate_factor(g: Optional[Tensor]) -> float:
    """``1 + max |G_i| exp(G_i - G_j)`` over i > j (the entries of L) and over i >= j = 0 (w's
    exp(G_i), relative to the largest, exp(G_0)); G = the float64 chunk cumsum of ``g`` [1,n,H]."""
    if g is None or g.numel() == 0:
        return 1.0
    G = g[0].double().cpu().transpose(0, 1).cumsum(-1)  # [H,n]
    G0 = torch.cat([G[:, :1], G], dim=1)  # column 0: w's reference G_0; column j + 1: G_j
    n = G.shape[1]
    lower = torch.ones(n, n + 1, dtype=torch.bool).tril(0)  # i (row of G) > j - 1 (col of G0)
    diff = (G[:, :, None] - G0[:, None, :]).masked_fill(~lower, -math.inf)
    return 1.0 + float((G.abs()[:, :, None] * diff.exp()).max())


def allowed_error(scale: float, n: int, cond: float, arithmetic: torch.dtype, storage: torch.dtype,
                  gate: float = 1.0) -> float:
    """The tolerance rule of the module doc."""
    store = torch.finfo(storage)
    rounding = max(store.eps * scale, n * store.smallest_normal * store.eps)  # ulp, subnormals included
    return ULPS * cond * (n * torch.finfo(arithmetic).eps * gate * scale + rounding)


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputCheck:
    """One output (A_inv, w or u) of one variant on one chunk."""

    name: str
    max_abs: float
    scale: float  # max |reference|
    allowed: float
    nonfinite: int

    @property
    def verdict(self) -> Verdict:
        if self.nonfinite:
            return Verdict.NONFINITE
        return Verdict.OK if self.max_abs <= self.allowed else Verdict.DIVERGED

    @property
    def rel(self) -> float:
        """max|x - ref| / max|ref|."""
        return _div(self.max_abs, self.scale)

    @property
    def score(self) -> float:
        """Fraction of the allowed error used (> 1: DIVERGED)."""
        return _div(self.max_abs, self.allowed)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict.value, "max_abs": json_float(self.max_abs),
                "scale": json_float(self.scale), "allowed": json_float(self.allowed), "nonfinite": self.nonfinite}


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
    """Every variant on one chunk, with the chunk's condition estimate and gate factor."""

    case: UTCase
    cond: float
    variants: dict[str, VariantCheck]
    gate: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"config": self.case.to_json(), "cond": json_float(self.cond), "gate": json_float(self.gate),
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
    max_rel: float
    score: float
    cond: float  # worst cond(I + L) over the chunks it ran
    worst_case: Optional[int]  # index of the chunk with the largest score
    seconds: float = 0.0  # total wall time of the variant's calls
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.variant, "dtype": self.dtype, "verdict": self.verdict.value, "cases": self.cases,
                "failed": self.failed, "unsupported": self.unsupported, "max_abs": json_float(self.max_abs),
                "max_rel": json_float(self.max_rel), "score": json_float(self.score),
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
            "summary": [s.to_json() for s in self.summaries()],
            "cases": [c.to_json() for c in self.cases],
        }


def _div(x: float, bound: float) -> float:
    if x == 0:
        return 0.0
    return math.inf if bound <= 0 or math.isinf(x) else x / bound


def _g(x: float) -> str:
    return f"{x:.1e}"


# -- one chunk ---------------------------------------------------------------------------------
def check_chunk(case: UTCase, variants: Sequence[Variant], device: str = "cpu", *,
                interpreter: bool = True) -> CaseCheck:
    """Run every variant on `case` and judge A_inv, w, u against the float64 recursion."""
    from fla_check.references.ut import ut_recursion

    x = build_inputs(case, device)
    cpu = UTInputs(*(None if t is None else t.cpu() for t in (x.k, x.v, x.beta, x.g)))
    w_ref, u_ref = ut_recursion(cpu.k, cpu.v, cpu.beta, cpu.g, chunk_size=case.chunk_size)
    L = lower_matrix(cpu)
    A_ref = torch.zeros(1, case.T, case.H, case.chunk_size, dtype=torch.float64)
    A_ref[0, :, :, :case.T] = inverse_recursion(L).transpose(0, 1)
    refs = dict(zip(OUTPUT_NAMES, (A_ref, w_ref, u_ref)))
    cond, gate = condition(L), gate_factor(cpu.g)
    out = {v.name: _check_variant(v, case, x, refs, cond, gate, interpreter) for v in variants}
    return CaseCheck(case, cond, out, gate)


def _check_variant(v: Variant, case: UTCase, x: UTInputs, refs: dict[str, Tensor], cond: float, gate: float,
                   interpreter: bool) -> VariantCheck:
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
    arithmetic, storage = v.precision(case.torch_dtype)
    checks = []
    for name, y in zip(OUTPUT_NAMES, got):
        ref = refs[name]
        m = measure(y.detach().cpu(), ref)
        scale = ref.abs().max().item() if ref.numel() else 0.0
        allowed = allowed_error(scale, case.T, cond, arithmetic, storage, gate)
        checks.append(OutputCheck(name, m.max_abs, scale, allowed, m.nonfinite))
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
