"""Gated DeltaNet chunk kernels vs the float64 reference, and packing by gate masking."""
import pytest
import torch

from fla_check.kernels.delta.chunk import chunk_fwd
from fla_check.kernels.gated_delta.chunk import gated_delta_chunk
from fla_check.references import gated_delta_step, reference
from device import DEVICE
from delta_inputs import assert_matches_reference, initial_state, make_inputs, max_err

FMAX = torch.finfo(torch.float32).max


@pytest.mark.parametrize("chunk_size,B,T,K,V", [
    (16, 2, 37, 32, 16),
    (32, 1, 70, 60, 60),
    (64, 1, 70, 60, 100),
    (64, 2, 1, 16, 16),
])
def test_matches_reference_fp32(chunk_size, B, T, K, V):
    x = make_inputs(B, T, 2, K, V, gated=True, beta_max=2.0, seed=chunk_size)
    assert_matches_reference(gated_delta_chunk, x, chunk_size=chunk_size,
                             initial_state=initial_state(B, 2, K, V))


def test_fp16():
    x = make_inputs(1, 40, 2, 32, 32, gated=True, dtype=torch.float16)
    assert_matches_reference(gated_delta_chunk, x, chunk_size=16,
                             initial_state=initial_state(1, 2, 32, 32), tf32=True)


def test_unnormalized_keys_small():
    x = make_inputs(1, 20, 1, 16, 16, gated=True, normalize=False, beta_max=0.1)
    assert_matches_reference(gated_delta_chunk, x, chunk_size=16)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # upper-triangle exp overflow, discarded
def test_zero_and_strong_gates():
    x = make_inputs(1, 40, 1, 16, 16, gated=True)
    zero = torch.rand(1, 40, 1, generator=torch.Generator().manual_seed(3)).to(DEVICE) > 0.5
    x["g"] = torch.where(zero, 0.0, 50 * x["g"])
    assert_matches_reference(gated_delta_chunk, x, chunk_size=16, initial_state=initial_state(1, 1, 16, 16))


def test_varlen_with_empty_and_length_one_sequences():
    x = make_inputs(1, 50, 2, 60, 60, gated=True)
    cu = torch.tensor([0, 1, 1, 20, 50], device=DEVICE)
    assert_matches_reference(gated_delta_chunk, x, chunk_size=16, cu_seqlens=cu,
                             initial_state=initial_state(4, 2, 60, 60))


def test_intermediates_gate_cumsum_is_chunk_local():
    x = make_inputs(1, 40, 1, 16, 16, gated=True)
    out = chunk_fwd(x["q"], x["k"], x["v"], x["beta"], x["g"], 0.25, None, False, None, 16)
    torch.testing.assert_close(out.g_cum[:, 16:32], x["g"][:, 16:32].cumsum(1), rtol=1e-6, atol=1e-5)
    assert out.final_state is None and out.h.shape == (3, 1, 16, 16)


def _packed(fill, chunk_size=32):
    """One row, resets at 13 and 45 (mid-chunk), gate filled there; error vs per-segment truth."""
    x = make_inputs(1, 64, 1, 16, 16, gated=True)
    reset = torch.zeros(1, 64, dtype=torch.bool, device=DEVICE)
    reset[0, [13, 45]] = True
    o, _ = gated_delta_chunk(x["q"], x["k"], x["v"], g=x["g"].masked_fill(reset[..., None], fill),
                             beta=x["beta"], chunk_size=chunk_size)
    ro, _ = reference(gated_delta_step, x["q"], x["k"], x["v"], x["g"], x["beta"], reset_mask=reset)
    return o, ro


def test_packing_moderate_fill_is_accurate():
    o, ro = _packed(-20.0)
    assert max_err(o, ro) < 1e-4


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy overflow in the interpreter
def test_packing_huge_fill_is_silently_wrong_like_fla():
    """The chunk-local cumsum absorbs later gates: finite but O(1) wrong (no protection added)."""
    o, ro = _packed(-0.1 * FMAX)
    assert torch.isfinite(o).all() and max_err(o, ro) > 0.1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy overflow in the interpreter
def test_packing_neg_inf_fill_gives_nan_like_fla():
    o, _ = _packed(float("-inf"))
    assert not torch.isfinite(o).all()


def test_gate_is_required():
    x = make_inputs(1, 4, 1, 16, 16, gated=False)
    with pytest.raises(ValueError, match="gate"):
        gated_delta_chunk(x["q"], x["k"], x["v"], beta=x["beta"])
