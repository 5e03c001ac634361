"""builtin GLA chunk (fla's chunk_gla algorithm) vs the float64 reference; planted bug; packing."""
import pytest
import torch

import fla_check.kernels  # noqa: F401  (selects the backend before triton)
from fla_check.kernels.gla.chunk import gla_chunk
from fla_check.kernels.gla.recurrent import gla_recurrent
from fla_check.commands.selftest.mutate import load_mutant
from fla_check.references import gla_step, reference

from device import DEVICE
from gla_inputs import make_inputs, rel_err


CASES = {  # name: (B, T, H, K, V, cu_seqlens, use_h0, gate_norm, chunk_size)
    "T13_B2": (2, 13, 2, 32, 32, None, True, 8.0, 64),
    "T1": (1, 1, 1, 32, 32, None, False, 8.0, 64),
    "T70_bt64": (1, 70, 1, 32, 16, None, True, 8.0, 64),
    "T70_bt32": (1, 70, 1, 32, 16, None, True, 8.0, 32),
    "T70_bt16": (1, 70, 1, 32, 16, None, True, 8.0, 16),
    "varlen_len1": (1, 45, 2, 32, 32, [0, 1, 20, 45], True, 8.0, 16),
    "varlen_empty": (1, 30, 1, 16, 16, [0, 0, 17, 30], True, 8.0, 16),
    "KV60": (1, 40, 1, 60, 60, None, True, 8.0, 32),
    "strong_decay": (1, 40, 1, 32, 32, None, True, 0.1, 32),
}


def _run(case):
    B, T, H, K, V, cu, use_h0, norm, bt = CASES[case]
    cu = None if cu is None else torch.tensor(cu, device=DEVICE)
    q, k, v, g, h0 = make_inputs(B, T, H, K, V, B if cu is None else cu.numel() - 1, gate_norm=norm)
    return (q, k, v, g, h0 if use_h0 else None), cu, bt


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_reference(case, dtype, tol):
    (q, k, v, g, h0), cu, bt = _run(case)
    ref_o, ref_ht = reference(gla_step, q, k, v, g, None, initial_state=h0,
                              output_final_state=True, cu_seqlens=cu)
    o, ht = gla_chunk(*(x.to(dtype) for x in (q, k, v)), g=g.to(dtype), initial_state=h0,
                      output_final_state=True, cu_seqlens=cu, chunk_size=bt)
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert rel_err(o, ref_o) < tol
    assert rel_err(ht, ref_ht) < tol


def _grads(fn, inputs, do, dht, dtype):
    """Gradients of <o, do> + <ht, dht> w.r.t. q, k, v, g, h0 (leaves in `dtype`)."""
    leaves = [x.to(dtype).detach().clone().requires_grad_() for x in inputs]
    o, ht = fn(*leaves)
    ((o.double() * do).sum() + (ht.double() * dht).sum()).backward()
    return [x.grad for x in leaves]


FP32, FP16 = (torch.float32, 1e-5), (torch.float16, 1e-2)
BWD_CASES = [(c, *FP32) for c in ("T13_B2", "T70_bt16", "T70_bt64", "varlen_len1", "varlen_empty",
                                  "KV60", "strong_decay")] + [(c, *FP16) for c in ("T70_bt64", "varlen_len1")]


@pytest.mark.parametrize("case,dtype,tol", BWD_CASES,
                         ids=[f"{c}-{str(d)[6:]}" for c, d, _ in BWD_CASES])
def test_backward_matches_reference_autograd(case, dtype, tol):
    (q, k, v, g, h0), cu, bt = _run(case)
    gen = torch.Generator().manual_seed(7)
    do = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    dht = torch.randn(h0.shape, generator=gen, dtype=torch.float64).to(DEVICE)

    def kernel(q, k, v, g, h0):
        return gla_chunk(q, k, v, g=g, initial_state=h0, output_final_state=True, cu_seqlens=cu,
                         chunk_size=bt)

    def ref(q, k, v, g, h0):
        return reference(gla_step, q, k, v, g, None, initial_state=h0, output_final_state=True,
                         cu_seqlens=cu)

    got = _grads(kernel, (q, k, v, g, h0), do, dht, dtype)
    want = _grads(ref, (q, k, v, g, h0), do, dht, torch.float64)
    if case == "strong_decay" and dtype == torch.float32:
        # |gc| reaches ~200 inside a 32-token chunk (fp32 ulp ~1.5e-5), and dg = revcumsum(q dq - k dk)
        # cancels terms 8x larger than dg: chunk_gla's own precision limit (measured 2.2e-5).
        tol = 1e-4
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dh0"), got, want):
        assert a.dtype == dtype, name
        assert rel_err(a, b) < tol, (name, rel_err(a, b))


