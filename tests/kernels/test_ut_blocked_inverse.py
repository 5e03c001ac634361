"""The UT kernel's blocked inverse ((I + A)^-1 from 16x16 diagonal blocks merged with tl.dot)
against float64 torch.linalg.inv(I + A), chunk by chunk, on every chunk size."""
import pytest
import torch

from fla_check.kernels.common.ut_transform import ut_transform
from device import DEVICE


def _chunk_A(k: torch.Tensor, beta: torch.Tensor, n: int) -> torch.Tensor:
    """float64 strictly-lower diag(beta) K K^T of the first chunk of head 0 (n rows)."""
    k0 = k[0, :n, 0].double()
    return (beta[0, :n, 0].double()[:, None] * (k0 @ k0.T)).tril(-1)


@pytest.mark.parametrize("chunk_size", [16, 32, 64])
@pytest.mark.parametrize("rows", ["full", "partial"])
def test_blocked_inverse_is_the_inverse(chunk_size, rows):
    """Random, well-conditioned A (normalized keys, beta <= 1): fp32 (IEEE dots) to fp32 precision;
    a partial last chunk (rows past the end neither read nor written) as well."""
    gen = torch.Generator().manual_seed(1000 + chunk_size)
    T = chunk_size if rows == "full" else chunk_size - 5
    k = torch.nn.functional.normalize(torch.randn(1, T, 1, 32, generator=gen), dim=-1)
    v = torch.randn(1, T, 1, 16, generator=gen)
    beta = torch.rand(1, T, 1, generator=gen)
    A_inv, _, _ = ut_transform(k.to(DEVICE), v.to(DEVICE), beta.to(DEVICE), chunk_size=chunk_size)
    eye = torch.eye(T, dtype=torch.float64)
    want = torch.linalg.inv(eye + _chunk_A(k, beta, T))
    got = A_inv[0, :T, 0, :T].double().cpu()
    assert torch.linalg.cond(eye + _chunk_A(k, beta, T)) < 50
    assert (got - want).abs().max().item() < 2e-6 * want.abs().max().item()
    assert torch.all(A_inv[0, :T, 0, T:] == 0)  # nothing above the last valid column


@pytest.mark.parametrize("chunk_size", [32, 64])
def test_off_diagonal_blocks_are_merged(chunk_size):
    """Strong coupling across the 16-row blocks: an inverse without the merges (or with one
    merge term missing) is O(1) off; the blocked one matches float64."""
    gen = torch.Generator().manual_seed(7)
    T = chunk_size
    k = torch.nn.functional.normalize(torch.randn(1, T, 1, 16, generator=gen) + 1.5, dim=-1)
    beta = torch.full((1, T, 1), 0.5)
    A = _chunk_A(k, beta, T)
    eye = torch.eye(T, dtype=torch.float64)
    want = torch.linalg.inv(eye + A)
    block_diag_only = torch.block_diag(*[torch.linalg.inv(eye[:16, :16] + A[i:i + 16, i:i + 16])
                                         for i in range(0, T, 16)])
    assert (block_diag_only - want).abs().max().item() > 0.1  # the test can tell the two apart
    A_inv, _, _ = ut_transform(k.to(DEVICE), torch.zeros(1, T, 1, 16, device=DEVICE), beta.to(DEVICE),
                               chunk_size=chunk_size)
    got = A_inv[0, :, 0].double().cpu()
    assert (got - want).abs().max().item() < 2e-6 * want.abs().max().item()
