"""A torch "fla-like" UT-transform variant: rounds where fla-core 0.6.0's UT step rounds on a GPU.

Built from the honest controls' primitives (tests/controls/fla_like.py, steps 1-3 of its
delta-rule chunk): ``A = beta K K^T`` as a dot of input-dtype keys (TF32-truncated operands for
fp32 inputs: the low 13 bits of the float32 bit pattern cleared), gated by ``exp2`` of fp32
chunk cumsums in log2 units; the inverse by 16x16 substitution blocks merged with fp32 dots at
``merge`` precision (default TF32: what fla's solve_tril does when its autotuner picks tf32, and
what the fused Gated DeltaNet kernel always does); A_inv, w, u stored in the input dtype. Chunks
shorter than the chunk size are zero-padded, as fla's masked loads pad.
"""
from __future__ import annotations

import torch
from torch import Tensor

from controls.fla_like import Rounding, _chunk_cumsum, ut_step
from fla_check.commands.ut_transform.cases import UTInputs
from fla_check.commands.ut_transform.variants import FLA_BLOCKED, Variant


def fla_like_ut(x: UTInputs, chunk_size: int, merge: str = "tf32",
                beta_scale: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(A_inv [1,T,H,BT], w [1,T,H,K], u [1,T,H,V]) in the input dtype; `beta_scale` != 1
    plants a bug (beta off by that factor)."""
    r = Rounding(x.k.dtype)
    tr = lambda t: None if t is None else t[0].float().transpose(0, 1)  # noqa: E731 - [H,T,...]
    k, v, beta, g = (tr(t) for t in (x.k, x.v, x.beta, x.g))
    beta = beta * beta_scale
    H, T, _ = k.shape
    C = chunk_size
    pad = lambda t: torch.cat([t, t.new_zeros((H, C - T) + tuple(t.shape[2:]))], 1)  # noqa: E731
    k, v, beta = pad(k), pad(v), pad(beta)[..., None]
    G = None if g is None else _chunk_cumsum(pad(g), C)[:, 0]  # [H,C], log2 units
    Ai, w, u = ut_step(k, v, beta, G, r, merge)
    back = lambda t: t[:, :T].transpose(0, 1)[None].to(x.k.dtype)  # noqa: E731
    return back(Ai), back(w), back(u)


def fla_like_variant(name: str = "fla-like", beta_scale: float = 1.0, arithmetic=FLA_BLOCKED) -> Variant:
    """The torch fla-like UT step, declaring fla's arithmetic (or `arithmetic`)."""
    what = "torch proxy of fla's UT step (input-dtype stores, TF32 merges)"
    if beta_scale != 1.0:
        what += f", beta x{beta_scale:g} (planted)"
    return Variant(name, what, lambda x, c: fla_like_ut(x, c, beta_scale=beta_scale), arithmetic=arithmetic)
