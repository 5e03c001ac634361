"""A mode's baseline: the error its declared arithmetic makes on a case, sampled.

:func:`sample_groups` runs :func:`~fla_check.verdict.emulation.emulate` for a case (the
``SAMPLES`` in as few groups as fit a memory budget, :func:`memory_budget`; each sample its own
autograd leaves, so gradients come per sample; a group's samples are exactly those of an
ungrouped run) and :func:`noise_scales` reduces them, group by group, to the two numbers the
verdict scales by, per output:
``s = max_j rms(e_j - x) / rms(r)`` and ``m = max_j max|e_j - x|`` where ``x`` is the exact
answer of the problem the samples solve and ``r`` the reference the kernel is judged against
(the same tensor in ``run``; the per-segment truth in ``sweep-mask-values``).
"""
from __future__ import annotations

import contextlib
import zlib
from typing import Hashable, Iterable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from fla_check.cases import CaseInputs
from fla_check.verdict.compare import RMS_EPS, Metrics
from fla_check.verdict.reductions import ReferenceTerms, finite_mask, nonfinite_mask
from fla_check.verdict.host import to_host
from fla_check.cases import GRAD_NAMES, Upstream
from fla_check.ops import OpSpec
from fla_check.references import reference
from fla_check.verdict.arithmetic import RECURRENT_FP32, Arithmetic
from fla_check.verdict import emulation
from fla_check.verdict.emulation import BLOCK, SAMPLES, U32, Rounding, emulate, padded_tokens
from fla_check.errors import EmulationError  # noqa: F401 (re-exported)

_INPUTS = ("q", "k", "v", "g", "beta", "initial_state")


_GRAD_SALT = 0x5DEECE66D
FP32_OUTPUTS = frozenset({"ht", "dh0"})  # returned in fp32 whatever the input dtype


def sample_seed(case_seed: int, arith: Arithmetic, truth: bool = False) -> int:
    """The noise seed of a case and declaration (stable across processes: replays are exact)."""
    tag = f"{arith.to_json()}|{truth}".encode()
    return (case_seed * 1_000_003 + zlib.crc32(tag)) % 2**63


Samples = dict[str, Tensor]  # output name -> samples on a leading dimension
# output name -> its samples' non-finite deviations, max |e - x| and max per-sample RMS (device scalars)
Deviations = dict[str, list[Tensor]]

CPU_BUDGET = 4 * 2**30  # bytes the samples of one CPU emulation may hold at once
GPU_SHARE = 0.5  # of the device memory free to this process: the rest is headroom (fragmentation, kernels)
# an emulation this small runs whole without asking the device what is free (on a GPU the query walks
# the allocator's statistics: about 1 ms, docs/gpu/perf-h200-15)
SMALL_EMULATION = 64 * 2**20


def memory_budget(device: Union[str, torch.device]) -> int:
    """Bytes an emulation may hold on `device`: on a GPU GPU_SHARE of what this process can still
    allocate (free device memory plus its allocator's cached blocks), on the CPU CPU_BUDGET."""
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BUDGET
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(GPU_SHARE * (free + cached))


def sample_groups(op: OpSpec, arith: Arithmetic, inputs: CaseInputs, dtype: torch.dtype, seed: int, *,
                  up: Optional[Upstream] = None, truth: bool = False, exact: Optional[dict[str, Tensor]] = None,
                  budget: Optional[int] = None, readout: Optional[Tensor] = None) -> Iterator[Samples]:
    """:func:`baseline_samples` in consecutive groups of samples, each group's peak memory
    (:func:`sample_bytes`) within `budget` bytes (default :func:`memory_budget`; a group holds
    one sample at least). The concatenated groups equal the ungrouped samples: every group
    draws every sample's noise and keeps its own rows (:class:`Rounding` ``rows``).
    `readout`: :func:`readout_inputs`' reference output, computed ahead (not for `truth`)."""
    if readout is not None and truth:
        raise ValueError("a readout computed ahead is the run's, not the per-segment truth's")
    shortcut = _shortcut(arith, inputs, up, exact)
    one = sample_bytes(inputs, arith, up is not None, shortcut, truth)
    if budget is None:
        budget = SMALL_EMULATION if SAMPLES * one <= SMALL_EMULATION else memory_budget(inputs.q.device)
    size = group_size(one, budget)
    if shortcut and readout is None:
        readout = _readout_terms(op, inputs, truth)
    elif not shortcut:
        readout = None
    for lo in range(0, SAMPLES, size):
        rows = None if size >= SAMPLES else slice(lo, min(lo + size, SAMPLES))
        if shortcut:
            group = _rounded_samples(exact, readout, inputs, dtype, seed, rows)
        else:
            with single_thread():
                group = _emulated_samples(op, arith, inputs, dtype, seed, up, truth, rows)
        yield group
        del group  # not held while the next group is computed


