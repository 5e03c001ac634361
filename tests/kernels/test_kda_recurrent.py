"""KDA recurrent kernel (forward and checkpointed backward) vs float64 autograd of the reference."""
import pytest
import torch

from fla_check.kernels.kda.recurrent import kda_recurrent
from fla_check.commands.selftest.mutate import load_mutant
from kda_inputs import kda_case, kda_reference, max_rel, run
import v_first

CASES = {  # name: (B, T, H, K, V, cu_seqlens, h0)
    "B2_T37_h0": (2, 37, 2, 16, 32, None, True),
    "K60_V100_T20": (1, 20, 1, 60, 100, None, True),
    "no_h0_T17": (1, 17, 2, 32, 16, None, False),
    "varlen_empty_len1": (1, 40, 2, 16, 16, [0, 1, 1, 18, 40], True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_gradients_match_float64(name):
    B, T, H, K, V, cu, h0 = CASES[name]
    x = kda_case(B, T, H, K, V, cu_seqlens=cu, h0=h0, seed=len(name))
    ref = run(kda_reference, x, torch.float64)
    got = run(kda_recurrent, x)
    assert got.keys() == ref.keys()
    for out in ref:
        assert got[out].shape == ref[out].shape, out
        assert max_rel(got[out], ref[out]) < 2e-5, (out, max_rel(got[out], ref[out]))


def test_strong_decay_and_zero_gates():
    x = kda_case(1, 40, 1, 16, 16, gate_norm=0.01, seed=3)
    x["g"] = torch.where(torch.rand(x["g"].shape, generator=torch.Generator().manual_seed(1)).to(x["g"].device) < 0.3,
                         0.0, x["g"])
    ref = run(kda_reference, x, torch.float64)
    got = run(kda_recurrent, x)
    for out in ref:
        assert max_rel(got[out], ref[out]) < 2e-5, out


def test_half_inputs_forward_close():
    x = kda_case(1, 30, 2, 32, 32, dtype=torch.float16, seed=5)
    ref = run(kda_reference, x, torch.float64, grads=False)
    got = run(kda_recurrent, x, grads=False)
    assert got["o"].dtype == torch.float16 and got["ht"].dtype == torch.float32
    assert max_rel(got["o"], ref["o"]) < 3e-3 and max_rel(got["ht"], ref["ht"]) < 1e-5


def test_a_backward_gate_2_percent_off_is_caught():
    """Control: the same comparison fails for a kernel whose backward decays dS by exp(1.02 g)."""
    bad = load_mutant("fla_check.kernels.kda.recurrent", [(
        "            b_dh *= tl.exp(b_g)[:, None]\n",
        "            b_dh *= tl.exp(b_g * 1.02)[:, None]\n")], tag="test_kda_rec_bwd")
    x = kda_case(1, 20, 1, 16, 16, seed=2)
    ref = run(kda_reference, x, torch.float64)
    got = run(bad.kda_recurrent, x)
    assert max_rel(got["o"], ref["o"]) < 2e-5
    assert max_rel(got["dk"], ref["dk"]) > 1e-3 and max_rel(got["dg"], ref["dg"]) > 1e-3


def test_rejects_a_per_head_gate():
    x = kda_case(1, 4, 1, 16, 16)
    with pytest.raises(ValueError, match="per-key-channel"):
        kda_recurrent(x["q"], x["k"], x["v"], g=x["g"][..., 0], beta=x["beta"])


@pytest.mark.parametrize("varlen", [False, True], ids=["batch", "varlen"])
def test_v_first_states_equal_k_first_transposed(varlen):
    """state_v_first ([N, H, V, K] h0 / ht, dht / dh0): forward and backward equal the [K, V] run's, transposed."""
    x, h0, cu = v_first.make_inputs(gate="key", beta=True, varlen=varlen)
    v_first.assert_v_first_matches_k_first(kda_recurrent, x, h0, cu)
