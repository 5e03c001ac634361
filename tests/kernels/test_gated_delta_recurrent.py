"""Gated DeltaNet per-step recurrent kernel vs the float64 step-wise reference, with fla's in-kernel
gate and beta options applied exactly to the reference's inputs (references.options.make_prepare)."""
import math

import pytest
import torch

from fla_check.kernels.gated_delta.recurrent import gated_delta_recurrent
from fla_check.references import gated_delta_step, reference
from fla_check.references.options import make_prepare
from device import DEVICE, assert_same_outputs
from delta_inputs import assert_matches_reference, initial_state, make_inputs, max_err
import v_first


@pytest.mark.parametrize("B,T,H,K,V", [(1, 1, 1, 16, 16), (2, 37, 2, 32, 16), (1, 20, 1, 60, 100)])
def test_matches_reference_fp32(B, T, H, K, V):
    x = make_inputs(B, T, H, K, V, gated=True, beta_max=2.0)
    assert_matches_reference(gated_delta_recurrent, x, initial_state=initial_state(B, H, K, V))


def test_fp16():
    x = make_inputs(1, 24, 2, 32, 32, gated=True, dtype=torch.float16)
    assert_matches_reference(gated_delta_recurrent, x, initial_state=initial_state(1, 2, 32, 32))


def test_unnormalized_keys_small():
    x = make_inputs(1, 6, 1, 16, 16, gated=True, normalize=False, beta_max=0.1)
    assert_matches_reference(gated_delta_recurrent, x)


def test_varlen_with_empty_and_length_one_sequences():
    x = make_inputs(1, 21, 2, 60, 60, gated=True)
    cu = torch.tensor([0, 1, 1, 13, 21], device=DEVICE)
    assert_matches_reference(gated_delta_recurrent, x, cu_seqlens=cu,
                             initial_state=initial_state(4, 2, 60, 60))


@pytest.mark.parametrize("fill", [-0.1 * torch.finfo(torch.float32).max, float("-inf")])
def test_packing_by_huge_gate_is_exact_per_step(fill):
    """The per-step kernel resets cleanly even at -inf (only the chunk form breaks)."""
    x = make_inputs(1, 30, 1, 16, 16, gated=True)
    reset = torch.zeros(1, 30, dtype=torch.bool, device=DEVICE)
    reset[0, 11] = True
    g = x["g"].masked_fill(reset[..., None], fill)
    o, _ = gated_delta_recurrent(x["q"], x["k"], x["v"], g=g, beta=x["beta"])
    ro, _ = reference(gated_delta_step, x["q"], x["k"], x["v"], x["g"], x["beta"], reset_mask=reset)
    assert max_err(o, ro) < 1e-5


def test_gate_is_required():
    x = make_inputs(1, 4, 1, 16, 16, gated=False)
    with pytest.raises(ValueError, match="gate"):
        gated_delta_recurrent(x["q"], x["k"], x["v"], beta=x["beta"])


@pytest.mark.parametrize("varlen", [False, True], ids=["batch", "varlen"])
def test_v_first_states_equal_k_first_transposed(varlen):
    """state_v_first ([N, H, V, K] h0 / ht): forward (the mode has no backward) equal the [K, V] run's, transposed."""
    x, h0, cu = v_first.make_inputs(gate="head", beta=True, varlen=varlen)
    v_first.assert_v_first_matches_k_first(gated_delta_recurrent, x, h0, cu, backward=False)


# -- fla's in-kernel gate and beta (use_gate_in_kernel, use_beta_sigmoid_in_kernel) -----------------

