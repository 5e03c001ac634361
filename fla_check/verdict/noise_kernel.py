"""Rounding noise in one Triton launch per rounding point, on a GPU (issue 17, goal 3).

:func:`perturbed` returns ``y = x + m (lo + w u)``, ``u ~ U[0, 1)`` from Philox (``tl.rand``):
relative noise (``m = x``), absolute noise (``m = 1``) or a dot's accumulation noise (``m`` its
bound). With torch ops a rounding point is a draw, a copy of every case's draws into one tensor
and two elementwise ops, about 72 bytes of memory traffic per float64 element; here one read of
``x`` (and ``m``) and one write. The emulation is bound by memory traffic at T = 1024 on an H200
(bench/op_counts.py, docs/gpu/perf-h200-19); the draws, copies and ``addcmul`` alone were 9.8 of
the 33 GB a gla fp16 case's emulation moved there (bench/emulation_traffic.py, before this).

What a case draws depends on its seed, the index of the draw and the element's place in its
case's block only: the same values alone and in a batch of cases (the leading dimension holds
the cases, case-major), and an emulation of some samples (`start`: the first held element's place
in the full draw) gets the rows the full draw would. The CPU keeps ``torch.rand`` (the goldens'
stream): a GPU's noise is another stream of the same distribution, as it was with torch's Philox.
``u`` has float32 resolution (2^-24 of the noise's width): plenty for a rounding model.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

MODES = {"relative": 0, "absolute": 1, "scaled": 2}  # m = x, m = 1, m = a tensor of its own
BLOCK = 1024  # elements per program on a GPU; the CPU interpreter runs a program's block as numpy, so larger there
KEY_STEP = tl.constexpr(0x9E3779B97F4A7C15 % 2**62)  # draw d's key: d * KEY_STEP mod 2^62 (:func:`draw_key`)
KEY_MASK = tl.constexpr(2**62 - 1)


def draw_key(draw: int) -> int:
    """The key of an emulation's `draw`-th draw, mixed into each case's seed (every fused kernel's)."""
    return (draw * KEY_STEP.value) % 2**62


@triton.jit
def next_key(key):
    """The key of the next draw: + KEY_STEP mod 2^62 (both terms < 2^62: no int64 overflow)."""
    return (key + KEY_STEP) & KEY_MASK


@triton.jit
def rounded(x, m, lo, w, seed, key, place):
    """``x + m (lo + w u)``, u the uniform of the draw `key` at the element's `place` in its case's draw."""
    return x + m * (lo + w * tl.rand(seed ^ key, place).to(tl.float64))


def cases_hold(count: int, seeds: Tensor, what: str) -> int:
    """How many of `count` `what` (rows, dots) each case of `seeds` holds: they split evenly, case-major (a
    ValueError where they do not)."""
    if count % seeds.numel():
        raise ValueError(f"{count} {what} do not split into {seeds.numel()} cases")
    return count // seeds.numel()


def check_offsets(end: int) -> None:
    """A ValueError where a case's draw, ending at place `end` (exclusive), is past Philox's 32-bit offsets."""
    if end >= 2**31:
        raise ValueError("a case's draw is past Philox's 32-bit offsets")


@functools.lru_cache(maxsize=None)
def one_byte(device: torch.device) -> Tensor:
    """An int8 1 standing in for an absent keep mask of a fused kernel: a pointer of the mask's type (present
    and absent share one binary), read as "keep" where the kernel indexes it with a zero flag."""
    return torch.ones(1, dtype=torch.int8, device=device)


@triton.jit
def stored(x, seed, key, place, u_store, tiny_store, operand_lo, operand_w, operand):
    """`x` as a kernel stores it (relative, then absolute rounding: two draws after `key`) and, with `operand`
    (a constexpr or a runtime flag), reads it back as a dot operand (relative again, a third): (the rounded x,
    the key of its last draw)."""
    key = next_key(key)
    x = rounded(x, x, -u_store, 2.0 * u_store, seed, key, place)
    key = next_key(key)
    x = rounded(x, 1.0, -0.5 * tiny_store, tiny_store, seed, key, place)
    if operand:
        key = next_key(key)
        x = rounded(x, x, operand_lo, operand_w, seed, key, place)
    return x, key


VIEW_DIMS = 4  # dims a strided view is read through once merged (the emulation's chunked views take 3 or 4)
# fewest elements a strided view's row (its last two dims) holds to be read in place on a GPU (a program a row): every
# chunked view of C >= 16 rows and D >= 16 channels, so the choice never differs within a bucket (compile_buckets.md)
MIN_ROW = 256
CPU_BLOCK = 2**16  # elements per program under the interpreter, where a program's block runs as numpy


def min_row(on_gpu: bool) -> int:
    """The fewest elements of a row read in place: :data:`MIN_ROW` on a GPU; under the interpreter a whole block (a
    program per small row cost the CPU suite minutes, and a copy moves no GPU memory there)."""
    return MIN_ROW if on_gpu else CPU_BLOCK


@triton.jit(do_not_specialize=["key", "per_case", "start", "rows_per_case", "n1", "n3", "s0", "s1", "s2", "s3"])
def _perturb_kernel(x_ptr, m_ptr, out_ptr, seeds_ptr, key, per_case, start, lo, w, rows_per_case, n1, n3, s0, s1, s2,
                    s3, MODE: tl.constexpr, BLOCK: tl.constexpr, STRIDED: tl.constexpr):
    """Contiguous `x`: program (block, case). A strided view (STRIDED) of dims [n0, n1, n2, n3] and strides s0-s3: program
    (row, block), a row one (i0, i1) of n2 n3 elements (whole rows per case), read through its strides; `m` and the
    output contiguous, in the view's logical order either way (the same draws as its contiguous copy)."""
    if STRIDED:
        row = tl.program_id(0)
        case = row // rows_per_case
        idx = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        row_size = per_case // rows_per_case
        keep = idx < row_size
        source = (row // n1).to(tl.int64) * s0 + (row % n1).to(tl.int64) * s1 + \
            (idx // n3).to(tl.int64) * s2 + (idx % n3).to(tl.int64) * s3
        at = row.to(tl.int64) * row_size + idx
        place = (row % rows_per_case) * row_size + idx
    else:
        case = tl.program_id(1)
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        keep = idx < per_case
        at = case.to(tl.int64) * per_case + idx
        source = at
        place = idx
    seed = tl.load(seeds_ptr + case)  # the case's seed, mixed with the draw's key
    x = tl.load(x_ptr + source, mask=keep, other=0.0)
    if MODE == 0:
        y = rounded(x, x, lo, w, seed, key, start + place)
    elif MODE == 1:
        y = rounded(x, 1.0, lo, w, seed, key, start + place)
    else:
        y = rounded(x, tl.load(m_ptr + at, mask=keep, other=0.0), lo, w, seed, key, start + place)
    tl.store(out_ptr + at, y, mask=keep)


def view_dims(x: Tensor, cases: int) -> Optional[tuple[list[int], list[int]]]:
    """The sizes and strides of non-contiguous `x` in :data:`VIEW_DIMS` dims (size-1 dims dropped, dims adjacent in
    memory merged, a lone last dim padded in front), when its leading two hold whole rows per case of `cases` and its
    last two at least :func:`min_row` elements (on a GPU a chunk's C x D: no programs of a few live lanes) that fit a grid's
    second axis; else None (a contiguous copy is read instead)."""
    if x.is_contiguous():
        return None
    merged: list[list[int]] = []
    for size, stride in reversed([d for d in zip(x.shape, x.stride()) if d[0] != 1]):
        if merged and stride == merged[-1][0] * merged[-1][1]:
            merged[-1][0] *= size
        else:
            merged.append([size, stride])
    if len(merged) > VIEW_DIMS or len(merged) < 2:
        return None
    merged.reverse()
    padded = merged[:1] + [[1, 0]] * (VIEW_DIMS - len(merged)) + merged[1:]
    sizes, strides = [d[0] for d in padded], [d[1] for d in padded]
    row = sizes[2] * sizes[3]
    if (sizes[0] * sizes[1]) % cases or row < min_row(x.is_cuda) or triton.cdiv(row, BLOCK) >= 2**16:
        return None
    return sizes, strides


def perturbed(x: Tensor, m: Optional[Tensor], lo: float, w: float, mode: str, seeds: Tensor, draw: int,
              start: int = 0) -> Tensor:
    """``x + m (lo + w u)`` of float64 `x` (`m`: x for `mode` "relative", 1 for "absolute", the given
    tensor of x's shape for "scaled"), the leading dimension split evenly between the cases of `seeds` (int64,
    on x's device), `draw` the emulation's count of draws so far, `start` the place of x's first
    element in the case's full draw. Returned contiguous; a strided view (:func:`view_dims`) is read in place."""
    cases = seeds.numel()
    if x.numel() % cases:
        raise ValueError(f"a draw of {tuple(x.shape)} does not split into {cases} cases")
    per_case = x.numel() // cases
    if per_case + start >= 2**31:
        raise ValueError(f"a case's draw of {per_case + start} elements is past Philox's 32-bit offsets")
    view = view_dims(x, cases)
    if view is None:
        x = x.contiguous()
    m = x if m is None else m.to(x).contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if not per_case:
        return out
    block = BLOCK if x.is_cuda else CPU_BLOCK
    if view is None:
        grid, rows_per_case, sizes, strides = (triton.cdiv(per_case, block), cases), 1, [1] * 4, [0] * 4
    else:
        (sizes, strides), rows = view, view[0][0] * view[0][1]
        grid, rows_per_case = (rows, triton.cdiv(sizes[2] * sizes[3], block)), rows // cases
    _perturb_kernel[grid](x, m, out, seeds, draw_key(draw), per_case, start, float(lo), float(w), rows_per_case,
                          sizes[1], sizes[3], *strides, MODE=MODES[mode], BLOCK=block, STRIDED=view is not None)
    return out
