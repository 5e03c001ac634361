"""Run cases through an op's modes and judge them: the engine behind ``fla-check run``.

Public API (the CLI, the pytest plugin, the gate and the selftest build on it):

- :func:`check_case` runs one :class:`~fla_check.cases.CaseConfig` through the float64
  reference, the same-dtype baseline and every requested mode, and returns a
  :class:`CaseResult` (per-mode :class:`ModeResult`, pairwise :class:`PairResult`).
- :func:`search` (in :mod:`fla_check.search`) drives hypothesis over a configuration space.

Semantics of one case:

- reference: :func:`fla_check.references.reference` (float64) on the SAME inputs the kernels
  get; a mask-packed case is run with the filled gate as is (no ``reset_mask``), so the
  reference applies the fill literally and the verdict is about the kernel's arithmetic.
- baseline: per mode, the error of its declared arithmetic (``ModeSpec.arithmetic``) on the same
  inputs, sampled by :mod:`fla_check.verdict.baselines` (one emulation per distinct declaration).
- determinism (``repeat``, ``FLA_CHECK_REPEAT``: off by default until calibrated on a GPU, or
  ``bucket``: the first case of each compile bucket, or ``all``): the mode runs twice on the same
  inputs; outputs or gradients that are not bitwise equal -> NONDETERMINISTIC (a failure, below
  DIVERGED in severity) with the largest difference;
- isolation (``isolation=``, :mod:`fla_check.engine.isolation`; in-process by default here, a
  worker process in ``fla-check run``): a call that kills the worker -> CRASHED (signal or exit
  code, the worker's last stderr lines), one past the case timeout -> TIMEOUT; the reference and
  the judge stay in this process;
- a mode that raises -> ERROR (traceback kept); wrong output shape or a missing final state ->
  ERROR (a verdict, not a crash); a mode that cannot run the case (its capabilities, or bf16
  on the Triton interpreter) -> UNSUPPORTED with the reason.
- named outputs ``o`` and ``ht`` (the final state) are compared with the verdict rule of
  :mod:`fla_check.compare`; ``backward=True`` adds the gradients ``dq, dk, dv, dg/dbeta, dh0``
  of ``<o, do> + <ht, dht>`` (upstream drawn from the case seed, fresh leaves per pass: see
  :mod:`fla_check.gradients`), judged with ``a = 3``; modes without backward are UNSUPPORTED.
"""
from __future__ import annotations

import functools
import itertools
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from fla_check.backend import Backend, get_backend
from fla_check import gradients
from fla_check.cases import CaseConfig, CaseInputs, build_case
from fla_check.compare import Agreement, Comparison, Metrics, Verdict, agreement, compare, json_float, worst
from fla_check.engine.call import call_mode
from fla_check.engine.isolation import Isolation, NotPortable, RemoteError, WorkerFailure, call_isolated
from fla_check.localize import Localization, localize_output, localize_state
from fla_check.ops import ModeSpec, OpSpec, get_mode, get_op
from fla_check.references import reference
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.baselines import baseline_samples, noise_scales, sample_seed

ModeLike = Union[str, ModeSpec]
OpLike = Union[str, OpSpec]
STATE_OUTPUTS = frozenset({"ht", "dh0"})  # outputs shaped [N,H,K,V]; the others are [B,T,H,*]
REPEAT_ENV = "FLA_CHECK_REPEAT"
REPEAT_POLICIES = ("off", "bucket", "all")
_REPEATED: set[tuple] = set()  # compile buckets already run twice in this process (policy "bucket")


class RepeatPolicyError(ValueError):
    """An unknown determinism-check policy."""


def mode_label(mode: ModeSpec) -> str:
    """How a mode is named in reports: bare for built-in modes, 'provider:name' otherwise."""
    return mode.name if mode.provider == "builtin" else mode.qualified


def resolve_op(op: OpLike) -> OpSpec:
    return op if isinstance(op, OpSpec) else get_op(op)


def resolve_modes(op: OpSpec, modes: Sequence[ModeLike]) -> list[ModeSpec]:
    """ModeSpecs for names ('chunk', 'fla:chunk') or ModeSpecs, in the given order."""
    return [m if isinstance(m, ModeSpec) else get_mode(op, m) for m in modes]


