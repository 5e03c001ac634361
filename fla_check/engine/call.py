"""One call of a mode on a case: the step that runs in-process or inside an isolation worker."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor

from fla_check.cases import CaseInputs
from fla_check.engine import gradients
from fla_check.engine.configs import FIRST, ConfigPolicy, TunedKernel, autotune_scope

Grads = dict[str, Optional[Tensor]]


def call_mode(fn: Callable, inputs: CaseInputs, up: Optional[gradients.Upstream], device: str,
              policy: ConfigPolicy = FIRST, force: Optional[Mapping[str, int]] = None
              ) -> tuple[Any, Grads, dict[str, TunedKernel]]:
    """`fn` on fresh copies of the case's inputs: its raw return value, with upstream gradients
    `up` its gradients (see :func:`fla_check.engine.gradients.mode_outputs`), and the autotuned
    kernels it launched; the call runs under the autotune `policy` (`force`: config indices
    forced per kernel, see :func:`fla_check.engine.configs.autotune_scope`)."""
    with autotune_scope(policy, force) as seen, warnings.catch_warnings():  # overflow in discarded lanes
        warnings.simplefilter("ignore", RuntimeWarning)  # is the verdict's business
        if up is None:
            raw, grads = fn(*inputs.mode_args(), **inputs.mode_kwargs()), {}
        else:
            raw, grads = gradients.mode_outputs(fn, inputs, up)
    if device == "cuda":
        torch.cuda.synchronize()
    return raw, grads, seen.kernels
