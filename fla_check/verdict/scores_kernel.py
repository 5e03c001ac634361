"""GLA's intra-chunk scores with their accumulation noise in one Triton launch, on a GPU (issue 17, goal 3).

:func:`fla_check.verdict.emulation._gla_scores` computes, per chunk of C rows and K key channels, the
lower-triangular ``A_ij = sum_k q_ik k_jk exp(G_ik - G_jk)`` by 16-row sub-chunks: an off-diagonal block
(a, b), b < a, as the dot of ``q_i exp(G_i - G_r)`` and ``k_j exp(G_r - G_j)`` (r the first row of sub-chunk
a) with its fp32 accumulation noise, a diagonal block exactly. With torch ops that is a dozen float64
launches over tensors NS times the chunk's size (every (a, b) pair's factors); it was 0.8 of a gla bf16
case's 2.1 ms chunk baseline on an H200 (docs/gpu/perf-h200-48). Here one program holds one sub-chunk
row a: its q factor in registers, each k factor loaded once per block, float64 ``tl.dot`` (exact on an
H200, bench/f64_triton_probe.py), the noise drawn in place.

The noise is the draw :func:`fla_check.verdict.noise_kernel.perturbed` makes of the torch path's
``[..., NS, NS, BC, BC]`` blocks (the case's seed mixed with the draw's index, the element's place in its
case's block): both paths agree to float64 rounding, draw for draw. A diagonal block is one dot where
every ``|G - G_r|`` in it is at most ``span`` (no factor can overflow), else summed channel by channel
with ``exp(G_i - G_j)``, as the torch path decides for all blocks at once.
"""
from __future__ import annotations

import math

import triton
import triton.language as tl
from torch import Tensor

from fla_check.verdict.noise_kernel import cases_hold, check_offsets, draw_key, rounded

BLOCK = 16  # rows of a sub-chunk (emulation.BLOCK): tl.dot needs 16 on each side
K_SLICE = 16  # key channels per step of a diagonal block summed channel by channel


