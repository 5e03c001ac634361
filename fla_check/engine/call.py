"""One call of a mode on a case: the step that runs in-process or inside an isolation worker."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from fla_check import gradients
from fla_check.cases import CaseInputs

Grads = dict[str, Optional[Tensor]]


def call_mode(fn: Callable, inputs: CaseInputs, up: Optional[gradients.Upstream], device: str) -> tuple[Any, Grads]:
    """`fn` on fresh copies of the case's inputs: its raw return value and, with upstream
    gradients `up`, its gradients (see :func:`fla_check.gradients.mode_outputs`)."""
    with warnings.catch_warnings():  # overflow in discarded lanes is the verdict's business
        warnings.simplefilter("ignore", RuntimeWarning)
        if up is None:
            raw, grads = fn(*inputs.mode_args(), **inputs.mode_kwargs()), {}
        else:
            raw, grads = gradients.mode_outputs(fn, inputs, up)
    if device == "cuda":
        torch.cuda.synchronize()
    return raw, grads
