"""The float64 references: varlen and reset-mask semantics, autograd, closed forms."""
import pytest
import torch
import torch.nn.functional as F

from fla_check.references import (delta_step, gated_delta_step, gla_step, kda_step, naive_baseline, reference,
                                   simple_gla_step)
from op_inputs import random_inputs

STEPS = {"gla": gla_step, "simple_gla": simple_gla_step, "delta": delta_step, "gated_delta": gated_delta_step,
         "kda": kda_step}


def _inputs(op, B=1, T=11, H=2, K=5, V=3, seed=0):
    return random_inputs(op, B, T, H, K, V, torch.Generator().manual_seed(seed))


def _slice(x, s, e):
    return None if x is None else x[:, s:e]


@pytest.mark.parametrize("op", list(STEPS))
def test_cu_seqlens_equals_separate_runs(op):
    q, k, v, g, beta = _inputs(op, T=12)
    cu = torch.tensor([0, 1, 5, 12])
    h0 = torch.randn(3, 2, 5, 3, generator=torch.Generator().manual_seed(1))
    o, ht = reference(STEPS[op], q, k, v, g, beta, initial_state=h0, output_final_state=True,
                      cu_seqlens=cu)
    for i, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        xs = [_slice(x, s, e) for x in (q, k, v, g, beta)]
        o_i, ht_i = reference(STEPS[op], *xs, initial_state=h0[i : i + 1], output_final_state=True)
        torch.testing.assert_close(o[:, s:e], o_i, rtol=0, atol=1e-12)
        torch.testing.assert_close(ht[i : i + 1], ht_i, rtol=0, atol=1e-12)


@pytest.mark.parametrize("op", list(STEPS))
def test_reset_mask_equals_per_segment_runs(op):
    q, k, v, g, beta = _inputs(op, B=2, T=10)
    reset = torch.zeros(2, 10, dtype=torch.bool)
    reset[0, 4] = reset[1, 1] = reset[1, 2] = True
    o, _ = reference(STEPS[op], q, k, v, g, beta, reset_mask=reset)
    for b, starts in ((0, [0, 4, 10]), (1, [0, 1, 2, 10])):
        for s, e in zip(starts[:-1], starts[1:]):
            xs = [None if x is None else x[b : b + 1, s:e] for x in (q, k, v, g, beta)]
            o_i, _ = reference(STEPS[op], *xs)
            torch.testing.assert_close(o[b : b + 1, s:e], o_i, rtol=0, atol=1e-12)


def test_gla_matches_closed_form_attention():
    """o_t = sum_{s<=t} (q_t * exp(G_t - G_s)) . k_s v_s with G the inclusive gate cumsum."""
    q, k, v, g, _ = _inputs("gla", T=7)
    o, _ = reference(gla_step, q, k, v, g, None, scale=1.0)
    G = g.double().cumsum(1)
    want = torch.zeros_like(o)
    for t in range(7):
        for s in range(t + 1):
            w = (q[:, t].double() * k[:, s].double() * (G[:, t] - G[:, s]).exp()).sum(-1)
            want[:, t] += w[..., None] * v[:, s].double()
    torch.testing.assert_close(o, want, rtol=1e-10, atol=1e-12)


def test_simple_gla_matches_closed_form_attention():
    """o_t = scale sum_{s<=t} exp(G_t - G_s) (q_t . k_s) v_s with G the per-head gate cumsum,
    which is also GLA with the head's gate repeated over every key channel."""
    q, k, v, g, _ = _inputs("simple_gla", T=7)
    o, ht = reference(simple_gla_step, q, k, v, g, None, output_final_state=True)
    G = g.double().cumsum(1)
    want = torch.zeros_like(o)
    for t in range(7):
        for s in range(t + 1):
            w = (q[:, t].double() * k[:, s].double()).sum(-1) * (G[:, t] - G[:, s]).exp()
            want[:, t] += 5**-0.5 * w[..., None] * v[:, s].double()
    torch.testing.assert_close(o, want, rtol=1e-10, atol=1e-12)
    o_gla, ht_gla = reference(gla_step, q, k, v, g[..., None].expand_as(q), None, output_final_state=True)
    torch.testing.assert_close(o, o_gla, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ht, ht_gla, rtol=1e-12, atol=1e-12)


