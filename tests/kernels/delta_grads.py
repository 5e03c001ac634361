"""Gradient checks shared by the DeltaNet / Gated DeltaNet backward tests.

Every pass builds fresh leaf tensors, so reference, baseline and kernel gradients can never
accumulate into (or be compared with) each other.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from fla_check.references import delta_step, gated_delta_step, naive_baseline, reference
from delta_inputs import initial_state, make_inputs, max_err
from device import DEVICE

GRADS = ("q", "k", "v", "beta", "g", "h0")


def case(B: int, T: int, H: int, K: int, V: int, *, gated: bool, cu_seqlens=None, seed: int = 0,
         dtype: torch.dtype = torch.float32, use_h0: bool = True) -> dict:
    """Inputs plus upstream gradients do (for o) and dht (for the final state), float64."""
    x = make_inputs(B, T, H, K, V, gated=gated, seed=seed, dtype=dtype)
    cu = None if cu_seqlens is None else torch.tensor(cu_seqlens, device=DEVICE)
    N = B if cu is None else cu.numel() - 1
    x["h0"] = initial_state(N, H, K, V, seed=seed + 1) if use_h0 else None
    gen = torch.Generator().manual_seed(seed + 2)
    x["do"] = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64).to(DEVICE)
    x["dht"] = torch.randn(N, H, K, V, generator=gen, dtype=torch.float64).to(DEVICE)
    x["cu_seqlens"] = cu
    return x


def gradients(fn: Callable, x: dict, dtype: Optional[torch.dtype] = None, **kwargs) -> dict:
    """d(<o, do> + <ht, dht>) w.r.t. fresh leaves (in `dtype`, default the inputs' dtype)."""
    leaves = {}
    for name in GRADS:
        t = x[name]
        leaves[name] = None if t is None else t.to(dtype or t.dtype).detach().requires_grad_()
    o, ht = fn(leaves["q"], leaves["k"], leaves["v"], g=leaves["g"], beta=leaves["beta"],
               initial_state=leaves["h0"], output_final_state=True, cu_seqlens=x["cu_seqlens"],
               **kwargs)
    ((o.double() * x["do"]).sum() + (ht.double() * x["dht"]).sum()).backward()
    return {n: t.grad for n, t in leaves.items() if t is not None}


def _recurrence(runner: Callable) -> Callable:
    def fn(q, k, v, *, g, beta, **kwargs):
        return runner(gated_delta_step if g is not None else delta_step, q, k, v, g, beta, **kwargs)
    return fn


def reference_gradients(x: dict) -> dict:
    """Gradients through the float64 step-wise reference."""
    return gradients(_recurrence(reference), x, torch.float64)


def baseline_gradients(x: dict) -> dict:
    """Gradients through the same-dtype naive recurrence (the precision baseline)."""
    return gradients(_recurrence(naive_baseline), x)


def gradient_errors(fn: Callable, x: dict, **kwargs) -> dict[str, float]:
    """Max abs error of every kernel gradient against the float64 reference."""
    ref = reference_gradients(x)
    got = gradients(fn, x, **kwargs)
    assert got.keys() == ref.keys()
    for name, grad in got.items():
        assert grad.dtype == x[name].dtype and grad.shape == ref[name].shape, name
    return {name: max_err(got[name], ref[name]) for name in ref}


def assert_gradients_match(fn: Callable, x: dict, **kwargs) -> dict[str, float]:
    """fp32: every gradient within 2e-5 * max(1, max|ref|); other dtypes: within 3x the
    naive same-dtype baseline's error plus 1e-3 * max(1, max|ref|) (DESIGN.md, backward a = 3)."""
    ref = reference_gradients(x)
    got = gradients(fn, x, **kwargs)
    base = None if x["q"].dtype == torch.float32 else baseline_gradients(x)
    assert got.keys() == ref.keys()
    errors = {}
    for name in ref:
        assert got[name].dtype == x[name].dtype and got[name].shape == ref[name].shape, name
        assert torch.isfinite(got[name]).all(), name
        err, size = max_err(got[name], ref[name]), max(1.0, ref[name].abs().max().item())
        if base is None:
            assert err <= 2e-5 * size, (name, err, size)
        else:
            assert err <= 3 * max_err(base[name], ref[name]) + 1e-3 * size, (name, err, size)
        errors[name] = err
    return errors
