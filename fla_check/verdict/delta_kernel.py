"""The delta rule's chunked state passing with its rounding noise in one Triton launch, on a GPU (issue 17, goal 3).

The chunked emulation of DeltaNet, Gated DeltaNet and KDA (:func:`fla_check.verdict.emulation._delta_sequence`)
runs, per chunk c, with ``w``, ``u``, ``kg`` (the UT transform's and the gated keys) known for every chunk::

    hs     = operand(store(h))                                   # the state as the kernel stores and reads it
    vn     = operand(store(u[c] - accumulated(w[c] @ hs)))       # the chunk's new values
    h      = relative(h * decay[c] + accumulated(kg[c]^T @ vn))  # kept only in rows still inside their length

With torch ops that is about twenty launches per chunk over every sample's state. Here one program holds a
[K, BV] block of one row's and head's state in registers over all chunks and does both float64 dots with
``tl.dot`` (exact on an H200: bench/f64_triton_probe.py); ``w``, ``u``, ``kg`` are read once, the stored
states and new values written once.

Every rounding point draws what :func:`fla_check.verdict.noise_kernel.perturbed` draws there, draw for draw (the
case's seed mixed with the draw's index, the element's place in its case's block of that point's shape): the
fused and the per-chunk paths agree to float64 rounding, and a case gets the same values alone and in a batch.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from fla_check.verdict.noise_kernel import (cases_hold, check_offsets, draw_key, next_key, one_byte, rounded,
                                            stored)

BV = 32  # value columns of the state per program on a GPU; the interpreter takes them all at once
WARPS = 8  # the 64 x 64 tiles of w and kg across 8 warps: compiled for sm_90 on one machine in one run, 4 warps
# spilled 1128 bytes a thread and took 8.2 s, 8 spill 80 and take 2.8 s (docs/compile_buckets.md)
STAGES = 1  # no multi-buffered loads: at K = V = 64, 256 rows x 16 chunks on an H200, 8.93 ms against 3 stages'
# 10.93, compiled in 2.84 s against 3.05 (bench/delta_kernel_variants.py, docs/gpu/perf-h200-53)


class Points(NamedTuple):
    """The noise of the rounding points (each ``x + m (lo + w u)``): the store's relative and absolute, the
    stored operands' relative (``operand_w`` 0: the store already rounds to the operand's dtype, no draw), the
    fp32 state's relative."""
    u_store: float
    tiny_store: float
    operand_lo: float
    operand_w: float
    u_state: float


@triton.jit(do_not_specialize=["key0", "rows", "rows_per_case", "start_state", "start_values", "NT", "H", "operand",
                               "has_h0", "has_keep"])
