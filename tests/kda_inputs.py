"""KDA inputs and float64 reference gradients, shared by the KDA kernel tests."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from fla_check.references import kda_step, reference
from device import DEVICE

INPUTS = ("q", "k", "v", "g", "beta", "h0")


def kda_case(B: int, T: int, H: int, K: int, V: int, *, cu_seqlens=None, seed: int = 0, h0: bool = True,
             gate_norm: float = 1.0, dtype: torch.dtype = torch.float32) -> dict:
    """fp32/half q, k (L2-normalised), v, g = logsigmoid/gate_norm [B,T,H,K], beta in [0,1), fp32 h0,
    float64 upstream gradients do, dht."""
    gen = torch.Generator().manual_seed(seed)
    cu = None if cu_seqlens is None else torch.tensor(cu_seqlens, dtype=torch.int64)
    N = B if cu is None else cu.numel() - 1
    x = {"q": torch.randn(B, T, H, K, generator=gen), "k": F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1),
         "v": torch.randn(B, T, H, V, generator=gen),
         "g": F.logsigmoid(torch.randn(B, T, H, K, generator=gen)) / gate_norm,
         "beta": torch.rand(B, T, H, generator=gen)}
    x = {n: t.to(DEVICE, dtype) for n, t in x.items()}
    x["h0"] = torch.randn(N, H, K, V, generator=gen).to(DEVICE) if h0 else None
    x["do"] = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64).to(dtype).double().to(DEVICE)
    x["dht"] = torch.randn(N, H, K, V, generator=gen, dtype=torch.float64).to(DEVICE)
    x["cu_seqlens"] = None if cu is None else cu.to(DEVICE)
    return x


def run(fn: Callable, x: dict, dtype: Optional[torch.dtype] = None, grads: bool = True, **kwargs) -> dict:
    """o, ht and (with `grads`) the gradients of <o, do> + <ht, dht> w.r.t. fresh leaves."""
    leaves = {n: None if x[n] is None else x[n].to(dtype or x[n].dtype).detach().requires_grad_(grads)
              for n in INPUTS}
    with torch.set_grad_enabled(grads):
        o, ht = fn(leaves["q"], leaves["k"], leaves["v"], g=leaves["g"], beta=leaves["beta"],
                   initial_state=leaves["h0"], output_final_state=True, cu_seqlens=x["cu_seqlens"], **kwargs)
        out = {"o": o.detach(), "ht": ht.detach()}
        if grads:
            ((o.double() * x["do"]).sum() + (ht.double() * x["dht"]).sum()).backward()
            out.update({"d" + n: t.grad for n, t in leaves.items() if t is not None})
    return out


def kda_reference(q, k, v, *, g, beta, **kwargs):
    """The float64 step-wise KDA reference with the uniform mode signature."""
    return reference(kda_step, q, k, v, g, beta, **kwargs)


def max_rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max(1, max |ref|)."""
    ref = ref.double()
    return float((got.double() - ref).abs().max() / max(1.0, float(ref.abs().max())))
