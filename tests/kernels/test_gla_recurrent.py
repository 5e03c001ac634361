"""builtin GLA recurrent (per-step Triton kernel): forward and backward vs the float64 reference."""
import pytest
import torch

import fla_check.kernels  # noqa: F401  (selects the backend before triton)
from fla_check.kernels.gla.recurrent import gla_recurrent
from fla_check.references import gla_step, reference

import v_first
from device import DEVICE, assert_same_outputs
from fla_check.commands.selftest.mutants import MUTANTS
from fla_check.commands.selftest.mutate import load_mutant
from gla_inputs import make_inputs, rel_err

_GLA_R = "fla_check.kernels.gla.recurrent"


CASES = {  # name: (B, T, H, K, V, cu_seqlens, use_h0, gate_norm)
    "T13_B2": (2, 13, 2, 32, 32, None, True, 8.0),
    "T1": (1, 1, 1, 32, 32, None, False, 8.0),
    "T70_BV_split": (1, 70, 1, 16, 80, None, True, 8.0),
    "varlen_len1": (1, 45, 2, 32, 32, [0, 1, 20, 45], True, 8.0),
    "varlen_empty": (1, 30, 1, 16, 16, [0, 0, 17, 30], True, 8.0),
    "KV60": (1, 40, 1, 60, 60, None, True, 8.0),
    "strong_decay": (1, 40, 1, 32, 32, None, True, 0.1),
}


def _run(case, dtype):
    B, T, H, K, V, cu, use_h0, norm = CASES[case]
    cu = None if cu is None else torch.tensor(cu, device=DEVICE)
    q, k, v, g, h0 = make_inputs(B, T, H, K, V, B if cu is None else cu.numel() - 1, gate_norm=norm)
    return (q, k, v, g, h0 if use_h0 else None), cu


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_reference(case, dtype, tol):
    (q, k, v, g, h0), cu = _run(case, dtype)
    ref_o, ref_ht = reference(gla_step, q, k, v, g, None, initial_state=h0,
                              output_final_state=True, cu_seqlens=cu)
    o, ht = gla_recurrent(*(x.to(dtype) for x in (q, k, v)), g=g.to(dtype), initial_state=h0,
                          output_final_state=True, cu_seqlens=cu)
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert rel_err(o, ref_o) < tol
    assert rel_err(ht, ref_ht) < tol


def _grads(fn, inputs, do, dht, cu, dtype):
    """Gradients of <o, do> + <ht, dht> w.r.t. q, k, v, g, h0 (leaves in `dtype`)."""
    leaves = [x.to(dtype).detach().requires_grad_() for x in inputs]
    q, k, v, g, h0 = leaves
    o, ht = fn(q, k, v, g, h0, cu)
    ((o.double() * do).sum() + (ht.double() * dht).sum()).backward()
    return [x.grad for x in leaves]


def _kernel(q, k, v, g, h0, cu):
    return gla_recurrent(q, k, v, g=g, initial_state=h0, output_final_state=True, cu_seqlens=cu)


def _ref(q, k, v, g, h0, cu):
    return reference(gla_step, q, k, v, g, None, initial_state=h0, output_final_state=True,
                     cu_seqlens=cu)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-2)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", ["T13_B2", "varlen_len1", "KV60", "strong_decay", "T70_BV_split"])
