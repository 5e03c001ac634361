"""The shared varlen prologue: where a sequence or a chunk lies, for dense batches and packs; and
the kernels read cu_seqlens / chunk_indices / chunk_offsets only through it."""
import re
from pathlib import Path

import pytest
import torch

from device import DEVICE  # selects the backend (TRITON_INTERPRET=1 without CUDA) before triton loads
from fla_check.kernels.common.varlen import chunk_bounds, first_chunk, flat_chunk
from fla_check.kernels.delta.chunk import chunk_layout

import triton  # noqa: E402 - after the backend selection
import triton.language as tl  # noqa: E402

CHUNK = 16


@triton.jit
def _probe_kernel(cu_seqlens, chunk_indices, chunk_offsets, out, T, BT: tl.constexpr, IS_VARLEN: tl.constexpr):
    """One row of `out` per grid chunk: i_n, i_t, bos, eos (chunk_bounds, through sequence_bounds),
    first_chunk(i_n), flat_chunk."""
    i_c, i_b = tl.program_id(0), tl.program_id(1)
    i_n, i_t, bos, eos = chunk_bounds(cu_seqlens, chunk_indices, i_c, i_b, T, IS_VARLEN)
    boh = first_chunk(chunk_offsets, i_n, T, BT, IS_VARLEN)
    i_tg = flat_chunk(i_c, i_b, T, BT, IS_VARLEN)
    p = out + (i_b * tl.num_programs(0) + i_c) * 6
    tl.store(p + 0, i_n)
    tl.store(p + 1, i_t)
    tl.store(p + 2, bos)
    tl.store(p + 3, eos)
    tl.store(p + 4, boh)
    tl.store(p + 5, i_tg)


def _probe(B: int, T: int, cu_seqlens=None) -> torch.Tensor:
    indices, offsets, total = chunk_layout(B, T, cu_seqlens, CHUNK)
    NT = total if cu_seqlens is not None else triton.cdiv(T, CHUNK)
    rows = 1 if cu_seqlens is not None else B
    out = torch.full((rows * NT, 6), -1, dtype=torch.int64, device=DEVICE)
    _probe_kernel[(NT, rows)](cu_seqlens, indices, offsets, out, T, BT=CHUNK, IS_VARLEN=cu_seqlens is not None)
    return out.cpu()


def _expected(lengths: list[int], starts: list[int]) -> torch.Tensor:
    rows, first = [], 0
    for n, (length, bos) in enumerate(zip(lengths, starts)):
        for t in range(triton.cdiv(length, CHUNK)):
            rows.append([n, t, bos, bos + length, first, first + t])
        first += triton.cdiv(length, CHUNK)
    return torch.tensor(rows, dtype=torch.int64)


def test_dense_batch_rows_are_sequences():
    B, T = 3, 37
    assert torch.equal(_probe(B, T), _expected([T] * B, [b * T for b in range(B)]))


def test_varlen_pack_follows_cu_seqlens():
    cu = torch.tensor([0, 17, 18, 50, 70], dtype=torch.int64, device=DEVICE)
    lengths = (cu[1:] - cu[:-1]).tolist()
    assert torch.equal(_probe(1, 70, cu), _expected(lengths, cu[:-1].tolist()))


# -- the prologue lives once -------------------------------------------------------------------
_KERNELS = Path(__file__).resolve().parents[2] / "fla_check" / "kernels"
_DIRECT = re.compile(r"tl\.load\(\s*(cu_seqlens|chunk_indices|chunk_offsets|ckpt_offsets)\s*\+")


def direct_prologue_reads(source: str) -> list[str]:
    """Lines of `source` that load cu_seqlens / chunk_indices / chunk / checkpoint offsets
    themselves instead of calling the varlen helpers."""
    return [line.strip() for line in source.splitlines() if _DIRECT.search(line)]


def test_the_guard_fires_on_a_repeated_prologue():
    repeated = ("    if IS_VARLEN:\n        bos = tl.load(cu_seqlens + i_n).to(tl.int64)\n"
                "        boc = tl.load(ckpt_offsets + i_n).to(tl.int64)\n    else:\n        bos = i_n * T\n")
    assert len(direct_prologue_reads(repeated)) == 2
    assert direct_prologue_reads("    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)\n") == []


@pytest.mark.parametrize("path", sorted(p for p in _KERNELS.rglob("*.py") if p.name != "varlen.py"),
                         ids=lambda p: str(p.relative_to(_KERNELS)))
def test_kernels_read_the_varlen_layout_only_through_the_helpers(path):
    assert direct_prologue_reads(path.read_text()) == [], f"{path}: use fla_check.kernels.common.varlen"