def baseline_samples(op: OpSpec, arith: Arithmetic, inputs: CaseInputs, dtype: torch.dtype, seed: int, *,
                     up: Optional[Upstream] = None, truth: bool = False,
                     exact: Optional[dict[str, Tensor]] = None, budget: Optional[int] = None) -> Samples:
    """Named outputs (o, ht and, with `up`, the gradients) of the emulation, each with a
    leading sample dimension of SAMPLES (the groups of :func:`sample_groups`, concatenated: a
    caller that reduces them should iterate the groups instead). `truth`: run each reset-mask
    segment on its own.

    `exact`: the float64 answer of the same problem, when the caller has it. A recurrent mode
    with an fp32 state then needs no emulated loop: its only rounding above fp32 level is each
    output's rounding to the dtype it is returned in (the state's fp32 rounding is inside the
    verdict's fp32 slack), so the samples are `exact` rounded that way, plus, for decay-only ops,
    the readout's K-term fp32 sum (:func:`_rounded_cases`) -- except the delta rule's
    gradients, whose dbeta sums stored terms (emulation._stored_delta_step)."""
    groups = list(sample_groups(op, arith, inputs, dtype, seed, up=up, truth=truth, exact=exact, budget=budget))
    if len(groups) == 1:
        return groups[0]
    return {n: torch.cat([g[n] for g in groups]) for n in groups[0]}


def _shortcut(arith: Arithmetic, inputs: CaseInputs, up: Optional[Upstream],
              exact: Optional[dict[str, Tensor]]) -> bool:
    """Whether the samples are `exact` rounded (:func:`baseline_samples`) rather than emulated:
    emulated are dbeta (a cancelling sum of stored terms) and in-kernel options (fp32
    transcendentals on the kernel's own inputs, emulation._computed_in_kernel)."""
    return (exact is not None and rounds_exact(arith)
            and not (up is not None and inputs.beta is not None) and inputs.prepare is None)


def rounds_exact(arith: Arithmetic) -> bool:
    """Whether `arith`'s baseline is the exact answer rounded (a recurrent mode with an fp32
    state, :func:`baseline_samples`) where the case allows it: the modes that take a readout."""
    return arith.algorithm == "recurrent" and arith.state == "fp32"


def _rounded_samples(exact: dict[str, Tensor], readout: Optional[Tensor], inputs: CaseInputs, dtype: torch.dtype,
                     seed: int, rows: Optional[slice]) -> Samples:
    return _rounded_cases({name: x[None] for name, x in exact.items()}, None if readout is None else readout[None],
                          inputs.q.shape[-1], dtype, [seed], rows)


def _rounded_cases(exact: dict[str, Tensor], readout: Optional[Tensor], K: int, dtype: torch.dtype,
                   seeds: Sequence[int], rows: Optional[slice] = None) -> Samples:
    """SAMPLES copies (`rows`: those samples) of each case's outputs rounded to the dtype each is
    returned in: the final state and dh0 in fp32, everything else in the input dtype (x -> x (1 + d),
    d ~ U(+-u)); with `readout`, o also carries the readout's fp32 accumulation, as
    :meth:`Rounding.dot` samples it for chunk modes: ``U(+-1) u32 sqrt(K) sum_k |q_k S_kv|``
    (without it a recurrent fp32 mode whose o cancels, q . k ~ 0, was a false alarm: built-in
    recurrent GLA, fp32, T=1, K=V=60, o at 2.7x its bound). `exact` and `readout` hold one case
    per seed on a leading dimension; the samples are case-major."""
    cases, count = len(seeds), _count(rows)
    device = next(iter(exact.values())).device
    rnd = Rounding(RECURRENT_FP32, dtype, seeds, device, rows)
    out = {name: _returned(rnd, name, x.detach().double()[:, None].expand((cases, count) + tuple(x.shape[1:]))
                           .reshape((cases * count,) + tuple(x.shape[1:])))
           for name, x in exact.items()}
    if readout is not None and "o" in out:
        noise = Rounding(RECURRENT_FP32, torch.float32, [s ^ _READOUT_SALT for s in seeds], device, rows)
        o = out["o"]
        d = noise._uniform(o.shape) * 2 - 1
        out["o"] = (o.unflatten(0, (cases, -1)) + d.unflatten(0, (cases, -1)) * readout.to(o)[:, None]
                    * (U32 * K ** 0.5)).flatten(0, 1)
    return out