# -- results ---------------------------------------------------------------------------------
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
    stderr: str = ""  # CRASHED / TIMEOUT: the last lines the worker process wrote

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
        return {"mode": self.mode, "verdict": self.verdict.value, "reason": self.reason,
                "traceback": self.traceback, "seconds": round(self.seconds, 4), "stderr": self.stderr,
                "outputs": [c.to_json() for c in self.outputs],
                "localization": self.localization.to_json() if self.localization else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModeResult":
        loc = d.get("localization")
        return cls(d["mode"], Verdict(d["verdict"]), [Comparison.from_json(c) for c in d.get("outputs", [])],
                   Localization.from_json(loc) if loc else None, d.get("reason", ""),
                   d.get("traceback", ""), float(d.get("seconds", 0.0)), d.get("stderr", ""))


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


@dataclass
class CaseResult:
    """Every requested mode on one case."""

    config: CaseConfig
    modes: dict[str, ModeResult]
    pairs: list[PairResult] = field(default_factory=list)
    baseline: dict[str, Metrics] = field(default_factory=dict)  # the first judged mode's baseline, per output
    seconds: float = 0.0
    backward: bool = False  # gradients were checked too

    @property
    def verdict(self) -> Verdict:
        return worst(r.verdict for r in self.modes.values())

    @property
    def failed_modes(self) -> list[str]:
        return [m for m, r in self.modes.items() if r.verdict.failed]

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


# -- one case --------------------------------------------------------------------------------
def check_case(op: OpLike, modes: Sequence[ModeLike], config: CaseConfig, *,
               device: Optional[str] = None, backward: bool = False, repeat: Optional[str] = None,
               isolation: Union[Isolation, str, None] = None) -> CaseResult:
    """Run `config` through reference, baseline and each of `modes`; judge every output
    (and, with `backward`, every gradient). `repeat`: the determinism check's policy
    (:func:`repeat_wanted`: off / bucket / all; None: ``FLA_CHECK_REPEAT`` or off).
    `isolation`: ``"process"`` or an :class:`Isolation` runs the mode calls in a worker process
    (CRASHED / TIMEOUT verdicts); None or ``"none"``: in this process."""
    start = time.perf_counter()
    isolation = Isolation.of(isolation)
    op_spec = resolve_op(op)
    if config.op != op_spec.name:
        raise ValueError(f"case is for op {config.op!r}, not {op_spec.name!r}")
    specs = resolve_modes(op_spec, modes)
    backend = get_backend(device)
    inputs = build_case(config, backend.device)
    up = gradients.upstream(config, backend.device) if backward else None
    ref = _recurrence_outputs(op_spec, inputs, reference, up, torch.float64)
    judge = _Judge(config, op_spec, inputs, ref, up,
                   gradients.cancellation_scales(inputs, ref, up) if up is not None else {})
    results: dict[str, ModeResult] = {}
    produced: dict[str, dict[str, Tensor]] = {}
    for spec in specs:
        label = mode_label(spec)
        results[label], out = _run_mode(spec, label, config, inputs, judge, backend, repeat, isolation)
        if out is not None:
            produced[label] = out
    pairs = _pairs(produced, ref, results)
    baseline = next(iter(judge.scales.values()), {})
    return CaseResult(config, results, pairs, baseline, time.perf_counter() - start, backward)


def _recurrence_outputs(op: OpSpec, inputs: CaseInputs, fn: Callable, up: Optional[gradients.Upstream],
                        dtype: Optional[torch.dtype] = None) -> dict[str, Tensor]:
    """Named outputs of the reference/baseline (fill applied literally: no reset_mask);
    with upstream gradients `up`, the gradients too (leaves cast to `dtype` when given)."""
    if up is not None:
        return gradients.recurrence_outputs(op, inputs, up, fn, dtype)
    o, ht = fn(op.step, *inputs.tensors(), initial_state=inputs.initial_state,
               output_final_state=True, cu_seqlens=inputs.cu_seqlens)
    return {"o": o, "ht": ht}


def unsupported_reason(spec: ModeSpec, config: CaseConfig, backend: Backend,
                       backward: bool = False) -> Optional[str]:
    """Why `spec` cannot run `config` on `backend` (mode capabilities first), or None. The
    backend's bf16 capability only limits modes that run Triton kernels (``spec.triton``)."""
    reason = spec.unsupported_reason(dtype=config.torch_dtype, varlen=config.varlen,
                                     initial_state=config.initial_state, backward=backward,
                                     interpreter=backend.interpreter)
    return reason or backend.dtype_unsupported_reason(config.torch_dtype, triton=spec.triton)


@dataclass
class _Judge:
    """The reference outputs of one case, and how to judge a mode's outputs against them."""

    config: CaseConfig
    op: OpSpec
    inputs: CaseInputs
    ref: dict[str, Tensor]
    up: Optional[gradients.Upstream] = None  # upstream gradients (backward cases)
    cancel: dict[str, float] = field(default_factory=dict)  # cancelling-sum scales (dg)
    scales: dict[Arithmetic, dict[str, Metrics]] = field(default_factory=dict)  # baselines, per declaration

    def baseline(self, arith: Arithmetic) -> dict[str, Metrics]:
        """The sampled error of `arith` on this case, per output (computed once per declaration)."""
        if arith not in self.scales:
            c = self.config
            samples = baseline_samples(self.op, arith, self.inputs, c.torch_dtype, sample_seed(c.seed, arith),
                                       up=self.up, exact=self.ref)
            self.scales[arith] = noise_scales(samples, self.ref)
        return self.scales[arith]

    def compare(self, name: str, kernel: Tensor, arith: Arithmetic) -> Comparison:
        c = self.config
        steps = c.max_segment_len() if c.varlen else c.T
        return compare(name, kernel, self.ref[name], self.baseline(arith)[name], steps=steps,
                       backward=name in gradients.GRADIENTS, cancel_scale=self.cancel.get(name, 0.0))


def _run_mode(spec: ModeSpec, label: str, config: CaseConfig, inputs: CaseInputs, judge: _Judge,
              backend: Backend, repeat: Optional[str] = None,
              isolation: Isolation = Isolation()) -> tuple[ModeResult, Optional[dict[str, Tensor]]]:
    reason = unsupported_reason(spec, config, backend, backward=judge.up is not None)
    if reason:
        return ModeResult(label, Verdict.UNSUPPORTED, reason=reason), None
    start = time.perf_counter()
    again = functools.partial(_invoke, spec, judge.op.name, inputs, judge.up, backend, isolation)
    try:
        raw, grads, seconds = again()
    except WorkerFailure as exc:
        return ModeResult(label, exc.verdict, reason=exc.reason, stderr=exc.stderr,
                          seconds=time.perf_counter() - start), None
    except Exception as exc:  # noqa: BLE001 - a raising kernel is a verdict
        return ModeResult(label, Verdict.ERROR, reason=_summary(exc), traceback=_traceback(exc),
                          seconds=time.perf_counter() - start), None
    out, problem = _named_outputs(raw, judge.ref, grads)
    if problem:
        return ModeResult(label, Verdict.ERROR, reason=problem, seconds=seconds), None
    comps = [judge.compare(name, out[name], spec.arithmetic) for name in judge.ref]
    verdict = worst(c.verdict for c in comps)
    loc = _localize(comps, out, judge.ref, config) if verdict.failed else None
    result = ModeResult(label, verdict, comps, loc, seconds=seconds)
    if repeat_wanted(spec, config, judge.up is not None, repeat):
        _check_repeat(result, again, out, judge)
    return result, out


def _invoke(spec: ModeSpec, op: str, inputs: CaseInputs, up: Optional[gradients.Upstream], backend: Backend,
            isolation: Isolation) -> tuple[Any, dict[str, Optional[Tensor]], float]:
    """One call of a mode on fresh copies of the case's inputs (and its gradients with `up`):
    (raw, grads, seconds), in the worker process when isolated and the worker can load the mode."""
    if isolation.isolated:
        try:
            return call_isolated(spec, op, inputs, up, backend.device, isolation.case_timeout)
        except NotPortable:
            pass  # a mode only this process can load (see engine.isolation.in_process_modes)
    start = time.perf_counter()
    raw, grads = call_mode(spec.load(), inputs, up, backend.device)
    return raw, grads, time.perf_counter() - start


def _summary(exc: BaseException) -> str:
    return exc.summary if isinstance(exc, RemoteError) else f"{type(exc).__name__}: {exc}"


def _traceback(exc: BaseException) -> str:
    return exc.traceback if isinstance(exc, RemoteError) else traceback.format_exc()


def _check_repeat(result: ModeResult, again: Callable[[], tuple], first: dict[str, Tensor], judge: _Judge) -> None:
    """Run the mode again on the same inputs: any output or gradient that is not bitwise equal
    (NaN equal to NaN) makes an otherwise passing result NONDETERMINISTIC."""
    try:
        raw, grads, _ = again()
    except WorkerFailure as exc:  # the second call killed the worker
        result.verdict, result.reason, result.stderr = exc.verdict, f"second call: {exc.reason}", exc.stderr
        return
    except Exception as exc:  # noqa: BLE001 - a kernel that raises on its second call
        result.verdict, result.reason = Verdict.ERROR, f"second call raised {_summary(exc)}"
        result.traceback = _traceback(exc)
        return
    second, problem = _named_outputs(raw, judge.ref, grads)
    if problem:
        result.verdict, result.reason = Verdict.ERROR, f"second call: {problem}"
        return
    for name in judge.ref:
        a, b = first[name].detach(), second[name].detach()
        if not bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all()):
            diff = (a.double() - b.double()).abs().nan_to_num(nan=math.inf).max().item()
            result.verdict = worst([result.verdict, Verdict.NONDETERMINISTIC])
            result.reason = result.reason or f"run twice on the same inputs, {name} differs by up to {diff:.3g}"
            return


