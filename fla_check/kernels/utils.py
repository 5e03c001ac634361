"""Host-side helpers shared by the built-in kernels."""
from __future__ import annotations

from typing import Optional

import torch
import triton


def dot_precision(dtype: torch.dtype) -> str:
    """`input_precision` for tl.dot: exact IEEE fp32 for fp32 inputs (no TF32 surprises)."""
    return "ieee" if dtype == torch.float32 else "tf32"


def operands_precision(k: torch.Tensor, v: torch.Tensor) -> str:
    """The delta-rule chunk kernels' precision of dots on fp32 operands: TF32 only when both
    the keys and the values arrive in half precision. fp32 keys with half values (q/k after an
    in-kernel fp32 l2norm) dot at IEEE: more exact than declared, and TF32 tensor-core dots on
    fp32 [64, 128] key and w tiles overflowed an H200's shared memory in the state pass
    (246 KB > 232 KB, docs/gpu/pytest-h200-3)."""
    return dot_precision(torch.promote_types(k.dtype, v.dtype))


def store_dtype(*inputs: torch.Tensor) -> torch.dtype:
    """The delta-rule chunk kernels' store dtype of their intermediates (W, U, v_new, h): the
    inputs' common dtype when they are all of one half dtype (fla's arithmetic, half x half
    tensor-core dots), fp32 otherwise (fp32 or mixed inputs)."""
    dtype = inputs[0].dtype
    for x in inputs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype if dtype in (torch.float16, torch.bfloat16) else torch.float32


def next_pow2(n: int, minimum: int = 16) -> int:
    """Block size covering a head dim (masked loads handle 60, 100, ...)."""
    return max(minimum, triton.next_power_of_2(n))


# Compile classes of head dims (the KDA kernels): a kernel that tiles a head dim uses its widest block
# whatever the dim, and masked loads cover a dim below it. Triton compiles a binary per block size and
# per divisibility of the dim by 16, so the space's dims 16, 32 and 64 share one binary where each
# power of two used to get its own (docs/compile_buckets.md, "Compile classes of head dims").
HEAD_BLOCK = 64  # a whole head dim's smallest block


def whole_dim_block(dim: int) -> int:
    """The block of a kernel holding a whole head dim in one block: HEAD_BLOCK up to it, else the
    dim's power of two (16..64 -> 64, 100 -> 128)."""
    return next_pow2(dim, minimum=HEAD_BLOCK)


FMA_BLOCK = 32  # the widest block of a head dim whose fp32 IEEE dots unroll to scalar FMAs per tile


def fma_block(dim: int) -> int:
    """The block of a head dim for a chunk kernel whose fp32 IEEE dots unroll to scalar FMAs per
    tile: next_pow2(dim), at most FMA_BLOCK (the compile time grows with the tile, docs/kernels.md;
    the gla, simple_gla and kda chunk kernels' V blocks and their looped or gridded K blocks)."""
    return min(next_pow2(dim), FMA_BLOCK)


def prepare_chunk_indices(cu_seqlens: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """[num_chunks, 2] int32 rows (sequence index, chunk index within it) for varlen grids."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    rows = [(i, c) for i, n in enumerate(lengths) for c in range(triton.cdiv(n, chunk_size))]
    if not rows:
        return torch.zeros(0, 2, dtype=torch.int32, device=cu_seqlens.device)
    return torch.tensor(rows, dtype=torch.int32, device=cu_seqlens.device)


def num_sequences(batch: int, cu_seqlens: Optional[torch.Tensor]) -> int:
    """N of the state tensors: B, or the number of varlen sequences."""
    return batch if cu_seqlens is None else cu_seqlens.numel() - 1


def check_varlen(q: torch.Tensor, cu_seqlens: Optional[torch.Tensor],
                 initial_state: Optional[torch.Tensor]) -> None:
    """fla's contract: cu_seqlens needs B == 1 and one initial state per sequence."""
    if cu_seqlens is None:
        return
    if q.shape[0] != 1:
        raise ValueError(f"cu_seqlens needs batch size 1, got {q.shape[0]}")
    n = cu_seqlens.numel() - 1
    if initial_state is not None and initial_state.shape[0] != n:
        raise ValueError(f"initial_state has {initial_state.shape[0]} states for {n} sequences")


def check_value_heads(q: torch.Tensor, v: torch.Tensor) -> int:
    """HV of grouped value heads (v [B,T,HV,V] over q, k [B,T,H,K]): a multiple of H; returns HV."""
    H, HV = q.shape[2], v.shape[2]
    if HV < H or HV % H:
        raise ValueError(f"value heads HV={HV} must be a multiple of the q/k heads H={H}")
    return HV
