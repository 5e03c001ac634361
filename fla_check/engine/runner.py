"""Run cases through an op's modes and judge them: the engine behind ``fla-check run``.

Public API (the CLI, the pytest plugin, the gate and the selftest build on it):

- :func:`check_case` runs one :class:`~fla_check.cases.CaseConfig` through the float64
  reference, the same-dtype baseline and every requested mode, and returns a
  :class:`CaseResult` (per-mode :class:`ModeResult`, pairwise :class:`PairResult`).
- :func:`search` (in :mod:`fla_check.engine.search`) drives hypothesis over a configuration space.

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
- invariance (``invariance``: checks of :mod:`fla_check.engine.invariance`, default
  ``FLA_CHECK_INVARIANCE`` or layout; ``invariance_scope``: bucket (default) or all): a mode
  that passes is run again on metamorphic variants of the case (split with the state handed over,
  packed / one by one, other rows around it, non-contiguous views), each judged against the
  reference with the same baseline and bounds; a variant that fails -> NOT_INVARIANT (below
  DIVERGED in severity), the reason naming the check and the variant;
- a mode that raises -> ERROR (traceback kept); wrong output shape or a missing final state ->
  ERROR (a verdict, not a crash); a mode that cannot run the case (its capabilities, or bf16
  on the Triton interpreter) -> UNSUPPORTED with the reason.
- named outputs ``o`` and ``ht`` (the final state) are compared with the verdict rule of
  :mod:`fla_check.verdict.compare`; ``backward=True`` adds the gradients ``dq, dk, dv, dg/dbeta, dh0``
  of ``<o, do> + <ht, dht>`` (upstream drawn from the case seed, fresh leaves per pass: see
  :mod:`fla_check.engine.gradients`), judged with ``a = 3``; modes without backward are UNSUPPORTED.
"""
from __future__ import annotations

import itertools
import math
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from fla_check.backend import Backend, get_backend
from fla_check.cases import CaseConfig, CaseInputs, build_case
from fla_check.engine import gradients, invariance as invariance_checks
from fla_check.errors import RepeatPolicyError
from fla_check.ops import ModeSpec, OpSpec, get_mode, get_op
from fla_check.references import reference
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.baselines import baseline_samples, noise_scales, sample_seed
from fla_check.verdict.compare import Comparison, Metrics, Verdict, agreement, compare, worst
from fla_check.verdict.localize import Localization, localize_output, localize_state
from fla_check.verdict.results import CaseResult, ModeResult, PairResult  # noqa: F401 (CaseResult: re-exported)

ModeLike = Union[str, ModeSpec]
OpLike = Union[str, OpSpec]
STATE_OUTPUTS = frozenset({"ht", "dh0"})  # outputs shaped [N,H,K,V]; the others are [B,T,H,*]
REPEAT_ENV = "FLA_CHECK_REPEAT"
REPEAT_POLICIES = ("off", "bucket", "all")
_REPEATED: set[tuple] = set()  # compile buckets already run twice in this process (policy "bucket")


def mode_label(mode: ModeSpec) -> str:
    """How a mode is named in reports: bare for built-in modes, 'provider:name' otherwise."""
    return mode.name if mode.provider == "builtin" else mode.qualified


def resolve_op(op: OpLike) -> OpSpec:
    return op if isinstance(op, OpSpec) else get_op(op)


def resolve_modes(op: OpSpec, modes: Sequence[ModeLike]) -> list[ModeSpec]:
    """ModeSpecs for names ('chunk', 'fla:chunk') or ModeSpecs, in the given order."""
    return [m if isinstance(m, ModeSpec) else get_mode(op, m) for m in modes]


# -- results ---------------------------------------------------------------------------------
# -- one case --------------------------------------------------------------------------------
def check_case(op: OpLike, modes: Sequence[ModeLike], config: CaseConfig, *,
               device: Optional[str] = None, backward: bool = False, repeat: Optional[str] = None,
               invariance: Optional[Union[str, Sequence[str]]] = None,
               invariance_scope: Optional[str] = None) -> CaseResult:
    """Run `config` through reference, baseline and each of `modes`; judge every output
    (and, with `backward`, every gradient). `repeat`: the determinism check's policy
    (:func:`repeat_wanted`: off / bucket / all; None: ``FLA_CHECK_REPEAT`` or off).
    `invariance`: the metamorphic checks ('split,layout', 'all', 'none' or a sequence of names;
    None: ``FLA_CHECK_INVARIANCE`` or layout), `invariance_scope`: bucket or all."""
    start = time.perf_counter()
    checks = invariance_checks.parse_checks(
        invariance if invariance is None or isinstance(invariance, str) else ",".join(invariance) or "none")
    scope = invariance_checks.parse_scope(invariance_scope)
    op_spec = resolve_op(op)
    if config.op != op_spec.name:
        raise ValueError(f"case is for op {config.op!r}, not {op_spec.name!r}")
    specs = resolve_modes(op_spec, modes)
    backend = get_backend(device)
    inputs = build_case(config, backend.device)
    up = gradients.upstream(config, backend.device) if backward else None
    ref = _recurrence_outputs(op_spec, inputs, reference, up, torch.float64)
    judge = _Judge(config, op_spec, inputs, ref, up,
                   gradients.cancellation_scales(inputs, ref, up, op_spec.step) if up is not None else {})
    results: dict[str, ModeResult] = {}
    produced: dict[str, dict[str, Tensor]] = {}
    for spec in specs:
        label = mode_label(spec)
        results[label], out = _run_mode(spec, label, config, inputs, judge, backend, repeat, checks, scope)
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
               output_final_state=True, cu_seqlens=inputs.cu_seqlens, prepare=inputs.prepare)
    return {"o": o, "ht": ht}


