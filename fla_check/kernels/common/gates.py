"""In-kernel gate arithmetic shared by kernels that take fla's ``use_gate_in_kernel``.

Gated DeltaNet's gate from the raw input ``a``: ``g = -exp(A_log) * softplus(a + dt_bias)``,
computed in fp32 per step. ``softplus`` is fla 0.6.0's (``fla/ops/utils/softplus.py``,
``softplus_triton``; its PTX ``softplus_nv`` saturates at the same threshold): ``log(1 + exp(x))``
below 20, ``x`` from there on (where the two agree to fp32's last bit: ``log1p(e^-20) ~ 2e-9``).
"""
from __future__ import annotations

import triton
import triton.language as tl

SOFTPLUS_THRESHOLD = 20.0  # fla's: softplus(x) = x for x >= 20


@triton.jit
def softplus(x):
    """fp32 softplus as fla computes it: log(1 + exp(x)) for x < 20, else x."""
    return tl.where(x < 20.0, tl.log(1 + tl.exp(x)), x)
