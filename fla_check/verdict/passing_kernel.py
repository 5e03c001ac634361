"""A chunked state passing with its rounding noise in one Triton launch, on a GPU (issue 17, goal 3).

The emulation's state passing (:func:`fla_check.verdict.emulation._passed`) runs, per chunk c::

    stored[c] = round_store(h)                   # relative U(+-u_store), then absolute U(+-tiny/2)
    h         = round_fp32(h * decay[c] + added[c])   # kept only in rows still inside their length

With torch ops that is five or six launches per chunk, each reading and writing every sample's
state. Here one program holds a block of one row's state in registers over all chunks: ``added`` is
read once, ``stored`` written once. gla fused_chunk's baselines (64 chunks of 16 tokens at T = 1024)
went from 2.53 to 2.26 ms per bf16 case on an H200 (docs/gpu/perf-h200-45).

The noise is the one :func:`fla_check.verdict.noise_kernel.perturbed` draws at the same points,
draw for draw (the case's seed mixed with the draw's index, the element's place in its case's
block, Philox's 32-bit offsets): the fused and the per-chunk paths agree to float64 rounding, and a
case gets the same values alone and in a batch.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from fla_check.verdict.noise_kernel import (cases_hold, check_offsets, draw_key, next_key, one_byte, rounded,
                                            stored)

BLOCK = 1024  # state elements per program on a GPU; the interpreter takes a row's state at once


@triton.jit(do_not_specialize=["key0", "rows", "rows_per_case", "start", "NT", "H"])  # K, V: % 16 only
def _passing_kernel(h0_ptr, decay_ptr, added_ptr, keep_ptr, stored_ptr, final_ptr, seeds_ptr, key0,
                    rows, rows_per_case, start, NT, u_store, tiny_store, u_state, H, K, V,
                    PER_KEY: tl.constexpr, HAS_H0: tl.constexpr, HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
    HKV = H * K * V
    row = tl.program_id(1)
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = idx < HKV
    seed = tl.load(seeds_ptr + row // rows_per_case)
    place = start + (row % rows_per_case) * HKV + idx  # the element's place in its case's draw (int32)
    # decay [R,NT,H,K or 1,1]: the element's head, and its key channel with PER_KEY
    if PER_KEY:
        decay_k = K
        at_decay = (idx // (K * V)) * K + (idx // V) % K
    else:
        decay_k = 1
        at_decay = idx // (K * V)
    row64 = row.to(tl.int64)
    if HAS_H0:  # constexprs here (a binary each): a runtime flag's load per chunk cost gla's baselines 14 %
        h = tl.load(h0_ptr + row64 * HKV + idx, mask=live, other=0.0)  # (perf-h200-53)
    else:
        h = tl.zeros([BLOCK], dtype=tl.float64)
    key = key0.to(tl.int64)  # a key below 2^31 comes in as int32
    for c in range(NT):
        at = (row64 * NT + c) * HKV + idx
        s, key = stored(h, seed, key, place, u_store, tiny_store, 0.0, 0.0, False)
        tl.store(stored_ptr + at, s, mask=live)
        d = tl.load(decay_ptr + (row64 * NT + c) * (H * decay_k) + at_decay, mask=live, other=0.0)
        new = h * d + tl.load(added_ptr + at, mask=live, other=0.0)
        key = next_key(key)
        new = rounded(new, new, -u_state, 2.0 * u_state, seed, key, place)
        if HAS_KEEP:
            h = tl.where(tl.load(keep_ptr + c * rows + row) != 0, new, h)
        else:
            h = new
    tl.store(final_ptr + row64 * HKV + idx, h, mask=live)


def passed(h0: Optional[Tensor], decay: Tensor, added: Tensor, keep: Optional[Tensor], seeds: Tensor, draws: int,
           start: int, u_store: float, tiny_store: float, u_state: float) -> tuple[Tensor, Tensor]:
    """The state passing over the chunks of `added` [R,NT,H,K,V] (float64; `decay` [R,NT,H,K or 1,1], `h0`
    [R,H,K,V] or None: zeros, `keep` [NT,R] bool or None: every row runs every chunk), the rows split evenly
    between the cases of `seeds` (int64 on the device), `draws` the emulation's draws so far (this takes the
    next 3 NT), `start` the place of a row block's first element in its case's full draw: (the state each
    chunk starts from, rounded as stored [R,NT,H,K,V]; the final state [R,H,K,V])."""
    R, NT, H, K, V = added.shape
    rows_per_case = cases_hold(R, seeds, "rows")
    if decay.shape[3] not in (1, K) or tuple(decay.shape[:3]) != (R, NT, H):
        raise ValueError(f"decay {tuple(decay.shape)} does not fit added {tuple(added.shape)}")
    check_offsets(start + rows_per_case * H * K * V)
    stored_states = torch.empty_like(added)
    if R == 0 or NT == 0:
        return stored_states, (added.new_zeros(R, H, K, V) if h0 is None else h0.clone())
    final = added.new_empty(R, H, K, V)
    block = BLOCK if added.is_cuda else triton.next_power_of_2(H * K * V)
    _passing_kernel[(triton.cdiv(H * K * V, block), R)](
        final if h0 is None else h0.to(added).contiguous(), decay.to(added).contiguous(), added.contiguous(),
        one_byte(added.device) if keep is None else keep.to(torch.int8).contiguous(), stored_states, final, seeds,
        draw_key(draws), R, rows_per_case, start, NT, float(u_store), float(tiny_store), float(u_state), H, K, V,
        PER_KEY=decay.shape[3] > 1, HAS_H0=h0 is not None, HAS_KEEP=keep is not None, BLOCK=block)
    return stored_states, final
