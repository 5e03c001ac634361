"""builtin simple GLA recurrent (per-step Triton kernel): forward and backward vs the float64 reference."""
import pytest
import torch

import fla_check.kernels  # noqa: F401  (selects the backend before triton)
from fla_check.kernels.simple_gla.recurrent import simple_gla_recurrent

from device import DEVICE
from gla_inputs import rel_err
from simple_gla_inputs import CASES, grads, make_inputs, ref
import v_first


def _kernel(q, k, v, g, h0, cu):
    return simple_gla_recurrent(q, k, v, g=g, initial_state=h0, output_final_state=True, cu_seqlens=cu)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_reference(case, dtype, tol):
    (q, k, v, g, h0), cu = make_inputs(case)
    ref_o, ref_ht = ref(q, k, v, g, h0, cu)
    o, ht = _kernel(*(x.to(dtype) for x in (q, k, v, g)), h0, cu)
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert rel_err(o, ref_o) < tol
    assert rel_err(ht, ref_ht) < tol


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-2)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", ["T13_B2", "varlen_len1", "KV60", "strong_decay"])
def test_backward_matches_reference_autograd(case, dtype, tol):
    (q, k, v, g, h0), cu = make_inputs(case)
    gen = torch.Generator().manual_seed(7)
    do = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    dht = torch.randn(h0.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    got = grads(_kernel, (q, k, v, g, h0), do, dht, cu, dtype)
    want = grads(ref, (q, k, v, g, h0), do, dht, cu, torch.float64)
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dh0"), got, want):
        assert a.dtype == dtype, name
        assert rel_err(a, b) < tol, (name, rel_err(a, b))


def test_gate_is_per_head_not_per_channel():
    """A [B,T,H,K] (GLA) gate is refused: the scalar gate's shape is part of the contract."""
    (q, k, v, g, _), _ = make_inputs("T13_B2")
    with pytest.raises(ValueError, match=r"\[B,T,H\]"):
        simple_gla_recurrent(q, k, v, g=g[..., None].expand_as(q))


@pytest.mark.parametrize("varlen", [False, True], ids=["batch", "varlen"])
def test_v_first_states_equal_k_first_transposed(varlen):
    """state_v_first ([N, H, V, K] h0 / ht, dht / dh0): forward and backward equal the [K, V] run's, transposed."""
    x, h0, cu = v_first.make_inputs(gate="head", varlen=varlen)
    v_first.assert_v_first_matches_k_first(simple_gla_recurrent, x, h0, cu)
