"""Run cases through an op's modes and judge them: the engine behind ``fla-check run``.

Public API (the CLI, the pytest plugin, the gate and the selftest build on it):

- :func:`check_case` runs one :class:`~fla_check.cases.CaseConfig` through the float64
  reference, the same-dtype baseline and every requested mode, and returns a
  :class:`CaseResult` (per-mode :class:`ModeResult`, pairwise :class:`PairResult`).
- :func:`check_many` does it for several cases in stages (every mode called on every case, then
  one judgment of all their outputs, then each mode's follow-ups, then all the pairs):
  :func:`check_case` is its one-case form, :func:`fla_check.engine.batched.check_cases` its batched one.
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
- isolation (``isolation=``, :mod:`fla_check.engine.isolation`; in-process by default here, a
  worker process in ``fla-check run``): a call that kills the worker -> CRASHED (signal or exit
  code, the worker's last stderr lines), one past the case timeout -> TIMEOUT; the reference and
  the judge stay in this process (the autotune policy below and the memory checks are applied
  inside the worker);
- memory safety (:mod:`fla_check.engine.memory`, ``memory``: on by default): the mode's empty
  allocations are poisoned with a sentinel NaN, inputs sit in NaN guards, a ``cu_seqlens`` case
  gets padded NaN tokens after ``cu_seqlens[-1]`` (cut off its outputs). An output slot still
  holding the sentinel -> UNWRITTEN (the region named); a NONFINITE result that is finite once
  the guards or padded tokens are finite -> OVERREAD (what was read named);
- invariance (``invariance``: checks of :mod:`fla_check.engine.invariance`, default
  ``FLA_CHECK_INVARIANCE`` or layout; ``invariance_scope``: bucket (default) or all): a mode
  that passes is run again on metamorphic variants of the case (split with the state handed over,
  packed / one by one, other rows around it, non-contiguous views), each judged against the
  reference with the same baseline and bounds; a variant that fails -> NOT_INVARIANT (below
  DIVERGED in severity), the reason naming the check and the variant. The split, packing and
  batch variants' calls take the main call's path (:func:`_invoke`: the worker process when
  isolated, the same autotune policy) without guards or padded tokens (the main call had them),
  under the main call's allocation poisoning (the layout calls too);
  the layout variants are called in this process, since both the worker's and the memory checks'
  input copies are contiguous and would erase the layout under test; a variant that raises,
  crashes or times out is NOT_INVARIANT (the reason names what happened);
- a mode that raises -> ERROR (traceback kept); wrong output shape or a missing final state ->
  ERROR (a verdict, not a crash); a mode that cannot run the case (its capabilities, or bf16
  on the Triton interpreter) -> UNSUPPORTED with the reason.
- named outputs ``o`` and ``ht`` (the final state) are compared with the verdict rule of
  :mod:`fla_check.verdict.compare`; ``backward=True`` adds the gradients ``dq, dk, dv, dg/dbeta, dh0``
  of ``<o, do> + <ht, dht>`` (upstream drawn from the case seed, fresh leaves per pass: see
  :mod:`fla_check.engine.gradients`), judged with ``a = 3``; modes without backward are UNSUPPORTED.
- autotune configs (``configs``, :mod:`fla_check.engine.configs`): every call runs under the
  policy (default ``first``: each triton.autotune kernel pinned to its first config); with
  ``all`` / ``sample:N`` the mode is re-run under other configs of each kernel it launched,
  each judged like the first; the worst one decides the verdict and is named in
  ``ModeResult.config`` (``KERNEL:INDEX``), every one is listed in ``ModeResult.configs``.
"""
from __future__ import annotations

import dataclasses
import functools
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
from fla_check.engine.call import call_mode
from fla_check.engine.configs import FIRST, INTERPRETER_NOTE, ConfigPolicy, TunedKernel, sweep_plan
from fla_check.engine.isolation import (Isolation, NotPortable, RemoteError, WorkerFailure, call_isolated,
                                        in_process_modes)
from fla_check.engine.out_of_memory import harness_stage, release
from fla_check.engine.memory import (MemoryChecks, describe_unwritten, finite_variants, is_sentinel,
                                     poisoned_allocations)
from fla_check.errors import CaseError, ConfigPolicyError, RepeatPolicyError
from fla_check.ops import ModeSpec, OpSpec, get_mode, get_op
from fla_check.references import reference
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.baselines import Deviations, PendingScales, sample_groups, sample_seed
from fla_check.verdict.compare import (Cancellation, Comparison, Judged, Metrics, Verdict, agreements, judged,
                                       metric_terms, worst)
