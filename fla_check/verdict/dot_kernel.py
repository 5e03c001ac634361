"""A batched float64 dot with its fp32 accumulation noise in one Triton launch, on a GPU (issue 17, goal 3).

:meth:`fla_check.verdict.emulation.Rounding.dot` is ``a @ b + acc (2u - 1)`` with ``acc = (|a| @ |b|) u32
sqrt(n)``: with torch ops two copies (``|a|``, ``|b|``), two ``bmm``, a scaling and the noise launch, about a dozen
passes over tensors of the dot's size; it was the largest share (3.2 of 8.4 GB per case) of the memory a
gated_delta bf16 case's chunk baseline moves on the GPU's path at T = 1024 (`TRITON_INTERPRET=1 python3
bench/emulation_traffic.py --op gated_delta --dtype bfloat16 --modes chunk --cases 2 --fused --by function`).
Here one program computes a [BM, BN] tile of both products with float64 ``tl.dot`` (exact on an H200:
bench/f64_triton_probe.py) and draws the noise in place: ``a`` and ``b`` read once, the result written once.

The noise is what :func:`fla_check.verdict.noise_kernel.perturbed` draws for the result in "scaled" mode (the
case's seed mixed with the draw's key, the element's place in its case's block): both paths agree to float64
rounding, draw for draw, and a case gets the same values alone and in a batch.
"""
from __future__ import annotations

from typing import Optional

import triton
import triton.language as tl
from torch import Tensor

from fla_check.verdict.noise_kernel import cases_hold, check_offsets, draw_key, rounded

BLOCK = 64  # rows and columns of a program's tile (two float64 accumulators): on an H200 half the time of 32's,
# 1.05 against 2.11 ms for a batch of 16 gla cases at T = 1024 (docs/gpu/perf-h200-56, bench/dot_kernel_variants.py)
BLOCK_K = 16  # summed terms per step on a GPU
WARPS, STAGES = 4, 3  # Triton's defaults on a GPU (8 warps took twice as long), named so the bench can time others


@triton.jit(do_not_specialize=["key", "batches_per_case", "start", "M", "N", "KD", "sa_b", "sa_m", "sa_k", "sb_b",
                               "sb_k", "sb_n"])
def _dot_kernel(a_ptr, b_ptr, out_ptr, seeds_ptr, key, batches_per_case, start, M, N, KD, sa_b, sa_m, sa_k, sb_b,
                sb_k, sb_n, acc_scale, c_ptr, scale, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                HAS_ADD: tl.constexpr):
    bt, pm, pn = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rm, rn = pm * BM + tl.arange(0, BM), pn * BN + tl.arange(0, BN)
    bt64 = bt.to(tl.int64)
    a_row = a_ptr + bt64 * sa_b + rm[:, None] * sa_m
    b_col = b_ptr + bt64 * sb_b + rn[None, :] * sb_n
    ab = tl.zeros([BM, BN], dtype=tl.float64)
    bound = tl.zeros([BM, BN], dtype=tl.float64)
    for k0 in range(0, KD, BK):
        rk = k0 + tl.arange(0, BK)
        a = tl.load(a_row + rk[None, :] * sa_k, mask=(rm[:, None] < M) & (rk[None, :] < KD), other=0.0)
        b = tl.load(b_col + rk[:, None] * sb_k, mask=(rk[:, None] < KD) & (rn[None, :] < N), other=0.0)
        ab += tl.dot(a, b)
        bound += tl.dot(tl.abs(a), tl.abs(b))
    live = (rm[:, None] < M) & (rn[None, :] < N)
    seed = tl.load(seeds_ptr + bt // batches_per_case)
    place = start + (bt % batches_per_case) * (M * N) + rm[:, None] * N + rn[None, :]  # int32: checked below
    out = rounded(ab, bound * acc_scale, -1.0, 2.0, seed, key.to(tl.int64), place)
    at = bt64 * (M * N) + rm[:, None] * N + rn[None, :]
    if HAS_ADD:  # the caller's `dot * scale + c`, not a pass of its own
        out = out * scale + tl.load(c_ptr + at, mask=live, other=0.0)
    tl.store(out_ptr + at, out, mask=live)


def _tile(size: int) -> int:
    return max(16, min(BLOCK, triton.next_power_of_2(size)))


def noisy_dot(a: Tensor, b: Tensor, seeds: Tensor, draw: int, start: int, acc_scale: float, scale: float = 1.0,
              add: Optional[Tensor] = None) -> Tensor:
    """``a @ b + acc (2u - 1)``, ``acc = (|a| @ |b|) acc_scale``, of float64 `a` [..., M, n] and `b` [..., n, N] with
    equal batch dims (views of any strides), the batch split evenly between the cases of `seeds` (int64 on the
    device), `draw` the emulation's count of draws (this one included), `start` the place of the result's first
    element in its case's full draw. With `add` (float64, the result's shape): that times `scale`, plus `add`."""
    if a.dim() < 3 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} are not a batched dot of equal batches")
    if add is not None and (add.shape != a.shape[:-1] + b.shape[-1:] or add.dtype != a.dtype):
        raise ValueError(f"add {tuple(add.shape)} {add.dtype} is not the float64 shape of the dot's result")
    M, KD, N = a.shape[-2], a.shape[-1], b.shape[-1]
    a3, b3 = a.reshape(-1, M, KD), b.reshape(-1, KD, N)
    batches = a3.shape[0]
    out = a.new_empty(a.shape[:-1] + (N,))
    per_case = cases_hold(batches, seeds, "dots")
    check_offsets(start + per_case * M * N)
    if out.numel() == 0:
        return out
    bm, bn = _tile(M), _tile(N)
    _dot_kernel[(batches, triton.cdiv(M, bm), triton.cdiv(N, bn))](
        a3, b3, out, seeds, draw_key(draw), per_case, start, M, N, KD, *a3.stride(), *b3.stride(), float(acc_scale),
        out if add is None else add.contiguous(), float(scale), BM=bm, BN=bn,
        BK=BLOCK_K if a.is_cuda else max(16, triton.next_power_of_2(KD)), HAS_ADD=add is not None,
        num_warps=WARPS, num_stages=STAGES)
    return out
