"""Out of memory in the harness vs in a kernel.

A mode that runs out of memory inside its own call is that mode's ERROR verdict (after
:func:`release`, so the cached blocks of the failed call go back to the device). Everything
else fla-check does for a case -- building the inputs, the float64 reference and its gradients,
the baseline emulation, judging -- is the harness: an out-of-memory there says nothing about a
kernel, so :func:`harness_stage` turns it into :class:`~fla_check.errors.HarnessOutOfMemory`,
naming what ran out and the case's size, and the search stops on it instead of shrinking it
(:mod:`fla_check.engine.search`).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Union

import torch

from fla_check.cases import CaseConfig
from fla_check.errors import HarnessOutOfMemory

_CPU_MESSAGE = "DefaultCPUAllocator: can't allocate memory"  # torch's CPU allocator raises a plain RuntimeError


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure (CUDA's OutOfMemoryError or the CPU allocator's)."""
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and _CPU_MESSAGE in str(exc))


def release(exc: BaseException) -> None:
    """After an out-of-memory `exc`: hand this process's cached CUDA blocks back to the device."""
    if is_out_of_memory(exc) and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def input_elements(config: CaseConfig) -> int:
    """Elements of a case's q, k, v (the size its float64 work scales with)."""
    return config.B * config.T * (2 * config.H * config.K + config.HV * config.V)


def describe(stage: str, config: CaseConfig, device: Union[str, torch.device]) -> str:
    """'GPU out of memory in STAGE for a case of N input elements (CASE)', with the device's
    free memory when it is a GPU."""
    device = torch.device(device)
    where = "GPU" if device.type == "cuda" else "CPU"
    text = (f"{where} out of memory in {stage} for a case of {input_elements(config):,} input elements "
            f"({config.short()})")
    if device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        text += f"; {free / 2**30:.1f} of {total / 2**30:.1f} GiB of the GPU free after releasing this process's cache"
    return text


@contextmanager
def harness_stage(stage: str, config: CaseConfig, device: Union[str, torch.device]) -> Iterator[None]:
    """Run harness work `stage` (e.g. 'the float64 reference') of `config`: an out-of-memory
    inside becomes :class:`HarnessOutOfMemory` (its message from :func:`describe`)."""
    try:
        yield
    except HarnessOutOfMemory:
        raise
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        release(exc)
        raise HarnessOutOfMemory(describe(stage, config, device), stage, input_elements(config)) from exc
