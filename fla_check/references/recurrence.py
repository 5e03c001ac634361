"""One time-step loop shared by GLA, simple GLA, DeltaNet, Gated DeltaNet and KDA.

Shapes follow fla: q, k `[B,T,H,K]`, v `[B,T,HV,V]`, GLA and KDA gates `[B,T,H,K]`, simple GLA and
Gated DeltaNet gate and beta `[B,T,HV]`, states `[N,HV,K,V]` (HV = H but for grouped value heads, where q
and k are expanded per value head first: fla_check.references.options). A `prepare` transform (the
case's in-kernel options, :func:`fla_check.references.options.make_prepare`) runs first. Varlen (`cu_seqlens`, B == 1) is run as a padded batch
of independent sequences; a boolean `reset_mask` `[B,T]` zeroes the state before the marked
step, which is exactly "each packed segment run on its own" (the ground truth of packing).
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
from torch import Tensor

from fla_check.references.graphs import over_windows
from fla_check.references.options import Prepare, expand_heads

StepFn = Callable[[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor]], Tensor]
Readout = Optional[Callable[[Tensor, Tensor], Tensor]]  # S^T x: readout or batched_readout (None: readout)


def gla_step(S: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], beta: Optional[Tensor]) -> Tensor:
    """S_t = diag(exp g_t) S_{t-1} + k_t v_t^T.  S: [B,H,K,V], k/g: [B,H,K], v: [B,H,V]."""
    return _gla_decayed(S, k, v, g.exp(), beta)


def simple_gla_step(S: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Optional[Tensor]) -> Tensor:
    """S_t = exp(g_t) S_{t-1} + k_t v_t^T, one scalar log-gate per head.  g: [B,H]."""
    return _simple_gla_decayed(S, k, v, g.exp(), beta)


def delta_step(S: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], beta: Tensor, read: Readout = None) -> Tensor:
    """S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T.  beta: [B,H]. `read`: the form of S^T k
    (default :func:`readout`)."""
    err = v - (read or readout)(S, k)
    return torch.addcmul(S, k[..., None], (beta[..., None] * err)[..., None, :])


def gated_delta_step(S: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor) -> Tensor:
    """Decay first: S' = exp(g_t) S_{t-1}; then the delta rule on S'.  g: [B,H]."""
    return _gated_delta_decayed(S, k, v, g.exp(), beta)


def kda_step(S: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor) -> Tensor:
    """KDA: decay first, per key channel: S' = Diag(exp g_t) S_{t-1}; then the delta rule on S'.
    g: [B,H,K]."""
    return _kda_decayed(S, k, v, g.exp(), beta)


def readout(S: Tensor, x: Tensor) -> Tensor:
    """S^T x per row: [..., K, V] states, [..., K] vectors -> [..., V], a product and a sum over K."""
    return (S * x[..., None]).sum(-2)


def batched_readout(S: Tensor, x: Tensor) -> Tensor:
    """:func:`readout` as one batched product (the leading dims of S and x must agree): slower than
    the product and sum launched op by op, faster in a replayed graph (H200, float64, 256 rows,
    K = V = 64, bench/step_forms.py: 22 against 34 us per Gated DeltaNet step, docs/gpu/perf-h200-35)."""
    K, V = S.shape[-2:]
    return torch.bmm(x.reshape(-1, 1, K), S.reshape(-1, K, V)).view(x.shape[:-1] + (V,))


# The gated steps with the decay a_t = exp(g_t) given: the loop (_loop) takes the exp of every
# step's gate in one op (elementwise: the same values) instead of one op per step.
def _gla_decayed(S: Tensor, k: Tensor, v: Tensor, a: Tensor, beta: Optional[Tensor]) -> Tensor:
    return _gla_given_kv(S, a, k[..., None] * v[..., None, :])


def _simple_gla_decayed(S: Tensor, k: Tensor, v: Tensor, a: Tensor, beta: Optional[Tensor]) -> Tensor:
    return _simple_gla_given_kv(S, a, k[..., None] * v[..., None, :])


def _gated_delta_decayed(S: Tensor, k: Tensor, v: Tensor, a: Tensor, beta: Tensor, read: Readout = None) -> Tensor:
    return delta_step(S * a[..., None, None], k, v, None, beta, read)


def _kda_decayed(S: Tensor, k: Tensor, v: Tensor, a: Tensor, beta: Tensor, read: Readout = None) -> Tensor:
    return delta_step(S * a[..., None], k, v, None, beta, read)


DECAYED: dict[StepFn, StepFn] = {gla_step: _gla_decayed, simple_gla_step: _simple_gla_decayed,
                                 gated_delta_step: _gated_delta_decayed, kda_step: _kda_decayed}

# The decay-only steps with the update k_t v_t^T given too: the loop takes it for a block of
# steps in one op (elementwise: the same products) instead of one op per step.
KvStepFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (S, a_t, k_t v_t^T) -> S_t


def _gla_given_kv(S: Tensor, a: Tensor, kv: Tensor) -> Tensor:
    return torch.addcmul(kv, S, a[..., None])


def _simple_gla_given_kv(S: Tensor, a: Tensor, kv: Tensor) -> Tensor:
    return torch.addcmul(kv, S, a[..., None, None])


GIVEN_KV: dict[StepFn, KvStepFn] = {_gla_decayed: _gla_given_kv, _simple_gla_decayed: _simple_gla_given_kv}
KV_BLOCK_BYTES = 32 * 2**20  # the k v^T products a block of steps holds at once (one op per block)


def _kv_block_steps(B: int, T: int, H: int, K: int, V: int, itemsize: int) -> int:
    """Steps whose k v^T products fit KV_BLOCK_BYTES (one at least, T at most)."""
    return max(1, min(T, KV_BLOCK_BYTES // max(1, B * H * K * V * itemsize)))


def _to_padded(x: Optional[Tensor], bounds: list[int], t_max: int) -> Optional[Tensor]:
    """[1, total, ...] -> [N, t_max, ...] (zeros past each sequence's end; `bounds`: cu_seqlens)."""
    if x is None:
        return None
    rows = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        pad = x.new_zeros((t_max - (e - s),) + tuple(x.shape[2:]))
        rows.append(torch.cat([x[0, s:e], pad], 0))
    return torch.stack(rows, 0)


def run_recurrence(
    step: StepFn,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Optional[Tensor] = None,
    beta: Optional[Tensor] = None,
    *,
    scale: Optional[float] = None,
    initial_state: Optional[Tensor] = None,
    output_final_state: bool = False,
    cu_seqlens: Optional[Tensor] = None,
    reset_mask: Optional[Tensor] = None,
    prepare: Optional[Prepare] = None,
) -> tuple[Tensor, Optional[Tensor]]:
    """Run `step` over time in the dtype of the inputs; returns (o [B,T,HV,V], final state or None).
    `prepare` (the case's in-kernel options and GVA mapping) is applied to the inputs first."""
    if prepare is not None:
        q, k, v, g, beta = prepare(q, k, v, g, beta)
    q, k = expand_heads(q, v.shape[2]), expand_heads(k, v.shape[2])
    B, T, H, K = q.shape
    scale = K**-0.5 if scale is None else scale
    if cu_seqlens is not None:
        if B != 1:
            raise ValueError(f"cu_seqlens needs batch size 1, got {B}")
        if reset_mask is not None:
            raise ValueError("cu_seqlens and reset_mask are exclusive")
        bounds = cu_seqlens.tolist()  # the one host read of a varlen case
        lengths = [e - s for s, e in zip(bounds[:-1], bounds[1:])]
        t_max = max(lengths) if lengths else 0
        padded = [_to_padded(x, bounds, t_max) for x in (q, k, v, g, beta)]
        o_pad, ht = _loop(step, *padded, scale, initial_state, lengths)
        o = torch.cat([o_pad[i, :n] for i, n in enumerate(lengths)], 0)[None]
        return o, (ht if output_final_state else None)
    o, ht = _loop(step, q, k, v, g, beta, scale, initial_state, None, reset_mask)
    return o, (ht if output_final_state else None)


def run_rows(
    step: StepFn,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Optional[Tensor] = None,
    beta: Optional[Tensor] = None,
    *,
    scale: float,
    initial_state: Optional[Tensor] = None,
    lengths: Optional[list[int]] = None,
    windows: bool = False,
) -> tuple[Tensor, Tensor]:
    """`step` over time for a batch of rows `[R,T,H,*]` (heads already per value head), row `r`
    running for its first `lengths[r]` steps (default all: the state of a finished row is kept, its
    outputs past the end are not meaningful): (o [R,T,H,V], final states [R,H,K,V]). With `windows`
    (a built-in `step`: deterministic, taking ``read=``) and no autograd, on a GPU the loop runs as a
    CUDA graph of a window of steps replayed (:func:`fla_check.references.graphs.over_windows`), its
    readouts batched products (:func:`batched_readout`)."""
    if lengths is not None and len(lengths) != q.shape[0]:
        raise ValueError(f"lengths needs one entry per row ({q.shape[0]}), got {len(lengths)}")
    return _loop(step, q, k, v, g, beta, scale, initial_state, lengths, windows=windows)


def _loop(
    step: StepFn,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Optional[Tensor],
    beta: Optional[Tensor],
    scale: float,
    initial_state: Optional[Tensor],
    lengths: Optional[list[int]],
    reset_mask: Optional[Tensor] = None,
    windows: bool = False,
) -> tuple[Tensor, Tensor]:
    B, T, H, K = q.shape
    V = v.shape[-1]
    if initial_state is None:
        S = q.new_zeros(B, H, K, V)
    else:
        S = initial_state.to(q.dtype)
    keep = None if reset_mask is None else (~reset_mask).to(S.dtype)
    # which sequences are still running at each step [B,T], built once on the host: a per-step
    # torch.tensor(..., device=cuda) is a blocking copy (a stream sync) every step
    running = None if lengths is None else torch.tensor(
        [[t < n for t in range(T)] for n in lengths], dtype=torch.bool).reshape(len(lengths), T).to(q.device)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (q, k, v, g, beta)):
        return _autograd_steps(step, S, [q, k, v, g, beta], scale, running, keep)
    # per-step factors taken for all steps at once (elementwise: the same values, one op instead
    # of one per step): the scaled queries and the decays exp(g) of a built-in gated step (DECAYED)
    if g is not None and step in DECAYED:
        step, g = DECAYED[step], g.exp()
    xs = [scale * q, k, v, g, beta, running, keep]
    if windows and q.is_cuda:
        return over_windows(functools.partial(_plain_steps, step, read=batched_readout), step, S, xs)
    return _plain_steps(step, S, xs)


