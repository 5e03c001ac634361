"""A third-party-style provider, as a user's own package would write it (loaded by spec in tests).

`thirdparty:ref` runs fla-check's fp32 recurrence (a correct GLA mode); `thirdparty:buggy` plants
a classic ordering bug (the gate decays the new k v^T outer product too).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from fla_check.ops import ModeSpec
from fla_check.providers import Provider
from fla_check.references import gla_step, naive_baseline, run_recurrence


def gla_ref(q: Tensor, k: Tensor, v: Tensor, *, g: Optional[Tensor] = None, beta: Optional[Tensor] = None,
            scale: Optional[float] = None, initial_state: Optional[Tensor] = None,
            output_final_state: bool = False, cu_seqlens: Optional[Tensor] = None):
    return naive_baseline(gla_step, q, k, v, g, scale=scale, initial_state=initial_state,
                          output_final_state=output_final_state, cu_seqlens=cu_seqlens)


def _decay_after_update(S: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Optional[Tensor]) -> Tensor:
    return (S + k[..., None] * v[..., None, :]) * g.exp()[..., None]  # planted bug


def gla_buggy(q: Tensor, k: Tensor, v: Tensor, *, g: Optional[Tensor] = None, beta: Optional[Tensor] = None,
              scale: Optional[float] = None, initial_state: Optional[Tensor] = None,
              output_final_state: bool = False, cu_seqlens: Optional[Tensor] = None):
    h0 = None if initial_state is None else initial_state.float()
    o, ht = run_recurrence(_decay_after_update, q.float(), k.float(), v.float(), g.float(), scale=scale,
                           initial_state=h0, output_final_state=output_final_state)
    return o.to(q.dtype), ht


MODES = {
    "gla": [
        ModeSpec("ref", "thirdparty", gla_ref, backward=True, description="fp32 recurrence"),
        ModeSpec("buggy", "thirdparty", gla_buggy, dtypes=frozenset({torch.float32}), varlen=False,
                 backward_reason="thirdparty:buggy is forward only", description="planted bug"),
    ],
}

provider = Provider("thirdparty", MODES, description="test provider")


def make_provider() -> Provider:
    return Provider("thirdparty", MODES)


not_a_provider = 42


def returns_dict() -> dict:
    return {"name": "thirdparty"}


def needs_arg(x: int) -> Provider:
    return provider


def factory_raises() -> Provider:
    raise RuntimeError("boom")


unknown_op = Provider("thirdparty", {"softmax": [ModeSpec("ref", "thirdparty", gla_ref)]})
clashing = Provider("thirdparty", {"gla": [ModeSpec("ref", "thirdparty", gla_buggy)]})
reserved = Provider("builtin", {"gla": [ModeSpec("ref", "builtin", gla_ref)]})
mislabelled = Provider("thirdparty", {"gla": [ModeSpec("ref", "other", gla_ref)]})
