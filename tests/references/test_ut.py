"""The float64 UT-transform references: recursion vs closed form, and the sign convention."""
import pytest
import torch
import torch.nn.functional as F

from fla_check.references import delta_step, gated_delta_step, reference
from fla_check.references.ut import chunk_spans, ut_closed_form, ut_recursion


def _inputs(T=11, H=2, K=6, V=3, gated=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    k = F.normalize(torch.randn(1, T, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(1, T, H, V, generator=gen, dtype=torch.float64)
    beta = 2 * torch.rand(1, T, H, generator=gen, dtype=torch.float64)
    g = F.logsigmoid(torch.randn(1, T, H, generator=gen, dtype=torch.float64)) if gated else None
    return k, v, beta, g


def test_chunk_spans_restart_at_sequence_starts():
    spans = list(chunk_spans(1, 0, 4, torch.tensor([0, 1, 1, 10])))
    assert spans == [(0, 0, 1), (0, 1, 5), (0, 5, 9), (0, 9, 10)]


@pytest.mark.parametrize("gated", [False, True])
def test_recursion_equals_plus_form_not_minus_form(gated):
    k, v, beta, g = _inputs(gated=gated)
    w, u = ut_recursion(k, v, beta, g, chunk_size=4)
    _, w_plus, u_plus = ut_closed_form(k, v, beta, g, chunk_size=4, sign=1)
    _, w_minus, u_minus = ut_closed_form(k, v, beta, g, chunk_size=4, sign=-1)
    torch.testing.assert_close(w, w_plus, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(u, u_plus, rtol=1e-12, atol=1e-12)
    assert (w - w_minus).abs().max() > 1e-2 and (u - u_minus).abs().max() > 1e-2


@pytest.mark.parametrize("gated", [False, True])
def test_wy_form_reproduces_the_step_recurrence(gated):
    """From a zero state, one chunk: S = K^T (U - W S0) with S0 = 0 and decays gives the final state,
    i.e. S_T = sum_r exp(G_T - G_r) k_r u_r^T (fla's naive_chunk_gated_delta_rule update)."""
    k, v, beta, g = _inputs(T=7, gated=gated)
    w, u = ut_recursion(k, v, beta, g, chunk_size=7)
    q = torch.zeros_like(k)
    step = gated_delta_step if gated else delta_step
    _, ht = reference(step, q, k, v, g, beta, output_final_state=True)
    decay = torch.ones(1, 7, 2, dtype=torch.float64)
    if gated:
        decay = (g.flip(1).cumsum(1).flip(1) - g).exp()  # exp(sum_{s>r} g_s)
    S = torch.einsum("bthk,bthv->bhkv", k * decay[..., None], u)
    torch.testing.assert_close(S, ht, rtol=1e-10, atol=1e-12)


def test_huge_negative_gate_windows_stay_exact():
    """Window sums, not cumsum differences: a -1e30 gate zeroes only the windows it is in."""
    k, v, beta, g = _inputs(T=8, H=1)
    g_fill = g.clone()
    g_fill[0, 4] = -1e30
    w, u = ut_recursion(k, v, beta, g_fill, chunk_size=8)
    w2, u2 = ut_recursion(k[:, 4:], v[:, 4:], beta[:, 4:], g_fill[:, 4:], chunk_size=8)
    torch.testing.assert_close(u[:, 4:], u2, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(w).all() and w[:, 4:].abs().max() == 0  # exp(G_r) = 0 after the fill