def _plain_steps(step: StepFn, S: Tensor, xs: list[Optional[Tensor]], read: Readout = None) -> tuple[Tensor, Tensor]:
    """The steps of `xs` (scaled q, k, v, g, beta, running [B,T] bool, keep [B,T]; time on dim 1)
    from state S without autograd: (o [B,T,H,V], final state). Each input's steps are views of
    one unbind (not a select per step); a decay-only step (GIVEN_KV) takes k_t v_t^T for a block
    of steps in one op. `read`: the readouts' form, the delta rule's too (None: readout)."""
    q, k, v, g, beta, running, keep = xs
    B, T, H, K = q.shape
    V = v.shape[-1]
    given_kv = GIVEN_KV.get(step)
    columns = [None if x is None else x.unbind(1) for x in xs]
    block = _kv_block_steps(B, T, H, K, V, q.element_size())
    kv: tuple[Tensor, ...] = ()
    outs = []
    for t in range(T):
        q_t, k_t, v_t, g_t, beta_t, running_t, keep_t = [None if c is None else c[t] for c in columns]
        S_in = S if keep_t is None else S * keep_t[:, None, None, None]
        if given_kv is not None:
            if t % block == 0:  # k_t v_t^T of the next block of steps, one op
                kv = (k[:, t:t + block, :, :, None] * v[:, t:t + block, :, None, :]).unbind(1)
            S_new = given_kv(S_in, g_t, kv[t % block])
        elif read is None:
            S_new = step(S_in, k_t, v_t, g_t, beta_t)
        else:
            S_new = step(S_in, k_t, v_t, g_t, beta_t, read=read)
        S = S_new if running_t is None else torch.where(running_t[:, None, None, None], S_new, S)
        outs.append((read or readout)(S, q_t))
    return (torch.stack(outs, 1) if outs else q.new_zeros(B, 0, H, V)), S


