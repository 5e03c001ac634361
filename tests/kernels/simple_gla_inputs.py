"""Input builder and gradient helper shared by the simple GLA kernel tests."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from device import DEVICE
from fla_check.references import reference, simple_gla_step

CASES = {  # name: (B, T, H, K, V, cu_seqlens, use_h0, gate_norm)
    "T13_B2": (2, 13, 2, 32, 32, None, True, 8.0),
    "T1": (1, 1, 1, 16, 16, None, False, 8.0),
    "T70_BV_split": (1, 70, 1, 16, 80, None, True, 8.0),
    "varlen_len1": (1, 45, 2, 32, 32, [0, 1, 20, 45], True, 8.0),
    "varlen_empty": (1, 80, 1, 16, 16, [0, 0, 17, 80], True, 8.0),
    "KV60": (1, 40, 1, 60, 100, None, True, 8.0),
    "strong_decay": (1, 40, 1, 32, 32, None, True, 0.1),
}


def make_inputs(case: str, seed: int = 0):
    """((q, k, v, g [B,T,H], h0 or None) in fp32 on the device, cu_seqlens or None) of `case`.

    The default gate_norm 8 gives a weak decay, so the state carry matters."""
    B, T, H, K, V, cu, use_h0, norm = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen)
    g = F.logsigmoid(torch.randn(B, T, H, generator=gen)) / norm
    n = B if cu is None else len(cu) - 1
    h0 = torch.randn(n, H, K, V, generator=gen)
    cu = None if cu is None else torch.tensor(cu, device=DEVICE)
    return tuple(x.to(DEVICE) for x in (q, k, v, g)) + ((h0.to(DEVICE) if use_h0 else None),), cu


def ref(q, k, v, g, h0, cu):
    return reference(simple_gla_step, q, k, v, g, None, initial_state=h0, output_final_state=True, cu_seqlens=cu)


def grads(fn: Callable, inputs, do, dht, cu, dtype) -> list:
    """Gradients of <o, do> + <ht, dht> w.r.t. q, k, v, g, h0 (leaves in `dtype`)."""
    leaves = [x.to(dtype).detach().requires_grad_() for x in inputs]
    o, ht = fn(*leaves, cu)
    ((o.double() * do).sum() + (ht.double() * dht).sum()).backward()
    return [x.grad for x in leaves]