def repeat_wanted(spec: ModeSpec, config: CaseConfig, backward: bool, policy: Optional[str] = None) -> bool:
    """Whether to run `spec` twice on `config` (the determinism check), by policy: ``off``,
    ``all`` cases, or ``bucket``: the first case of each compile bucket (mode, dtype, H, K, V,
    varlen, initial state, backward) in this process. Default: ``FLA_CHECK_REPEAT`` or off."""
    policy = policy or os.environ.get(REPEAT_ENV, "off")
    if policy not in REPEAT_POLICIES:
        raise RepeatPolicyError(f"{REPEAT_ENV}={policy!r}; valid: {', '.join(REPEAT_POLICIES)}")
    if policy != "bucket":
        return policy == "all"
    key = (spec.qualified, config.dtype, config.H, config.K, config.V, config.varlen, config.initial_state, backward)
    if key in _REPEATED:
        return False
    _REPEATED.add(key)
    return True


def _named_outputs(raw: Any, ref: dict[str, Tensor],
                   grads: Optional[dict[str, Optional[Tensor]]] = None) -> tuple[dict[str, Tensor], str]:
    """Check a mode's return value (and gradients) against the reference shapes;
    ('', problem) on mismatch."""
    if not isinstance(raw, (tuple, list)) or len(raw) != 2:
        return {}, f"expected (o, final_state), got {type(raw).__name__}"
    out = {**dict(zip(("o", "ht"), raw)), **(grads or {})}
    for name, want in ref.items():
        got = out.get(name)
        if not isinstance(got, Tensor):
            what = ("no final state" if name == "ht" else f"no gradient {name}" if name in gradients.GRADIENTS
                    else f"no tensor for {name}")
            return {}, f"wrong output: {what} (got {type(got).__name__})"
        if tuple(got.shape) != tuple(want.shape):
            return {}, f"wrong output shape: {name} is {tuple(got.shape)}, expected {tuple(want.shape)}"
    return out, ""


