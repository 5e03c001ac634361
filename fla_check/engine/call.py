"""One call of a mode on a case: the step that runs in-process or inside an isolation worker."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor

from fla_check.cases import CaseInputs
from fla_check.engine import gradients
from fla_check.engine.configs import FIRST, ConfigPolicy, TunedKernel, autotune_scope
from fla_check.engine.memory import MemoryChecks, poisoned_allocations, with_slack

Grads = dict[str, Optional[Tensor]]


def call_mode(fn: Callable, inputs: CaseInputs, up: Optional[gradients.Upstream], device: str,
              policy: ConfigPolicy = FIRST, force: Optional[Mapping[str, int]] = None,
              memory: Optional[MemoryChecks] = None) -> tuple[Any, Grads, dict[str, TunedKernel]]:
    """`fn` on fresh copies of the case's inputs: its raw return value, with upstream gradients
    `up` its gradients (see :func:`fla_check.engine.gradients.mode_outputs`), and the autotuned
    kernels it launched. The call runs under the autotune `policy` (`force`: config indices
    forced per kernel, see :func:`fla_check.engine.configs.autotune_scope`) and the `memory`
    checks (None: all of them, :mod:`fla_check.engine.memory`): guarded inputs, padded tokens
    after ``cu_seqlens[-1]`` (cut off the outputs again), poisoned allocations. States go in and
    come out [K, V] whatever the case's layout (:meth:`fla_check.cases.CaseInputs.state_layout`)."""
    memory = memory or MemoryChecks()
    T = inputs.q.shape[1]
    padded = with_slack(inputs, memory.slack, memory.slack_fill)
    guard = memory.guard_fill
    fn = padded.state_layout(fn, guard)
    # the guarded copies are made before the poisoned scope (they allocate with torch.full, never
    # poisoned): its dispatch mode then sees only the mode's own aten ops
    args, kwargs = (padded.mode_args(guard), padded.mode_kwargs(guard)) if up is None else ((), {})
    with autotune_scope(policy, force) as seen, warnings.catch_warnings(), \
            poisoned_allocations(memory.poison, memory.fill):
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in discarded lanes is the verdict's business
        if up is None:
            raw, grads = gradients.cut_tokens(fn(*args, **kwargs), T), {}
        else:
            raw, grads = gradients.mode_outputs(fn, padded, up, guard, keep=T if padded is not inputs else None)
    if device == "cuda":  # the caller's stream only: baselines may run meanwhile on another (engine.batched)
        torch.cuda.current_stream().synchronize()
    return raw, grads, seen.kernels