from fla_check.verdict.host import to_host
from fla_check.verdict.reductions import OUTPUT_TERMS, ReferenceTerms
from fla_check.verdict.localize import Localization, localize_output, localize_state
from fla_check.verdict.results import (  # noqa: F401 (CaseResult: re-exported)
    CaseResult, ConfigResult, ModeResult, PairResult,
)

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
               configs: Optional[ConfigPolicy] = None,
               isolation: Union[Isolation, str, None] = None, memory: Optional[MemoryChecks] = None,
               invariance: Optional[Union[str, Sequence[str]]] = None,
               invariance_scope: Optional[str] = None, built: Optional["BuiltCase"] = None) -> CaseResult:
    """Run `config` through reference, baseline and each of `modes`; judge every output
    (and, with `backward`, every gradient). `repeat`: the determinism check's policy
    (:func:`repeat_wanted`: off / bucket / all; None: ``FLA_CHECK_REPEAT`` or off).
    `configs`: the autotune-config policy (default: first configs).
    `isolation`: ``"process"`` or an :class:`Isolation` runs the mode calls in a worker process
    (CRASHED / TIMEOUT verdicts); None or ``"none"``: in this process.
    `memory`: the memory checks each mode call runs under (None: all of them;
    ``MemoryChecks.off()``: a plain call).
    `invariance`: the metamorphic checks ('split,layout', 'all', 'none' or a sequence of names;
    None: ``FLA_CHECK_INVARIANCE`` or layout), `invariance_scope`: bucket or all.
    `built`: the case's inputs and float64 reference computed ahead (forward cases only:
    :func:`fla_check.engine.batched.check_cases`)."""
    return check_many(op, modes, [config], device=device, backward=backward, repeat=repeat, configs=configs,
                      isolation=isolation, memory=memory, invariance=invariance, invariance_scope=invariance_scope,
                      built=[built])[0]


def check_many(op: OpLike, modes: Sequence[ModeLike], cases: Sequence[CaseConfig], *,
               device: Optional[str] = None, backward: bool = False, repeat: Optional[str] = None,
               configs: Optional[ConfigPolicy] = None,
               isolation: Union[Isolation, str, None] = None, memory: Optional[MemoryChecks] = None,
               invariance: Optional[Union[str, Sequence[str]]] = None, invariance_scope: Optional[str] = None,
               built: Optional[Sequence[Optional["BuiltCase"]]] = None,
               baselines: Optional[Callable[[], Sequence[dict[Arithmetic, Deviations]]]] = None) -> list[CaseResult]:
    """:func:`check_case` of each of `cases` (same keywords; `built`: one or None per case), in
    stages: every case through every mode (`baselines`, when given, is then called for each
    forward case's baselines computed meanwhile, as :attr:`BuiltCase.baselines`:
    :func:`fla_check.engine.batched.baselines_behind`), then every output of every case judged in one set of
    stacked reductions and one host transfer, then each mode's follow-ups (localization, the
    memory diagnosis, repeats, config sweeps, invariance) case by case, then the pairwise
    agreements of all cases at once. The verdicts and numbers are those of one case at a time
    (sums to float64 rounding)."""
    if not cases:
        return []
    built = list(built) if built is not None else [None] * len(cases)
    if len(built) != len(cases):
        raise ValueError(f"{len(built)} cases built ahead for {len(cases)} cases")
    if backward and any(b is not None for b in built):
        raise ValueError("a case built ahead has no reference gradients: backward cases build their own")
    isolation = Isolation.of(isolation)
    checks = invariance_checks.parse_checks(
        invariance if invariance is None or isinstance(invariance, str) else ",".join(invariance) or "none")
    scope = invariance_checks.parse_scope(invariance_scope)
    op_spec = resolve_op(op)
    foreign = [c for c in cases if c.op != op_spec.name]
    if foreign:
        raise CaseError(f"case is for op {foreign[0].op!r}, not {op_spec.name!r}")
    specs = resolve_modes(op_spec, modes)
    backend = get_backend(device)
    policy = configs or FIRST
    if policy.kind == "picked" and backend.interpreter:
        raise ConfigPolicyError("--configs picked needs a GPU: the Triton interpreter cannot time configs "
                                "(autotuning benchmarks each one)")
    refs = ReferenceTerms()  # the references' reductions, shared by the judges of all the cases
    runs = [_called(op_spec, specs, config, ahead, backward, refs, memory or MemoryChecks(), backend, policy,
                    isolation) for config, ahead in zip(cases, built)]
    if baselines is not None:
        meanwhile = baselines()
        if len(meanwhile) != len(runs):
            raise ValueError(f"{len(meanwhile)} cases' baselines for {len(runs)} cases")
        for run, ready in zip(runs, meanwhile):
            run.judge.ready.update(ready)
    joint = time.perf_counter()
    calls = [call for run in runs for call in run.calls]
    with harness_stage(f"judging the modes' outputs of {len(runs)} cases" if len(runs) > 1 else
                       "judging the modes' outputs", cases[0], backend.device):
        judged_together([(call.judge, call.out, call.arith, call.poisoned) for call in calls], refs,
                        [call.finish for call in calls])
    shared = (time.perf_counter() - joint) / max(1, len(runs))
    for run in runs:
        start = time.perf_counter()
        with harness_stage("judging the modes' outputs", run.config, backend.device):
            for call in run.calls:
                run.results[call.label] = _followed_up(call, run, backend, repeat, policy, isolation, checks, scope)
        unknown = [name for name, _ in policy.force if name not in run.kernels]
        if unknown and any(r.verdict is not Verdict.UNSUPPORTED for r in run.results.values()):
            raise ConfigPolicyError(f"--config {', '.join(unknown)}: no mode launched such an autotuned kernel "
                                    f"(launched: {', '.join(sorted(run.kernels)) or 'none'})")
        run.seconds += time.perf_counter() - start + shared
    joint = time.perf_counter()
    with harness_stage("comparing the modes pairwise", cases[0], backend.device):
        pairs = _pairs([(run.produced, run.judge.ref, run.results) for run in runs], refs)
    shared = (time.perf_counter() - joint) / max(1, len(runs))
    results = []
    for run, found in zip(runs, pairs):
        ordered = {mode_label(spec): run.results[mode_label(spec)] for spec in specs}
        baseline = next(iter(run.judge.scales.values()), {})
        results.append(CaseResult(run.config, ordered, found, baseline, run.seconds + shared, backward))
    return results


