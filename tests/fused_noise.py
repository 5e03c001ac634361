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
