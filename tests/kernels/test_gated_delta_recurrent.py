"""Gated DeltaNet per-step recurrent kernel vs the float64 step-wise reference."""
import pytest
import torch

from fla_check.kernels.gated_delta.recurrent import gated_delta_recurrent
from fla_check.references import gated_delta_step, reference
from device import DEVICE
from delta_inputs import assert_matches_reference, initial_state, make_inputs, max_err
import v_first


@pytest.mark.parametrize("B,T,H,K,V", [(1, 1, 1, 16, 16), (2, 37, 2, 32, 16), (1, 20, 1, 60, 100)])
def test_matches_reference_fp32(B, T, H, K, V):
    x = make_inputs(B, T, H, K, V, gated=True, beta_max=2.0)
    assert_matches_reference(gated_delta_recurrent, x, initial_state=initial_state(B, H, K, V))


def test_fp16():
    x = make_inputs(1, 24, 2, 32, 32, gated=True, dtype=torch.float16)
    assert_matches_reference(gated_delta_recurrent, x, initial_state=initial_state(1, 2, 32, 32))


def test_unnormalized_keys_small():
    x = make_inputs(1, 6, 1, 16, 16, gated=True, normalize=False, beta_max=0.1)
    assert_matches_reference(gated_delta_recurrent, x)


def test_varlen_with_empty_and_length_one_sequences():
    x = make_inputs(1, 21, 2, 60, 60, gated=True)
    cu = torch.tensor([0, 1, 1, 13, 21], device=DEVICE)
    assert_matches_reference(gated_delta_recurrent, x, cu_seqlens=cu,
                             initial_state=initial_state(4, 2, 60, 60))


@pytest.mark.parametrize("fill", [-0.1 * torch.finfo(torch.float32).max, float("-inf")])
def test_packing_by_huge_gate_is_exact_per_step(fill):
    """The per-step kernel resets cleanly even at -inf (only the chunk form breaks)."""
    x = make_inputs(1, 30, 1, 16, 16, gated=True)
    reset = torch.zeros(1, 30, dtype=torch.bool, device=DEVICE)
    reset[0, 11] = True
    g = x["g"].masked_fill(reset[..., None], fill)
    o, _ = gated_delta_recurrent(x["q"], x["k"], x["v"], g=g, beta=x["beta"])
    ro, _ = reference(gated_delta_step, x["q"], x["k"], x["v"], x["g"], x["beta"], reset_mask=reset)
    assert max_err(o, ro) < 1e-5


def test_gate_is_required():
    x = make_inputs(1, 4, 1, 16, 16, gated=False)
    with pytest.raises(ValueError, match="gate"):
        gated_delta_recurrent(x["q"], x["k"], x["v"], beta=x["beta"])


@pytest.mark.parametrize("varlen", [False, True], ids=["batch", "varlen"])
def test_v_first_states_equal_k_first_transposed(varlen):
    """state_v_first ([N, H, V, K] h0 / ht): forward (the mode has no backward) equal the [K, V] run's, transposed."""
    x, h0, cu = v_first.make_inputs(gate="head", beta=True, varlen=varlen)
    v_first.assert_v_first_matches_k_first(gated_delta_recurrent, x, h0, cu, backward=False)
