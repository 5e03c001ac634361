"""Test-only modes with the uniform mode signature: a clean fp32 recurrence and planted bugs.

They run in plain PyTorch (fast, no Triton interpreter), so runner/CLI tests can show that
clean modes pass and each planted bug is flagged without the built-in kernels.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor

from fla_check import ops
from fla_check.ops import ModeSpec
from fla_check.references import run_recurrence

PROVIDER = "test"


def _per_sequence(fn: Callable, q, k, v, g, beta, initial_state, cu_seqlens):
    """Run fn(q,k,v,g,beta,h0) -> (o, ht) on each varlen sequence (or the whole batch)."""
    if cu_seqlens is None:
        return fn(q, k, v, g, beta, initial_state)
    outs, states = [], []
    bounds = cu_seqlens.tolist()
    for i, (s, e) in enumerate(zip(bounds[:-1], bounds[1:])):
        sl = lambda x: None if x is None else x[:, s:e]  # noqa: E731
        h0 = None if initial_state is None else initial_state[i : i + 1]
        o, ht = fn(sl(q), sl(k), sl(v), sl(g), sl(beta), h0)
        outs.append(o)
        states.append(ht)
    return torch.cat(outs, 1), torch.cat(states, 0)


def make_clean(step) -> Callable:
    """The step-wise recurrence in fp32: what a correct kernel computes."""

    def clean(q, k, v, *, g=None, beta=None, scale=None, initial_state=None,
              output_final_state=False, cu_seqlens=None):
        f = lambda x: None if x is None else x.float()  # noqa: E731
        o, ht = run_recurrence(step, f(q), f(k), f(v), f(g), f(beta), scale=scale,
                               initial_state=f(initial_state), output_final_state=True,
                               cu_seqlens=cu_seqlens)
        return o.to(q.dtype), (ht if output_final_state else None)

    return clean


def make_state_dropped(step, every: int = 16) -> Callable:
    """Planted bug: the state is zeroed every `every` steps (a broken chunk hand-off)."""

    def run(q, k, v, g, beta, h0, scale):
        B, T = q.shape[:2]
        reset = torch.zeros(B, T, dtype=torch.bool, device=q.device)
        reset[:, every::every] = True
        return run_recurrence(step, q, k, v, g, beta, scale=scale, initial_state=h0,
                              output_final_state=True, reset_mask=reset)

    def dropped(q, k, v, *, g=None, beta=None, scale=None, initial_state=None,
                output_final_state=False, cu_seqlens=None):
        f = lambda x: None if x is None else x.float()  # noqa: E731
        o, ht = _per_sequence(lambda *a: run(*a, scale), f(q), f(k), f(v), f(g), f(beta),
                              f(initial_state), cu_seqlens)
        return o.to(q.dtype), (ht if output_final_state else None)

    return dropped


def make_nan_at(step, t: int = 16) -> Callable:
    """Planted bug: NaN in the output at step `t` (a chunk boundary)."""
    clean = make_clean(step)

    def nan_at(q, k, v, **kw):
        o, ht = clean(q, k, v, **kw)
        if o.shape[1] > t:
            o = o.clone()
            o[:, t] = math.nan
        return o, ht

    return nan_at


def chunk_cumsum_gla(q, k, v, *, g=None, beta=None, scale=None, initial_state=None,
                     output_final_state=False, cu_seqlens=None, chunk: int = 16):
    """GLA the chunk way (fp32): chunk-local gate cumsum, exp of differences, state passing.

    Exact for moderate gates; reproduces the masking failure of chunk kernels: a huge fill
    absorbs the later gates of its chunk (-3.4e37 + g == -3.4e37), -inf gives inf - inf = NaN.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale

    def run(q, k, v, g, _beta, h0):
        B, T, H, K = q.shape
        S = q.new_zeros(B, H, K, v.shape[-1]) if h0 is None else h0.clone()
        outs = []
        for s in range(0, T, chunk):
            qc, kc, vc = q[:, s : s + chunk], k[:, s : s + chunk], v[:, s : s + chunk]
            G = g[:, s : s + chunk].cumsum(1)  # [B,C,H,K]
            C = G.shape[1]
            diff = G[:, :, None] - G[:, None, :]  # [B,Ci,Cj,H,K]
            causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()[None, :, :, None, None]
            decay = torch.where(causal, diff, torch.full_like(diff, -math.inf)).exp()
            A = (qc[:, :, None] * kc[:, None] * decay).sum(-1) * scale  # [B,Ci,Cj,H]
            o = torch.einsum("bijh,bjhv->bihv", A, vc)
            o = o + torch.einsum("bihk,bhkv->bihv", qc * G.exp() * scale, S)
            last = G[:, -1]  # [B,H,K]
            S = S * last.exp()[..., None] + torch.einsum("bjhk,bjhv->bhkv", kc * (last[:, None] - G).exp(), vc)
            outs.append(o)
        return torch.cat(outs, 1), S

    f = lambda x: None if x is None else x.float()  # noqa: E731
    o, ht = _per_sequence(run, f(q), f(k), f(v), f(g), None, f(initial_state), cu_seqlens)
    return o.to(q.dtype), (ht if output_final_state else None)