@dataclass(frozen=True)
class BuiltCase:
    """A forward case's inputs and float64 reference outputs ({"o", "ht"}), computed ahead; the
    readout terms of its recurrent fp32 baselines (:func:`~fla_check.verdict.baselines.readout_inputs`)
    and its baselines' deviations per declaration, where they were computed with it."""

    inputs: CaseInputs
    ref: dict[str, Tensor]
    readout: Optional[Tensor] = None
    baselines: dict[Arithmetic, Deviations] = field(default_factory=dict)


@dataclass
class _Call:
    """A mode's call on a case that returned well-formed outputs: its verdict is judged with the
    other calls' (:func:`judged_together`), then followed up (:func:`_followed_up`)."""

    spec: ModeSpec
    label: str
    judge: "_Judge"
    inputs: CaseInputs  # as the mode is called with them (mode_inputs)
    out: dict[str, Tensor]
    arith: Arithmetic
    poisoned: list[Tensor]  # per output of the reference: slots still holding the poison (device scalars)
    seconds: float
    seen: dict[str, TunedKernel]
    again: Callable[..., tuple]  # the same call once more (memory=, force= to vary it)
    result: Optional[ModeResult] = None

    def finish(self, comps: list[Comparison], counts: Sequence[float]) -> None:
        self.result = _mode_result(self.label, comps, counts, self.out, self.judge, self.seconds)


@dataclass
class _CaseRun:
    """One case of :func:`check_many` between its stages."""

    config: CaseConfig
    judge: "_Judge"
    calls: list[_Call] = field(default_factory=list)
    results: dict[str, ModeResult] = field(default_factory=dict)
    produced: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    kernels: set[str] = field(default_factory=set)
    seconds: float = 0.0


