"""Grouped value heads (HV = r H) and q/k l2norm in the built-in Gated DeltaNet kernels.

The expected values come from a float64 loop over value heads that slices key head j // r by
hand (independent of fla_check.references.options.expand_heads), and from q, k normalized
explicitly with fla's x / sqrt(sum x^2 + 1e-6) before a plain kernel call.
"""
import pytest
import torch

from fla_check.cases import CaseConfig, build_case
from fla_check.kernels.common.l2norm import l2norm
from fla_check.kernels.gated_delta.chunk import gated_delta_chunk
from fla_check.kernels.gated_delta.recurrent import gated_delta_recurrent
from fla_check.references import gated_delta_step, reference
from device import DEVICE

MODES = {"recurrent": gated_delta_recurrent, "chunk": gated_delta_chunk}


def _inputs(r: int, *, H=2, T=37, K=16, V=32, varlen=False, **kw):
    segs = dict(packing="varlen", segments=((5, 0, 1, T - 6),)) if varlen else {}
    c = CaseConfig(op="gated_delta", dtype="fp32", B=1, T=T, H=H, K=K, V=V, value_ratio=r, initial_state=True,
                   seed=7 + r, **segs, **kw)
    return c, build_case(c, DEVICE)


def _per_value_head(x, r: int):
    """float64 (o, ht) running value head j on key head j // r, one head at a time."""
    outs, states = [], []
    for j in range(x.v.shape[2]):
        hk = j // r
        sl = lambda t, h: t[:, :, h:h + 1].double()  # noqa: E731
        o, ht = reference(gated_delta_step, sl(x.q, hk), sl(x.k, hk), sl(x.v, j), sl(x.g, j), sl(x.beta, j),
                          initial_state=x.initial_state[:, j:j + 1].double(), output_final_state=True,
                          cu_seqlens=x.cu_seqlens)
        outs.append(o)
        states.append(ht)
    return torch.cat(outs, 2), torch.cat(states, 1)


def _call(fn, x, **kw):
    return fn(x.q, x.k, x.v, g=x.g, beta=x.beta, initial_state=x.initial_state, output_final_state=True,
              cu_seqlens=x.cu_seqlens, **kw)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("r,varlen", [(3, False), (2, True), (1, False)])
def test_value_head_j_reads_key_head_j_div_r(mode, r, varlen):
    c, x = _inputs(r, varlen=varlen)
    o, ht = _call(MODES[mode], x)
    o_ref, ht_ref = _per_value_head(x, r)
    assert o.shape == (1, c.T, c.HV, c.V) and ht.shape == (c.num_states, c.HV, c.K, c.V)
    assert (o.double() - o_ref).abs().max() < 1e-4 * o_ref.abs().max()
    assert (ht.double() - ht_ref).abs().max() < 1e-4 * ht_ref.abs().max()
    if r > 1:  # the mapping matters: key head j mod H (repeat instead of repeat_interleave) differs
        wrong = x.q[:, :, [j % c.H for j in range(c.HV)]]
        assert not torch.allclose(wrong, x.q[:, :, [j // r for j in range(c.HV)]])


def test_chunk_gradients_sum_over_the_value_heads_of_a_key_head():
    c, x = _inputs(3, T=40, K=16, V=16)
    leaves = {n: t.detach().clone().requires_grad_() for n, t in
              dict(q=x.q, k=x.k, v=x.v, g=x.g, beta=x.beta, h0=x.initial_state).items()}
    gen = torch.Generator().manual_seed(0)
    do = torch.randn(1, c.T, c.HV, c.V, generator=gen, dtype=torch.float64).to(DEVICE)
    dht = torch.randn(1, c.HV, c.K, c.V, generator=gen, dtype=torch.float64).to(DEVICE)

    def grads(o, ht, ls):
        return torch.autograd.grad((o.double() * do).sum() + (ht.double() * dht).sum(), list(ls.values()))

    o, ht = gated_delta_chunk(leaves["q"], leaves["k"], leaves["v"], g=leaves["g"], beta=leaves["beta"],
                              initial_state=leaves["h0"], output_final_state=True, chunk_size=16)
    got = grads(o, ht, leaves)
    ref_leaves = {n: t.detach().double().requires_grad_() for n, t in leaves.items()}
    o64, ht64 = reference(gated_delta_step, *(ref_leaves[n] for n in ("q", "k", "v", "g", "beta")),
                          initial_state=ref_leaves["h0"], output_final_state=True)
    want = grads(o64, ht64, ref_leaves)
    for name, a, b in zip(leaves, got, want):
        assert a.shape == b.shape, name
        assert (a.double() - b).abs().max() <= 2e-4 * b.abs().max(), name


@pytest.mark.parametrize("mode", list(MODES))
def test_qk_l2norm_in_kernel_uses_eps_inside_the_root(mode):
    c, x = _inputs(2, qk_l2norm=True, qk_scale=1e-3)  # |x|^2 ~ 1.6e-5: eps 1e-6 moves the norm by 3%
    o, ht = _call(MODES[mode], x, use_qk_l2norm_in_kernel=True)
    norm = lambda t: (t.double() / torch.sqrt(t.double().square().sum(-1, keepdim=True) + 1e-6)).float()  # noqa: E731
    o_ref, ht_ref = _call(MODES[mode], _with(x, q=norm(x.q), k=norm(x.k)))
    assert (o - o_ref).abs().max() < 1e-5 * o_ref.abs().max()
    assert (ht - ht_ref).abs().max() < 1e-5 * ht_ref.abs().max()
    eps_outside = lambda t: t / (t.norm(dim=-1, keepdim=True) + 1e-6)  # noqa: E731
    o_bad, _ = _call(MODES[mode], _with(x, q=eps_outside(x.q), k=eps_outside(x.k)))
    assert (o_bad - o_ref).abs().max() > 1e-2 * o_ref.abs().max()


def _with(x, **changes):
    import dataclasses

    return dataclasses.replace(x, **changes)


def test_l2norm_kernel_backward_matches_autograd():
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 5, 2, 60, generator=gen) * 1e-2).to(DEVICE)
    dy = torch.randn(3, 5, 2, 60, generator=gen).to(DEVICE)
    a = x.clone().requires_grad_()
    (dx,) = torch.autograd.grad((l2norm(a) * dy).sum(), [a])
    b = x.double().requires_grad_()
    (dx64,) = torch.autograd.grad((b / torch.sqrt(b.square().sum(-1, keepdim=True) + 1e-6) * dy.double()).sum(), [b])
    assert (dx.double() - dx64).abs().max() < 1e-5 * dx64.abs().max()


def test_value_heads_must_be_a_multiple_of_key_heads():
    _, x = _inputs(2, H=2)
    with pytest.raises(ValueError, match="multiple"):
        gated_delta_chunk(x.q, x.k, x.v[:, :, :3], g=x.g[:, :, :3], beta=x.beta[:, :, :3])
