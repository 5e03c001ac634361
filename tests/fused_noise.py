"""The emulation's fused (GPU) noise path for the tests of its kernels: on a CPU under the Triton interpreter."""
from typing import Callable, Optional

import torch
from device import DEVICE

from fla_check.verdict import emulation
from fla_check.verdict.arithmetic import Arithmetic


def fused_rounding(arith: Arithmetic, dtype: torch.dtype, seeds: list[int], rows: Optional[slice] = None,
                   draws: int = 7) -> emulation.Rounding:
    """A Rounding on the GPU's noise path, `draws` draws already taken (a fused kernel keys its noise from there),
    its whole-sequence kernels taking cases of any length."""
    rnd = emulation.Rounding(arith, dtype, seeds, torch.device(DEVICE), rows)
    rnd.fused = True
    rnd.min_chunks = 1
    rnd.draws = draws
    return rnd


def torch_path(rnd: emulation.Rounding, fused_method: str, fn: Callable, *args):
    """``fn(rnd, *args)`` with `rnd`'s one-launch `fused_method` off: the torch ops, each rounding point one fused
    noise launch (what the kernel must reproduce, draw for draw)."""
    setattr(rnd, fused_method, lambda *a: None)
    return fn(rnd, *args)


def past_shared_memory(*args, **kwargs):
    """A fused kernel's wrapper whose launch asks for more shared memory than an H200 has (as 64 x 128 float64
    tiles at 3 stages did: perf-h200-51)."""
    from triton.runtime.errors import OutOfResources

    raise OutOfResources(311296, 232448, "shared memory")
