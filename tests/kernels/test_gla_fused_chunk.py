"""builtin GLA fused_chunk (legacy q*exp(G) / k*exp(-G) design) vs the float64 reference."""
import pytest
import torch

import fla_check.kernels  # noqa: F401  (selects the backend before triton)
from fla_check.kernels.gla.fused_chunk import gla_fused_chunk
from fla_check.references import gla_step, reference

from device import DEVICE
from gla_inputs import make_inputs, rel_err


CASES = {  # name: (B, T, H, K, V, cu_seqlens, use_h0)
    "T13_B2": (2, 13, 2, 32, 32, None, True),
    "T1": (1, 1, 1, 32, 32, None, False),
    "T70_5chunks": (1, 70, 2, 32, 16, None, True),
    "varlen_len1": (1, 45, 2, 32, 32, [0, 1, 20, 45], True),
    "varlen_empty": (1, 30, 1, 16, 16, [0, 0, 17, 30], True),
    "KV60": (1, 40, 1, 60, 60, None, True),
}


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_reference(case, dtype, tol):
    B, T, H, K, V, cu, use_h0 = CASES[case]
    cu = None if cu is None else torch.tensor(cu, device=DEVICE)
    q, k, v, g, h0 = make_inputs(B, T, H, K, V, B if cu is None else cu.numel() - 1)
    h0 = h0 if use_h0 else None
    ref_o, ref_ht = reference(gla_step, q, k, v, g, None, initial_state=h0,
                              output_final_state=True, cu_seqlens=cu)
    o, ht = gla_fused_chunk(*(x.to(dtype) for x in (q, k, v)), g=g.to(dtype), initial_state=h0,
                            output_final_state=True, cu_seqlens=cu)
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert rel_err(o, ref_o, floor=0.0) < tol
    assert rel_err(ht, ref_ht, floor=0.0) < tol


def test_no_final_state_unless_asked():
    q, k, v, g, _ = make_inputs(1, 5, 1, 16, 16, 1)
    assert gla_fused_chunk(q, k, v, g=g)[1] is None


def test_strong_gate_breaks_k_exp_minus_G():
    """k * exp(-G) overflows once a chunk's cumulative gate passes about -88: NaN, not a wrong value."""
    q, k, v, g, _ = make_inputs(1, 32, 1, 16, 16, 1)
    reset = torch.zeros(1, 32, dtype=torch.bool, device=DEVICE)
    reset[0, 20] = True
    g = g.masked_fill(reset[:, :, None, None], -1e4)
    o, _ = gla_fused_chunk(q, k, v, g=g)
    assert o[:, 20:].isnan().any()
    assert not o[:, :16].isnan().any()
