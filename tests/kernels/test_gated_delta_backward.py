"""Gated DeltaNet backward: the chunk mode (dg through the chunk-local cumsum) vs float64
autograd of the reference, its UT-transform piece, and the forward-only recurrent mode."""
import pytest
import torch

from fla_check.kernels.common.cumsum import chunk_local_cumsum
from fla_check.kernels.common.ut_transform import ut_transform, ut_transform_bwd
from fla_check.kernels.gated_delta.chunk import gated_delta_chunk
from fla_check.kernels.gated_delta.recurrent import gated_delta_recurrent
from fla_check.commands.selftest.mutate import load_mutant
from fla_check.ops import OPS
from fla_check.references.ut import ut_closed_form
from device import DEVICE
from delta_grads import assert_gradients_match, case, gradient_errors
from delta_inputs import make_inputs, max_err

CASES = {  # name: (chunk_size, B, T, H, K, V, cu_seqlens)
    "BT16_B2_T45": (16, 2, 45, 2, 16, 16, None),
    "BT32_KV60_V100": (32, 1, 70, 1, 60, 100, None),
    "BT64_T64": (64, 1, 64, 2, 32, 32, None),
    "BT16_varlen_len1_empty": (16, 1, 50, 2, 60, 60, [0, 1, 1, 20, 50]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_chunk_gradients_fp32(name):
    BT, B, T, H, K, V, cu = CASES[name]
    x = case(B, T, H, K, V, gated=True, cu_seqlens=cu, seed=BT)
    assert "g" in assert_gradients_match(gated_delta_chunk, x, chunk_size=BT)


def test_chunk_gradients_fp16():
    x = case(1, 40, 2, 32, 32, gated=True, dtype=torch.float16)
    assert_gradients_match(gated_delta_chunk, x, chunk_size=16)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # upper-triangle exp overflow, discarded
def test_chunk_zero_and_strong_gates():
    x = case(1, 40, 1, 16, 16, gated=True)
    zero = torch.rand(1, 40, 1, generator=torch.Generator().manual_seed(3)).to(DEVICE) > 0.5
    x["g"] = torch.where(zero, 0.0, 20 * x["g"])
    assert_gradients_match(gated_delta_chunk, x, chunk_size=16)


@pytest.mark.parametrize("cu_seqlens", [None, [0, 1, 1, 22, 40]])
def test_ut_transform_backward_matches_float64_autograd(cu_seqlens):
    """ut_transform_bwd + reverse cumsum == autograd of the float64 closed form (I + A)^-1."""
    cu = None if cu_seqlens is None else torch.tensor(cu_seqlens, device=DEVICE)
    x = make_inputs(1, 40, 2, 60, 24, gated=True, beta_max=2.0)
    gen = torch.Generator().manual_seed(3)
    dw = torch.randn(x["k"].shape, generator=gen, dtype=torch.float64).to(DEVICE)
    du = torch.randn(x["v"].shape, generator=gen, dtype=torch.float64).to(DEVICE)
    leaves = {n: x[n].double().requires_grad_() for n in ("k", "v", "beta", "g")}
    _, w, u = ut_closed_form(*leaves.values(), chunk_size=16, cu_seqlens=cu)
    ((w * dw).sum() + (u * du).sum()).backward()
    A_inv, _, _ = ut_transform(x["k"], x["v"], x["beta"], x["g"], chunk_size=16, cu_seqlens=cu)
    g_cum = chunk_local_cumsum(x["g"], 16, cu)
    dk, dv, dbeta, dg_cum = ut_transform_bwd(x["k"], x["v"], x["beta"], g_cum, A_inv, dw.float(),
                                             du.float(), 16, cu)
    dg = chunk_local_cumsum(dg_cum, 16, cu, reverse=True)
    for got, name in ((dk, "k"), (dv, "v"), (dbeta, "beta"), (dg, "g")):
        assert max_err(got, leaves[name].grad) < 2e-5, name


def test_reverse_cumsum_restarts_at_chunks_and_sequences():
    g = torch.randn(1, 40, 2, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    cu = torch.tensor([0, 1, 1, 23, 40], device=DEVICE)
    pieces = [g[:, s:e] for s, e in ((0, 1), (1, 17), (17, 23), (23, 39), (39, 40))]
    want = torch.cat([p.flip(1).cumsum(1).flip(1) for p in pieces], 1)
    assert max_err(chunk_local_cumsum(g, 16, cu, reverse=True), want) < 1e-5


def test_chunk_planted_dg_bug_is_caught(monkeypatch):
    """dg_cum scaled by 1.1 in the chunk backward kernel must be flagged (dg only)."""
    line = "tl.store(dg_cum + row, b_dg, mask=m_t)"
    mutant = load_mutant("fla_check.kernels.delta.chunk_bwd",
                         [(line, "tl.store(dg_cum + row, 1.1 * b_dg, mask=m_t)")], tag="dg_x1.1")
    monkeypatch.setattr("fla_check.kernels.delta.chunk.chunk_bwd", mutant.chunk_bwd)
    x = case(1, 40, 1, 16, 16, gated=True)
    errors = gradient_errors(gated_delta_chunk, x, chunk_size=16)
    assert errors["g"] > 1e-2
    assert max(errors[n] for n in ("q", "k", "v", "beta", "h0")) < 1e-4


def test_recurrent_mode_is_forward_only():
    assert OPS["gated_delta"].modes["recurrent"].backward is False
    assert OPS["gated_delta"].modes["chunk"].backward is True
    x = make_inputs(1, 8, 1, 16, 16, gated=True)
    q = x["q"].requires_grad_()
    o, _ = gated_delta_recurrent(q, x["k"], x["v"], g=x["g"], beta=x["beta"])
    assert o.grad_fn is None
