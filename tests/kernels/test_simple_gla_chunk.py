"""builtin simple GLA chunk (scalar-gate chunk algorithm, Triton): forward and backward vs float64."""
import pytest
import torch

import fla_check.kernels  # noqa: F401  (selects the backend before triton)
from fla_check.kernels.simple_gla.chunk import simple_gla_chunk

from device import DEVICE
from gla_inputs import rel_err
from simple_gla_inputs import CASES, grads, make_inputs, ref


def _kernel(chunk_size):
    def run(q, k, v, g, h0, cu):
        return simple_gla_chunk(q, k, v, g=g, initial_state=h0, output_final_state=True, cu_seqlens=cu,
                                chunk_size=chunk_size)
    return run


@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_reference(case, dtype, tol, chunk_size):
    (q, k, v, g, h0), cu = make_inputs(case)
    ref_o, ref_ht = ref(q, k, v, g, h0, cu)
    o, ht = _kernel(chunk_size)(*(x.to(dtype) for x in (q, k, v, g)), h0, cu)
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert rel_err(o, ref_o) < tol
    assert rel_err(ht, ref_ht) < tol


@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-2)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", ["T13_B2", "varlen_empty", "KV60", "strong_decay", "T70_BV_split"])
def test_backward_matches_reference_autograd(case, dtype, tol, chunk_size):
    (q, k, v, g, h0), cu = make_inputs(case)
    gen = torch.Generator().manual_seed(7)
    do = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    dht = torch.randn(h0.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    got = grads(_kernel(chunk_size), (q, k, v, g, h0), do, dht, cu, dtype)
    want = grads(ref, (q, k, v, g, h0), do, dht, cu, torch.float64)
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dh0"), got, want):
        assert a.dtype == dtype, name
        assert rel_err(a, b) < tol, (name, rel_err(a, b))


def test_backward_without_state_grads():
    """No initial state and no final state: the reverse pass starts from dh = 0."""
    (q, k, v, g, _), _ = make_inputs("T70_BV_split")
    leaves = [x.clone().requires_grad_() for x in (q, k, v, g)]
    simple_gla_chunk(*leaves[:3], g=leaves[3], chunk_size=16)[0].pow(2).sum().backward()
    refs = [x.double().requires_grad_() for x in (q, k, v, g)]
    ref(*refs, None, None)[0].pow(2).sum().backward()
    for a, b in zip(leaves, refs):
        assert rel_err(a.grad, b.grad) < 1e-5


def test_large_fill_inside_a_chunk_is_absorbed_like_fla():
    """The chunk-local cumsum absorbs every gate after a -0.1*finfo.max fill (no guard, as in fla):
    silently wrong where the per-step recurrence is exact -- what fla-check must flag."""
    (q, k, v, g, _), _ = make_inputs("T13_B2")
    g = g.clone()
    g[:, 5] = -0.1 * torch.finfo(torch.float32).max
    o, _ = simple_gla_chunk(q, k, v, g=g)
    ref_o, _ = ref(q, k, v, g, None, None)
    assert rel_err(o, ref_o) > 1e-2