def _called(op: OpSpec, specs: Sequence[ModeSpec], config: CaseConfig, built: Optional[BuiltCase], backward: bool,
            refs: ReferenceTerms, memory: MemoryChecks, backend: Backend, policy: ConfigPolicy,
            isolation: Isolation) -> _CaseRun:
    """A case's inputs, reference and judge (from `built` where given), and every mode called on
    it: an UNSUPPORTED, raising or crashing call has its result, the others a pending :class:`_Call`."""
    start = time.perf_counter()
    with harness_stage("building the inputs", config, backend.device):
        inputs = build_case(config, backend.device) if built is None else built.inputs
        up = gradients.upstream(config, backend.device) if backward else None
    with harness_stage("the float64 reference" + (" and its gradients" if backward else ""), config, backend.device):
        ref = _recurrence_outputs(op, inputs, reference, up, torch.float64) if built is None else built.ref
    with harness_stage("the gradients' cancellation scales", config, backend.device):
        cancel = gradients.cancellation_scales(inputs, ref, up, op.step) if up is not None else {}
    ahead = built or BuiltCase(inputs, ref)
    run = _CaseRun(config, _Judge(config, op, inputs, ref, up, cancel, memory=memory, ref_terms=refs,
                                  readout=ahead.readout, ready=dict(ahead.baselines)))
    # a mode's own out-of-memory is its ERROR (_call); one that gets out is the harness's
    with harness_stage("running the modes", config, backend.device):
        for spec in specs:
            label = mode_label(spec)
            found = _call(spec, label, config, inputs, run.judge, backend, policy, run.kernels, isolation)
            if isinstance(found, ModeResult):
                run.results[label] = found
            else:
                run.calls.append(found)
    run.seconds = time.perf_counter() - start
    return run


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
                                     options=config.options, chunk_size=config.chunk_size,
                                     state_v_first=config.state_v_first)
    return reason or backend.dtype_unsupported_reason(config.torch_dtype, triton=spec.triton)


@dataclass
class _Judge:
    """The reference outputs of one case, and how to judge a mode's outputs against them."""

    config: CaseConfig
    op: OpSpec
    inputs: CaseInputs
    ref: dict[str, Tensor]
    up: Optional[gradients.Upstream] = None  # upstream gradients (backward cases)
    cancel: dict[str, Cancellation] = field(default_factory=dict)  # cancelling sums' reach (dg)
    scales: dict[Arithmetic, dict[str, Metrics]] = field(default_factory=dict)  # baselines, per declaration
    memory: MemoryChecks = field(default_factory=MemoryChecks)  # the checks mode calls run under
    ref_terms: ReferenceTerms = field(default_factory=ReferenceTerms)  # ref's own reductions, once each
    readout: Optional[Tensor] = None  # the recurrent fp32 baselines' readout terms, computed ahead
    ready: dict[Arithmetic, Deviations] = field(default_factory=dict)  # baselines reduced ahead (forward)

    def baseline(self, arith: Arithmetic) -> dict[str, Metrics]:
        """The sampled error of `arith` on this case, per output (computed once per declaration)."""
        if arith not in self.scales:
            pending = self._pending(arith)
            self.scales[arith] = pending.finish(to_host(pending.terms))
        return self.scales[arith]

    def _pending(self, arith: Arithmetic) -> PendingScales:
        c = self.config
        if arith in self.ready and self.up is None:
            return PendingScales(None, self.ref, refs=self.ref_terms, worst=self.ready.pop(arith))
        with harness_stage(f"the float64 baseline emulation ({arith.algorithm})", c, self.inputs.q.device):
            groups = sample_groups(self.op, arith, self.inputs, c.torch_dtype, sample_seed(c.seed, arith),
                                   up=self.up, exact=self.ref, readout=self.readout)
            return PendingScales(groups, self.ref, refs=self.ref_terms)

    def compare(self, name: str, kernel: Tensor, arith: Arithmetic) -> Comparison:
        return self.compare_all({name: kernel}, arith)[0][0]

    def compare_all(self, out: dict[str, Tensor], arith: Arithmetic,
                    extra: Sequence[Tensor] = ()) -> tuple[list[Comparison], list[float]]:
        """Each of `out` (names of the reference) judged; its metrics, the baseline's when this
        declaration has none yet, and the device scalars `extra` fetched in one host transfer."""
        return judged_together([(self, out, arith, extra)], self.ref_terms)[0]

    def items(self, out: dict[str, Tensor], arith: Arithmetic) -> list[Judged]:
        """What the verdict rule needs to judge each of `out` (its baseline computed already)."""
        c = self.config
        steps = c.max_segment_len() if c.varlen else c.T
        scales = self.scales[arith]
        allowance = arith.cancellation_allowance(half_inputs=c.torch_dtype != torch.float32)
        return [Judged(name, kernel, self.ref[name], scales[name], steps, name in gradients.GRADIENTS,
                       self.cancel.get(name), allowance) for name, kernel in out.items()]


Judgment = tuple[_Judge, dict[str, Tensor], Arithmetic, Sequence[Tensor]]  # judge, outputs, declaration, extra


