"""DeltaNet backward (recurrent and chunk Triton kernels) vs float64 autograd of the reference."""
import pytest
import torch

import fla_check.kernels.delta.chunk as chunk_module
from fla_check.kernels.delta.chunk import delta_chunk
from fla_check.kernels.delta.recurrent import delta_recurrent
from fla_check.commands.selftest.mutate import load_mutant
from delta_grads import assert_gradients_match, case, gradient_errors, gradients

RECURRENT_CASES = {  # name: (B, T, H, K, V, cu_seqlens)
    "B2_T13": (2, 13, 2, 32, 32, None),
    "KV60_V100": (1, 20, 1, 60, 100, None),  # masks, two V-blocks
    "varlen_len1_empty": (1, 30, 2, 60, 60, [0, 1, 1, 13, 30]),
}


@pytest.mark.parametrize("name", list(RECURRENT_CASES))
def test_recurrent_gradients_fp32(name):
    B, T, H, K, V, cu = RECURRENT_CASES[name]
    assert_gradients_match(delta_recurrent, case(B, T, H, K, V, gated=False, cu_seqlens=cu))


def test_recurrent_gradients_fp16():
    assert_gradients_match(delta_recurrent, case(1, 24, 2, 32, 32, gated=False, dtype=torch.float16))


def test_recurrent_without_initial_state_or_final_state_gradient():
    x = case(1, 9, 1, 16, 16, gated=False, use_h0=False)
    x["dht"].zero_()
    assert "h0" not in assert_gradients_match(delta_recurrent, x)
    x["h0"] = None
    q, k, v = (x[n].requires_grad_() for n in ("q", "k", "v"))
    o, ht = delta_recurrent(q, k, v, beta=x["beta"])
    assert ht is None
    (o * x["do"].float()).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_recurrent_planted_dbeta_bug_is_caught():
    line = "tl.store(p_dbeta, tl.sum(b_du * b_e, 0))"
    mutant = load_mutant("fla_check.kernels.delta.recurrent",
                         [(line, "tl.store(p_dbeta, 1.1 * tl.sum(b_du * b_e, 0))")], tag="dbeta_x1.1")
    x = case(1, 16, 1, 16, 16, gated=False)
    errors = gradient_errors(mutant.delta_recurrent, x)
    assert errors["beta"] > 1e-2
    assert max(errors[n] for n in ("q", "k", "v", "h0")) < 1e-4


# ---- chunk ---------------------------------------------------------------------------------

CHUNK_CASES = {  # name: (chunk_size, B, T, H, K, V, cu_seqlens)
    "BT16_B2_T45": (16, 2, 45, 2, 16, 16, None),      # T not a multiple of the chunk
    "BT32_KV60_V100": (32, 1, 70, 1, 60, 100, None),  # masks, two V-blocks
    "BT64_T64": (64, 1, 64, 2, 32, 32, None),
    "BT16_varlen_len1_empty": (16, 1, 50, 2, 60, 60, [0, 1, 1, 20, 50]),
}


@pytest.mark.parametrize("name", list(CHUNK_CASES))
def test_chunk_gradients_fp32(name):
    BT, B, T, H, K, V, cu = CHUNK_CASES[name]
    x = case(B, T, H, K, V, gated=False, cu_seqlens=cu, seed=BT)
    assert_gradients_match(delta_chunk, x, chunk_size=BT)


def test_chunk_gradients_fp16():
    x = case(1, 40, 2, 32, 32, gated=False, dtype=torch.float16)
    assert_gradients_match(delta_chunk, x, chunk_size=16)


def test_chunk_without_initial_state_and_zero_final_state_gradient():
    x = case(1, 20, 1, 16, 16, gated=False, use_h0=False)
    x["dht"].zero_()
    assert "h0" not in assert_gradients_match(delta_chunk, x, chunk_size=16)


def test_gradients_are_not_accumulated_across_passes():
    """Fresh leaves per pass: a second pass gives the same, not doubled, gradients."""
    x = case(1, 20, 1, 16, 16, gated=False)
    first, second = (gradients(delta_chunk, x, chunk_size=16) for _ in range(2))
    assert all(torch.equal(first[n], second[n]) for n in first)


def test_chunk_planted_dbeta_bug_is_caught(monkeypatch):
    """dbeta scaled by 1.1 inside the UT-transform backward kernel must be flagged."""
    line = "tl.store(dbeta + row, b_dbeta, mask=m_t)"
    mutant = load_mutant("fla_check.kernels.common.ut_transform",
                         [(line, "tl.store(dbeta + row, 1.1 * b_dbeta, mask=m_t)")], tag="ut_dbeta_x1.1")
    monkeypatch.setattr("fla_check.kernels.delta.chunk_bwd.ut_transform_bwd", mutant.ut_transform_bwd)
    x = case(1, 20, 1, 16, 16, gated=False)
    errors = gradient_errors(chunk_module.delta_chunk, x, chunk_size=16)
    assert errors["beta"] > 1e-2
    assert max(errors[n] for n in ("q", "k", "v", "h0")) < 1e-4