def test_gated_delta_decays_before_the_error():
    """With k orthonormal and beta = 1, one step writes v exactly: S'^T k = v after the update."""
    K = V = 4
    gen = torch.Generator().manual_seed(0)
    S0 = torch.randn(1, 1, K, V, generator=gen, dtype=torch.float64)
    k = torch.eye(K, dtype=torch.float64)[0].view(1, 1, K)
    v = torch.randn(1, 1, V, generator=gen, dtype=torch.float64)
    S1 = gated_delta_step(S0, k, v, torch.full((1, 1), -0.7, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64))
    torch.testing.assert_close((S1 * k[..., None]).sum(-2), v)
    # the other rows are only decayed
    torch.testing.assert_close(S1[..., 1:, :], S0[..., 1:, :] * torch.exp(torch.tensor(-0.7)))


@pytest.mark.parametrize("op", list(STEPS))
def test_reference_is_differentiable(op):
    xs = [None if x is None else x.double().requires_grad_() for x in _inputs(op, T=4)]
    h0 = torch.randn(1, 2, 5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
    o, ht = reference(STEPS[op], *xs, initial_state=h0, output_final_state=True)
    (o.sum() + ht.sum()).backward()
    for x in xs + [h0]:
        if x is not None:
            assert x.grad is not None and torch.isfinite(x.grad).all()


def test_naive_baseline_is_close_but_not_exact_in_half():
    xs = _inputs("gla", T=16, K=8, V=8)
    o64, _ = reference(gla_step, *xs)
    half = [None if x is None else x.half() for x in xs]
    o16, _ = naive_baseline(gla_step, *half)
    assert o16.dtype == torch.float16
    err = (o16.double() - o64).abs().max().item()
    assert 0 < err < 1e-2


def test_kda_with_a_channel_uniform_gate_is_gated_delta():
    q, k, v, g, beta = _inputs("gated_delta", T=9)
    o_gdn, ht_gdn = reference(gated_delta_step, q, k, v, g, beta, output_final_state=True)
    g_key = g[..., None].expand(q.shape).contiguous()
    o_kda, ht_kda = reference(kda_step, q, k, v, g_key, beta, output_final_state=True)
    torch.testing.assert_close(o_kda, o_gdn, rtol=0, atol=1e-12)
    torch.testing.assert_close(ht_kda, ht_gdn, rtol=0, atol=1e-12)


def test_kda_decays_each_key_channel_before_the_error():
    """Two steps by hand: S1 = beta1 k1 v1^T; S2 = D S1 + beta2 k2 (v2 - (D S1)^T k2)^T, D = diag(exp g2)."""
    q, k, v, g, beta = (x.double() for x in _inputs("kda", B=1, T=2, H=1))
    o, ht = reference(kda_step, q, k, v, g, beta, output_final_state=True)
    S1 = beta[0, 0, 0] * torch.outer(k[0, 0, 0], v[0, 0, 0])
    S1d = g[0, 1, 0].exp()[:, None] * S1
    S2 = S1d + beta[0, 1, 0] * torch.outer(k[0, 1, 0], v[0, 1, 0] - S1d.T @ k[0, 1, 0])
    torch.testing.assert_close(ht[0, 0], S2, rtol=0, atol=1e-12)
    torch.testing.assert_close(o[0, 1, 0], S2.T @ q[0, 1, 0] * 5**-0.5, rtol=0, atol=1e-12)



@pytest.mark.parametrize("packing", ["varlen", "mask"])
def test_the_step_loop_makes_no_host_transfer_per_step(monkeypatch, packing):
    """What the reference reads back to the host does not grow with T (on a GPU each read is a
    stream sync): varlen lengths once, never a per-step device tensor or branch."""
    from host_spy import host_transfers
    from fla_check.cases import CaseConfig, build_case

    counts = []
    for T in (12, 40):
        segs = ((T // 3, T - T // 3),)
        c = CaseConfig(op="gla", dtype="float32", B=1, T=T, H=1, K=4, V=4, packing=packing, segments=segs,
                       **({"mask_fill": -20.0} if packing == "mask" else {}))
        x = build_case(c, "cpu")
        calls = host_transfers(monkeypatch)
        reference(gla_step, *x.tensors(), initial_state=x.initial_state, output_final_state=True,
                  cu_seqlens=x.cu_seqlens, reset_mask=None if packing == "varlen" else x.reset_mask)
        counts.append(len(calls))
        monkeypatch.undo()
    assert counts[0] == counts[1] <= 4


def _bits(x):
    return x.detach().view(torch.int64)


@pytest.mark.parametrize("op", list(STEPS))
@pytest.mark.parametrize("packing", ["none", "varlen", "mask"])
def test_factors_of_all_steps_at_once_give_the_per_step_bits(op, packing):
    """The loop takes exp(g) and the scaled queries of every step at once for a built-in step;
    a wrapped step (not in DECAYED, as the emulation's) runs the per-step form: same bits, and
    one exp for the whole sequence instead of one per step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Exps(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Exps.count += func is torch.ops.aten.exp.default
            return func(*args, **(kwargs or {}))

    B = 1 if packing == "varlen" else 2
    xs = [None if x is None else x.double() for x in _inputs(op, B=B, T=13)]
    if xs[3] is not None:
        xs[3][:, 4] = -1e300  # a mask-like fill: exp underflows to 0
    h0 = torch.randn(3 if packing == "varlen" else B, 2, 5, 3, generator=torch.Generator().manual_seed(3),
                     dtype=torch.float64)
    kw = dict(initial_state=h0, output_final_state=True, scale=0.3)
    if packing == "varlen":
        kw["cu_seqlens"] = torch.tensor([0, 4, 4, 13])
    if packing == "mask":
        kw["reset_mask"] = torch.zeros(B, 13, dtype=torch.bool)
        kw["reset_mask"][:, 6] = True
    with Exps():
        o, ht = reference(STEPS[op], *xs, **kw)
    o_step, ht_step = reference(lambda *a: STEPS[op](*a), *xs, **kw)
    assert torch.equal(_bits(o), _bits(o_step)) and torch.equal(_bits(ht), _bits(ht_step))
    assert Exps.count == (0 if op == "delta" else 1)


@pytest.mark.parametrize("op", ["gla", "simple_gla"])
@pytest.mark.parametrize("packing", ["none", "varlen", "mask"])
@pytest.mark.parametrize("block_bytes", [1, 3 * 2 * 5 * 3 * 8, 2**30])  # one step, three, all at once
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kv_products_of_a_block_of_steps_give_the_per_step_bits(monkeypatch, op, packing, block_bytes, seed):
    """k_t v_t^T taken for a block of steps in one op (GIVEN_KV) gives the bits, signed zeros
    included, of the per-step update (GIVEN_KV emptied: the step's own form), in float64 and fp32."""
    from fla_check.references import recurrence

    gen = torch.Generator().manual_seed(seed)
    B = 1 if packing == "varlen" else 2
    xs = list(_inputs(op, B=B, T=13, seed=seed))
    for x in xs[1:3]:  # signed zeros in k and v: -0.0 * a + 0.0 and friends
        x[torch.rand(x.shape, generator=gen) < 0.2] = 0.0
        x[torch.rand(x.shape, generator=gen) < 0.2] = -0.0
    h0 = torch.randn(3 if packing == "varlen" else B, 2, 5, 3, generator=gen)
    h0[0, 0] = -0.0
    kw = dict(initial_state=h0, output_final_state=True)
    if packing == "varlen":
        kw["cu_seqlens"] = torch.tensor([0, 4, 4, 13])
    if packing == "mask":
        kw["reset_mask"] = torch.rand(B, 13, generator=gen) < 0.3
    monkeypatch.setattr(recurrence, "KV_BLOCK_BYTES", block_bytes)
    for fn in (reference, naive_baseline):
        o, ht = fn(STEPS[op], *xs, **kw)
        with monkeypatch.context() as m:
            m.setattr(recurrence, "GIVEN_KV", {})
            o_step, ht_step = fn(STEPS[op], *xs, **kw)
        for new, old in ((o, o_step), (ht, ht_step)):
            assert torch.equal(new, old) and torch.equal(new.signbit(), old.signbit())
            assert torch.equal(new.double().view(torch.int64), old.double().view(torch.int64))


def test_both_readout_forms_are_s_transposed_times_x():
    """readout (product and sum) and batched_readout (one bmm) are S^T x per row, to rounding."""
    from fla_check.references.recurrence import batched_readout, readout

    gen = torch.Generator().manual_seed(0)
    S = torch.randn(3, 2, 5, 4, generator=gen, dtype=torch.float64)
    x = torch.randn(3, 2, 5, generator=gen, dtype=torch.float64)
    exact = torch.einsum("bhkv,bhk->bhv", S, x)
    for form in (readout, batched_readout):
        out = form(S, x)
        assert out.shape == (3, 2, 4)
        torch.testing.assert_close(out, exact, rtol=1e-14, atol=1e-14)
    wrong = S.clone()
    wrong[1, 0, 2] += 1e-3  # one state entry off: both forms see it
    assert not torch.allclose(readout(wrong, x), exact, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(batched_readout(wrong, x), exact, rtol=1e-9, atol=1e-9)