def test_backward_without_state_grads():
    """No initial state, no final state: dh starts at 0 and no dh0 is produced."""
    (q, k, v, g, _), _, _ = _run("T70_bt32")
    leaves = [x.clone().requires_grad_() for x in (q, k, v, g)]
    gla_chunk(*leaves[:3], g=leaves[3], chunk_size=32)[0].pow(2).sum().backward()
    ref = [x.double().requires_grad_() for x in (q, k, v, g)]
    reference(gla_step, *ref[:3], ref[3], None)[0].pow(2).sum().backward()
    for a, b in zip(leaves, ref):
        assert rel_err(a.grad, b.grad) < 1e-5


def test_planted_bug_state_not_carried_is_caught():
    """A mutant that drops the state at every chunk boundary is far off the reference.
    Weak decay on purpose: logsigmoid(randn) gates decay a 16-token chunk by ~e^-13, which
    hides exactly this bug (fla RFC #891)."""
    mutant = load_mutant("fla_check.kernels.gla.chunk",
                         [("b_h *= tl.exp2(b_gl)[:, None]", "b_h *= 0.0")], tag="gla_no_carry")
    q, k, v, g, h0 = make_inputs(1, 70, 1, 32, 16, 1, gate_norm=20.0)
    ref_o, _ = reference(gla_step, q, k, v, g, None, initial_state=h0)
    good, _ = gla_chunk(q, k, v, g=g, initial_state=h0, chunk_size=16)
    bad, _ = mutant.gla_chunk(q, k, v, g=g, initial_state=h0, chunk_size=16)
    assert rel_err(good, ref_o) < 1e-5
    assert rel_err(bad, ref_o) > 0.1


def _packed_row(fill):
    """One row packing two sequences; the second starts mid-chunk at t=20 (gate filled there)."""
    q, k, v, g, _ = make_inputs(1, 48, 1, 32, 32, 1, seed=3)
    reset = torch.zeros(1, 48, dtype=torch.bool, device=DEVICE)
    reset[0, 20] = True
    ref_o, _ = reference(gla_step, q, k, v, g, None, reset_mask=reset)
    return (q, k, v, g.masked_fill(reset[:, :, None, None], fill)), ref_o


def test_packing_with_huge_fill_breaks_chunk_not_recurrent():
    """fla's weakness, kept on purpose: -0.1*finfo.max is absorbed by the chunk-local cumsum."""
    (q, k, v, g), ref_o = _packed_row(-0.1 * torch.finfo(torch.float32).max)
    o_chunk, _ = gla_chunk(q, k, v, g=g)
    o_rec, _ = gla_recurrent(q, k, v, g=g)
    assert torch.isfinite(o_chunk).all()  # silently wrong, not NaN
    assert rel_err(o_chunk, ref_o) > 0.1
    assert rel_err(o_rec, ref_o) < 1e-5


@pytest.mark.parametrize("fill", [-torch.finfo(torch.float32).max, float("-inf")])
def test_packing_with_inf_fill_gives_nan(fill):
    (q, k, v, g), _ = _packed_row(fill)
    assert gla_chunk(q, k, v, g=g)[0].isnan().any()


def test_packing_with_moderate_fill_is_accurate():
    (q, k, v, g), ref_o = _packed_row(-20.0)
    o, _ = gla_chunk(q, k, v, g=g)
    assert (o.double() - ref_o).abs().max().item() < 1e-4


def test_rejects_bad_chunk_size():
    q, k, v, g, _ = make_inputs(1, 4, 1, 16, 16, 1)
    with pytest.raises(ValueError):
        gla_chunk(q, k, v, g=g, chunk_size=8)