def judged_together(judgments: Sequence[Judgment], refs: ReferenceTerms,
                    finishers: Optional[Sequence[Callable[[list[Comparison], list[float]], None]]] = None,
                    ) -> list[tuple[list[Comparison], list[float]]]:
    """Each judgment's outputs judged against its judge's reference (:meth:`_Judge.compare_all`),
    all of them in one set of stacked reductions (`refs`: the references' reductions, shared) and
    one host transfer with the baselines they still need and their `extra` device scalars; each
    (comparisons, extra values) also handed to its finisher when given."""
    terms = metric_terms([(kernel, judge.ref[name]) for judge, out, _, _ in judgments for name, kernel in out.items()],
                         refs)
    pending: dict[tuple[int, Arithmetic], tuple[_Judge, Arithmetic, PendingScales]] = {}
    for judge, _, arith, _ in judgments:  # after the outputs' reductions: the references' are kept by then
        if arith not in judge.scales and (id(judge), arith) not in pending:
            pending[id(judge), arith] = (judge, arith, judge._pending(arith))
    before = [t for _, _, p in pending.values() for t in p.terms]
    values = to_host(before + terms + [t for *_, extra in judgments for t in extra])
    at = 0
    for judge, arith, p in pending.values():
        judge.scales[arith] = p.finish(values[at:at + len(p.terms)])
        at += len(p.terms)
    found, extra_at = [], at + len(terms)
    for judge, out, arith, extra in judgments:
        items = judge.items(out, arith)
        n = sum(OUTPUT_TERMS for item in items if item.ref.numel())
        found.append((judged(items, values[at:at + n]), values[extra_at:extra_at + len(extra)]))
        at, extra_at = at + n, extra_at + len(extra)
    for finish, (comps, counts) in zip(finishers or (), found):
        finish(comps, counts)
    return found


