"""A mode's baseline: the error its declared arithmetic makes on a case, sampled.

:func:`baseline_samples` runs :func:`~fla_check.verdict.emulation.emulate` for a case (all
``SAMPLES`` at once, each sample its own autograd leaves, so gradients come per sample) and
:func:`noise_scales` reduces the samples to the two numbers the verdict scales by, per output:
``s = max_j rms(e_j - x) / rms(r)`` and ``m = max_j max|e_j - x|`` where ``x`` is the exact
answer of the problem the samples solve and ``r`` the reference the kernel is judged against
(the same tensor in ``run``; the per-segment truth in ``sweep-mask-values``).
"""
from __future__ import annotations

import contextlib
import zlib
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

from fla_check.cases import CaseInputs
from fla_check.verdict.compare import RMS_EPS, Metrics
from fla_check.verdict.host import to_host
from fla_check.cases import GRAD_NAMES, Upstream
from fla_check.ops import OpSpec
from fla_check.references import reference
from fla_check.verdict.arithmetic import RECURRENT_FP32, Arithmetic
from fla_check.verdict.emulation import SAMPLES, U32, Rounding, emulate
from fla_check.errors import EmulationError  # noqa: F401 (re-exported)

_INPUTS = ("q", "k", "v", "g", "beta", "initial_state")


_GRAD_SALT = 0x5DEECE66D
FP32_OUTPUTS = frozenset({"ht", "dh0"})  # returned in fp32 whatever the input dtype


def sample_seed(case_seed: int, arith: Arithmetic, truth: bool = False) -> int:
    """The noise seed of a case and declaration (stable across processes: replays are exact)."""
    tag = f"{arith.to_json()}|{truth}".encode()
    return (case_seed * 1_000_003 + zlib.crc32(tag)) % 2**63


def baseline_samples(op: OpSpec, arith: Arithmetic, inputs: CaseInputs, dtype: torch.dtype, seed: int, *,
                     up: Optional[Upstream] = None, truth: bool = False,
                     exact: Optional[dict[str, Tensor]] = None) -> dict[str, Tensor]:
    """Named outputs (o, ht and, with `up`, the gradients) of the emulation, each with a
    leading sample dimension. `truth`: run each reset-mask segment on its own.

    `exact`: the float64 answer of the same problem, when the caller has it. A recurrent mode
    with an fp32 state then needs no emulated loop: its only rounding above fp32 level is each
    output's rounding to the dtype it is returned in (the state's fp32 rounding is inside the
    verdict's fp32 slack), so the samples are `exact` rounded that way, plus, for decay-only ops,
    the readout's K-term fp32 sum (:func:`_with_readout_noise`) -- except the delta rule's
    gradients, whose dbeta sums stored terms (emulation._stored_delta_step)."""
    if exact is not None and arith.algorithm == "recurrent" and arith.state == "fp32" and not (
            up is not None and inputs.beta is not None) and inputs.prepare is None:
        # emulated instead: dbeta (a cancelling sum of stored terms); in-kernel options (fp32
        # transcendentals on the kernel's own inputs, emulation._computed_in_kernel)
        samples = rounded_outputs(exact, dtype, seed)
        readout = _readout_terms(op, inputs, truth)
        if readout is not None and "o" in samples:
            samples["o"] = _with_readout_noise(samples["o"], readout, inputs.tensors()[0].shape[-1], seed)
        return samples
    with single_thread():
        return _emulated_samples(op, arith, inputs, dtype, seed, up, truth)


_READOUT_SALT = 0x9E3779B9


def _readout_terms(op: OpSpec, inputs: CaseInputs, truth: bool) -> Optional[Tensor]:
    """sum_k |q_k| |S_kv| per output element, for ops whose state only decays (no beta): the
    float64 recurrence on |q|, |k|, |v| (and |h0|) bounds every term of the readout o = S^T q.
    None for the delta rule, whose state has no such bound."""
    q, k, v, g, beta = inputs.tensors()
    if beta is not None:
        return None
    h0 = inputs.initial_state
    split = {"reset_mask": inputs.reset_mask} if truth and inputs.reset_mask is not None else {}
    o_abs, _ = reference(op.step, q.abs(), k.abs(), v.abs(), g, None,
                         initial_state=None if h0 is None else h0.abs(), cu_seqlens=inputs.cu_seqlens, **split)
    return o_abs