def _autograd_steps(step: StepFn, S: Tensor, xs: list[Optional[Tensor]], scale: float, running: Optional[Tensor],
                    keep: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """The steps with autograd through them: each step selects its inputs and scales its query
    itself (factors taken for all steps at once would sum per-step gradients: zeros of dg could
    change sign)."""
    q, k, v, g, beta = xs
    B, T, H, K = q.shape
    outs = []
    for t in range(T):
        k_t, v_t, g_t, beta_t = [None if x is None else x[:, t] for x in (k, v, g, beta)]
        S_in = S if keep is None else S * keep[:, t, None, None, None]
        S_new = step(S_in, k_t, v_t, g_t, beta_t)
        S = S_new if running is None else torch.where(running[:, t, None, None, None], S_new, S)
        outs.append(readout(S, scale * q[:, t]))
    return (torch.stack(outs, 1) if outs else q.new_zeros(B, 0, H, v.shape[-1])), S


def reference(step: StepFn, *tensors: Optional[Tensor], **kwargs) -> tuple[Tensor, Optional[Tensor]]:
    """The float64 ground truth: every input upcast to float64, outputs in float64."""
    cast = [None if t is None else t.to(torch.float64) for t in tensors]
    if kwargs.get("initial_state") is not None:
        kwargs["initial_state"] = kwargs["initial_state"].to(torch.float64)
    return run_recurrence(step, *cast, **kwargs)


def naive_baseline(step: StepFn, *tensors: Optional[Tensor], **kwargs) -> tuple[Tensor, Optional[Tensor]]:
    """The precision baseline: inputs in the kernel dtype, fp32 accumulation, o cast back."""
    dtype = tensors[0].dtype
    cast = [None if t is None else t.to(torch.float32) for t in tensors]
    if kwargs.get("initial_state") is not None:
        kwargs["initial_state"] = kwargs["initial_state"].to(torch.float32)
    o, ht = run_recurrence(step, *cast, **kwargs)
    return o.to(dtype), ht
