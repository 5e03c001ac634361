"""In-kernel options and grouped value heads in the float64 reference (references/options.py)."""
import math

import pytest
import torch

from fla_check.references import gated_delta_step, reference
from fla_check.references.options import L2NORM_EPS, expand_heads, gate_scale, gdn_gate, kda_gate, l2norm, make_prepare


def test_l2norm_is_fla_formula_with_eps_inside_the_root():
    x = torch.tensor([[3e-3, 4e-3]], dtype=torch.float64)
    assert torch.allclose(l2norm(x), x / math.sqrt(25e-6 + L2NORM_EPS))
    assert L2NORM_EPS == 1e-6
    assert abs(float(l2norm(x).norm()) - 1.0) > 0.01  # at |x| = 5e-3 the epsilon is visible


def test_gdn_gate_is_minus_exp_A_log_softplus_exactly():
    a = torch.tensor([[-30.0, 0.0, 25.0]], dtype=torch.float64)
    A_log, dt_bias = torch.tensor([0.0, math.log(2.0), 1.0]), torch.tensor([0.0, 1.0, -2.0])
    want = [-math.log1p(math.exp(-30.0)), -2.0 * math.log1p(math.e), -math.e * (23.0 + math.log1p(math.exp(-23.0)))]
    assert torch.allclose(gdn_gate(a, A_log, dt_bias), torch.tensor([want], dtype=torch.float64), rtol=1e-14)
    assert float(gdn_gate(a, A_log, None)[0, 0]) < 0  # no saturation at -30: softplus > 0


def test_expand_heads_maps_value_head_j_to_key_head_j_div_r():
    x = torch.arange(2.0).view(1, 1, 2, 1)  # key heads 0, 1
    assert expand_heads(x, 6).flatten().tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="multiple"):
        expand_heads(x, 3)


def test_reference_with_gva_equals_one_value_head_at_a_time():
    gen = torch.Generator().manual_seed(0)
    H, r, T, K, V = 2, 3, 9, 4, 5
    q, k = (torch.randn(1, T, H, K, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(1, T, H * r, V, generator=gen, dtype=torch.float64)
    g = -torch.rand(1, T, H * r, generator=gen, dtype=torch.float64)
    beta = torch.rand(1, T, H * r, generator=gen, dtype=torch.float64)
    o, ht = reference(gated_delta_step, q, k, v, g, beta, output_final_state=True)
    for j in range(H * r):
        s = slice(j // r, j // r + 1)
        oj, hj = reference(gated_delta_step, q[:, :, s], k[:, :, s], v[:, :, j:j + 1], g[:, :, j:j + 1],
                           beta[:, :, j:j + 1], output_final_state=True)
        assert torch.allclose(o[:, :, j:j + 1], oj) and torch.allclose(ht[:, j:j + 1], hj)


def test_prepare_applies_each_option_and_gradients_flow_to_the_raw_inputs():
    gen = torch.Generator().manual_seed(1)
    q = (torch.randn(1, 3, 1, 4, generator=gen, dtype=torch.float64) * 1e-3).requires_grad_()
    k = torch.randn(1, 3, 1, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(1, 3, 2, 4, generator=gen, dtype=torch.float64)
    a, b = torch.randn(1, 3, 2, dtype=torch.float64, generator=gen), torch.randn(1, 3, 2, dtype=torch.float64,
                                                                                  generator=gen)
    A_log, dt_bias = torch.tensor([0.5, 1.0]), torch.tensor([-3.0, -4.0])
    qe, ke, ve, ge, be = make_prepare(qk_l2norm=True, beta_sigmoid=True, A_log=A_log, dt_bias=dt_bias)(q, k, v, a, b)
    assert qe.shape == (1, 3, 2, 4) and torch.allclose(qe[:, :, 1], l2norm(q)[:, :, 0])
    assert torch.allclose(ge, gdn_gate(a, A_log, dt_bias)) and torch.allclose(be, torch.sigmoid(b))
    (dq,) = torch.autograd.grad(qe.sum(), [q])
    assert torch.isfinite(dq).all() and dq.abs().max() > 0


def test_kda_gate_by_hand_softplus_and_lower_bound_forms():
    """KDA's gate per key channel: A_log per value head, dt_bias per (head, channel) as fla's flat [HV * K]."""
    a = torch.tensor([[[1.0, -2.0], [0.0, 40.0]]], dtype=torch.float64)  # [1, HV=2, K=2]
    A_log, dt_bias = torch.tensor([math.log(2.0), 0.0]), torch.tensor([0.5, 0.0, -1.0, -50.0])
    soft = [[-2.0 * math.log1p(math.exp(1.5)), -2.0 * math.log1p(math.exp(-2.0))],
            [-math.log1p(math.exp(-1.0)), -math.log1p(math.exp(-10.0))]]
    assert torch.allclose(kda_gate(a, A_log, dt_bias), torch.tensor([soft], dtype=torch.float64), rtol=1e-14)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    bounded = [[-5.0 * sig(3.0), -5.0 * sig(-4.0)], [-5.0 * sig(-1.0), -5.0 * sig(-10.0)]]
    got = kda_gate(a, A_log, dt_bias, lower_bound=-5.0)
    assert torch.allclose(got, torch.tensor([bounded], dtype=torch.float64), rtol=1e-14)
    assert float(got.min()) > -5.0 and float(got.max()) < 0  # inside (lower_bound, 0)
    assert torch.allclose(kda_gate(a, A_log, None, -1.0), -torch.sigmoid(a * A_log.exp().view(2, 1)))


def test_prepare_applies_kda_gate_and_its_error_scale_broadcasts_over_channels():
    a = torch.randn(1, 3, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    A_log, dt_bias = torch.tensor([0.5, 1.0]), torch.linspace(-3.0, -1.0, 8)
    x = (a, a, a, a, None)
    for bound in (None, -5.0):
        prep = make_prepare(A_log=A_log, dt_bias=dt_bias, key_gate=True, lower_bound=bound)
        assert torch.equal(prep(*x)[3], kda_gate(a, A_log, dt_bias, bound))
    assert gate_scale(A_log, True, None).shape == (2, 1) and gate_scale(A_log, False, None).shape == (2,)
    assert float(gate_scale(A_log, True, -3.0)) == 3.0 and gate_scale(None, True, None) is None
    with pytest.raises(ValueError, match="KDA"):
        make_prepare(A_log=A_log, lower_bound=-5.0)  # a per-head (GDN) gate has no bounded form