def _delta_kernel(h0_ptr, w_ptr, u_ptr, kg_ptr, decay_ptr, keep_ptr, states_ptr, values_ptr, final_ptr, seeds_ptr,
                  key0, rows, rows_per_case, start_state, start_values, NT, H, K, V, u_store, tiny_store, operand_lo,
                  operand_w, u_state, acc_w, acc_kg, operand, has_h0, has_keep,
                  C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PER_KEY: tl.constexpr):
    row, head, vb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rk, rc, rv = tl.arange(0, BK), tl.arange(0, C), vb * BV + tl.arange(0, BV)
    live = (rk[:, None] < K) & (rv[None, :] < V)
    live_c = rv[None, :] < V
    live_k = rk < K
    seed = tl.load(seeds_ptr + row // rows_per_case)
    in_case = (row % rows_per_case) * H + head  # the (row, head)'s block in its case's draws
    place_s = start_state + in_case * (K * V) + rk[:, None] * V + rv[None, :]  # of a [R,H,K,V] draw
    place_v = start_values + in_case * (C * V) + rc[:, None] * V + rv[None, :]  # of a [R,H,C,V] draw
    row64 = row.to(tl.int64)
    at_h = (row64 * H + head) * (K * V) + rk[:, None] * V + rv[None, :]
    h = tl.where(has_h0 != 0, tl.load(h0_ptr + at_h, mask=live, other=0.0), 0.0)  # no h0: zeros
    key = key0.to(tl.int64)  # a key below 2^31 comes in as int32
    for c in range(NT):
        chunk = (row64 * NT + c) * H + head  # [R,NT,H,...] blocks
        hs, key = stored(h, seed, key, place_s, u_store, tiny_store, operand_lo, operand_w, operand != 0)
        hs = tl.where(live, hs, 0.0)
        tl.store(states_ptr + chunk * (K * V) + rk[:, None] * V + rv[None, :], hs, mask=live)
        at_ck = chunk * (C * K) + rc[:, None] * K + rk[None, :]
        w = tl.load(w_ptr + at_ck, mask=live_k[None, :], other=0.0)
        wh = tl.dot(w, hs)
        key = next_key(key)
        wh = rounded(wh, tl.dot(tl.abs(w), tl.abs(hs)) * acc_w, -1.0, 2.0, seed, key, place_v)
        at_cv = chunk * (C * V) + rc[:, None] * V + rv[None, :]
        vn = tl.load(u_ptr + at_cv, mask=live_c, other=0.0) - wh
        vn, key = stored(vn, seed, key, place_v, u_store, tiny_store, operand_lo, operand_w, operand != 0)
        vn = tl.where(live_c, vn, 0.0)
        tl.store(values_ptr + at_cv, vn, mask=live_c)
        kg = tl.load(kg_ptr + at_ck, mask=live_k[None, :], other=0.0)
        added = tl.dot(tl.trans(kg), vn)
        key = next_key(key)
        added = rounded(added, tl.dot(tl.trans(tl.abs(kg)), tl.abs(vn)) * acc_kg, -1.0, 2.0, seed, key, place_s)
        if PER_KEY:  # KDA: a decay per key channel
            d = tl.load(decay_ptr + chunk * K + rk, mask=live_k, other=0.0)
        else:
            d = tl.load(decay_ptr + chunk + rk * 0, mask=live_k, other=0.0)
        new = h * d[:, None] + added
        key = next_key(key)
        new = rounded(new, new, -u_state, 2.0 * u_state, seed, key, place_s)
        h = tl.where(tl.load(keep_ptr + (c * rows + row) * has_keep) != 0, new, h)  # no keep: one_byte's 1
    tl.store(final_ptr + at_h, h, mask=live)


def draws_per_chunk(points: Points) -> int:
    """The noise draws one chunk of the state passing takes: 7, and 2 more when the operands are rounded."""
    return 9 if points.operand_w else 7


MAX_TILE = 64 * 64  # C x padded K of the w and kg tiles: 64 x 128 asked for 304-352 KB of an H200's 227 KB of
# shared memory at 3 stages (perf-h200-51); at 1 it fits (18.4 ms at the shape above, perf-h200-53), but is not
# yet timed against the per-chunk torch ops it would replace


def fits(C: int, K: int) -> bool:
    """Whether the kernel takes chunks of C rows (a power of two, >= 16: tl.dot's and tl.arange's sizes) of K key
    channels (C times K padded to a power of two at most :data:`MAX_TILE`); else the per-chunk torch ops run."""
    return C >= 16 and C & (C - 1) == 0 and 1 <= K and C * max(16, triton.next_power_of_2(K)) <= MAX_TILE


def passed(h0: Optional[Tensor], w: Tensor, u: Tensor, kg: Tensor, decay: Tensor, keep: Optional[Tensor],
           seeds: Tensor, draws: int, starts: tuple[int, int], points: Points,
           block_v: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
    """The delta rule's state passing over the chunks of `w`, `kg` [R,NT,H,C,K] and `u` [R,NT,H,C,V] (float64;
    `decay` [R,NT,H,K or 1,1], `h0` [R,H,K,V] or None: zeros, `keep` [NT,R] bool or None: every row runs every
    chunk), the rows split evenly between the cases of `seeds` (int64 on the device), `draws` the emulation's
    draws so far (this takes the next :func:`draws_per_chunk` per chunk), `starts` the places of a row block's
    first element in its case's full draws of a [R,H,K,V] and a [R,H,C,V] point: (the states each chunk reads
    [R,NT,H,K,V], the new values [R,NT,H,C,V], the final state [R,H,K,V])."""
    R, NT, H, C, K = w.shape
    V = u.shape[-1]
    if not fits(C, K):
        raise ValueError(f"chunks of {C} rows of {K} key channels: the kernel takes powers of two from 16, "
                         f"at most {MAX_TILE} rows x padded channels")
    if tuple(kg.shape) != tuple(w.shape) or tuple(u.shape[:4]) != (R, NT, H, C):
        raise ValueError(f"w {tuple(w.shape)}, u {tuple(u.shape)}, kg {tuple(kg.shape)} do not fit")
    if decay.shape[3] not in (1, K) or tuple(decay.shape[:3]) != (R, NT, H):
        raise ValueError(f"decay {tuple(decay.shape)} does not fit w {tuple(w.shape)}")
    rows_per_case = cases_hold(R, seeds, "rows")
    check_offsets(max(starts[0] + rows_per_case * H * K * V, starts[1] + rows_per_case * H * C * V))
    states, values = w.new_empty(R, NT, H, K, V), w.new_empty(R, NT, H, C, V)
    if R == 0 or NT == 0:
        return states, values, (w.new_zeros(R, H, K, V) if h0 is None else h0.clone())
    final = w.new_empty(R, H, K, V)
    bv = block_v or (max(16, min(BV, triton.next_power_of_2(V))) if w.is_cuda else max(16, triton.next_power_of_2(V)))
    keep_bytes = one_byte(w.device) if keep is None else keep.to(torch.int8).contiguous()
    _delta_kernel[(R, H, triton.cdiv(V, bv))](
        final if h0 is None else h0.to(w).contiguous(), w.contiguous(), u.to(w).contiguous(), kg.to(w).contiguous(),
        decay.to(w).contiguous(), keep_bytes, states, values, final, seeds,
        draw_key(draws), R, rows_per_case, starts[0], starts[1], NT, H, K, V,
        float(points.u_store), float(points.tiny_store), float(points.operand_lo), float(points.operand_w),
        float(points.u_state), 2.0**-24 * K**0.5, 2.0**-24 * C**0.5, int(bool(points.operand_w)), int(h0 is not None),
        int(keep is not None), C=C, BK=max(16, triton.next_power_of_2(K)), BV=bv, PER_KEY=decay.shape[3] > 1,
        num_warps=WARPS, num_stages=STAGES)
    return states, values, final
