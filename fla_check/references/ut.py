"""Float64 references for the UT (WY) transform of the (gated) delta rule, per chunk.

`ut_recursion` is the explicit per-row recursion (a plain loop, no matrix inverse):

    w_r = beta_r (exp(G_r) k_r - sum_{i<r} exp(G_r - G_i) (k_i^T k_r) w_i)
    u_r = beta_r (v_r          - sum_{i<r} exp(G_r - G_i) (k_i^T k_r) u_i)

over the rows r of one chunk (i ranges over earlier rows of the same chunk), where
G_r - G_i = sum_{i<s<=r} g_s and G_r = sum_{c0<=s<=r} g_s (c0 = the chunk start) are sums of
the raw gate over windows, never a difference of cumsums. Without a gate both exponentials
are 1. This equals fla's `naive_chunk_gated_delta_rule`: with L_mask_ij = exp(G_i - G_j),
attn = (I + tril(diag(beta) K K^T * L_mask, -1))^-1, w = attn (k beta exp(G)), u = attn (v beta).

`ut_closed_form` builds A and inverts (I + sign*A) with torch.linalg.inv, to show that the
"+" sign is the one that equals the recursion.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch import Tensor


def chunk_spans(B: int, T: int, chunk_size: int, cu_seqlens: Optional[Tensor]) -> Iterator[tuple[int, int, int]]:
    """(batch row, start, end) of every chunk; chunks restart at each sequence start."""
    if cu_seqlens is None:
        bounds = [(b, 0, T) for b in range(B)]
    else:
        cu = cu_seqlens.tolist()
        bounds = [(0, s, e) for s, e in zip(cu[:-1], cu[1:])]
    for b, s, e in bounds:
        for c in range(s, e, chunk_size):
            yield b, c, min(c + chunk_size, e)


def ut_recursion(
    k: Tensor, v: Tensor, beta: Tensor, g: Optional[Tensor] = None, *,
    chunk_size: int = 64, cu_seqlens: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """(w [B,T,H,K], u [B,T,H,V]) in float64 by the per-row recursion. `g` is the raw gate [B,T,H]."""
    k, v, beta = k.double(), v.double(), beta.double()
    g = None if g is None else g.double()
    B, T, H, _ = k.shape
    w = torch.zeros_like(k)
    u = torch.zeros_like(v)
    for b, c0, c1 in chunk_spans(B, T, chunk_size, cu_seqlens):
        G_r = k.new_zeros(H)  # sum of g over [c0, r]
        for r in range(c0, c1):
            if g is not None:
                G_r = G_r + g[b, r]
            w_r = G_r.exp()[:, None] * k[b, r]
            u_r = v[b, r].clone()
            window = k.new_zeros(H)  # sum of g over (i, r]
            for i in range(r - 1, c0 - 1, -1):
                if g is not None:
                    window = window + g[b, i + 1]
                coef = window.exp() * (k[b, i] * k[b, r]).sum(-1)
                w_r = w_r - coef[:, None] * w[b, i]
                u_r = u_r - coef[:, None] * u[b, i]
            w[b, r] = beta[b, r][:, None] * w_r
            u[b, r] = beta[b, r][:, None] * u_r
    return w, u


def ut_closed_form(
    k: Tensor, v: Tensor, beta: Tensor, g: Optional[Tensor] = None, *,
    chunk_size: int = 64, cu_seqlens: Optional[Tensor] = None, sign: int = 1,
) -> tuple[Tensor, Tensor, Tensor]:
    """(A_inv [B,T,H,chunk_size], w, u) in float64 with A_inv = (I + sign*A)^-1 per chunk."""
    k, v, beta = k.double(), v.double(), beta.double()
    g = None if g is None else g.double()
    B, T, H, _ = k.shape
    A_inv = k.new_zeros(B, T, H, chunk_size)
    w = torch.zeros_like(k)
    u = torch.zeros_like(v)
    for b, c0, c1 in chunk_spans(B, T, chunk_size, cu_seqlens):
        n = c1 - c0
        kc = k[b, c0:c1].transpose(0, 1)  # [H,n,K]
        bc = beta[b, c0:c1].transpose(0, 1)  # [H,n]
        A = bc[..., None] * (kc @ kc.transpose(1, 2))
        gexp = k.new_ones(H, n)
        if g is not None:
            G = g[b, c0:c1].transpose(0, 1).cumsum(-1)
            A = A * (G[:, :, None] - G[:, None, :]).tril(-1).exp()
            gexp = G.exp()
        A = A.tril(-1)
        Ai = torch.linalg.inv(torch.eye(n, dtype=torch.float64, device=k.device) + sign * A)
        A_inv[b, c0:c1, :, :n] = Ai.transpose(0, 1)
        w[b, c0:c1] = (Ai @ (kc * (bc * gexp)[..., None])).transpose(0, 1)
        u[b, c0:c1] = (Ai @ (v[b, c0:c1].transpose(0, 1) * bc[..., None])).transpose(0, 1)
    return A_inv, w, u


# -- the chunk's inverse, for ut-transform's float64 ground truth ------------------------------
def lower_matrix(k: Tensor, beta: Tensor, g: Optional[Tensor] = None) -> Tensor:
    """[H, n, n] float64 ``strictly_lower(diag(beta) K K^T * exp(G_i - G_j))`` of one chunk
    (``k`` [1,n,H,K], ``beta`` [1,n,H], ``g`` [1,n,H] or None; CPU result)."""
    k = k[0].double().cpu().transpose(0, 1)  # [H,n,K]
    beta = beta[0].double().cpu().transpose(0, 1)  # [H,n]
    L = beta[..., None] * (k @ k.transpose(1, 2))
    if g is not None:
        G = g[0].double().cpu().transpose(0, 1).cumsum(-1)
        L = L * (G[:, :, None] - G[:, None, :]).tril(-1).exp()
    return L.tril(-1)


def inverse_recursion(L: Tensor) -> Tensor:
    """``(I + L)^-1`` for strictly lower ``L`` [H,n,n] by forward substitution, row by row."""
    H, n, _ = L.shape
    T = torch.zeros_like(L)
    for r in range(n):
        T[:, r, r] = 1.0
        if r:
            T[:, r] -= (L[:, r, :r, None] * T[:, :r]).sum(1)
    return T


def condition(L: Tensor) -> float:
    """2-norm condition number of ``I + L``, worst head (float64)."""
    eye = torch.eye(L.shape[-1], dtype=L.dtype)
    return float(torch.linalg.cond(eye + L).max()) if L.numel() else 1.0
