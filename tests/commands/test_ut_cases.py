"""Chunks of `fla-check ut-transform`: regimes, seeded inputs, JSON, validation."""
import pytest
import torch

from fla_check.commands.ut_transform.cases import UTCase, build_inputs, regimes


def test_regimes_cover_beta_keys_and_decay():
    assert len(regimes(False)) == 6 and len(regimes(True)) == 12
    assert {r.decay for r in regimes(False)} == {"none"}
    assert {r.decay for r in regimes(True)} == {"moderate", "strong"}
    assert {r.beta_max for r in regimes(True)} == {1.0, 2.0}
    assert {r.keys for r in regimes(True)} == {"normalized", "near_dup", "unnormalized"}


def _case(**kw):
    base = dict(chunk_size=16, dtype="fp32", T=16, H=2, K=32, V=16, seed=3)
    return UTCase(**{**base, **kw})


def test_inputs_are_seeded_and_cast():
    a, b = build_inputs(_case()), build_inputs(_case())
    assert torch.equal(a.k, b.k) and torch.equal(a.v, b.v) and a.g is None
    assert not torch.equal(a.k, build_inputs(_case(seed=4)).k)
    x = build_inputs(_case(dtype="fp16", decay="moderate"))
    assert x.k.dtype == x.v.dtype == x.beta.dtype == x.g.dtype == torch.float16
    assert x.k.shape == (1, 16, 2, 32) and x.v.shape == (1, 16, 2, 16) and x.beta.shape == (1, 16, 2)


def test_key_regimes():
    norms = build_inputs(_case()).k.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    k = build_inputs(_case(keys="near_dup")).k[0]  # [T,H,K]
    cos = torch.einsum("thk,shk->hts", k, k)
    assert cos.min() > 0.99  # nearly parallel
    norms = build_inputs(_case(keys="unnormalized")).k.norm(dim=-1)
    assert norms.min() >= 0.25 - 1e-6 and norms.max() <= 2.0 + 1e-6 and norms.std() > 0.1


def test_beta_and_decay_ranges():
    x1, x2 = build_inputs(_case(beta_max=1.0, T=16)), build_inputs(_case(beta_max=2.0, T=16))
    assert 0 <= x1.beta.min() and x1.beta.max() <= 1 and x2.beta.max() > 1
    moderate = build_inputs(_case(decay="moderate")).g
    strong = build_inputs(_case(decay="strong")).g
    assert (moderate <= 0).all() and (strong <= 0).all() and strong.mean() < 5 * moderate.mean()


def test_json_round_trip_and_validation():
    c = _case(decay="strong", keys="near_dup", beta_max=2.0)
    assert UTCase.from_json(c.to_json()) == c and c.dtype == "float32" and c.gated
    with pytest.raises(ValueError, match="T must be"):
        _case(T=17)
    with pytest.raises(ValueError, match="chunk_size"):
        _case(chunk_size=8, T=4)
    with pytest.raises(ValueError, match="regime"):
        _case(keys="orthogonal")