def _call(spec: ModeSpec, label: str, config: CaseConfig, inputs: CaseInputs, judge: _Judge, backend: Backend,
          policy: ConfigPolicy, kernels: set[str], isolation: Isolation) -> Union[ModeResult, _Call]:
    """`spec` called on the case: its result when it cannot run it, raises, crashes or returns
    something malformed; otherwise the call, to be judged (the autotuned kernels it launched
    added to `kernels`)."""
    reason = unsupported_reason(spec, config, backend, backward=judge.up is not None)
    if reason:
        return ModeResult(label, Verdict.UNSUPPORTED, reason=reason)
    inputs = mode_inputs(spec, inputs)
    start = time.perf_counter()
    again = functools.partial(_invoke, spec, judge.op.name, inputs, judge.up, backend, isolation, policy,
                              memory=judge.memory)
    try:
        raw, grads, seconds, seen = again()
    except ConfigPolicyError:
        raise
    except WorkerFailure as exc:
        return ModeResult(label, exc.verdict, reason=exc.reason, stderr=exc.stderr,
                          seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a raising kernel is a verdict (out of memory too: its cache freed)
        release(exc)
        return ModeResult(label, Verdict.ERROR, reason=_summary(exc), traceback=_traceback(exc),
                          seconds=time.perf_counter() - start)
    kernels.update(seen)
    out, problem = named_outputs(raw, judge.ref, grads)
    if problem:
        return ModeResult(label, Verdict.ERROR, reason=problem, seconds=seconds)
    return _Call(spec, label, judge, inputs, out, spec.declared(config.chunk_size), _poisoned(out, judge), seconds,
                 seen, again)


def _poisoned(out: dict[str, Tensor], judge: _Judge) -> list[Tensor]:
    """Per output of the reference, its slots still holding the poison (device scalars; none
    without the sentinel check)."""
    return [is_sentinel(out[name]).sum() for name in judge.ref] if judge.memory.sentinel else []


def _followed_up(call: _Call, run: _CaseRun, backend: Backend, repeat: Optional[str], policy: ConfigPolicy,
                 isolation: Isolation, checks: Sequence[str], scope: str) -> ModeResult:
    """A judged call's result after its follow-ups: the memory diagnosis of a NONFINITE result,
    the determinism check, the config sweep and, for a passing mode, the invariance checks."""
    result, spec, judge = call.result, call.spec, call.judge
    assert result is not None, "a call is judged before it is followed up"
    run.produced[call.label] = call.out
    if result.verdict is Verdict.NONFINITE and judge.memory.nan_guarded:
        _diagnose_overread(result, call.again, judge)
    if repeat_wanted(spec, run.config, judge.up is not None, repeat):
        _check_repeat(result, call.again, call.out, judge)
    if policy.sweeps:
        _sweep_configs(result, spec, call.again, call.seen, judge, backend, policy)
    if not result.verdict.failed:
        _check_invariance(result, spec, call.out, run.config, call.inputs, judge, backend, isolation, policy, checks,
                          scope)
    return result


def mode_inputs(spec: ModeSpec, inputs: CaseInputs) -> CaseInputs:
    """The case's inputs as `spec` is called with them: without the chunk size where the mode
    has no chunks (a recurrent mode runs a chunk_size case unchanged: :mod:`fla_check.ops`)."""
    if inputs.chunk_size is None or spec.takes_chunk_size(inputs.chunk_size):
        return inputs
    return dataclasses.replace(inputs, chunk_size=None)


def _invoke(spec: ModeSpec, op: str, inputs: CaseInputs, up: Optional[gradients.Upstream], backend: Backend,
            isolation: Isolation, policy: ConfigPolicy = FIRST, force: Optional[dict[str, int]] = None,
            memory: Optional[MemoryChecks] = None,
            ) -> tuple[Any, dict[str, Optional[Tensor]], float, dict[str, TunedKernel]]:
    """One call of a mode on fresh copies of the case's inputs (and its gradients with `up`)
    under the autotune `policy` (`force`: config indices per kernel) and the `memory` checks
    (None: all): (raw, grads, seconds, launched autotuned kernels), in the worker process when
    isolated and the worker can load the mode."""
    if isolation.isolated:
        try:
            return call_isolated(spec, op, inputs, up, backend.device, isolation.case_timeout, policy, force,
                                 memory)
        except NotPortable:
            pass  # a mode only this process can load (see engine.isolation.in_process_modes)
    start = time.perf_counter()
    raw, grads, kernels = call_mode(spec.load(), inputs, up, backend.device, policy, force, memory)
    return raw, grads, time.perf_counter() - start, kernels


def _out_of_resources(exc: BaseException) -> bool:
    """Whether a launch failed because its config does not fit this GPU (Triton's OutOfResources:
    shared memory, registers), here or in the isolation worker."""
    name = exc.name if isinstance(exc, RemoteError) else type(exc).__name__
    return name == "OutOfResources"


def _summary(exc: BaseException) -> str:
    return exc.summary if isinstance(exc, RemoteError) else f"{type(exc).__name__}: {exc}"


def _traceback(exc: BaseException) -> str:
    return exc.traceback if isinstance(exc, RemoteError) else traceback.format_exc()


def _judged(label: str, raw: Any, grads: dict, spec: ModeSpec, judge: _Judge, config: CaseConfig,
            seconds: float) -> tuple[ModeResult, Optional[dict[str, Tensor]]]:
    """A mode's return value judged against the reference on its own (ERROR for a malformed one)."""
    out, problem = named_outputs(raw, judge.ref, grads)
    if problem:
        return ModeResult(label, Verdict.ERROR, reason=problem, seconds=seconds), None
    comps, counts = judge.compare_all(out, spec.declared(config.chunk_size), _poisoned(out, judge))
    return _mode_result(label, comps, counts, out, judge, seconds), out


def _mode_result(label: str, comps: list[Comparison], counts: Sequence[float], out: dict[str, Tensor],
                 judge: _Judge, seconds: float) -> ModeResult:
    """The result of a mode whose outputs were judged (`counts`: the poisoned slots per output,
    :func:`_poisoned`): the worst output's verdict, where a failure starts, UNWRITTEN slots."""
    verdict = worst(c.verdict for c in comps)
    loc = _localize(comps, out, judge.ref, judge.config) if verdict.failed else None
    result = ModeResult(label, verdict, comps, loc, seconds=seconds)
    unwritten = _unwritten(out, judge, counts)
    if unwritten:
        result.verdict, result.reason = Verdict.UNWRITTEN, unwritten
    return result


def _unwritten(out: dict[str, Tensor], judge: _Judge, counts: Sequence[float]) -> str:
    """'; '-joined descriptions of the compared outputs' slots still holding the poison, or ''
    (`counts`: such slots per output of the reference, fetched with the metrics)."""
    found = []
    for name, count in zip(judge.ref, counts):
        if count:
            found.append(describe_unwritten(name, is_sentinel(out[name]).cpu(), name in STATE_OUTPUTS,
                                            judge.config.cu_seqlens()))
    return "; ".join(found)


def _diagnose_overread(result: ModeResult, again: Callable[..., tuple], judge: _Judge) -> None:
    """A NONFINITE result under NaN guards: re-run with each guard made finite in turn; the first
    re-run whose outputs are all finite where the reference is shows what the mode read: OVERREAD."""
    for what, relaxed in finite_variants(judge.memory, judge.config.varlen):
        try:
            raw, grads, _, _ = again(memory=relaxed)
        except Exception:  # noqa: BLE001 - the diagnosis is best effort (a crash too); the verdict stands
            return
        out, problem = named_outputs(raw, judge.ref, grads)
        if problem:
            return
        if all(bool((out[n].isfinite() | ~judge.ref[n].isfinite()).all()) for n in judge.ref):
            first = result.localization.describe() if result.localization else ""
            result.verdict = Verdict.OVERREAD
            result.reason = (f"reads {what}: their NaN reaches the outputs" + (f" ({first})" if first else "")
                             + "; with finite memory there the outputs are finite")
            return


def _check_invariance(result: ModeResult, spec: ModeSpec, out: dict[str, Tensor], config: CaseConfig,
                      inputs: CaseInputs, judge: _Judge, backend: Backend, isolation: Isolation,
                      policy: ConfigPolicy, checks: Sequence[str], scope: str) -> None:
    """Run the metamorphic checks (:mod:`fla_check.engine.invariance`) of a passing mode; a
    failing variant makes the result NOT_INVARIANT, its reason naming the check. Variant calls
    go through :func:`_invoke` (isolated like the main call, same autotune policy) as plain
    calls, except ``layout``'s, made in this process (module doc: the call path copies inputs
    contiguous) and so left out for a mode whose calls run isolated."""
    plain = dataclasses.replace(judge.memory, guard=False, slack=0)  # the main call's allocations, no guards

    def via_invoke(q, k, v, g, beta, h0, cu):
        variant = dataclasses.replace(inputs, q=q, k=k, v=v, g=g, beta=beta, initial_state=h0, cu_seqlens=cu)
        try:
            raw, _, _, _ = _invoke(spec, judge.op.name, variant, None, backend, isolation, policy, memory=plain)
        except RemoteError as exc:
            raise RuntimeError(exc.summary) from None
        return _pair(raw)

    def in_process(q, k, v, g, beta, h0, cu):
        fn = inputs.state_layout(spec.load(), plain.guard_fill)
        with warnings.catch_warnings(), poisoned_allocations(plain.poison, plain.fill):
            warnings.simplefilter("ignore", RuntimeWarning)
            raw = fn(q, k, v, g=g, beta=beta, scale=None, initial_state=h0, output_final_state=True,
                     cu_seqlens=cu, **inputs.option_kwargs())
        if backend.device == "cuda":
            torch.cuda.synchronize()
        return _pair(raw)

    whole = {name: out[name].detach() for name in ("o", "ht")}
    for check in checks:
        if not invariance_checks.wanted(spec.qualified, check, config, scope):
            continue
        if check == "layout" and isolation.isolated and not in_process_modes([spec.qualified]):
            # its calls run in this process (their views cannot cross to the worker): for a mode
            # that runs isolated a crashing kernel would take the run down, so it is left out there
            continue
        found = invariance_checks.run_check(
            check, config, inputs, in_process if check == "layout" else via_invoke,
            lambda name, t: judge.compare(name, t, spec.declared(config.chunk_size)), whole,
            varlen_ok=spec.varlen, h0_ok=spec.initial_state)
        result.invariance += found
        for r in found:
            if r.verdict.failed:
                result.verdict = worst([result.verdict, r.verdict])
                result.reason = result.reason or r.reason


def _pair(raw: Any) -> tuple[Tensor, Tensor]:
    """(o, final_state) of a mode's return value, detached."""
    if not isinstance(raw, (tuple, list)) or len(raw) != 2 or not isinstance(raw[1], Tensor):
        raise ValueError(f"expected (o, final_state), got {type(raw).__name__}")
    return raw[0].detach(), raw[1].detach()


def _sweep_configs(result: ModeResult, spec: ModeSpec, again: Callable[..., tuple], kernels: dict,
                   judge: _Judge, backend: Backend, policy: ConfigPolicy) -> None:
    """Re-run the mode under the other configs of each autotuned kernel it launched (one kernel
    at a time, the others at their first config); the worst config decides `result`."""
    forced = policy.forced()
    for name, kernel in kernels.items():
        if name in forced:  # a config given with --config stays fixed
            continue
        for index, duplicate in sweep_plan(policy, kernel, judge.config.seed, backend.interpreter):
            desc = kernel.describe(index)
            if duplicate is not None:
                result.configs.append(ConfigResult(name, index, desc, Verdict.UNSUPPORTED, reason=(
                    f"not run: the same kernel as config #{duplicate} under the interpreter "
                    "(num_warps/num_stages are ignored)")))
                continue
            start = time.perf_counter()
            try:
                raw, grads, _, _ = again(force={**forced, name: index})
            except ConfigPolicyError:
                raise
            except Exception as exc:  # noqa: BLE001 - a config that raises (or crashes its worker) is a verdict
                release(exc)
                if _out_of_resources(exc):  # Triton's autotuner prunes such a config itself: never run for users
                    result.configs.append(ConfigResult(name, index, desc, Verdict.UNSUPPORTED, reason=(
                        f"not runnable on this GPU ({_summary(exc)}); Triton's autotuner skips it too")))
                    continue
                crash = isinstance(exc, WorkerFailure)
                verdict, why = (exc.verdict, exc.reason) if crash else (Verdict.ERROR, _summary(exc))
                result.configs.append(ConfigResult(name, index, desc, verdict, 1e6, why))
                if worst([verdict, result.verdict]) is verdict and result.verdict is not verdict:
                    result.verdict, result.config, result.outputs, result.localization = (
                        verdict, f"{name}:{index}", [], None)
                    result.reason = f"config {name}:{index} ({desc}): {why}"
                    result.traceback, result.stderr = ("", exc.stderr) if crash else (_traceback(exc), "")
                continue
            one, _ = _judged(result.mode, raw, grads, spec, judge, judge.config, time.perf_counter() - start)
            result.configs.append(ConfigResult(name, index, desc, one.verdict, one.score, one.reason))
            if _worse(one, result):
                result.verdict, result.outputs, result.localization = one.verdict, one.outputs, one.localization
                result.config = f"{name}:{index}"
                result.reason = f"config {name}:{index} ({desc}): {one.verdict.value}" + (
                    f" ({one.reason})" if one.reason else "")
                if backend.interpreter:
                    result.reason += f"; {INTERPRETER_NOTE}"


def _worse(a: ModeResult, b: ModeResult) -> bool:
    """Whether `a` is a worse result than `b` (a more severe verdict, or a failure with a higher score)."""
    if a.verdict is not b.verdict:
        return worst([a.verdict, b.verdict]) is a.verdict
    return a.verdict.failed and a.score > b.score


def _check_repeat(result: ModeResult, again: Callable[[], tuple], first: dict[str, Tensor], judge: _Judge) -> None:
    """Run the mode again on the same inputs: any output or gradient that is not bitwise equal
    (NaN equal to NaN) makes an otherwise passing result NONDETERMINISTIC."""
    try:
        raw, grads, _, _ = again()
    except WorkerFailure as exc:  # the second call killed the worker
        result.verdict, result.reason, result.stderr = exc.verdict, f"second call: {exc.reason}", exc.stderr
        return
    except Exception as exc:  # noqa: BLE001 - a kernel that raises on its second call
        release(exc)
        result.verdict, result.reason = Verdict.ERROR, f"second call raised {_summary(exc)}"
        result.traceback = _traceback(exc)
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
           config.options, config.chunk_size, config.state_v_first, backward)
    if key in _REPEATED:
        return False
    _REPEATED.add(key)
    return True


