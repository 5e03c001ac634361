"""The UT-transform kernel vs the float64 per-row recursion and the (I + A)^-1 closed form."""
import pytest
import torch

from fla_check.kernels.common.ut_transform import ut_transform
from fla_check.commands.selftest.mutate import load_mutant
from fla_check.references.ut import ut_closed_form, ut_recursion
from device import DEVICE
from delta_inputs import make_inputs, max_err


def _check(x, chunk_size, cu_seqlens=None, tol=2e-5):
    A_inv, w, u = ut_transform(x["k"], x["v"], x["beta"], x["g"], chunk_size=chunk_size,
                               cu_seqlens=cu_seqlens)
    rw, ru = ut_recursion(x["k"], x["v"], x["beta"], x["g"], chunk_size=chunk_size,
                          cu_seqlens=cu_seqlens)
    rA, _, _ = ut_closed_form(x["k"], x["v"], x["beta"], x["g"], chunk_size=chunk_size,
                              cu_seqlens=cu_seqlens)
    assert A_inv.dtype == w.dtype == u.dtype == torch.float32
    assert max_err(w, rw) < tol and max_err(u, ru) < tol and max_err(A_inv, rA) < tol
    return A_inv, w, u


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("chunk_size,T", [(16, 37), (32, 40), (64, 70)])
def test_matches_recursion(gated, chunk_size, T):
    x = make_inputs(1, T, 2, 60, 60, gated=gated, beta_max=2.0, seed=chunk_size)
    _check(x, chunk_size)


@pytest.mark.parametrize("gated", [False, True])
def test_varlen_with_empty_and_length_one_sequences(gated):
    x = make_inputs(1, 40, 1, 32, 16, gated=gated, beta_max=2.0)
    _check(x, 16, cu_seqlens=torch.tensor([0, 1, 1, 22, 40], device=DEVICE))


def test_near_duplicate_keys_and_beta_two():
    """Nearly parallel keys with beta = 2 stress the inverse; it still matches float64."""
    x = make_inputs(1, 16, 1, 16, 16, gated=True)
    base = x["k"][:, :1]
    x["k"] = torch.nn.functional.normalize(base + 1e-3 * x["k"], dim=-1)
    x["beta"] = torch.full_like(x["beta"], 2.0)
    _check(x, 16, tol=1e-4)


def test_unnormalized_keys_small():
    x = make_inputs(1, 12, 1, 16, 16, gated=True, normalize=False, beta_max=0.1)
    _check(x, 16, tol=1e-5)


def test_fp16_inputs():
    x = make_inputs(1, 20, 1, 32, 32, gated=True, dtype=torch.float16)
    _check(x, 16, tol=1e-3)


def test_inverse_is_the_plus_form():
    x = make_inputs(1, 16, 1, 16, 16, gated=True, beta_max=2.0)
    A_inv, _, _ = ut_transform(x["k"], x["v"], x["beta"], x["g"], chunk_size=16)
    minus, _, _ = ut_closed_form(x["k"], x["v"], x["beta"], x["g"], chunk_size=16, sign=-1)
    assert max_err(A_inv, minus) > 1e-2


def test_planted_sign_flip_is_caught():
    """Dropping the sign trick's negation computes (I - A)^-1: W and U move far from float64."""
    mutant = load_mutant("fla_check.kernels.common.ut_transform",
                         [("b_Ai = -tl.where(m_A, b_A, 0.0)", "b_Ai = tl.where(m_A, b_A, 0.0)")],
                         tag="ut_sign_flip")
    x = make_inputs(1, 16, 1, 16, 16, gated=True, beta_max=2.0)
    _, w, u = mutant.ut_transform(x["k"], x["v"], x["beta"], x["g"], chunk_size=16)
    rw, ru = ut_recursion(x["k"], x["v"], x["beta"], x["g"], chunk_size=16)
    assert max_err(w, rw) > 1e-2 and max_err(u, ru) > 1e-2


def test_rejects_bad_chunk_size():
    x = make_inputs(1, 4, 1, 16, 16, gated=False)
    with pytest.raises(ValueError, match="chunk_size"):
        ut_transform(x["k"], x["v"], x["beta"], chunk_size=8)