def _localize(comps: list[Comparison], out: dict[str, Tensor], ref: dict[str, Tensor],
              config: CaseConfig) -> Optional[Localization]:
    """Locate the first failing output (``o`` before states)."""
    failing = [c for c in comps if c.verdict.failed]
    failing.sort(key=lambda c: c.name in STATE_OUTPUTS)
    cmp = failing[0]
    k, r = out[cmp.name], ref[cmp.name]
    if k.dim() == 3:  # per-head [B,T,H] gradients (dbeta, Gated DeltaNet's dg)
        k, r = k[..., None], r[..., None]
    if cmp.name in STATE_OUTPUTS:
        return localize_state(cmp.name, k, r)
    loc = localize_output(cmp.name, k, r, cmp.bound_max_abs, config)
    if loc is None:  # failed on rel-RMSE only: use the RMS budget as an elementwise tolerance
        rms_ref = r.double().square().mean().sqrt().item()
        loc = localize_output(cmp.name, k, r, cmp.bound_rel_rms * rms_ref, config)
    return loc


def _pairs(produced: dict[str, dict[str, Tensor]], ref: dict[str, Tensor],
           results: dict[str, ModeResult]) -> list[PairResult]:
    pairs = []
    for a, b in itertools.combinations(produced, 2):
        bounds_a = {c.name: c.bound_max_abs for c in results[a].outputs}
        bounds_b = {c.name: c.bound_max_abs for c in results[b].outputs}
        pairs.append(PairResult(a, b, [
            agreement(name, produced[a][name], produced[b][name], ref[name], bounds_a[name], bounds_b[name])
            for name in ref
        ]))
    return pairs


def __getattr__(name: str):
    """`search`, `SearchResult`, `ProgressEvent` live in fla_check.search (re-exported lazily)."""
    if name in ("search", "SearchResult", "ProgressEvent", "ModeSummary"):
        from fla_check import search as _search

        return getattr(_search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