# Peak bytes of one sample, per float64 element of the case (fitted on CPU with about 2x margin,
# bench/baseline_memory.py): tokens x value heads x (2K + 2V + C) for q, k (expanded per value
# head), v, o and the chunk-square score matrices (C = 0 recurrent); the states an autograd
# graph keeps (one per step recurrent, one per chunk chunked) on top
IO_COPIES = {False: 4, True: 40}  # forward / with gradients
STATE_COPIES = {False: 8, True: 6}
SHORTCUT_COPIES = 6  # rounded outputs: the samples, their noise, one temporary
# A per-key gate (GLA, KDA) has no rank-one decay matrix: the chunked emulation forms each diagonal
# sub-block's scores elementwise, [BLOCK, BLOCK, K] per sub-chunk row (emulation._gla_scores), so
# tokens x value heads x BLOCK x K elements, about four of them live at once (the product, the gate
# differences, their exp and the masked copy); six with margin. `python bench/baseline_memory.py --cases
# gla-chunk-fwd`: one sample 195 MiB, the estimate 233 MiB (41 MiB without this term). Missing before:
# 64 gla cases at T = 1024 asked the H200 for 32 GiB in one batch (docs/gpu/perf-h200-18).
SCORES_COPIES = {False: 6, True: 40}


def sample_bytes(inputs: CaseInputs, arith: Arithmetic, backward: bool, shortcut: bool = False,
                 truth: bool = False) -> int:
    """Estimated peak memory of one sample's emulation (or rounding, `shortcut`) of a case. The
    emulation runs the case's pieces zero-padded to the longest (emulation.padded_tokens: varlen
    sequences, truth segments), so its tokens are those padded ones."""
    q, _, v, g, beta = inputs.tensors()
    tokens, HV, K, V = q.shape[0] * q.shape[1], v.shape[-2], q.shape[-1], v.shape[-1]
    if shortcut:
        return 8 * SHORTCUT_COPIES * tokens * HV * 2 * V
    if inputs.cu_seqlens is not None or (truth and inputs.reset_mask is not None):
        tokens = padded_tokens(q.shape[0], q.shape[1], inputs.cu_seqlens, inputs.reset_mask if truth else None)
    chunked = arith.algorithm != "recurrent"
    io = tokens * HV * (2 * K + 2 * V + (arith.chunk if chunked else 0))
    state = HV * K * V * (2 if beta is not None and not chunked else 1)
    states = 1 + (-(-tokens // arith.chunk) + q.shape[0] if chunked else tokens) if backward else 1
    per_key = chunked and g is not None and g.dim() == q.dim()
    scores = tokens * HV * min(BLOCK, arith.chunk) * K if per_key else 0
    return 8 * (IO_COPIES[backward] * io + STATE_COPIES[backward] * states * state + SCORES_COPIES[backward] * scores)


def group_size(per_sample: int, budget: int) -> int:
    """Samples per group: as many as fit `budget` (1 at least, SAMPLES at most)."""
    return max(1, min(SAMPLES, budget // max(1, per_sample)))


_READOUT_SALT = 0x9E3779B9


def readout_inputs(inputs: CaseInputs) -> Optional[tuple[tuple[Optional[Tensor], ...], Optional[Tensor]]]:
    """The reference problem whose output o bounds the readout terms of a recurrent fp32 mode's
    baseline (:func:`_readout_terms`): (q, k, v, g, beta) and h0, all but the gate in absolute
    value, beta None. None where the shortcut takes no readout: the delta rule (its state has no
    such bound) and in-kernel options (those modes are emulated)."""
    q, k, v, g, beta = inputs.tensors()
    if beta is not None or inputs.prepare is not None:
        return None
    h0 = inputs.initial_state
    return (q.abs(), k.abs(), v.abs(), g, None), None if h0 is None else h0.abs()


def _readout_terms(op: OpSpec, inputs: CaseInputs, truth: bool) -> Optional[Tensor]:
    """sum_k |q_k| |S_kv| per output element, for ops whose state only decays (no beta): the
    float64 recurrence on |q|, |k|, |v| (and |h0|) bounds every term of the readout o = S^T q."""
    problem = readout_inputs(inputs)
    if problem is None:
        return None
    tensors, h0 = problem
    split = {"reset_mask": inputs.reset_mask} if truth and inputs.reset_mask is not None else {}
    o_abs, _ = reference(op.step, *tensors, initial_state=h0, cu_seqlens=inputs.cu_seqlens, **split)
    return o_abs


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op torch thread: the emulation's tensors are small, and on a busy 2-core
    machine torch's thread pool made a 64-row emulation 40x slower (1.45 s vs 0.035 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _emulated_samples(op: OpSpec, arith: Arithmetic, inputs: CaseInputs, dtype: torch.dtype, seed: int,
                      up: Optional[Upstream], truth: bool, rows: Optional[slice] = None) -> Samples:
    tensors = dict(zip(_INPUTS, (*inputs.tensors(), inputs.initial_state)))
    count = _count(rows)
    leaves = {n: None if x is None else _sampled(x, count) for n, x in tensors.items()}
    if up is not None:
        for x in leaves.values():
            if x is not None:
                x.requires_grad_()
    with torch.enable_grad() if up is not None else torch.no_grad():
        o, ht = emulate(op.name, op.step, arith, *(leaves[n] for n in _INPUTS), inputs.cu_seqlens, dtype=dtype,
                        seed=seed, reset_mask=inputs.reset_mask if truth else None,
                        prepare=inputs.prepare, rows=rows)
        out = {"o": o, "ht": ht}
        if up is not None:
            loss = (o * up.do).sum() + (ht * up.dht).sum()
            present = {n: x for n, x in leaves.items() if x is not None}
            grads = torch.autograd.grad(loss, list(present.values()), allow_unused=True)
            rnd = Rounding(arith, dtype, seed ^ _GRAD_SALT, o.device, rows)
            for (n, x), d in zip(present.items(), grads):
                out[GRAD_NAMES[n]] = _returned(rnd, GRAD_NAMES[n], torch.zeros_like(x) if d is None else d)
    return {n: x.detach() for n, x in out.items()}


def baseline_key(arith: Arithmetic, inputs: CaseInputs, dtype: torch.dtype) -> Optional[Hashable]:
    """Forward cases with equal keys can share one baseline computation (:func:`batched_deviations`):
    the same declaration, dtype, tensor shapes and packing. None for a case with in-kernel options
    (their constants are per case)."""
    if inputs.prepare is not None:
        return None
    shapes = tuple(None if x is None else tuple(x.shape) for x in (*inputs.tensors(), inputs.initial_state))
    packing = None if inputs.cu_seqlens is None else tuple(inputs.cu_seqlens.tolist())
    return arith, dtype, shapes, packing, inputs.q.device


def batched_deviations(op: OpSpec, arith: Arithmetic, cases: Sequence[CaseInputs], dtype: torch.dtype,
                       seeds: Sequence[int], exact: Sequence[dict[str, Tensor]],
                       readouts: Optional[Sequence[Optional[Tensor]]] = None) -> list[Deviations]:
    """Per forward case (one :func:`baseline_key`), what :class:`PendingScales` reduces its samples to
    against its `exact` answer (``worst``), every case's samples those :func:`baseline_samples` gives
    it alone with its seed: a recurrent fp32 declaration's exact answers rounded (with `readouts`,
    the readout terms computed ahead, else computed here), any other's :func:`emulated_batch`;
    sampled and reduced for all the cases at once, a few ops per output instead of a few per output
    and case."""
    _check_batch(arith, cases, dtype, seeds)
    if len(exact) != len(cases):
        raise ValueError("batched baselines need an answer per case")
    answers = {name: torch.stack([d[name].detach().double() for d in exact]) for name in exact[0]}  # [cases, ...]
    if not rounds_exact(arith):
        return _reduced(_emulated_stack(op, arith, cases, dtype, seeds), answers)
    if readouts is None:
        readouts = [_readout_terms(op, x, truth=False) for x in cases]
    readout = None if readouts[0] is None else torch.stack(list(readouts))
    return _reduced(_rounded_cases(answers, readout, cases[0].q.shape[-1], dtype, seeds), answers)


def _check_batch(arith: Arithmetic, cases: Sequence[CaseInputs], dtype: torch.dtype, seeds: Sequence[int],
                 emulated: bool = False) -> None:
    """ValueError unless `cases` share one :func:`baseline_key` and have a seed each (`emulated`: and
    `arith` is emulated, not rounded exactly)."""
    keys = {baseline_key(arith, x, dtype) for x in cases}
    if len(keys) != 1 or None in keys or len(seeds) != len(cases) or (emulated and rounds_exact(arith)):
        what = "emulated_batch needs emulated" if emulated else "batched baselines need"
        raise ValueError(f"{what} forward cases of one baseline_key, a seed each")


def _reduced(samples: Samples, answers: dict[str, Tensor]) -> list[Deviations]:
    """:meth:`PendingScales._deviations` of each case's samples (case-major on the leading
    dimension of `samples`) against its answer (`answers`: stacked per output, [cases, ...]), for
    all the cases in one set of ops per output."""
    cases = len(next(iter(answers.values())))
    out: list[Deviations] = [{} for _ in range(cases)]
    for name, found in samples.items():
        if name not in answers or not answers[name][0].numel():
            continue
        e = found.double().unflatten(0, (cases, -1))  # [cases, SAMPLES, ...]
        x = answers[name].to(e.device)[:, None]
        ok = finite_mask(x)
        worst = _deviation_rows(e, x, ok, ok.flatten(1).sum(1))
        for case, per_case in zip(out, zip(*worst)):
            case[name] = list(per_case)
    return out


def _deviation_rows(e: Tensor, x: Tensor, ok: Tensor, count: Tensor) -> list[Tensor]:
    """Per case of samples `e` [cases, samples, ...] against its answer `x` (`ok`: x's finite
    entries, both [cases, 1, ...]; `count`: how many, [cases]): the non-finite deviations, the
    largest |e - x| and the largest per-sample RMS of e - x over the finite entries, each [cases]. On a GPU one
    launch reads the samples once (:mod:`fla_check.verdict.deviation_kernel`)."""
    if emulation.fused_noise(e.device) and e.dtype == x.dtype == torch.float64:
        from fla_check.verdict.deviation_kernel import deviations

        return deviations(e, x, count)
    diff = torch.where(ok, e - x, torch.zeros((), dtype=e.dtype, device=e.device)).flatten(2)
    return [nonfinite_mask(diff).flatten(1).sum(1), diff.abs().flatten(1).amax(1),
            diff.square().sum(2).div(count[:, None]).sqrt().amax(1)]


def emulated_batch(op: OpSpec, arith: Arithmetic, cases: Sequence[CaseInputs], dtype: torch.dtype,
                   seeds: Sequence[int]) -> Samples:
    """The forward samples of `cases` (one :func:`baseline_key`, emulated) from one emulation, case-major
    on the leading dimension (``chunk(len(cases))`` splits them): each case's are those
    :func:`baseline_samples` gives it alone with its seed (each case draws its own noise,
    emulation.Rounding), while the chunk and step loops' launches are paid once."""
    _check_batch(arith, cases, dtype, seeds, emulated=True)
    return _emulated_stack(op, arith, cases, dtype, seeds)


def _emulated_stack(op: OpSpec, arith: Arithmetic, cases: Sequence[CaseInputs], dtype: torch.dtype,
                    seeds: Sequence[int]) -> Samples:
    """:func:`emulated_batch` on cases already checked."""
    columns = zip(*[(*c.tensors(), c.initial_state) for c in cases])  # per input: every case's tensor
    stacked = [None if col[0] is None else _sampled_cases(col) for col in columns]
    with torch.no_grad(), single_thread():
        o, ht = emulate(op.name, op.step, arith, *stacked, cases[0].cu_seqlens, dtype=dtype, seed=list(seeds))
    return {"o": o, "ht": ht}


def _count(rows: Optional[slice]) -> int:
    return SAMPLES if rows is None else len(range(SAMPLES)[rows])


def _sampled(x: Tensor, count: int = SAMPLES) -> Tensor:
    """`count` float64 copies of `x` on a leading dimension."""
    return x.detach().double()[None].repeat((count,) + (1,) * x.dim())


def _sampled_cases(xs: Sequence[Tensor]) -> Tensor:
    """:data:`SAMPLES` float64 copies of each of `xs` (one shape), case-major on the leading dimension: the
    concatenation of their :func:`_sampled`, written once (not copied per case, then concatenated)."""
    x = torch.stack([t.detach() for t in xs]).double()
    return x[:, None].expand((len(xs), SAMPLES) + x.shape[1:]).reshape((len(xs) * SAMPLES,) + x.shape[1:])


def _returned(rnd: Rounding, name: str, x: Tensor) -> Tensor:
    """`x` rounded to the dtype output `name` is returned in: states (ht, dh0) in fp32, the rest
    (o and the input gradients) in the input dtype."""
    return rnd.relative(x, U32) if name in FP32_OUTPUTS else rnd.output(x)


def noise_scales(samples: Union[Samples, Iterable[Samples]], exact: dict[str, Tensor],
                 ref: Optional[dict[str, Tensor]] = None) -> dict[str, Metrics]:
    """Per output: the samples' largest max-abs deviation from `exact` and largest RMS
    deviation relative to rms(`ref`) (default: `exact`). `samples`: all of them, or their
    groups (:func:`sample_groups`, reduced one at a time). Reduced on the samples' device and
    fetched in one host transfer."""
    pending = PendingScales(samples, exact, ref)
    return pending.finish(to_host(pending.terms))


class PendingScales:
    """:func:`noise_scales` in two steps: :attr:`terms`, the device scalars to fetch (a caller
    may fetch them with its own in one transfer), then :meth:`finish` on their values.
    `refs`: the reductions of `exact` and `ref` kept across calls (default: computed here).
    `worst`: the samples' deviations reduced already (:func:`batched_deviations`), no samples."""

    def __init__(self, samples: Union[Samples, Iterable[Samples], None], exact: dict[str, Tensor],
                 ref: Optional[dict[str, Tensor]] = None, refs: Optional[ReferenceTerms] = None,
                 worst: Optional[Deviations] = None):
        refs = ReferenceTerms() if refs is None else refs
        self.exact, self.ref = exact, exact if ref is None else ref
        self.outputs: list[str] = [n for n in exact if n in worst] if worst is not None else []
        self.names: list[str] = [n for n in self.outputs if exact[n].numel()]
        if worst is None:
            worst = self._worst(samples, exact, refs)
        self.terms: list[Tensor] = []
        for name in self.names:
            x = exact[name]
            r, device = self.ref[name], worst[name][0].device
            self.terms += [refs.finite_count(x, device), *worst[name], refs.finite_count(r, device),
                           refs.rms(r, device) if r.numel() else r.new_zeros((), dtype=torch.float64, device=device)]

    def _worst(self, samples: Union[Samples, Iterable[Samples]], exact: dict[str, Tensor],
               refs: ReferenceTerms) -> Deviations:
        """Per output the deviations of every group of samples, reduced (sets :attr:`outputs`, :attr:`names`)."""
        worst: Deviations = {}
        groups = iter([samples] if isinstance(samples, dict) else samples)
        for group in groups:
            if not worst:
                self.outputs = [n for n in exact if n in group]
                self.names = [n for n in self.outputs if exact[n].numel()]
            for name in self.names:
                found = self._deviations(group[name], exact[name], refs)
                worst[name] = found if name not in worst else [
                    worst[name][0] + found[0], torch.maximum(worst[name][1], found[1]),
                    torch.maximum(worst[name][2], found[2])]
            del group  # not held while the next group is computed
        return worst

    @staticmethod
    def _deviations(samples: Tensor, exact: Tensor, refs: ReferenceTerms) -> list[Tensor]:
        """Non-finite deviations, the largest |e - x| and the largest per-sample RMS of e - x,
        over the finite entries of `exact` (device scalars)."""
        e = samples.double()
        x64 = exact.detach().double().to(e.device)
        rows = _deviation_rows(e[None], x64[None, None], refs.finite(exact, e.device)[None, None],
                               refs.finite_count(exact, e.device)[None])
        return [row[0] for row in rows]

    def finish(self, values: Sequence[float]) -> dict[str, Metrics]:
        """The scales from the fetched values of :attr:`terms`."""
        scales = {n: Metrics(0.0, 0.0, 0) for n in self.outputs}  # no finite entry: no noise
        for i, name in enumerate(self.names):
            count, bad, max_abs, rms, ref_ok, rms_ref = values[6 * i:6 * i + 6]
            if not count:
                continue
            if bad:  # a baseline must never be infinitely loose
                raise EmulationError(f"the emulated baseline of {name!r} is not finite where the reference is")
            r = self.ref[name].detach().double()
            if ref_ok < r.numel():  # non-finite reference entries: masked out on the host's schedule
                rms_ref = r[torch.isfinite(r)].square().mean().sqrt().item()
            scales[name] = Metrics(max_abs, rms / (rms_ref + RMS_EPS), 0)
        return scales
