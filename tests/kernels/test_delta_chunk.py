"""DeltaNet chunk kernels (UT transform + state passing + output) vs the float64 reference."""
import pytest
import torch

from fla_check.kernels.common.ut_transform import ut_transform
from fla_check.kernels.delta.chunk import chunk_fwd, delta_chunk
from fla_check.commands.selftest.mutate import load_mutant
from fla_check.references import delta_step, reference
from device import DEVICE
from delta_inputs import assert_matches_reference, initial_state, make_inputs, max_err


@pytest.mark.parametrize("chunk_size,B,T,K,V", [
    (16, 2, 37, 32, 16),   # T not a multiple of the chunk, several chunks
    (32, 1, 70, 60, 60),   # odd head dims, three chunks
    (64, 1, 70, 60, 100),  # V split over two V-blocks
    (64, 2, 1, 16, 16),    # T = 1
])
def test_matches_reference_fp32(chunk_size, B, T, K, V):
    x = make_inputs(B, T, 2, K, V, gated=False, beta_max=2.0, seed=chunk_size)
    assert_matches_reference(delta_chunk, x, chunk_size=chunk_size,
                             initial_state=initial_state(B, 2, K, V))


@pytest.mark.parametrize("dtype,K,tf32", [
    (torch.float32, 100, False),  # IEEE: four key blocks of 32 in the state pass, the last one masked
    (torch.float16, 80, True),    # TF32: two key blocks of 64, the second masked; output loops over both
])
def test_state_in_key_blocks(dtype, K, tf32):
    """The state pass keeps the state in several key blocks and the output kernel loops over
    key blocks: every block (masked rows included) must carry and read the state correctly."""
    x = make_inputs(1, 40, 1, K, 24, gated=False, dtype=dtype, seed=3)
    assert_matches_reference(delta_chunk, x, chunk_size=16, initial_state=initial_state(1, 1, K, 24),
                             tf32=tf32)


def test_default_chunk_size_without_initial_state():
    x = make_inputs(1, 66, 1, 16, 16, gated=False)
    assert_matches_reference(delta_chunk, x)


def test_fp16():
    x = make_inputs(1, 40, 2, 32, 32, gated=False, dtype=torch.float16)
    assert_matches_reference(delta_chunk, x, chunk_size=16, initial_state=initial_state(1, 2, 32, 32),
                             tf32=True)


def test_unnormalized_keys_small():
    x = make_inputs(1, 20, 1, 16, 16, gated=False, normalize=False, beta_max=0.1)
    assert_matches_reference(delta_chunk, x, chunk_size=16)


def test_varlen_with_empty_and_length_one_sequences():
    x = make_inputs(1, 50, 2, 60, 60, gated=False)
    cu = torch.tensor([0, 1, 1, 20, 50], device=DEVICE)
    assert_matches_reference(delta_chunk, x, chunk_size=16, cu_seqlens=cu,
                             initial_state=initial_state(4, 2, 60, 60))


def test_intermediates_states_and_ut_path():
    """h holds the exact state before each chunk; A_inv/w/u are the public ut_transform's."""
    x = make_inputs(1, 40, 1, 16, 16, gated=False)
    h0 = initial_state(1, 1, 16, 16)
    out = chunk_fwd(x["q"], x["k"], x["v"], x["beta"], None, 0.25, h0, True, None, 16)
    assert out.h.shape == (3, 1, 16, 16) and out.g_cum is None
    for c in range(3):
        _, S = reference(delta_step, *(t[:, :16 * c] for t in (x["q"], x["k"], x["v"])), None,
                         x["beta"][:, :16 * c], initial_state=h0, output_final_state=True)
        assert max_err(out.h[c], S[0]) < 1e-5
    A_inv, w, u = ut_transform(x["k"], x["v"], x["beta"], chunk_size=16)
    assert torch.equal(out.A_inv, A_inv) and torch.equal(out.w, w) and torch.equal(out.u, u)
    torch.testing.assert_close(out.v_new[:, :16], u[:, :16] - torch.einsum(
        "btk,kv->btv", w[:, :16, 0], h0[0, 0]).unsqueeze(2), rtol=0, atol=1e-5)


def test_planted_state_not_carried_is_caught():
    """Resetting the state at every chunk start must make the chunk kernel diverge."""
    loop = "    for i_t in range(0, NT):\n"
    mutant = load_mutant("fla_check.kernels.delta.chunk",
                         [(loop, loop + "".join(f"        b_h{i} = tl.zeros([BK, BV], dtype=tl.float32)\n"
                                                for i in range(1, 5)))],
                         tag="state_not_carried")
    x = make_inputs(1, 40, 1, 16, 16, gated=False)
    o, _ = mutant.delta_chunk(x["q"], x["k"], x["v"], beta=x["beta"], chunk_size=16)
    ro, _ = reference(delta_step, x["q"], x["k"], x["v"], None, x["beta"])
    assert max_err(o[:, :16], ro[:, :16]) < 1e-5  # first chunk unaffected
    assert max_err(o, ro) > 1e-2


def test_gate_and_bad_chunk_size_are_rejected():
    x = make_inputs(1, 4, 1, 16, 16, gated=True)
    with pytest.raises(ValueError, match="no gate"):
        delta_chunk(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"])
    with pytest.raises(ValueError, match="chunk_size"):
        delta_chunk(x["q"], x["k"], x["v"], beta=x["beta"], chunk_size=128)


@pytest.mark.parametrize("dtype,stored", [(torch.float16, torch.float16), (torch.float32, torch.float32)])
def test_intermediates_are_stored_in_the_declared_dtype(dtype, stored):
    """store="input" (fla_check.ops): w, u, v_new, h in the half input dtype; A_inv and ht fp32."""
    x = make_inputs(1, 20, 1, 16, 16, gated=False, dtype=dtype)
    out = chunk_fwd(x["q"], x["k"], x["v"], x["beta"], None, 0.25, None, True, None, 16)
    assert out.w.dtype == out.u.dtype == out.v_new.dtype == out.h.dtype == stored
    assert out.A_inv.dtype == out.final_state.dtype == torch.float32