@triton.jit(do_not_specialize=["key", "rows_per_case", "start", "NT", "H", "NS"])  # C, K: % 16 only
def _scores_kernel(q_ptr, k_ptr, g_ptr, out_ptr, seeds_ptr, key, rows_per_case, start, NT, H, acc_scale, span,
                   C, K, NS, BK: tl.constexpr, BC: tl.constexpr, K_SLICE: tl.constexpr):
    pid = tl.program_id(0)
    a = pid % NS
    chunk = (pid // NS).to(tl.int64)  # over rows x chunks x heads
    row = chunk // (NT * H)
    in_row = chunk - row * (NT * H)
    seed = tl.load(seeds_ptr + row // rows_per_case)
    # the block (a, b)'s first element's place in its case's draw of [rows, NT, H, NS, NS, BC, BC]
    place0 = start + ((row % rows_per_case) * (NT * H) + in_row) * (NS * NS * BC * BC) + a * (NS * BC * BC)
    ri, rk = tl.arange(0, BC), tl.arange(0, BK)
    live_k = rk < K
    at_a = chunk * (C * K) + (a * BC + ri)[:, None] * K + rk[None, :]
    q_a = tl.load(q_ptr + at_a, mask=live_k[None, :], other=0.0)
    g_a = tl.load(g_ptr + at_a, mask=live_k[None, :], other=0.0)
    g_r = tl.load(g_ptr + chunk * (C * K) + a * BC * K + rk, mask=live_k, other=0.0)  # [BK]
    qf = q_a * tl.exp(g_a - g_r[None, :])
    out_rows = out_ptr + chunk * (C * C) + (a * BC + ri)[:, None] * C + ri[None, :]
    within = ri[:, None] * BC + ri[None, :]
    for b in range(0, a):
        at_b = chunk * (C * K) + (b * BC + ri)[:, None] * K + rk[None, :]
        k_b = tl.load(k_ptr + at_b, mask=live_k[None, :], other=0.0)
        g_b = tl.load(g_ptr + at_b, mask=live_k[None, :], other=0.0)
        kf = k_b * tl.exp(g_r[None, :] - g_b)
        ab = tl.dot(qf, tl.trans(kf))
        acc = tl.dot(tl.abs(qf), tl.trans(tl.abs(kf))) * acc_scale
        place = (place0 + b * (BC * BC) + within).to(tl.int32)
        tl.store(out_rows + b * BC, rounded(ab, acc, -1.0, 2.0, seed, key, place))
    lower = ri[:, None] >= ri[None, :]
    gap = tl.where(live_k[None, :], tl.abs(g_a - g_r[None, :]), 0.0)
    unsafe = tl.sum(tl.sum(tl.where(gap <= span, 0, 1), 1), 0)  # NaN counts as unsafe
    if unsafe == 0:
        k_a = tl.load(k_ptr + at_a, mask=live_k[None, :], other=0.0)
        diag = tl.dot(qf, tl.trans(k_a * tl.exp(g_r[None, :] - g_a)))
        diag = tl.where(lower, diag, 0.0)
    else:
        diag = tl.zeros([BC, BC], dtype=tl.float64)
        rs = tl.arange(0, K_SLICE)
        for k0 in range(0, BK, K_SLICE):
            live_s = (k0 + rs) < K
            at_s = chunk * (C * K) + (a * BC + ri)[:, None] * K + (k0 + rs)[None, :]
            q_s = tl.load(q_ptr + at_s, mask=live_s[None, :], other=0.0)
            k_s = tl.load(k_ptr + at_s, mask=live_s[None, :], other=0.0)
            g_s = tl.load(g_ptr + at_s, mask=live_s[None, :], other=0.0)
            diff = tl.where(lower[:, :, None], g_s[:, None, :] - g_s[None, :, :], -float("inf"))
            diag += tl.sum(q_s[:, None, :] * k_s[None, :, :] * tl.exp(diff), 2)
    tl.store(out_rows + a * BC, diag)
    zeros = tl.zeros([BC, BC], dtype=tl.float64)
    for b in range(a + 1, NS):
        tl.store(out_rows + b * BC, zeros)


def fits(C: int, K: int) -> bool:
    """Whether the kernel takes chunks of C rows (whole 16-row sub-chunks) and K key channels."""
    return C % BLOCK == 0 and K >= 1


def scores(q: Tensor, k: Tensor, G: Tensor, seeds: Tensor, draw: int, start: int, span: float) -> Tensor:
    """The scores [R,NT,H,C,C] of float64 chunks q, k, G [R,NT,H,C,K] with their accumulation noise, the rows
    split evenly between the cases of `seeds` (int64 on the device), `draw` the noise's index (the emulation's
    draws so far, this one included), `start` the place of a row block's first block element in its case's
    full draw of ``[R, NT, H, NS, NS, 16, 16]``, `span` the largest ``|G - G_r|`` a diagonal block is one dot at."""
    R, NT, H, C, K = q.shape
    if not fits(C, K):
        raise ValueError(f"chunks of {C} rows are not whole {BLOCK}-row sub-chunks")
    rows_per_case = cases_hold(R, seeds, "rows")
    check_offsets(start + rows_per_case * NT * H * C * C)
    out = q.new_empty(R, NT, H, C, C)
    ns = C // BLOCK
    if out.numel():
        _scores_kernel[(R * NT * H * ns,)](
            q.contiguous(), k.contiguous(), G.to(q).contiguous(), out, seeds, draw_key(draw),
            rows_per_case, start, NT, H, 2.0**-24 * math.sqrt(K), float(span), C, K, ns,
            BK=max(triton.next_power_of_2(K), K_SLICE), BC=BLOCK, K_SLICE=K_SLICE)
    return out