def unsupported_reason(spec: ModeSpec, config: CaseConfig, backend: Backend,
                       backward: bool = False) -> Optional[str]:
    """Why `spec` cannot run `config` on `backend` (mode capabilities first), or None. The
    backend's bf16 capability only limits modes that run Triton kernels (``spec.triton``)."""
    reason = spec.unsupported_reason(dtype=config.torch_dtype, varlen=config.varlen,
                                     initial_state=config.initial_state, backward=backward,
                                     interpreter=backend.interpreter, value_ratio=config.value_ratio,
                                     options=config.options)
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
              backend: Backend, repeat: Optional[str] = None, checks: Sequence[str] = (),
              scope: str = "bucket") -> tuple[ModeResult, Optional[dict[str, Tensor]]]:
    reason = unsupported_reason(spec, config, backend, backward=judge.up is not None)
    if reason:
        return ModeResult(label, Verdict.UNSUPPORTED, reason=reason), None
    start = time.perf_counter()
    try:
        fn = spec.load()
        raw, grads = _call(fn, inputs, judge.up, backend)
    except Exception as exc:  # noqa: BLE001 - a raising kernel is a verdict
        return ModeResult(label, Verdict.ERROR, reason=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(), seconds=time.perf_counter() - start), None
    seconds = time.perf_counter() - start
    out, problem = named_outputs(raw, judge.ref, grads)
    if problem:
        return ModeResult(label, Verdict.ERROR, reason=problem, seconds=seconds), None
    comps = [judge.compare(name, out[name], spec.arithmetic) for name in judge.ref]
    verdict = worst(c.verdict for c in comps)
    loc = _localize(comps, out, judge.ref, config) if verdict.failed else None
    result = ModeResult(label, verdict, comps, loc, seconds=seconds)
    if repeat_wanted(spec, config, judge.up is not None, repeat):
        _check_repeat(result, fn, out, inputs, judge, backend)
    if not result.verdict.failed:
        _check_invariance(result, spec, fn, out, config, inputs, judge, backend, checks, scope)
    return result, out


def _check_invariance(result: ModeResult, spec: ModeSpec, fn: Callable, out: dict[str, Tensor], config: CaseConfig,
                      inputs: CaseInputs, judge: _Judge, backend: Backend, checks: Sequence[str], scope: str) -> None:
    """Run the metamorphic checks (:mod:`fla_check.engine.invariance`) of a passing mode; a
    failing variant makes the result NOT_INVARIANT, its reason naming the check."""
    def call(q, k, v, g, beta, h0, cu):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            raw = fn(q, k, v, g=g, beta=beta, scale=None, initial_state=h0, output_final_state=True,
                     cu_seqlens=cu, **inputs.option_kwargs())
        if backend.device == "cuda":
            torch.cuda.synchronize()
        if not isinstance(raw, (tuple, list)) or len(raw) != 2 or not isinstance(raw[1], Tensor):
            raise ValueError(f"expected (o, final_state), got {type(raw).__name__}")
        return raw[0].detach(), raw[1].detach()

    whole = {name: out[name].detach() for name in ("o", "ht")}
    for check in checks:
        if not invariance_checks.wanted(spec.qualified, check, config, scope):
            continue
        found = invariance_checks.run_check(
            check, config, inputs, call, lambda name, t: judge.compare(name, t, spec.arithmetic), whole,
            varlen_ok=spec.varlen, h0_ok=spec.initial_state)
        result.invariance += found
        for r in found:
            if r.verdict.failed:
                result.verdict = worst([result.verdict, r.verdict])
                result.reason = result.reason or r.reason


def _call(fn: Callable, inputs: CaseInputs, up: Optional[gradients.Upstream],
          backend: Backend) -> tuple[Any, dict[str, Optional[Tensor]]]:
    """One call of a mode on fresh copies of the case's inputs (and its gradients with `up`)."""
    with warnings.catch_warnings():  # overflow in discarded lanes is the verdict's business
        warnings.simplefilter("ignore", RuntimeWarning)
        if up is None:
            raw, grads = fn(*inputs.mode_args(), **inputs.mode_kwargs()), {}
        else:
            raw, grads = gradients.mode_outputs(fn, inputs, up)
    if backend.device == "cuda":
        torch.cuda.synchronize()
    return raw, grads


def _check_repeat(result: ModeResult, fn: Callable, first: dict[str, Tensor], inputs: CaseInputs,
                  judge: _Judge, backend: Backend) -> None:
    """Run the mode again on the same inputs: any output or gradient that is not bitwise equal
    (NaN equal to NaN) makes an otherwise passing result NONDETERMINISTIC."""
    try:
        raw, grads = _call(fn, inputs, judge.up, backend)
    except Exception as exc:  # noqa: BLE001 - a kernel that raises on its second call
        result.verdict, result.reason = Verdict.ERROR, f"second call raised {type(exc).__name__}: {exc}"
        result.traceback = traceback.format_exc()
        return
    second, problem = named_outputs(raw, judge.ref, grads)
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
    key = (spec.qualified, config.dtype, config.H, config.HV, config.K, config.V, config.varlen, config.initial_state,
           config.options, backward)
    if key in _REPEATED:
        return False
    _REPEATED.add(key)
    return True


def named_outputs(raw: Any, ref: dict[str, Tensor],
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
