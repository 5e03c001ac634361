"""Monte Carlo emulation of a chunk mode's declared arithmetic: the baseline of chunk modes.

The chunked algorithm (chunk-local gate cumsum, intra-chunk scores, UT transform for the delta
rule, inter-chunk state passing) is run in float64 on the kernel's own inputs, ``SAMPLES`` times
at once (a leading sample dimension), with random relative rounding noise ``x -> x (1 + d)``
injected exactly where the declared arithmetic (:class:`~fla_check.verdict.arithmetic.Arithmetic`)
rounds:

==================  ================================================================  ==========
point               what                                                              ``d``
==================  ================================================================  ==========
gate cumsum         chunk-local cumsum of log-gates, held in fp32                     U(+-2 u32)
dot operand         ``store="input"`` with half inputs: the operand cast to the input     U(+-u_in)
                    dtype; else an fp32 operand: TF32 truncation (``dot="tf32"``)     U(-2^-10,0]
                    or fp32 (``"ieee"``)                                              U(+-u32)
dot accumulation    fp32 accumulation of an n-term dot: ``u32 sqrt(n) (|a| @ |b|)``   U(+-1)
store               intermediates (h, A_inv, w, u, v_new) in the declared store dtype  U(+-u_st)
recurrent u         delta rule, recurrent modes: u = v - S^T k as the backward reads it  U(+-u_st)
                    (forward exact, straight-through)
inverse             substitution: its backward error, every entry of A perturbed by    U(+-2 sqrt(n) u32)
                    (n = rows); blocked: 16x16 blocks so, merged with dots at the     operand
                    declared dot precision
output              o in the input dtype, the final state in fp32                     U(+-u_out)
==================  ================================================================  ==========

Stores and outputs also get absolute noise U(+-tiny/2), ``tiny`` the subnormal spacing of their
dtype (fp16: 2^-24): what rounding costs a value below the normal range.

(``u`` = unit roundoff: 2^-24 fp32, 2^-11 fp16, 2^-8 bf16.) Log-gates are clamped at
``-GATE_CLAMP`` before the cumsum: fills up to that size are modelled with their real fp32
cancellation (``eps32 |G|`` in the exponent: what a -1e4 fill costs every chunk kernel), larger
ones (-0.1*finfo.max) are not, so the damage they do stays flagged.

The noise is seeded and drawn on the case's device (replays on the same kind of device are
exact: :func:`noise_generator`; on a GPU one Triton launch per rounding point draws and applies it,
:mod:`fla_check.verdict.noise_kernel`; with the same draws, the chunked state passing one launch for
all its chunks, :mod:`fla_check.verdict.passing_kernel` (the delta rule's, two dots per chunk,
:mod:`fla_check.verdict.delta_kernel`), and GLA's and KDA's intra-chunk scores one launch,
:mod:`fla_check.verdict.scores_kernel`; points autograd differentiates draw in blocks ahead,
:class:`_Stream`); an emulation of some of the samples only (``rows``: memory bounded,
:func:`fla_check.verdict.baselines.sample_groups`) draws every sample's noise and keeps its rows,
so a group's samples are the ungrouped run's. Differentiable inputs flow through it:
autograd on the emulation gives the baseline of the gradients. The float64 reference stays the
simple step-wise loop of :mod:`fla_check.references`; this module only sizes the rounding a
correct chunk kernel of the declared arithmetic cannot avoid.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence, TypeVar, Union

import torch
from torch import Tensor

from fla_check.references.options import Prepare, expand_heads
from fla_check.references.recurrence import StepFn, readout, run_rows
from fla_check.verdict.arithmetic import TF32_TRUNC, Arithmetic

SAMPLES = 16
GATE_CLAMP = 1e5
U32 = 2.0**-24
UNIT_ROUNDOFF = {torch.float32: U32, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
BLOCK = 16  # diagonal block of a blocked inverse
SPLIT_SPAN = 300.0  # largest |G - G_r| in a sub-chunk whose diagonal scores are one matmul (exp(300) ~ 2e130)
# The whole-sequence kernels (scores_kernel, delta_kernel) and the chunked dots (dot_kernel) take cases of at least
# this many chunks: each binary costs 0.3-3 s of compiling per process (bench/compile_sm90.py --verdict), which a
# search of short cases pays on its clock for a few milliseconds of per-chunk launches saved (perf-h200-52: the
# cold first failure 18.3 -> 25.1 s, the kda ci profile 26 -> 36 s); long cases (T = 1024 at 64-token chunks)
# gained 10-30 % from the first two (perf-h200-49/50)
FUSED_MIN_CHUNKS = 16
_Out = TypeVar("_Out")  # what a fused launch returns


IN_KERNEL_ULPS = 4  # fp32 exp/log/sigmoid/rsqrt on a GPU: approximations a few ulp off (ex2/lg2.approx)


def _subnormal_spacing(dtype: torch.dtype) -> float:
    fin = torch.finfo(dtype)
    return fin.smallest_normal * fin.eps  # fp16 2^-24, bf16 2^-133, fp32 2^-149


def noise_generator(seed: int, device: torch.device) -> torch.Generator:
    """The seeded generator of the rounding noise, on the device the case runs on: drawing on
    the CPU and copying to a GPU cost a blocking copy (a stream sync) per rounding point, one
    per time step in a recurrent emulation. The stream of draws is that device type's (CPU:
    unchanged; CUDA: Philox), so a replay is exact on the same kind of device and within the
    sampling spread of the baseline elsewhere."""
    device = torch.device(device)
    return torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed % 2**63)


OFFSETS = 2**31  # elements one case's fused draw can number (Philox offsets are 32-bit)
NOISE_BLOCK = 2**22  # most uniforms a CUDA stream draws ahead at once (32 MB of float64)
BLOCK_AHEAD = 256  # a block holds this many draws of the size of the draw that starts it (NOISE_BLOCK at most)


def fused_noise(device: torch.device) -> bool:
    """Whether the rounding noise on `device` is applied by one Triton kernel per rounding point
    (:mod:`fla_check.verdict.noise_kernel`): on a GPU, where the emulation is bound by memory
    traffic. Points that autograd differentiates keep the torch ops."""
    return device.type == "cuda"


def drawn_ahead(device: torch.device) -> bool:
    """Whether noise on `device` is drawn in blocks ahead (:class:`_Stream`): on a GPU."""
    return device.type == "cuda"


class _Stream:
    """One case's uniforms. On the CPU each draw is its own ``torch.rand``. On a GPU, where every
    draw is a launch and an emulation draws at several points per chunk, draws are consecutive
    slices of blocks drawn ahead; a block is sized by the draw that starts it, so what a draw
    returns depends on the case's seed and its sequence of draw sizes only: the same values
    alone and in a batch of cases of its shape (:func:`fla_check.verdict.baselines.emulated_batch`)."""

    def __init__(self, gen: torch.Generator):
        self.gen = gen
        self.ahead = drawn_ahead(gen.device)
        self.block: Optional[Tensor] = None
        self.used = 0

    def take(self, shape: tuple) -> Tensor:
        if not self.ahead:
            return torch.rand(shape, generator=self.gen, dtype=torch.float64, device=self.gen.device)
        m = math.prod(shape)
        if m == 0:
            return torch.empty(shape, dtype=torch.float64, device=self.gen.device)
        if self.block is None or self.used + m > self.block.numel():
            size = max(m, min(NOISE_BLOCK, BLOCK_AHEAD * m))
            self.block = torch.rand(size, generator=self.gen, dtype=torch.float64, device=self.gen.device)
            self.used = 0
        out = self.block[self.used:self.used + m].view(shape)
        self.used += m
        return out


class Rounding:
    """Seeded rounding noise at the points a declared arithmetic rounds (module table)."""

    def __init__(self, arith: Arithmetic, dtype: torch.dtype, seed: Union[int, Sequence[int]], device: torch.device,
                 rows: Optional[slice] = None):
        seeds = [seed] if isinstance(seed, int) else list(seed)
        if len(seeds) > 1 and rows is not None:
            raise ValueError("the samples of several cases are drawn whole: no `rows`")
        # one generator per case: several cases run as one, case-major on the leading dimension
        self.streams = [_Stream(noise_generator(s, device)) for s in seeds]
        self.seeds = seeds
        self.fused = fused_noise(torch.device(device))
        self.min_chunks = FUSED_MIN_CHUNKS  # the fewest chunks a case takes the chunk-fused kernels at
        self._seeds_held: Optional[Tensor] = None  # `seeds` on the device, for the fused noise
        self.draws = 0  # draws so far: the fused noise's key (with the case's seed)
        self.device = device
        self.rows = rows  # the samples held, of SAMPLES drawn (None: all of them)
        self.u_in = UNIT_ROUNDOFF[dtype]
        self.half = dtype != torch.float32
        self.u_store = self.u_in if arith.store == "input" else U32
        self.tiny_in = _subnormal_spacing(dtype)
        self.tiny_store = self.tiny_in if arith.store == "input" else _subnormal_spacing(torch.float32)
        self.tf32 = arith.tf32(self.half)
        # fp32-operand dots (blocked-inverse merges run on fp32 operands whatever the input dtype)
        self.fp32_operand = (-TF32_TRUNC, 0.0) if self.tf32 else (-U32, U32)
        # half inputs: a kernel that stores in the input dtype also casts dot operands to it;
        # one that keeps fp32 intermediates dots fp32 operands
        cast = self.half and arith.store == "input"
        self.operand_range = (-self.u_in, self.u_in) if cast else self.fp32_operand

    def _uniform(self, shape: torch.Size) -> Tensor:
        """U[0, 1) float64 drawn on the generator's device (no host round trip). The leading
        dimension holds the samples, each with an equal block of rows after it (sample-major:
        the emulation's rows are samples x pieces, :class:`_Pieces`). With `rows`, every
        sample's noise is drawn (the stream of an ungrouped run) and the samples held are kept:
        on the CPU sample by sample (its draws are serial: the same stream, one sample at a time
        in memory), on a GPU in one draw of all samples (its blocks and Philox's stream depend on
        the draw's size)."""
        if self.rows is None:
            return self._draw(shape)
        held = range(SAMPLES)[self.rows]
        inner = (shape[0] // len(held),) + tuple(shape[1:])  # one sample's block
        if not self.streams[0].ahead:
            kept = []
            for i in range(SAMPLES):
                block = self._draw(inner)  # drawn either way: the samples outside `held` advance the stream
                if i in held:
                    kept.append(block)
            return torch.stack(kept).reshape(shape)
        return self._draw((SAMPLES,) + inner)[self.rows].reshape(shape).clone()

    def _fused(self, x: Tensor, m: Optional[Tensor], lo: float, w: float, mode: str) -> Optional[Tensor]:
        """``x + m (lo + w u)`` in one launch (:func:`fla_check.verdict.noise_kernel.perturbed`) on a
        GPU, where no gradient flows through it; None elsewhere (the torch ops then)."""
        start = self._fused_start(x.numel(), float64=[x], differentiable=[x, m])
        if start is None:
            return None
        from fla_check.verdict.noise_kernel import perturbed

        self.draws += 1
        return perturbed(x, m, lo, w, mode, self._seeds_on(x.device), self.draws, start)

    def fused_passing(self, h0: Optional[Tensor], decay: Tensor, added: Tensor,
                      keep: Optional[Tensor]) -> Optional[tuple[Tensor, Tensor]]:
        """:func:`_passed` in one launch (:func:`fla_check.verdict.passing_kernel.passed`: the noise
        :meth:`_fused` draws at each chunk's three rounding points) where :meth:`_fused` applies; else None."""
        inputs = [h0, decay, added]
        # each of its draws is one chunk's state
        start = self._fused_start(added[:, 0].numel(), float64=inputs, differentiable=inputs)
        if start is None:
            return None
        from fla_check.verdict.passing_kernel import passed

        out = passed(h0, decay, added, keep, self._seeds_on(added.device), self.draws, start,
                     self.u_store, self.tiny_store, U32)
        self.draws += 3 * added.shape[1]
        return out

    def fused_delta_passing(self, h0: Optional[Tensor], w_op: Tensor, u: Tensor, kg: Tensor, decay: Tensor,
                            keep: Optional[Tensor]) -> Optional[tuple[Tensor, Tensor, Tensor]]:
        """:func:`_delta_passed` in one launch (:func:`fla_check.verdict.delta_kernel.passed`: the noise the per-chunk
        path draws at each chunk's rounding points) where :meth:`_fused` applies; else None."""
        from fla_check.verdict.delta_kernel import Points, draws_per_chunk, fits, passed

        S, NT, H, C, K = w_op.shape
        V = u.shape[-1]
        inputs = [h0, w_op, u, kg, decay]
        start_state = self._fused_start(S * H * K * V, float64=inputs, differentiable=inputs)
        start_values = self._fused_start(S * H * C * V, float64=inputs, differentiable=inputs)
        if start_state is None or start_values is None or not fits(C, K) or NT < self.min_chunks:
            return None
        operand = not (self.half and self.u_store == self.u_in)  # as operand(x, stored=True): else no draw
        lo, hi = self.operand_range if operand else (0.0, 0.0)
        points = Points(self.u_store, self.tiny_store, lo, hi - lo, U32)
        return self._launched(lambda: passed(h0, w_op, u, kg, decay, keep, self._seeds_on(u.device), self.draws,
                                             (start_state, start_values), points), draws_per_chunk(points) * NT)

    def fused_scores(self, q: Tensor, k: Tensor, G: Tensor) -> Optional[Tensor]:
        """:func:`_gla_scores` in one launch (:func:`fla_check.verdict.scores_kernel.scores`: the accumulation
        noise :meth:`accumulated` draws) where :meth:`_fused` applies and the chunks are whole sub-chunks; else None."""
        from fla_check.verdict.scores_kernel import fits, scores

        C, K = q.shape[-2:]
        if q.dim() != 5 or not fits(C, K) or q.shape[1] < self.min_chunks:
            return None
        blocks = q.shape[:3].numel() * C * C  # the torch path draws [R, NT, H, NS, NS, BC, BC]: C x C per chunk
        start = self._fused_start(blocks, float64=[q, k, G], differentiable=[q, k, G])
        if start is None:
            return None
        return self._launched(lambda: scores(q, k, G, self._seeds_on(q.device), self.draws + 1, start, SPLIT_SPAN), 1)

    def _fused_start(self, drawn: int, float64: list[Optional[Tensor]],
                     differentiable: list[Optional[Tensor]]) -> Optional[int]:
        """Where a fused launch's draw of `drawn` elements starts in its case's full draw (:meth:`_start`),
        or None where the torch ops run instead: off a GPU, on inputs other than float64, where autograd
        differentiates an input, or past Philox's 32-bit offsets."""
        if not self.fused or any(x is not None and x.dtype != torch.float64 for x in float64) or (
                torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in differentiable)):
            return None
        start = self._start(drawn)
        return None if start + drawn // len(self.seeds) >= OFFSETS else start

    def _seeds_on(self, device: torch.device) -> Tensor:
        """The cases' seeds on `device` (int64), the fused kernels' keys."""
        if self._seeds_held is None:
            self._seeds_held = torch.tensor([s % 2**63 for s in self.seeds], dtype=torch.int64, device=device)
        return self._seeds_held

    def _start(self, drawn: int) -> int:
        """The place of the first of a draw's `drawn` elements in its case's full draw: with `rows`, the held
        samples' rows."""
        if self.rows is None:
            return 0
        held = range(SAMPLES)[self.rows]
        return held[0] * (drawn // len(held))

    def _draw(self, shape: tuple) -> Tensor:
        """U[0, 1) of `shape`; with several cases' generators, each draws its own equal block of the
        leading dimension (what it draws alone: the same stream, the same values)."""
        if len(self.streams) == 1:
            return self.streams[0].take(tuple(shape))
        n = len(self.streams)
        if shape[0] % n:
            raise ValueError(f"a draw of {tuple(shape)} does not split into {n} cases")
        own = (shape[0] // n,) + tuple(shape[1:])
        return torch.cat([stream.take(own) for stream in self.streams])

    def _noise(self, x: Tensor, lo: float, hi: float) -> Tensor:
        """x (1 + d), d ~ U(lo, hi), as x (1 + lo) + x u (hi - lo), u ~ U[0, 1): two ops besides
        the draw; on a GPU one launch for all of it (:meth:`_fused`)."""
        fused = self._fused(x, None, lo, hi - lo, "relative")
        if fused is not None:
            return fused
        return torch.addcmul(x * (1.0 + lo), x, self._uniform(x.shape).to(x.device), value=hi - lo)

    def relative(self, x: Tensor, u: float) -> Tensor:
        return self._noise(x, -u, u)

    def operand(self, x: Tensor, stored: bool = False) -> Tensor:
        """A dot operand; `stored`: already held in the store dtype (no second rounding when
        that is the half input dtype)."""
        if stored and self.half and self.u_store == self.u_in:
            return x
        return self._noise(x, *self.operand_range)

    def _underflow(self, x: Tensor, tiny: float) -> Tensor:
        """Absolute noise U(+-tiny/2): a format's rounding errs by max(u |x|, tiny/2), tiny its
        subnormal spacing (matters where whole outputs sit below fp16's normal range)."""
        fused = self._fused(x, None, -tiny / 2, tiny, "absolute")
        if fused is not None:
            return fused
        return torch.add(x - tiny / 2, self._uniform(x.shape).to(x.device), alpha=tiny)

    def store(self, x: Tensor) -> Tensor:
        return self._underflow(self.relative(x, self.u_store), self.tiny_store)

    def output(self, x: Tensor) -> Tensor:
        return self._underflow(self.relative(x, self.u_in), self.tiny_in)

    def dot(self, a: Tensor, b: Tensor, scale: float = 1.0, add: Optional[Tensor] = None) -> Tensor:
        """a @ b with fp32 accumulation noise (operands already rounded by the caller); with `add` (computed before:
        the draws keep their order), that times `scale` plus `add`."""
        fused = self.fused_dot(a, b, scale, add)
        if fused is not None:
            return fused
        out = self.accumulated(a @ b, a.abs() @ b.abs(), a.shape[-1])
        return out if add is None else out * scale + add

    def fused_dot(self, a: Tensor, b: Tensor, scale: float = 1.0, add: Optional[Tensor] = None) -> Optional[Tensor]:
        """:meth:`dot` in one launch (:func:`fla_check.verdict.dot_kernel.noisy_dot`: the noise :meth:`accumulated`
        draws, the scaling and `add` in place) on chunked operands [S,NT,H,m,n] of at least ``min_chunks`` chunks
        where :meth:`_fused` applies; else None."""
        if a.dim() != 5 or a.shape[:-2] != b.shape[:-2] or a.shape[1] < self.min_chunks or (
                add is not None and add.shape != a.shape[:-1] + b.shape[-1:]):
            return None
        start = self._fused_start(a.shape[:-1].numel() * b.shape[-1], float64=[a, b, add], differentiable=[a, b, add])
        if start is None:
            return None
        from fla_check.verdict.dot_kernel import noisy_dot

        acc_scale = U32 * math.sqrt(max(1, a.shape[-1]))
        return self._launched(lambda: noisy_dot(a, b, self._seeds_on(a.device), self.draws + 1, start, acc_scale,
                                                scale, add), 1)

    def _launched(self, launch: Callable[[], _Out], draws: int) -> Optional[_Out]:
        """`launch()`, a fused kernel keyed from the draws so far, which then takes `draws` draws; None and no draw
        taken where its shape is past the GPU's shared memory (the torch ops then run, with the same draws)."""
        from triton.runtime.errors import OutOfResources  # triton: imported once the backend is chosen

        try:
            out = launch()
        except OutOfResources:
            return None
        self.draws += draws
        return out

    def accumulated(self, ab: Tensor, bound: Tensor, n: int) -> Tensor:
        """`ab`, a dot of n-term sums whose |a| @ |b| is `bound`, with its fp32 accumulation noise
        (:meth:`dot` when the caller forms the products itself)."""
        acc = bound * (U32 * math.sqrt(max(1, n)))
        fused = self._fused(ab, acc, -1.0, 2.0, "scaled")
        if fused is not None:
            return fused
        return torch.addcmul(ab - acc, acc, self._uniform(acc.shape).to(acc.device), value=2.0)  # + acc (2u - 1)

    def fp32_dot(self, a: Tensor, b: Tensor) -> Tensor:
        """A dot on fp32 operands at the declared precision (inverse merges)."""
        return self.dot(self._noise(a, *self.fp32_operand), self._noise(b, *self.fp32_operand))

    def gate_cumsum(self, g: Tensor, chunk: int) -> Tensor:
        """Chunk-local inclusive cumsum over dim 2 of [S,T',H(,K)] (T' a multiple of chunk)."""
        S, T = g.shape[:2]
        G = g.clamp(min=-GATE_CLAMP).reshape((S, T // chunk, chunk) + tuple(g.shape[2:])).cumsum(2)
        return self.relative(G, 2 * U32).reshape(g.shape)


def emulate(op: str, step: StepFn, arith: Arithmetic, q: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor],
            beta: Optional[Tensor], h0: Optional[Tensor], cu_seqlens: Optional[Tensor], *,
            dtype: torch.dtype, seed: Union[int, Sequence[int]], scale: Optional[float] = None,
            reset_mask: Optional[Tensor] = None, prepare: Optional[Prepare] = None,
            rows: Optional[slice] = None) -> tuple[Tensor, Tensor]:
    """o [S,B,T,HV,V] and the final state [S,N,HV,K,V] of `op` ('gla', 'simple_gla', 'delta', 'gated_delta', 'kda';
    `step` its reference step) computed by the algorithm `arith` declares, with rounding noise.

    Every tensor input carries a leading sample dimension S and holds the kernel-dtype input
    values in float64. `reset_mask` [B,T] splits rows into segments run on their own (state
    zeroed at each marked step, as the reference's reset_mask), the truth of packing.
    `prepare` (the case's in-kernel options) is applied exactly first; grouped value heads
    are emulated on q, k expanded per value head (gradients sum over the group).
    `rows`: the inputs hold these of the SAMPLES samples only (:class:`Rounding`).
    Several `seed`s: as many cases of one shape, case-major on S (each its SAMPLES samples), each
    drawing its own noise: each case's samples are those it gets alone."""
    rnd = Rounding(arith, dtype, seed, q.device, rows)
    if prepare is not None:
        raw = (q, k, v, g, beta)
        q, k, v, g, beta = _computed_in_kernel(rnd, prepare, raw, prepare(*raw))
    q, k = expand_heads(q, v.shape[-2]), expand_heads(k, v.shape[-2])
    S, B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    pieces = _Pieces(B, T, cu_seqlens, reset_mask, S)
    args = [pieces.rows(x) for x in (q, k, v, g, beta)] + [pieces.initial(h0, (S, H, K, V)), scale]
    if arith.algorithm == "recurrent":
        o, h = _recurrent_sequence(rnd, arith, _stored_delta_step(rnd, op) if beta is not None else step, *args,
                                   lengths=pieces.row_lengths)
    else:
        sequence = {"gla": _gla_sequence, "simple_gla": _simple_gla_sequence}.get(op, _delta_sequence)
        o, h = sequence(rnd, arith.chunk, arith, *args, lengths=pieces.row_lengths)
    o, ht = pieces.outputs(o, h)
    return rnd.output(o), rnd.relative(ht, U32)


def padded_tokens(B: int, T: int, cu_seqlens: Optional[Tensor], reset_mask: Optional[Tensor]) -> int:
    """Tokens per sample the emulation runs: the case's pieces times the longest (:class:`_Pieces`;
    for a varlen case of uneven sequences more than its total). Reads cu_seqlens / the mask on the host."""
    pieces = _Pieces(B, T, cu_seqlens, reset_mask, 1)
    return len(pieces.spans) * pieces.t_max


class _Pieces:
    """A case's independent pieces as the rows of one emulation run: each batch row, each varlen
    sequence or, with a truth reset mask, each segment (run on its own: h0 enters a row's first
    piece only), zero-padded to the longest (a row stops at its length: its state is taken there),
    samples x pieces on the leading dimension, sample-major (:class:`Rounding` folds the pieces
    into the samples). Zero padding keeps a chunked state (k, v, beta, g all 0) as :func:`_pad` does."""

    def __init__(self, B: int, T: int, cu_seqlens: Optional[Tensor], reset_mask: Optional[Tensor], S: int):
        self.S, self.varlen = S, cu_seqlens is not None
        self.spans = [(n, b, s, e, i == 0) for n, (b, cuts) in enumerate(_spans(B, T, cu_seqlens, reset_mask))
                      for i, (s, e) in enumerate(cuts)]
        self.lengths = [e - s for _, _, s, e, _ in self.spans]
        self.t_max = max(self.lengths, default=0)
        # each piece one whole batch row, in order (no varlen, no truth segments): a reshape
        self.whole_rows = not self.varlen and [(b, s, e) for _, b, s, e, _ in self.spans] == [(b, 0, T) for b in range(B)]
        self.row_lengths = self.lengths * S  # per row of the run, sample-major

    def rows(self, x: Optional[Tensor]) -> Optional[Tensor]:
        """[S,B,T,*] -> [S*P,t_max,*]."""
        if x is None:
            return None
        if self.whole_rows:
            return x.flatten(0, 1)
        return torch.stack([torch.cat([x[:, b, s:e], x.new_zeros((self.S, self.t_max - (e - s)) + tuple(x.shape[3:]))], 1)
                            for _, b, s, e, _ in self.spans], 1).flatten(0, 1)

    def initial(self, h0: Optional[Tensor], shape: tuple) -> Optional[Tensor]:
        """Each piece's initial state [S*P,H,K,V]: h0 of its sequence for a first piece, else zeros."""
        if h0 is None:
            return None
        zeros = h0.new_zeros(shape)
        return torch.stack([h0[:, n] if first else zeros for n, _, _, _, first in self.spans], 1).flatten(0, 1)

    def outputs(self, o: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """The run's [S*P,t,H,V] outputs and [S*P,H,K,V] states back to o [S,B,T,H,V] (varlen:
        [S,1,total,H,V]) and the final state of each sequence [S,N,H,K,V] (its last piece's)."""
        o, h = o.unflatten(0, (self.S, len(self.spans))), h.unflatten(0, (self.S, len(self.spans)))
        if self.whole_rows:
            return o, h
        parts = [o[:, p, :length] for p, length in enumerate(self.lengths)]
        last = {n: p for p, (n, *_) in enumerate(self.spans)}
        ht = torch.stack([h[:, last[n]] for n in sorted(last)], 1)
        if self.varlen:
            return torch.cat(parts, 1)[:, None], ht
        rows = [torch.cat([parts[p] for p, (m, *_) in enumerate(self.spans) if m == n], 1) for n in sorted(last)]
        return torch.stack(rows, 1), ht


def _computed_in_kernel(rnd: Rounding, prepare: Prepare, raw: tuple, prepared: tuple) -> tuple:
    """The inputs a kernel computes from raw ones in fp32 (the in-kernel options: l2-normed q, k,
    the gate -exp(A_log) softplus(a + dt_bias), per head or per key channel (KDA), KDA's bounded
    gate lower_bound * sigmoid(exp(A_log) (a + dt_bias)), sigmoid beta) with that fp32 arithmetic's
    error: IN_KERNEL_ULPS relative, and for the gate the same absolute per unit of the prepare's
    ``gate_scale`` (references.options.gate_scale: exp(A_log), since softplus as log(1 + exp(x))
    errs by ~u32 absolute where it is small; |lower_bound| for the bounded gate, whose sigmoid
    argument's rounding moves it by < 0.23 |lower_bound| u). Accumulated over T
    decays this is what fla's gate-in-kernel recurrence shows on an H200 (ht ~1e-5 rel-RMSE,
    docs/gpu/features-h200-1); the CPU interpreter's exact numpy transcendentals do not."""
    u = IN_KERNEL_ULPS * U32
    out = []
    for name, before, after in zip("qkvgb", raw, prepared):
        if after is None or after is before:
            out.append(after)
            continue
        noisy = rnd.relative(after, u)
        scale = getattr(prepare, "gate_scale", None)
        if name == "g" and scale is not None:
            noisy = noisy + (rnd.relative(torch.ones_like(after), 1.0) - 1.0) * u * scale.to(after)
        out.append(noisy)
    return tuple(out)


def _spans(B: int, T: int, cu_seqlens: Optional[Tensor],
           reset_mask: Optional[Tensor]) -> list[tuple[int, list[tuple[int, int]]]]:
    """Per state (sequence): its batch row and its time spans [(start, end)], one span per
    segment when a reset mask splits the row."""
    if cu_seqlens is not None:
        bounds = cu_seqlens.tolist()
        return [(0, [(s, e)]) for s, e in zip(bounds[:-1], bounds[1:])]
    spans = []
    resets = None if reset_mask is None else reset_mask.cpu().tolist()  # one transfer, not one per step
    for b in range(B):
        starts = [0] if resets is None else [0] + [t for t in range(1, T) if resets[b][t]]
        spans.append((b, list(zip(starts, starts[1:] + [T]))))
    return spans


def _stored_delta_step(rnd: Rounding, op: str) -> StepFn:
    """The delta rule's step as recurrent kernels with a backward run it (fla's fused_recurrent):
    the forward keeps an fp32 state S and stores ``u = v - S^T k`` rounded at the store dtype;
    the backward rebuilds the state from the stored u, ``R_t = R_{t-1} + k_t beta_t u_t``, and
    takes dq, the dk correction and dbeta (a cancelling sum of stored terms) from R and u.

    The state carries both, [.., K, 2V]: S (values only, exact u) then R (rounded u, the
    gradient path). :func:`_recurrent_sequence` returns S's values with R's gradients; R's
    rounding drift grows with T, which an exact-state straight-through misses."""
    gated = op in ("gated_delta", "kda")

    def step(pair: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], beta: Tensor) -> Tensor:
        if gated:  # per-head gate [..,H] (Gated DeltaNet) or per key channel [..,H,K] (KDA)
            pair = pair * (g.exp()[..., None, None] if g.dim() == pair.dim() - 2 else g.exp()[..., None])
        V = v.shape[-1]
        S, R = pair[..., :V], pair[..., V:]
        along_r = v - readout(R, k)
        err = along_r + (v - readout(S, k) - along_r).detach()  # value: S's; gradient: R's
        u = err + (rnd.store(err) - err).detach()  # value: as stored
        S = torch.addcmul(S, k[..., None], (beta[..., None] * err)[..., None, :]).detach()
        R = torch.addcmul(R, k[..., None], (beta[..., None] * u)[..., None, :])
        return torch.cat([S, R], -1)

    step.paired = True  # type: ignore[attr-defined]
    return step


def _recurrent_sequence(rnd: Rounding, arith: Arithmetic, step: StepFn, q, k, v, g, beta, h0, scale, *,
                        lengths: Optional[list[int]] = None):
    """Rows [R,T,H,*] step by step (the samples x pieces as the batch, sample-major:
    :class:`_Pieces`), each stopping at its length, the state rounded at every step in the declared state dtype. A
    paired step (:func:`_stored_delta_step`) runs on [values | gradient path] states: outputs
    take the first half's values, the second's gradients."""
    u_state = rnd.u_in if arith.state == "input" else U32
    noisy = lambda S, *xs: rnd.relative(step(S, *xs), u_state)  # noqa: E731
    loop = functools.partial(run_rows, scale=scale, lengths=lengths)
    if not getattr(step, "paired", False):
        return loop(noisy, q, k, v, g, beta, initial_state=h0)
    V = v.shape[-1]
    h0 = q.new_zeros(*q.shape[:1], q.shape[2], q.shape[3], V) if h0 is None else h0
    o, ht = loop(noisy, q, k, v, g, beta, initial_state=torch.cat([h0, h0], -1))
    values_with_path = lambda x: x[..., V:] + (x[..., :V] - x[..., V:]).detach()  # noqa: E731
    return o if o.shape[-1] == V else values_with_path(o), values_with_path(ht)  # o [.., 0, H, V] when T = 0


def _chunk_keep(lengths: Optional[list[int]], chunk: int, chunks: int, device) -> Optional[Tensor]:
    """[chunks, R] bool: chunk c still inside row r (rows of :class:`_Pieces` stop at their own
    length); None when every row runs every chunk. Built on the host once per run."""
    if lengths is None:
        return None
    counts = [-(-length // chunk) for length in lengths]
    if all(n == chunks for n in counts):
        return None
    return torch.tensor([[c < n for n in counts] for c in range(chunks)], dtype=torch.bool).to(device)


def _kept(keep: Optional[Tensor], c: int, h: Tensor, h_new: Tensor) -> Tensor:
    """The state after chunk c: `h_new` in the rows still running, `h` in those past their end."""
    return h_new if keep is None else torch.where(keep[c][:, None, None, None], h_new, h)


def _pad(x: Optional[Tensor], chunk: int) -> Optional[Tensor]:
    """Zero-pad dim 1 (time) to a multiple of `chunk` (zero k, v, beta, g: the state is kept)."""
    if x is None:
        return None
    pad = (-x.shape[1]) % chunk
    return torch.cat([x, x.new_zeros((x.shape[0], pad) + tuple(x.shape[2:]))], 1) if pad else x


def _chunks(x: Tensor, chunk: int) -> Tensor:
    """[S,T',H,D] -> [S,NT,H,C,D] (or [S,T',H] -> [S,NT,H,C])."""
    S, T = x.shape[:2]
    x = x.reshape((S, T // chunk, chunk) + tuple(x.shape[2:]))
    return x.transpose(2, 3)


def _gla_sequence(rnd: Rounding, C: int, arith: Arithmetic, q, k, v, g, beta, h0, scale, *,
                  lengths: Optional[list[int]] = None):
    """GLA rows [R,T,H,*] (samples x pieces, :class:`_Pieces`): chunk-local cumsum, intra scores, state passing."""
    S, T, H, K = q.shape
    V = v.shape[-1]
    if T == 0:
        return q.new_zeros(S, 0, H, V), (q.new_zeros(S, H, K, V) if h0 is None else h0)
    q, k, v, g = (_pad(x, C) for x in (q, k, v, g))
    qc, kc, vc = (_chunks(x, C) for x in (q, k, v))  # [S,NT,H,C,*]
    G = _chunks(rnd.gate_cumsum(g, C), C)  # [S,NT,H,C,K]
    A = rnd.operand(rnd.store(_gla_scores(rnd, rnd.operand(qc), rnd.operand(kc), G) * scale))
    o_intra = rnd.dot(A, rnd.operand(vc))
    qg = rnd.operand(qc * G.exp())
    g_last = G[..., -1:, :]  # [S,NT,H,1,K]
    kg = rnd.operand(kc * (g_last - G).exp())
    # what the state passing adds per chunk, k^T v, does not depend on the state: every chunk's at once
    kv = rnd.dot(kg.transpose(-1, -2), rnd.operand(vc))  # [S,NT,H,K,V]
    stored, h = _passed(rnd, h0, g_last[..., 0, :, None].exp(), kv, lengths, C)
    o = rnd.dot(qg, rnd.operand(stored, stored=True), scale, o_intra)  # each chunk's q on its stored state, + o_intra
    return o.transpose(2, 3).reshape(S, -1, H, V)[:, :T], h


def _passed(rnd: Rounding, h0: Optional[Tensor], decay: Tensor, added: Tensor, lengths: Optional[list[int]],
            C: int) -> tuple[Tensor, Tensor]:
    """The chunked state passing h <- round(h * decay_c + added_c) over the chunks of `added`
    [S,NT,H,K,V] (`decay` [S,NT,H,K or 1,1]): (the state each chunk starts from as the kernel
    stores it [S,NT,H,K,V], the final state). Only these launches are paid per chunk; what reads
    the stored states runs once on all of them."""
    S, NT, H, K, V = added.shape
    keep = _chunk_keep(lengths, C, NT, added.device)
    fused = rnd.fused_passing(h0, decay, added, keep)
    if fused is not None:
        return fused
    h = added.new_zeros(S, H, K, V) if h0 is None else h0
    stored = []
    for c in range(NT):
        stored.append(rnd.store(h))
        h = _kept(keep, c, h, rnd.relative(h * decay[:, c] + added[:, c], U32))
    return torch.stack(stored, 1), h  # NT >= 1: the callers return before at T = 0


def _gla_scores(rnd: Rounding, q: Tensor, k: Tensor, G: Tensor) -> Tensor:
    """Lower-triangular sum_k q_ik k_jk exp(G_ik - G_jk) over [...,C,K] chunks, by 16-row
    sub-chunks as fla does: off-diagonal blocks as dots of (q_i exp(G_i - G_r)) and
    (k_j exp(G_r - G_j)), r the sub-chunk's first row (both factors <= 1 for log-gates <= 0,
    so nothing overflows), diagonal blocks exactly in float64 (:func:`_diagonal_scores`). On a GPU one
    launch (:meth:`Rounding.fused_scores`)."""
    fused = rnd.fused_scores(q, k, G)
    if fused is not None:
        return fused
    C, K = q.shape[-2:]
    bc = min(BLOCK, C)
    ns = C // bc
    sub = lambda x: x.reshape(x.shape[:-2] + (ns, bc, K))  # noqa: E731 - [...,NS,BC,K]
    qs, ks, Gs = sub(q), sub(k), sub(G)
    Gr = Gs[..., :, :1, :]  # first row of each sub-chunk [...,NS,1,K]
    qf = qs * (Gs - Gr).exp()  # [...,NS(a),BC,K]
    keep = torch.ones(ns, ns, dtype=torch.bool, device=q.device).tril(-1)[:, :, None, None]  # b < a
    expo = (Gr[..., :, None, :, :] - Gs[..., None, :, :, :]).masked_fill(~keep, -math.inf)  # never exp(+big)
    kf = ks[..., None, :, :, :] * expo.exp()  # [...,a,b,BC,K]
    # one [BC, K] x [K, NS*BC] product per a (not qf expanded over b: a copy NS times its size)
    rows = kf.reshape(kf.shape[:-4] + (ns, ns * bc, K)).transpose(-1, -2)  # [...,a,K,b*BC]
    split = lambda x: x.reshape(x.shape[:-1] + (ns, bc)).transpose(-3, -2)  # noqa: E731 - [...,a,b,BC,BC]
    blocks = rnd.accumulated(split(qf @ rows), split(qf.abs() @ rows.abs()), K)
    diag = _diagonal_scores(qs, ks, Gs, Gr, qf)  # [...,NS,BC,BC]
    eye = torch.eye(ns, dtype=torch.bool, device=q.device)[:, :, None, None]
    blocks = torch.where(eye, diag[..., :, None, :, :], blocks)
    return blocks.transpose(-3, -2).reshape(q.shape[:-2] + (C, C))


def _diagonal_scores(qs: Tensor, ks: Tensor, Gs: Tensor, Gr: Tensor, qf: Tensor) -> Tensor:
    """The diagonal blocks sum_k q_ik k_jk exp(G_ik - G_jk), j <= i, of sub-chunks [...,NS,BC,K]
    (`Gr` their first rows, `qf` = q_i exp(G_i - G_r)), exact in float64 (the kernel's rounding
    is sampled at its operands and its store). As one batched matmul of `qf` and k_j exp(G_r - G_j)
    when no factor can overflow (every |G - G_r| <= :data:`SPLIT_SPAN`: one host read per call,
    not per chunk); else elementwise with exp(G_i - G_j), a [BC, BC, K] product per sub-chunk
    row, 16 times the inputs' memory (extreme fills: -1e4 within a sub-chunk). The two agree to
    float64 rounding; the matmul took the bytes a gla fp32 case's emulation moves at T = 1024 from
    20.9 to 16.2 GB (bench/emulation_traffic.py)."""
    lower = torch.ones(Gs.shape[-2], Gs.shape[-2], dtype=torch.bool, device=Gs.device).tril()
    span = Gs - Gr
    if bool(span.abs().nan_to_num(nan=math.inf).amax() <= SPLIT_SPAN):
        kf = ks * (-span).exp()
        return (qf @ kf.transpose(-1, -2)).masked_fill(~lower, 0.0)
    diff = (Gs[..., :, None, :] - Gs[..., None, :, :]).masked_fill(~lower[..., None], -math.inf)
    return (qs[..., :, None, :] * ks[..., None, :, :] * diff.exp()).sum(-1)


def _simple_gla_sequence(rnd: Rounding, C: int, arith: Arithmetic, q, k, v, g, beta, h0, scale, *,
                         lengths: Optional[list[int]] = None):
    """Simple GLA rows [R,T,H,*] (scalar gate per head; samples x pieces): chunk-local cumsum, one
    exp(G_i - G_j) decay matrix per chunk, state passing (values decayed to the chunk's end)."""
    S, T, H, K = q.shape
    V = v.shape[-1]
    if T == 0:
        return q.new_zeros(S, 0, H, V), (q.new_zeros(S, H, K, V) if h0 is None else h0)
    q, k, v, g = (_pad(x, C) for x in (q, k, v, g))
    qc, kc, vc = (_chunks(x, C) for x in (q, k, v))  # [S,NT,H,C,*]
    G = _chunks(rnd.gate_cumsum(g, C), C)[..., None]  # [S,NT,H,C,1]
    kop = rnd.operand(kc)
    A = rnd.operand((rnd.dot(rnd.operand(qc), kop.transpose(-1, -2)) * _decay(G)).tril())
    o_intra = rnd.dot(A, rnd.operand(vc))
    qg = rnd.operand(qc * G.exp())
    g_last = G[..., -1:, :]  # [S,NT,H,1,1]
    vg = rnd.operand(vc * (g_last - G).exp())
    kv = rnd.dot(kop.transpose(-1, -2), vg)  # [S,NT,H,K,V]: every chunk's at once (_passed)
    stored, h = _passed(rnd, h0, g_last.exp(), kv, lengths, C)
    o = (rnd.dot(qg, rnd.operand(stored, stored=True)) + o_intra) * scale
    return o.transpose(2, 3).reshape(S, -1, H, V)[:, :T], h


def _delta_sequence(rnd: Rounding, C: int, arith: Arithmetic, q, k, v, g, beta, h0, scale, *,
                    lengths: Optional[list[int]] = None):
    """DeltaNet / Gated DeltaNet / KDA rows [R,T,H,*] (samples x pieces): UT transform, state passing, output."""
    S, T, H, K = q.shape
    V = v.shape[-1]
    if T == 0:
        return q.new_zeros(S, 0, H, V), (q.new_zeros(S, H, K, V) if h0 is None else h0)
    q, k, v, g, beta = (_pad(x, C) for x in (q, k, v, g, beta))
    qc, kc, vc = (_chunks(x, C) for x in (q, k, v))  # [S,NT,H,C,*]
    bc = _chunks(beta, C)[..., None]  # [S,NT,H,C,1]
    per_key = g is not None and g.dim() == q.dim()  # KDA's gate [S,T,H,K]
    if g is None:
        G = torch.zeros_like(bc)
    elif per_key:
        G = _chunks(rnd.gate_cumsum(g, C), C)  # [S,NT,H,C,K]
    else:
        G = _chunks(rnd.gate_cumsum(g, C), C)[..., None]  # [S,NT,H,C,1]
    if per_key:  # no rank-one decay matrix: scores by sub-chunk blocks, as GLA's
        kk = _gla_scores(rnd, rnd.operand(kc), rnd.operand(kc), G)
        _, w, u = _ut_transform(rnd, arith, kc, vc, bc, G, None, kk=kk)
        Aqk = rnd.operand(_gla_scores(rnd, rnd.operand(qc), rnd.operand(kc), G) * scale)
    else:
        decay = _decay(G)
        _, w, u = _ut_transform(rnd, arith, kc, vc, bc, G, decay)
        Aqk = rnd.operand((rnd.dot(rnd.operand(qc), rnd.operand(kc).transpose(-1, -2)) * decay).tril() * scale)
    qg = rnd.operand(qc * G.exp())
    g_last = G[..., -1:, :]
    kg = rnd.operand(kc * (g_last - G).exp())
    decay = g_last[..., 0, :, None].exp()  # [S,NT,H,K or 1,1]: every chunk's at once
    hs_all, vn_all, h = _delta_passed(rnd, h0, rnd.operand(w, stored=True), u, kg, decay, lengths, C)
    # the outputs read the states and new values only: once for all the chunks, after the state passing
    o = rnd.dot(qg, hs_all) * scale + rnd.dot(Aqk, vn_all)
    return o.transpose(2, 3).reshape(S, -1, H, V)[:, :T], h


def _delta_passed(rnd: Rounding, h0: Optional[Tensor], w_op: Tensor, u: Tensor, kg: Tensor, decay: Tensor,
                  lengths: Optional[list[int]], C: int) -> tuple[Tensor, Tensor, Tensor]:
    """The delta rule's chunked state passing over the chunks of `w_op` (dot operands), `kg` [S,NT,H,C,K] and
    `u` [S,NT,H,C,V] (`decay` [S,NT,H,K or 1,1]): (the state each chunk reads, as a dot operand [S,NT,H,K,V],
    its new values u - w h as dot operands [S,NT,H,C,V], the final state). On a GPU one launch
    (:meth:`Rounding.fused_delta_passing`)."""
    keep = _chunk_keep(lengths, C, u.shape[1], u.device)
    fused = rnd.fused_delta_passing(h0, w_op, u, kg, decay, keep)
    if fused is not None:
        return fused
    S, NT, H, _, K = kg.shape
    h = u.new_zeros(S, H, K, u.shape[-1]) if h0 is None else h0
    states, values = [], []
    for c in range(NT):
        hs_op = rnd.operand(rnd.store(h), stored=True)
        vn_op = rnd.operand(rnd.store(u[:, c] - rnd.dot(w_op[:, c], hs_op)), stored=True)
        states.append(hs_op)
        values.append(vn_op)
        h = _kept(keep, c, h, rnd.relative(h * decay[:, c] + rnd.dot(kg[:, c].transpose(-1, -2), vn_op), U32))
    return torch.stack(states, 1), torch.stack(values, 1), h  # NT >= 1: the callers return before at T = 0


def _decay(G: Tensor) -> Tensor:
    """exp(G_i - G_j) for j <= i, else 0, from per-row cumulative gates [...,C,1]."""
    C = G.shape[-2]
    lower = torch.ones(C, C, dtype=torch.bool, device=G.device).tril()
    return (G - G.transpose(-1, -2)).masked_fill(~lower, -math.inf).exp()


def _ut_transform(rnd: Rounding, arith: Arithmetic, k: Tensor, v: Tensor, beta: Tensor, G: Tensor,
                  decay: Optional[Tensor], kk: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """A_inv = (I + strictly_lower(diag(beta) K K^T exp(G_i - G_j)))^-1, w = A_inv diag(beta) (K exp(G)),
    u = A_inv diag(beta) V, for chunks k [...,C,K], v [...,C,V], beta [...,C,1] and G [...,C,1]
    (per head, with `decay` = exp(G_i - G_j)) or [...,C,K] (per key channel, KDA: `kk` holds the
    already-computed scores sum_c k_ic k_jc exp(G_ic - G_jc))."""
    if kk is not None:
        A = rnd.relative(kk * beta, U32).tril(-1)
    else:
        kb = rnd.operand(k * beta)
        A = rnd.relative(rnd.dot(kb, rnd.operand(k).transpose(-1, -2)) * decay, U32).tril(-1)
    A_inv = rnd.store(_inverse(rnd, arith, A))
    w = rnd.store(rnd.dot(rnd.operand(A_inv, stored=True), rnd.operand(k * beta * G.exp())))
    u = rnd.store(rnd.dot(rnd.operand(A_inv, stored=True), rnd.operand(v * beta)))
    return A_inv, w, u


def emulate_ut(arith: Arithmetic, k: Tensor, v: Tensor, beta: Tensor, g: Optional[Tensor], *,
               dtype: torch.dtype, seed: int) -> dict[str, Tensor]:
    """The UT transform of one chunk per head by `arith`, with rounding noise: inputs
    k [S,H,n,K], v [S,H,n,V], beta [S,H,n], g [S,H,n] or None (float64, leading sample
    dimension); returns A_inv [S,H,n,n], w, u (the chunk-local gate cumsum is taken here)."""
    rnd = Rounding(arith, dtype, seed, k.device)
    if g is None:
        G = torch.zeros_like(beta)[..., None]
    else:
        G = rnd.relative(g.clamp(min=-GATE_CLAMP).cumsum(-1), 2 * U32)[..., None]
    A_inv, w, u = _ut_transform(rnd, arith, k, v, beta[..., None], G, _decay(G))
    return {"A_inv": A_inv, "w": w, "u": u}


def _inverse(rnd: Rounding, arith: Arithmetic, A: Tensor) -> Tensor:
    """(I + A)^-1 for strictly lower-triangular A [...,C,C], by the declared structure."""
    C = A.shape[-1]
    if arith.inverse == "blocked" and C > BLOCK:
        return _blocked_inverse(rnd, A)
    return _substitution_inverse(rnd, A)


def _substitution_inverse(rnd: Rounding, A: Tensor) -> Tensor:
    """(I + A)^-1 by fp32 forward substitution, as its backward error: the exact inverse of
    I + A with every entry of A perturbed by U(+-2 sqrt(n) u32) (a triangular solve is
    backward stable; Higham, Accuracy and Stability of Numerical Algorithms, Thm 8.5)."""
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    noisy = rnd.relative(A, 2 * math.sqrt(n) * U32)
    return torch.linalg.solve_triangular(eye + noisy, eye.expand(A.shape), upper=False, unitriangular=True)


def _blocked_inverse(rnd: Rounding, A: Tensor) -> Tensor:
    """16x16 diagonal blocks by substitution, merged pairwise (16 -> 32 -> 64) with dots at
    the declared precision: [[X1, 0], [-X2 A21 X1, X2]]."""
    C = A.shape[-1]
    blocks = [_substitution_inverse(rnd, A[..., i:i + BLOCK, i:i + BLOCK]) for i in range(0, C, BLOCK)]
    size = BLOCK
    while len(blocks) > 1:
        merged = []
        for j in range(0, len(blocks), 2):
            X1, X2 = blocks[j], blocks[j + 1]
            o = j * size
            A21 = A[..., o + size:o + 2 * size, o:o + size]
            X21 = -rnd.fp32_dot(X2, rnd.fp32_dot(A21, X1))
            top = torch.cat([X1, torch.zeros_like(X1)], -1)
            merged.append(torch.cat([top, torch.cat([X21, X2], -1)], -2))
        blocks, size = merged, 2 * size
    return blocks[0]