def forget_repeated() -> None:
    """Forget which buckets policy ``bucket`` already ran twice in this process."""
    _REPEATED.clear()


def named_outputs(raw: Any, ref: dict[str, Tensor],
                  grads: Optional[dict[str, Optional[Tensor]]] = None) -> tuple[dict[str, Tensor], str]:
    """Check a mode's return value (and gradients) against the reference shapes: its outputs
    of the reference's names, in its order, or ({}, problem) on mismatch."""
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
    return {name: out[name] for name in ref}, ""


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


def _pairs(cases: Sequence[tuple[dict[str, dict[str, Tensor]], dict[str, Tensor], dict[str, ModeResult]]],
           refs: Optional[ReferenceTerms] = None) -> list[list[PairResult]]:
    """Per case (the outputs each mode produced, the reference, the modes' results), every pair of
    modes that produced outputs, agreement per output: all the cases' pairs in one host transfer."""
    items, shape = [], []
    for produced, ref, results in cases:
        combos = list(itertools.combinations(produced, 2))
        shape.append(combos)
        for a, b in combos:
            bounds_a = {c.name: c.bound_max_abs for c in results[a].outputs}
            bounds_b = {c.name: c.bound_max_abs for c in results[b].outputs}
            items += [(name, produced[a][name], produced[b][name], ref[name], bounds_a[name], bounds_b[name])
                      for name in ref]
    found, at, out = agreements(items, refs), 0, []
    for (_, ref, _), combos in zip(cases, shape):
        n = len(ref)
        out.append([PairResult(a, b, found[at + i * n:at + (i + 1) * n]) for i, (a, b) in enumerate(combos)])
        at += len(combos) * len(ref)
    return out