def _with_readout_noise(o: Tensor, terms: Tensor, K: int, seed: int) -> Tensor:
    """The readout's fp32 accumulation, as :meth:`Rounding.dot` samples it for chunk modes:
    ``U(+-1) u32 sqrt(K) sum_k |q_k S_kv|``. Without it a recurrent fp32 mode whose o cancels
    (q . k ~ 0) was a false alarm: built-in recurrent GLA, fp32, T=1, K=V=60, o at 2.7x its bound."""
    rnd = Rounding(RECURRENT_FP32, torch.float32, seed ^ _READOUT_SALT, o.device)
    d = rnd._uniform(o.shape).to(o.device) * 2 - 1
    return o + d * terms.to(o)[None] * (U32 * K ** 0.5)


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
                      up: Optional[Upstream], truth: bool) -> dict[str, Tensor]:
    tensors = dict(zip(_INPUTS, (*inputs.tensors(), inputs.initial_state)))
    leaves = {n: None if x is None else _sampled(x) for n, x in tensors.items()}
    if up is not None:
        for x in leaves.values():
            if x is not None:
                x.requires_grad_()
    with torch.enable_grad() if up is not None else torch.no_grad():
        o, ht = emulate(op.name, op.step, arith, *(leaves[n] for n in _INPUTS), inputs.cu_seqlens, dtype=dtype,
                        seed=seed, reset_mask=inputs.reset_mask if truth else None,
                        prepare=inputs.prepare)
        out = {"o": o, "ht": ht}
        if up is not None:
            loss = (o * up.do).sum() + (ht * up.dht).sum()
            present = {n: x for n, x in leaves.items() if x is not None}
            grads = torch.autograd.grad(loss, list(present.values()), allow_unused=True)
            rnd = Rounding(arith, dtype, seed ^ _GRAD_SALT, o.device)
            for (n, x), d in zip(present.items(), grads):
                out[GRAD_NAMES[n]] = _returned(rnd, GRAD_NAMES[n], torch.zeros_like(x) if d is None else d)
    return {n: x.detach() for n, x in out.items()}


def rounded_outputs(exact: dict[str, Tensor], dtype: torch.dtype, seed: int) -> dict[str, Tensor]:
    """SAMPLES copies of each output rounded to the dtype it is returned in: the final state and
    dh0 in fp32, everything else in the input dtype (x -> x (1 + d), d ~ U(+-u))."""
    rnd = Rounding(RECURRENT_FP32, dtype, seed, next(iter(exact.values())).device)
    out = {}
    for name, x in exact.items():
        out[name] = _returned(rnd, name, _sampled(x))
    return out


def _sampled(x: Tensor) -> Tensor:
    """SAMPLES float64 copies of `x` on a leading dimension."""
    return x.detach().double()[None].repeat((SAMPLES,) + (1,) * x.dim())


def _returned(rnd: Rounding, name: str, x: Tensor) -> Tensor:
    """`x` rounded to the dtype output `name` is returned in: states (ht, dh0) in fp32, the rest
    (o and the input gradients) in the input dtype."""
    return rnd.relative(x, U32) if name in FP32_OUTPUTS else rnd.output(x)


def noise_scales(samples: dict[str, Tensor], exact: dict[str, Tensor],
                 ref: Optional[dict[str, Tensor]] = None) -> dict[str, Metrics]:
    """Per output: the samples' largest max-abs deviation from `exact` and largest RMS
    deviation relative to rms(`ref`) (default: `exact`). Reduced on the samples' device and
    fetched in one host transfer."""
    pending = PendingScales(samples, exact, ref)
    return pending.finish(to_host(pending.terms))


class PendingScales:
    """:func:`noise_scales` in two steps: :attr:`terms`, the device scalars to fetch (a caller
    may fetch them with its own in one transfer), then :meth:`finish` on their values."""

    def __init__(self, samples: dict[str, Tensor], exact: dict[str, Tensor],
                 ref: Optional[dict[str, Tensor]] = None):
        self.exact, self.ref = exact, exact if ref is None else ref
        self.outputs = [n for n in exact if n in samples]
        self.names = [n for n in self.outputs if exact[n].numel()]
        self.terms: list[Tensor] = []
        for name in self.names:
            e = samples[name].double()
            x64 = exact[name].detach().double().to(e.device)
            finite = torch.isfinite(x64)
            count = finite.sum()
            diff = torch.where(finite, e - x64, torch.zeros_like(e)).flatten(1)
            r = self.ref[name].detach().double().to(e.device)
            self.terms += [count, (~torch.isfinite(diff)).sum(), diff.abs().max(),
                           diff.square().sum(1).div(count).sqrt().max(), torch.isfinite(r).sum(),
                           r.contiguous().square().mean().sqrt() if r.numel() else r.new_zeros(())]

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
