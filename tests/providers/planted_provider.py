"""Planted process-killing modes for the isolation tests (loaded with --provider planted_provider:provider).

Each GLA mode is fla-check's fp32 recurrence (correct) until its trigger, then:
`planted:abort` calls os.abort(), `planted:segfault` reads address 0 (SIGSEGV), `planted:hang`
sleeps for an hour, `planted:cuda_fault` raises the RuntimeError torch raises after an illegal
memory access, `planted:raises` raises a ValueError. The trigger is the case length, ``T >= MIN_T``, so a failing case shrinks to
T = MIN_T; `planted:abort3` aborts on the third call its process makes instead (the issue's
measurement). `planted:ref` never fails. Two memory-unsafe modes (always, no trigger):
`planted:unwritten` never stores the last token of ``o`` (an empty buffer), `planted:overread`
reads the element just past the end of ``q``.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import time
from typing import Optional

import torch
from torch import Tensor

from fla_check.ops import ModeSpec
from fla_check.providers import Provider
from fla_check.references import gla_step, naive_baseline

MIN_T = 8
_CALLS = itertools.count(1)


def _ref(q: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], initial_state, output_final_state, cu_seqlens,
         scale):
    return naive_baseline(gla_step, q, k, v, g, scale=scale, initial_state=initial_state,
                          output_final_state=output_final_state, cu_seqlens=cu_seqlens)


def _mode(trigger):
    def mode(q: Tensor, k: Tensor, v: Tensor, *, g: Optional[Tensor] = None, beta: Optional[Tensor] = None,
             scale: Optional[float] = None, initial_state: Optional[Tensor] = None,
             output_final_state: bool = False, cu_seqlens: Optional[Tensor] = None):
        if q.shape[1] >= MIN_T:
            trigger()
        return _ref(q, k, v, g, initial_state, output_final_state, cu_seqlens, scale)

    return mode


def _abort() -> None:
    os.abort()


def _segfault() -> None:
    ctypes.string_at(0)


def _hang() -> None:
    time.sleep(3600)


def _cuda_fault() -> None:
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def _raise() -> None:
    raise ValueError("planted failure")


def _never() -> None:
    pass


ref = _mode(_never)
abort = _mode(_abort)
segfault = _mode(_segfault)
hang = _mode(_hang)
cuda_fault = _mode(_cuda_fault)
raises = _mode(_raise)


def abort3(q: Tensor, k: Tensor, v: Tensor, **kw):
    if next(_CALLS) == 3:
        os.abort()
    return ref(q, k, v, **kw)


def unwritten(q: Tensor, k: Tensor, v: Tensor, **kw):
    o, ht = ref(q, k, v, **kw)
    out = torch.empty_like(o)  # poisoned under the memory checks
    out[:, :-1] = o[:, :-1]
    return out, ht


def overread(q: Tensor, k: Tensor, v: Tensor, **kw):
    o, ht = ref(q, k, v, **kw)
    past = torch.as_strided(q, (q.numel() + 1,), (1,), q.storage_offset())[-1]  # one element past q
    return o + 0 * past, ht


def _spec(name: str, fn) -> ModeSpec:
    return ModeSpec(name, "planted", fn, triton=False, description=f"planted {name}")


provider = Provider("planted", {"gla": [_spec("ref", ref), _spec("abort", abort), _spec("segfault", segfault),
                                        _spec("hang", hang), _spec("cuda_fault", cuda_fault),
                                        _spec("raises", raises), _spec("abort3", abort3),
                                        _spec("unwritten", unwritten), _spec("overread", overread)]},
                    description="isolation test modes")
