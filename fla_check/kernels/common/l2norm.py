"""L2 normalization of q / k rows, ``y = x / sqrt(sum x^2 + 1e-6)`` (fla's use_qk_l2norm_in_kernel).

The built-in chunk kernels run it as a separate Triton kernel before the chunked algorithm (as
fla's chunk_gated_delta_rule does with l2norm_fwd), one program per block of rows; y and
``rstd = 1 / sqrt(sum x^2 + eps)`` are kept in fp32 (fla stores y in the input dtype). Backward:
``dx = rstd (dy - y sum(dy y))``, from the stored y and rstd.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fla_check.kernels.utils import next_pow2

L2NORM_EPS = 1e-6
ROWS = 16  # rows per program


@triton.jit(do_not_specialize=["N"])
def l2norm_fwd_kernel(x, y, rstd, eps, N, D, BD: tl.constexpr, BR: tl.constexpr):
    """y = x * rstd, rstd = 1 / sqrt(sum x^2 + eps) for BR rows of D (fp32)."""
    o_r = tl.program_id(0) * BR + tl.arange(0, BR)
    o_d = tl.arange(0, BD)
    m_r = o_r < N
    m = m_r[:, None] & (o_d < D)[None, :]
    p = o_r[:, None].to(tl.int64) * D + o_d[None, :]
    b_x = tl.load(x + p, mask=m, other=0.0).to(tl.float32)
    b_rstd = 1.0 / tl.sqrt(tl.sum(b_x * b_x, 1) + eps)
    tl.store(y + p, b_x * b_rstd[:, None], mask=m)
    tl.store(rstd + o_r, b_rstd, mask=m_r)


@triton.jit(do_not_specialize=["N"])
def l2norm_bwd_kernel(y, rstd, dy, dx, N, D, BD: tl.constexpr, BR: tl.constexpr):
    """dx = rstd (dy - y sum(dy y)) for BR rows of D (fp32)."""
    o_r = tl.program_id(0) * BR + tl.arange(0, BR)
    o_d = tl.arange(0, BD)
    m_r = o_r < N
    m = m_r[:, None] & (o_d < D)[None, :]
    p = o_r[:, None].to(tl.int64) * D + o_d[None, :]
    b_y = tl.load(y + p, mask=m, other=0.0)
    b_dy = tl.load(dy + p, mask=m, other=0.0).to(tl.float32)
    b_rstd = tl.load(rstd + o_r, mask=m_r, other=0.0)
    b_dx = (b_dy - b_y * tl.sum(b_dy * b_y, 1)[:, None]) * b_rstd[:, None]
    tl.store(dx + p, b_dx, mask=m)


def l2norm_fwd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y fp32 of x's shape, rstd fp32 [rows]) over the last dim."""
    D = x.shape[-1]
    x2 = x.contiguous().view(-1, D)
    N = x2.shape[0]
    y = torch.empty(N, D, device=x.device, dtype=torch.float32)
    rstd = torch.empty(N, device=x.device, dtype=torch.float32)
    if N:
        l2norm_fwd_kernel[(triton.cdiv(N, ROWS),)](x2, y, rstd, L2NORM_EPS, N, D=D, BD=next_pow2(D), BR=ROWS)
    return y.view(x.shape), rstd


def l2norm_bwd(y: torch.Tensor, rstd: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """dx (fp32) from the forward's y, rstd and the upstream dy."""
    D = y.shape[-1]
    N = rstd.shape[0]
    dx = torch.empty(N, D, device=y.device, dtype=torch.float32)
    if N:
        l2norm_bwd_kernel[(triton.cdiv(N, ROWS),)](y.contiguous().view(-1, D), rstd, dy.contiguous().view(-1, D),
                                                   dx, N, D=D, BD=next_pow2(D), BR=ROWS)
    return dx.view(y.shape)


class L2NormFunction(torch.autograd.Function):
    """l2norm_fwd / l2norm_bwd under autograd; the gradient comes back in x's dtype."""

    @staticmethod
    def forward(ctx, x):
        y, rstd = l2norm_fwd(x)
        ctx.save_for_backward(y, rstd)
        ctx.dtype = x.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        y, rstd = ctx.saved_tensors
        return l2norm_bwd(y, rstd, dy).to(ctx.dtype)


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(sum x^2 + 1e-6) over the last dim, fp32, differentiable."""
    return L2NormFunction.apply(x)