def _raw_inputs(T: int = 24, H: int = 1, HV: int = 2, K: int = 16, V: int = 16, seed: int = 0, a_scale: float = 3.0):
    """q, k (normalized), v, the raw gate input a (spread over softplus's bend: a_scale), beta logits."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, T, H, K, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(1, T, H, K, generator=gen), dim=-1)
    v = torch.randn(1, T, HV, V, generator=gen)
    a = a_scale * torch.randn(1, T, HV, generator=gen)
    logits = 3 * torch.randn(1, T, HV, generator=gen)
    return [x.to(DEVICE) for x in (q, k, v, a, logits)]


def _in_kernel(q, k, v, a, logits, A_log, dt_bias, **kw):
    return gated_delta_recurrent(q, k, v, g=a, beta=logits, output_final_state=True, use_gate_in_kernel=True,
                                 A_log=A_log, dt_bias=dt_bias, use_beta_sigmoid_in_kernel=True, **kw)


def _prepared_reference(q, k, v, a, logits, A_log, dt_bias, **kw):
    """float64 reference on the inputs the options prepare exactly (references.options.make_prepare)."""
    prepare = make_prepare(beta_sigmoid=True, A_log=A_log.double(), dt_bias=None if dt_bias is None else dt_bias.double())
    q, k, v, g, beta = prepare(*(x.double() for x in (q, k, v, a, logits)))
    return reference(gated_delta_step, q, k, v, g, beta, output_final_state=True, **kw)


def _rel(x, ref) -> float:
    return float((x.double() - ref).norm() / ref.norm())


@pytest.mark.parametrize("dt_bias", [torch.tensor([1.0, -4.0]), None], ids=["dt_bias", "no_dt_bias"])
def test_in_kernel_gate_and_beta_sigmoid_match_the_reference_with_the_options_applied(dt_bias):
    x = _raw_inputs()
    A_log = torch.tensor([0.5, 6.0]).log().to(DEVICE)
    dt = None if dt_bias is None else dt_bias.to(DEVICE)
    h0 = initial_state(1, 2, 16, 16)
    o, ht = _in_kernel(*x, A_log, dt, initial_state=h0)
    ro, rht = _prepared_reference(*x, A_log, dt, initial_state=h0.double())
    assert _rel(o, ro) < 1e-6 and _rel(ht, rht) < 1e-6
    # the options did something: the raw a as a log gate (or the logits as beta) is far off
    plain, _ = gated_delta_recurrent(*x[:3], g=-x[3].abs(), beta=torch.sigmoid(x[4]), initial_state=h0)
    assert _rel(plain, ro) > 0.1


def test_in_kernel_gate_with_gva_and_varlen():
    q, k, v, a, logits = _raw_inputs(T=21, H=2, HV=6)
    A_log = torch.linspace(-1.0, 2.5, 6).to(DEVICE)
    dt_bias = torch.linspace(-6.0, 1.0, 6).to(DEVICE)
    cu = torch.tensor([0, 1, 1, 13, 21], device=DEVICE)
    o, ht = _in_kernel(q, k, v, a, logits, A_log, dt_bias, cu_seqlens=cu)
    ro, rht = _prepared_reference(q, k, v, a, logits, A_log, dt_bias, cu_seqlens=cu)
    assert _rel(o, ro) < 1e-6 and _rel(ht, rht) < 1e-6


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")  # the unused branch at x = 100, as in fla
def test_softplus_saturates_above_20_exactly_like_fla():
    """a + dt_bias > 20: fla's softplus returns x itself; below 20 log(1 + exp(x)), which in fp32
    equals x from about 17 on. Either way the gate is -exp(A_log) x to fp32 rounding."""
    q, k, v, _, logits = _raw_inputs(T=6)
    a = torch.tensor([[[19.0, 25.0], [21.5, 60.0], [20.0, 19.99], [30.0, 18.0], [22.0, 100.0], [25.0, 20.5]]],
                     device=DEVICE)
    A_log = torch.tensor([-3.0, -4.0], device=DEVICE)  # exp(A_log) x stays O(1): the state keeps a trace
    dt_bias = torch.tensor([0.5, -0.25], device=DEVICE)
    o, ht = _in_kernel(q, k, v, a, logits, A_log, dt_bias)
    ro, rht = _prepared_reference(q, k, v, a, logits, A_log, dt_bias)
    assert _rel(o, ro) < 1e-6 and _rel(ht, rht) < 1e-6


def test_a_one_percent_wrong_A_log_use_is_caught():
    """exp(A_log) off by 1% (what a kernel reading A instead of A_log at the wrong scale would do):
    far above the 1e-6 the honest kernel reaches."""
    x = _raw_inputs(T=32)
    A_log = torch.tensor([-1.0, 0.3]).to(DEVICE)
    dt_bias = torch.tensor([1.0, -2.0]).to(DEVICE)
    ro, rht = _prepared_reference(*x, A_log, dt_bias)
    wrong, _ = _in_kernel(*x, A_log + math.log(1.01), dt_bias)
    assert _rel(wrong, ro) > 1e-4


def test_in_kernel_options_need_their_parameters_and_the_gate():
    q, k, v, a, logits = _raw_inputs(T=4)
    with pytest.raises(ValueError, match="A_log"):
        gated_delta_recurrent(q, k, v, g=a, beta=logits, use_gate_in_kernel=True)
    with pytest.raises(ValueError, match=r"\[HV\]"):
        gated_delta_recurrent(q, k, v, g=a, beta=logits, use_gate_in_kernel=True, A_log=torch.zeros(3, device=DEVICE))
    # as in fla: A_log / dt_bias without use_gate_in_kernel are ignored (g is a log gate)
    g = -a.abs()
    o1, _ = gated_delta_recurrent(q, k, v, g=g, beta=torch.sigmoid(logits), A_log=torch.zeros(2, device=DEVICE))
    o2, _ = gated_delta_recurrent(q, k, v, g=g, beta=torch.sigmoid(logits))
    assert torch.equal(o1, o2)


def test_narrow_v_blocks_compute_what_wide_ones_do(monkeypatch):
    """The forward's V-block width (8 on a GPU, 64 in the interpreter) changes no output: varlen with an
    empty and a length-one sequence, a V tail the last block masks, an initial and a final state. The
    interpreter's bits are equal; compiled, a block's reductions over K may round differently."""
    from fla_check.kernels.delta import recurrent

    x = make_inputs(1, 21, 2, 24, 100, gated=True)
    cu = torch.tensor([0, 1, 1, 13, 21], device=DEVICE)
    runs = []
    for width in (8, 64):
        monkeypatch.setattr(recurrent, "FWD_BV", width)
        monkeypatch.setattr(recurrent, "INTERPRETER_BV", width)
        runs.append(gated_delta_recurrent(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"], cu_seqlens=cu,
                                          initial_state=initial_state(4, 2, 24, 100), output_final_state=True))
    assert_same_outputs(*runs)
