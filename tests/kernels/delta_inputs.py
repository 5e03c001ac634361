"""Input builders and error checks shared by the DeltaNet / Gated DeltaNet kernel tests."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from device import DEVICE
from fla_check.references import delta_step, gated_delta_step, naive_baseline, reference


def make_inputs(B: int, T: int, H: int, K: int, V: int, *, gated: bool, seed: int = 0,
                dtype: torch.dtype = torch.float32, normalize: bool = True,
                beta_max: float = 1.0) -> dict:
    """q, k (L2-normalised unless told), v, beta in [0, beta_max), logsigmoid gate when gated;
    drawn on the CPU from `seed`, on the backend's device."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = torch.randn(B, T, H, K, generator=gen)
    if normalize:
        k = F.normalize(k, dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    beta = beta_max * torch.rand(B, T, H, generator=gen)
    g = F.logsigmoid(torch.randn(B, T, H, generator=gen)) if gated else None
    cast = lambda x: None if x is None else x.to(DEVICE, dtype)  # noqa: E731
    return dict(q=cast(q), k=cast(k), v=cast(v), beta=cast(beta), g=cast(g))


def initial_state(N: int, H: int, K: int, V: int, seed: int = 1) -> torch.Tensor:
    return 0.5 * torch.randn(N, H, K, V, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def run_reference(x: dict, *, fn=reference, **kwargs):
    step = gated_delta_step if x["g"] is not None else delta_step
    return fn(step, x["q"], x["k"], x["v"], x["g"], x["beta"], **kwargs)


def max_err(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


TF32_ALLOWANCE = 4 * 2.0**-10  # relative: fp32-operand dots at TF32 (the chunk modes' half-input declaration)


def assert_matches_reference(fn, x: dict, chunk_size: Optional[int] = None, tf32: bool = False,
                             **kwargs) -> tuple[float, float]:
    """Run kernel `fn` (with `chunk_size` if given) and the float64 reference; check o and ht.

    fp32: absolute error below 2e-5 * max(1, |ref|). Other dtypes: within 2x the error of the
    same-dtype naive recurrence plus a small floor (the verdict rule of DESIGN.md), plus, with
    `tf32` (a mode declaring TF32 dots for half inputs), TF32_ALLOWANCE * max(1, |ref|).
    """
    extra = {} if chunk_size is None else {"chunk_size": chunk_size}
    o, ht = fn(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"], output_final_state=True,
               **kwargs, **extra)
    ro, rh = run_reference(x, output_final_state=True, **kwargs)
    assert o.dtype == x["q"].dtype and o.shape == ro.shape
    assert ht.dtype == torch.float32 and ht.shape == rh.shape
    assert torch.isfinite(o).all() and torch.isfinite(ht).all()
    eo, eh = max_err(o, ro), max_err(ht, rh)
    if x["q"].dtype == torch.float32:
        assert eo <= 2e-5 * max(1.0, ro.abs().max().item()), eo
        assert eh <= 2e-5 * max(1.0, rh.abs().max().item()), eh
    else:
        po, ph = run_reference(x, fn=naive_baseline, output_final_state=True, **kwargs)
        so = TF32_ALLOWANCE * max(1.0, ro.abs().max().item()) if tf32 else 0.0
        sh = TF32_ALLOWANCE * max(1.0, rh.abs().max().item()) if tf32 else 0.0
        assert eo <= 2 * max_err(po, ro) + 1e-3 + so, (eo, max_err(po, ro))
        assert eh <= 2 * max_err(ph, rh) + 1e-3 + sh, (eh, max_err(ph, rh))
    return eo, eh