def chunked_gla(q, k, v, *, chunk_size: int = 64, **kw):
    """:func:`chunk_cumsum_gla` in chunks of the `chunk_size` keyword (a mode that takes it)."""
    return chunk_cumsum_gla(q, k, v, chunk=chunk_size, **kw)


def make_v_first(step, read_as_kv: bool = False) -> Callable:
    """The clean recurrence taking ``state_v_first`` ([N, H, V, K] initial and final states).
    `read_as_kv`: planted bug, a v-first initial state read as if it were [K, V] (its buffer
    reshaped, not transposed: what a kernel with the wrong strides loads)."""
    clean = make_clean(step)

    def v_first(q, k, v, *, initial_state=None, state_v_first=False, **kw):
        h0 = initial_state
        if state_v_first and h0 is not None:
            kv = h0.shape[:-2] + (h0.shape[-1], h0.shape[-2])
            h0 = h0.reshape(kv) if read_as_kv else h0.transpose(-1, -2)
        o, ht = clean(q, k, v, initial_state=h0, **kw)
        return o, (ht.transpose(-1, -2).contiguous() if state_v_first and ht is not None else ht)

    return v_first


def wrong_shape(q, k, v, **kw):
    """Planted bug: drops the last time step."""
    o = torch.zeros_like(v)[:, :-1] if v.shape[1] > 1 else torch.zeros_like(v)[:, :, :, :1]
    return o, None


def raises(q, k, v, **kw):
    raise RuntimeError("planted kernel crash")


def fake_modes(op: str) -> list[ModeSpec]:
    """The test modes of `op` (names: clean, dropped, nan16, and for gla chunk16)."""
    step = ops.get_op(op).step
    modes = [
        ModeSpec("clean", PROVIDER, make_clean(step), description="fp32 recurrence"),
        ModeSpec("dropped", PROVIDER, make_state_dropped(step), description="state zeroed every 16 steps"),
        ModeSpec("nan16", PROVIDER, make_nan_at(step), description="NaN at t=16"),
        ModeSpec("shape", PROVIDER, wrong_shape, description="returns a short o"),
        ModeSpec("raises", PROVIDER, raises, description="raises"),
    ]
    if op == "gla":
        modes.append(ModeSpec("chunk16", PROVIDER, chunk_cumsum_gla, description="chunk-local cumsum, fp32"))
    return modes


@contextlib.contextmanager
def registered(*op_names: str) -> Iterator[None]:
    """Register the fake modes of `op_names` (all ops by default) for the duration."""
    names = op_names or tuple(ops.OPS)
    try:
        for name in names:
            ops.register_modes(name, fake_modes(name))
        yield
    finally:
        ops.remove_modes(PROVIDER)