def test_backward_matches_reference_autograd(case, dtype, tol):
    (q, k, v, g, h0), cu = _run(case, dtype)
    gen = torch.Generator().manual_seed(7)
    do = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    dht = torch.randn(h0.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    got = _grads(_kernel, (q, k, v, g, h0), do, dht, cu, dtype)
    want = _grads(_ref, (q, k, v, g, h0), do, dht, cu, torch.float64)
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dh0"), got, want):
        assert a.dtype == dtype, name
        assert rel_err(a, b) < tol, (name, rel_err(a, b))


def test_backward_without_state_grads():
    """No initial state and no final state: the reverse pass starts from dS = 0."""
    (q, k, v, g, _), _ = _run("T13_B2", torch.float32)
    leaves = [x.clone().requires_grad_() for x in (q, k, v, g)]
    gla_recurrent(*leaves[:3], g=leaves[3])[0].pow(2).sum().backward()
    ref = [x.double().requires_grad_() for x in (q, k, v, g)]
    reference(gla_step, *ref[:3], ref[3], None)[0].pow(2).sum().backward()
    for a, b in zip(leaves, ref):
        assert rel_err(a.grad, b.grad) < 1e-5


@pytest.mark.parametrize("v_first_states", [False, True], ids=["k_first", "v_first"])
def test_narrow_v_blocks_compute_what_wide_ones_do(monkeypatch, v_first_states):
    """The forward's V-block width (4 on a GPU, 64 in the interpreter) changes no output: varlen with an
    empty and a length-one sequence, a V tail the last block masks, an initial and a final state in both
    layouts. The interpreter's bits are equal; compiled, a block's reductions over K may round differently."""
    from fla_check.kernels.gla import recurrent

    cu = torch.tensor([0, 1, 1, 13, 21], device=DEVICE)
    q, k, v, g, h0 = make_inputs(1, 21, 2, 24, 70, cu.numel() - 1)
    if v_first_states:
        h0 = h0.transpose(-1, -2).contiguous()
    runs = []
    for width in (4, 64):
        monkeypatch.setattr(recurrent, "FWD_BV", width)
        monkeypatch.setattr(recurrent, "INTERPRETER_BV", width)
        runs.append(recurrent.gla_recurrent_fwd(q, k, v, g, 24**-0.5, h0, True, cu, cu.numel() - 1,
                                                state_v_first=v_first_states))
    assert_same_outputs(*runs)


# -- state_v_first: [N, H, V, K] initial / final states indexed so by the kernels ----------------------
@pytest.mark.parametrize("varlen", [False, True], ids=["batch", "varlen"])
def test_v_first_states_equal_k_first_transposed(varlen):
    x, h0, cu = v_first.make_inputs(gate="key", varlen=varlen)
    v_first.assert_v_first_matches_k_first(gla_recurrent, x, h0, cu)


def test_v_first_states_across_value_blocks():
    """V = 72 > BV = 64: the second value block's tile lies at v*K + k offsets too."""
    x, h0, cu = v_first.make_inputs(gate="key", V=72, T=4)
    v_first.assert_v_first_matches_k_first(gla_recurrent, x, h0, cu)


def test_v_first_check_catches_a_state_stored_k_first():
    """Controls: the catalog's planted bug (ht stored at k*V + v offsets under STATE_V_FIRST), and
    dh0 stored so in the backward kernel, each fail the check (forward, then gradients only)."""
    x, h0, cu = v_first.make_inputs(gate="key", varlen=True)
    (ht_bug,) = [m for m in MUTANTS if m.id == "gla.recurrent.v-first-transposed"]
    bad = load_mutant(ht_bug.module, list(ht_bug.replacements), tag="test_vfirst_ht", function=ht_bug.function)
    with pytest.raises(AssertionError):
        v_first.assert_v_first_matches_k_first(bad.gla_recurrent, x, h0, cu, backward=False)
    bad = load_mutant(_GLA_R, [("        tl.store(dh0 + p_s, b_dh.to(dh0.dtype.element_ty), mask=m_h)\n",
                                "        tl.store(dh0 + i_nh * K * V + o_k[:, None] * V + o_v[None, :], "
                                "b_dh.to(dh0.dtype.element_ty), mask=m_h)\n")],
                      tag="test_vfirst_dh0", function="gla_recurrent_bwd_kernel")
    v_first.assert_v_first_matches_k_first(bad.gla_recurrent, x, h0, cu, backward=False)  # forward clean
    with pytest.raises(AssertionError):
        v_first.assert_v_first_matches_k_first(bad.gla_recurrent, x, h0, cu)


def test_v_first_initial_state_shape_is_checked():
    x, h0, _ = v_first.make_inputs(gate="key")
    with pytest.raises(ValueError, match=r"initial_state must be \(2, 2, 24, 16\)"):
        gla_recurrent(x["q"], x["k"], x["v"], g=x["g"], initial_state=h0, state_v_first=True)
