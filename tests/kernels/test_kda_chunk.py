"""KDA chunk kernel (forward) vs the float64 step-wise reference, and a per-channel control."""
import pytest
import torch

from fla_check.kernels.kda.chunk import kda_chunk
from fla_check.commands.selftest.mutate import load_mutant
from kda_inputs import kda_case, kda_reference, max_rel, run

CASES = {  # name: (chunk_size, B, T, H, K, V, cu_seqlens, gate_norm)
    "BT16_B2_T37": (16, 2, 37, 2, 16, 32, None, 1.0),
    "BT32_K60_V100": (32, 1, 45, 1, 60, 100, None, 1.0),
    "BT64_T70_strong": (64, 1, 70, 1, 16, 16, None, 0.01),
    "BT16_varlen_empty_len1": (16, 1, 50, 2, 16, 16, [0, 1, 1, 20, 50], 1.0),
    "BT32_varlen_partial": (32, 1, 70, 1, 16, 16, [0, 5, 45, 70], 1.0),  # merged blocks cut by sequence ends
}


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_float64(name):
    BT, B, T, H, K, V, cu, norm = CASES[name]
    x = kda_case(B, T, H, K, V, cu_seqlens=cu, gate_norm=norm, seed=BT)
    ref = run(kda_reference, x, torch.float64, grads=False)
    got = run(kda_chunk, x, grads=False, chunk_size=BT)
    for out in ref:
        assert got[out].shape == ref[out].shape, out
        assert max_rel(got[out], ref[out]) < 2e-5, (out, max_rel(got[out], ref[out]))


def test_bf16_inputs_close():
    x = kda_case(1, 40, 1, 32, 32, dtype=torch.bfloat16, seed=7)
    ref = run(kda_reference, x, torch.float64, grads=False)
    got = run(kda_chunk, x, grads=False, chunk_size=16)
    assert got["o"].dtype == torch.bfloat16 and max_rel(got["o"], ref["o"]) < 3e-2


def test_gate_of_the_wrong_channel_in_the_state_decay_is_caught():
    """Control: the state decays channel c by the chunk's last gate of channel c+1 (a mis-indexed
    load): same comparison, multi-chunk case, fails."""
    bad = load_mutant("fla_check.kernels.kda.chunk", [(
        "        b_gl = tl.load(g_cum + ((bos + last) * H + i_h) * K + o_k, mask=m_k, other=0.0)\n",
        "        b_gl = tl.load(g_cum + ((bos + last) * H + i_h) * K + (o_k + 1) % K, mask=m_k, other=0.0)\n")],
        tag="test_kda_chunk_channel")
    x = kda_case(1, 40, 1, 16, 16, seed=1)
    ref = run(kda_reference, x, torch.float64, grads=False)
    assert max_rel(run(kda_chunk, x, grads=False, chunk_size=16)["o"], ref["o"]) < 2e-5
    assert max_rel(run(bad.kda_chunk, x, grads=False, chunk_size=16)["o"], ref["o"]) > 1e-3


def test_rejects_a_per_head_gate_and_bad_chunk_sizes():
    x = kda_case(1, 4, 1, 16, 16)
    with pytest.raises(ValueError, match="per-key-channel"):
        kda_chunk(x["q"], x["k"], x["v"], g=x["g"][..., 0], beta=x["beta"])
    with pytest.raises(ValueError, match="chunk_size"):
        kda_chunk(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"], chunk_size=8)
