"""The varlen prologue shared by every kernel: where a sequence or a chunk lies on the time axis.

Inputs are [B, T, H, ...] batches (sequence i_n is batch row i_n) or varlen packs ([1, T_total,
H, ...] with `cu_seqlens`, sequence i_n spans cu_seqlens[i_n] .. cu_seqlens[i_n + 1]). Chunked
grids over a pack launch one program per row of `chunk_indices` ((sequence, chunk) pairs, see
`fla_check.kernels.utils.prepare_chunk_indices`); per-chunk state tensors hold every sequence's
chunks one after the other from `chunk_offsets[i_n]`.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN: tl.constexpr):
    """(bos, eos) of sequence i_n, int64 token indices on the flattened time axis."""
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = tl.cast(i_n, tl.int64) * T
        eos = bos + T
    return bos, eos


@triton.jit
def chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN: tl.constexpr):
    """Grid chunk i_c of batch row i_b -> (sequence i_n, chunk i_t within it, bos, eos)."""
    if IS_VARLEN:
        i_n = tl.load(chunk_indices + i_c * 2).to(tl.int64)
        i_t = tl.load(chunk_indices + i_c * 2 + 1).to(tl.int64)
    else:
        i_n = i_b
        i_t = i_c
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    return i_n, i_t, bos, eos


@triton.jit
def first_chunk(chunk_offsets, i_n, T, BT: tl.constexpr, IS_VARLEN: tl.constexpr):
    """Index of sequence i_n's first chunk in the per-chunk state tensors (h, dh)."""
    if IS_VARLEN:
        boh = tl.load(chunk_offsets + i_n).to(tl.int64)
    else:
        boh = tl.cast(i_n, tl.int64) * tl.cdiv(T, BT)
    return boh


@triton.jit
def flat_chunk(i_c, i_b, T, BT: tl.constexpr, IS_VARLEN: tl.constexpr):
    """Grid chunk i_c of batch row i_b -> its row in the per-chunk state tensors (int64)."""
    if IS_VARLEN:
        i_tg = tl.cast(i_c, tl.int64)
    else:
        i_tg = tl.cast(i_b, tl.int64) * tl.cdiv(T, BT) + i_c
    return i_tg
