"""The baseline samples' deviations from their answer in one Triton read, on a GPU (issue 17, goal 3).

:func:`fla_check.verdict.baselines._deviation_rows` reduces a batch's samples ``e`` [cases, samples, ...] against
each case's answer ``x``: the non-finite deviations, the largest ``|e - x|`` and the largest per-sample RMS, over the
answer's finite entries. With torch ops that is about a dozen passes over the samples (the difference, its mask,
its non-finite test, ``abs``, ``square`` and their sums): about 1.0 of the 4.19 GB a gla bf16 case's baselines moved
on the GPU's path at T = 1024 on b5a6103 (`TRITON_INTERPRET=1 python3 bench/emulation_traffic.py --op gla --dtype
bfloat16 --modes chunk,fused_chunk --cases 2 --fused --by site`: lines baselines:330-332 and reductions:34). Here each program reads a stretch of one sample's row once (its
answer's stretch, shared by the case's samples, from L2) and writes three partial sums; the parts are combined by
torch on a few floats per row. Counts and maxima are exact; the RMS sums in another order (float64 rounding).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from fla_check.verdict.noise_kernel import CPU_BLOCK

BLOCK = 1024  # elements per step on a GPU; the interpreter takes larger steps
STEPS = 8  # steps per program: a program reads 64 KB of samples
TERMS = 3  # partials per program: non-finite deviations, max |d|, sum d^2


@triton.jit(do_not_specialize=["n", "samples", "parts"])
def _deviation_kernel(e_ptr, x_ptr, out_ptr, n, samples, parts, BLOCK: tl.constexpr, STEPS: tl.constexpr):
    row, part = tl.program_id(0), tl.program_id(1)  # rows (case, sample) fastest: a case's samples share x in L2
    e_row = e_ptr + row.to(tl.int64) * n
    x_row = x_ptr + (row // samples).to(tl.int64) * n
    bad = tl.zeros([BLOCK], dtype=tl.float64)
    largest = tl.zeros([BLOCK], dtype=tl.float64)
    squares = tl.zeros([BLOCK], dtype=tl.float64)
    for step in range(STEPS):
        idx = (part * STEPS + step) * BLOCK + tl.arange(0, BLOCK)
        keep = idx < n
        x = tl.load(x_row + idx, mask=keep, other=0.0)
        e = tl.load(e_row + idx, mask=keep, other=0.0)
        d = tl.where(x - x == 0, e - x, 0.0)  # over the answer's finite entries (x - x is NaN elsewhere)
        bad += tl.where(d - d != 0, 1.0, 0.0)
        largest = tl.maximum(largest, tl.abs(d))
        squares += d * d
    out = out_ptr + (row.to(tl.int64) * parts + part) * 3
    tl.store(out, tl.sum(bad, 0))
    tl.store(out + 1, tl.max(largest, 0))
    tl.store(out + 2, tl.sum(squares, 0))


def blocks(on_gpu: bool) -> tuple[int, int]:
    """(elements per step, steps per program): :data:`BLOCK` and :data:`STEPS` on a GPU, one large step under the
    interpreter (a program's block runs as numpy there)."""
    return (BLOCK, STEPS) if on_gpu else (CPU_BLOCK, 1)


def deviations(e: Tensor, x: Tensor, count: Tensor) -> list[Tensor]:
    """Per case of float64 samples `e` [cases, samples, ...] against its float64 answer `x` [cases, 1, ...] (`count`:
    its finite entries, [cases]): the non-finite deviations (int64), the largest |e - x| and the largest per-sample
    RMS of e - x over x's finite entries, each [cases]. Where a deviation is not finite only the count is meaningful
    (the judge refuses such a baseline)."""
    cases, samples = e.shape[:2]
    if e.dtype != torch.float64 or x.dtype != torch.float64 or x.shape != (cases, 1) + e.shape[2:]:
        raise ValueError(f"samples {tuple(e.shape)} {e.dtype} and answer {tuple(x.shape)} {x.dtype} are not "
                         "float64 [cases, samples, ...] and [cases, 1, ...]")
    e, x = e.contiguous(), x.contiguous()
    n = e[0, 0].numel()
    block, steps = blocks(e.is_cuda)
    parts = max(1, triton.cdiv(n, block * steps))
    partial = torch.zeros(cases * samples, parts, TERMS, dtype=torch.float64, device=e.device)
    if n:
        _deviation_kernel[(cases * samples, parts)](e, x, partial, n, samples, parts, BLOCK=block, STEPS=steps)
    partial = partial.view(cases, samples, parts, TERMS)
    rms = partial[..., 2].sum(2).div(count[:, None]).sqrt().amax(1)
    return [partial[..., 0].sum((1, 2)).to(torch.int64), partial[..., 1].amax((1, 2)), rms]
