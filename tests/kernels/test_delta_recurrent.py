"""DeltaNet per-step recurrent kernel vs the float64 step-wise reference."""
import pytest
import torch

from fla_check.kernels.delta.recurrent import delta_recurrent
from device import DEVICE
from delta_inputs import assert_matches_reference, initial_state, make_inputs
import v_first


@pytest.mark.parametrize("B,T,H,K,V", [(1, 1, 1, 16, 16), (2, 37, 2, 32, 16), (1, 20, 1, 60, 100)])
def test_matches_reference_fp32(B, T, H, K, V):
    x = make_inputs(B, T, H, K, V, gated=False, beta_max=2.0)
    assert_matches_reference(delta_recurrent, x, initial_state=initial_state(B, H, K, V))


def test_without_initial_state_and_scale():
    x = make_inputs(1, 9, 2, 16, 16, gated=False)
    assert_matches_reference(delta_recurrent, x, scale=0.3)


def test_unnormalized_keys_small():
    x = make_inputs(1, 6, 1, 16, 16, gated=False, normalize=False, beta_max=0.1)
    assert_matches_reference(delta_recurrent, x)


def test_fp16():
    x = make_inputs(1, 24, 2, 32, 32, gated=False, dtype=torch.float16)
    assert_matches_reference(delta_recurrent, x, initial_state=initial_state(1, 2, 32, 32))


def test_varlen_with_empty_and_length_one_sequences():
    x = make_inputs(1, 21, 2, 60, 60, gated=False)
    cu = torch.tensor([0, 1, 1, 13, 21], device=DEVICE)
    assert_matches_reference(delta_recurrent, x, cu_seqlens=cu, initial_state=initial_state(4, 2, 60, 60))


def test_beta_none_means_ones():
    x = make_inputs(1, 5, 1, 16, 16, gated=False)
    o1, _ = delta_recurrent(x["q"], x["k"], x["v"])
    o2, _ = delta_recurrent(x["q"], x["k"], x["v"], beta=torch.ones(1, 5, 1, device=DEVICE))
    torch.testing.assert_close(o1, o2, rtol=0, atol=0)


def test_gate_is_rejected():
    x = make_inputs(1, 4, 1, 16, 16, gated=True)
    with pytest.raises(ValueError, match="no gate"):
        delta_recurrent(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"])


@pytest.mark.parametrize("varlen", [False, True], ids=["batch", "varlen"])
def test_v_first_states_equal_k_first_transposed(varlen):
    """state_v_first ([N, H, V, K] h0 / ht, dht / dh0): forward and backward equal the [K, V] run's, transposed."""
    x, h0, cu = v_first.make_inputs(gate=None, beta=True, varlen=varlen)
    v_first.assert_v_first_matches_k_first(delta_recurrent, x, h0, cu)
