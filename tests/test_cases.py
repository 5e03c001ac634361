"""CaseConfig validation and JSON round trip; build_case determinism, fills and packing."""
import json
import math

import pytest
import torch

from fla_check.cases import (GUARD_STEPS, CaseConfig, CaseError, build_case, canonical_fill, dtype_name, guarded,
                             resolve_fill)


def _cfg(**kw):
    base = dict(op="gla", dtype="float32", B=1, T=12, H=2, K=16, V=8, seed=3)
    base.update(kw)
    return CaseConfig(**base)


def test_json_round_trip_through_text():
    c = _cfg(packing="mask", segments=((5, 1, 6),), mask_fill="-inf", gate_norm=0.01,
             zero_gate_frac=0.5, near_zero_decay=True, initial_state=True)
    text = json.dumps(c.to_json(), allow_nan=False)
    back = CaseConfig.from_json(text)
    assert back == c and hash(back) == hash(c)


def test_from_json_rejects_unknown_fields():
    with pytest.raises(CaseError, match="unknown case fields: bogus"):
        CaseConfig.from_json({**_cfg().to_json(), "bogus": 1})


@pytest.mark.parametrize("kw, msg", [
    (dict(T=0), "T must be"),
    (dict(packing="mask", segments=((5, 7),)), "needs a mask_fill"),
    (dict(packing="mask", segments=((5, 6),), mask_fill=-20), "sum to 11"),
    (dict(op="delta", packing="mask", segments=((12,),), mask_fill=-20), "no gate"),
    (dict(packing="varlen", B=2, segments=((12,), (12,))), "B == 1"),
    (dict(segments=((12,),)), "packing is 'none'"),
    (dict(dtype="fp8"), "unknown dtype"),
])
def test_invalid_configs_are_rejected(kw, msg):
    with pytest.raises(CaseError, match=msg):
        _cfg(**kw)


def test_dtype_aliases():
    assert dtype_name("bf16") == "bfloat16" and dtype_name(torch.float16) == "float16"
    assert _cfg(dtype="fp16").dtype == "float16"


@pytest.mark.parametrize("text, want", [("-0.1max", "-0.1max"), ("-0.1*finfo.max", "-0.1max"),
                                        ("-max", "-max"), ("-inf", "-inf"), ("-20", -20.0),
                                        (float("-inf"), "-inf"), (-1e4, -1e4)])
def test_canonical_fill(text, want):
    assert canonical_fill(text) == want


@pytest.mark.parametrize("bad", ["nan", "inf", "-0.3max", "abc"])
def test_bad_fills(bad):
    with pytest.raises(CaseError):
        canonical_fill(bad)


def test_resolve_fill_is_per_dtype():
    assert resolve_fill("-0.1max", torch.float16) == pytest.approx(-6550.4)
    assert resolve_fill("-max", torch.float32) == -torch.finfo(torch.float32).max
    assert resolve_fill("-inf", torch.bfloat16) == -math.inf
    assert resolve_fill(-20, torch.float32) == -20.0


def test_build_case_is_deterministic_and_seed_sensitive():
    a, b = build_case(_cfg()), build_case(_cfg())
    c = build_case(_cfg(seed=4))
    assert torch.equal(a.q, b.q) and torch.equal(a.g, b.g)
    assert not torch.equal(a.q, c.q)


def test_gla_inputs_shapes_and_gate():
    x = build_case(_cfg(dtype="float16", initial_state=True))
    assert x.q.shape == (1, 12, 2, 16) and x.v.shape == (1, 12, 2, 8) and x.g.shape == (1, 12, 2, 16)
    assert x.q.dtype == torch.float16 and x.beta is None
    assert x.initial_state.dtype == torch.float32 and x.initial_state.shape == (1, 2, 16, 8)
    assert bool((x.g <= 0).all())


def test_delta_keys_are_l2_normalised_and_beta_in_range():
    x = build_case(_cfg(op="delta", beta_max=2.0))
    assert torch.allclose(x.k.norm(dim=-1), torch.ones(1, 12, 2))
    assert x.g is None and 0 <= float(x.beta.min()) and float(x.beta.max()) <= 2.0
    assert float(x.beta.max()) > 1.0


def test_gate_regimes():
    strong = build_case(_cfg(gate_norm=0.01)).g
    weak = build_case(_cfg(near_zero_decay=True)).g
    zero = build_case(_cfg(zero_gate_frac=1.0)).g
    assert float(strong.mean()) < -20 and -1e-2 < float(weak.mean()) < 0 and bool((zero == 0).all())


def test_in_kernel_gate_parameters_are_drawn_as_models_initialize_them():
    """Gated DeltaNet: A = U(0, 16] and per head fla's dt_bias (softplus^-1 of dt in [1e-3, 0.1]) or
    Qwen3-Next / Qwen3.5's 1.0, both seen over a few seeds; KDA keeps fla's tests' A = U(1, 16)
    and the fla dt_bias per key channel."""
    A, dt = [], []
    for seed in range(6):
        x = build_case(_cfg(op="gated_delta", H=4, gate_in_kernel=True, seed=seed))
        A.append(x.A_log.exp())
        dt.append(x.dt_bias)
    A, dt = torch.cat(A), torch.cat(dt)
    assert bool(((A > 0) & (A <= 16)).all()) and float(A.min()) < 1.0
    qwen = dt == 1.0
    fla = torch.nn.functional.softplus(dt[~qwen])
    assert 0 < int(qwen.sum()) < len(dt) and bool(((fla > 0.99e-3) & (fla < 0.101)).all())
    kda = build_case(_cfg(op="kda", H=4, gate_in_kernel=True))
    assert bool((kda.A_log.exp() >= 1).all()) and not bool((kda.dt_bias == 1.0).any())


def test_mask_fill_applied_at_segment_starts_only():
    c = _cfg(op="gated_delta", B=2, packing="mask", segments=((5, 1, 6), (12,)), mask_fill="-0.1max")
    x = build_case(c)
    fill = -0.1 * torch.finfo(torch.float32).max
    assert x.g.shape == (2, 12, 2)
    assert torch.equal(x.reset_mask[0].nonzero().flatten(), torch.tensor([5, 6]))
    assert not bool(x.reset_mask[1].any())
    assert bool((x.g[0, [5, 6]] == fill).all()) and bool((x.g[0, [0, 4, 7]] > -1e3).all())
    assert c.segment_starts(0) == [0, 5, 6]


def test_simple_gla_gate_is_per_head_filled_at_resets_and_no_beta():
    c = _cfg(op="simple_gla", B=1, packing="mask", segments=((5, 7),), mask_fill=-20.0)
    x = build_case(c)
    assert x.g.shape == (1, 12, 2) and x.beta is None and bool((x.g <= 0).all())
    assert bool((x.g[0, 5] == -20.0).all()) and bool((x.g[0, [0, 4, 6]] > -20.0).all())


def test_kda_gate_is_per_key_channel_with_beta_and_filled_on_every_channel():
    c = _cfg(op="kda", packing="mask", segments=((5, 7),), mask_fill=-20, beta_max=2.0)
    x = build_case(c)
    assert x.g.shape == (1, 12, 2, 16) and x.beta.shape == (1, 12, 2)
    assert bool((x.g[0, 5] == -20).all()) and bool((x.g[0, [0, 4, 6]] > -20).all())
    assert float(x.beta.max()) <= 2.0 and torch.allclose(x.k.norm(dim=-1), torch.ones(1, 12, 2))
    assert "n1" in c.short()


def test_varlen_cu_seqlens_with_empty_and_length_one_sequences():
    c = _cfg(packing="varlen", segments=((0, 1, 11),), initial_state=True)
    x = build_case(c)
    assert x.cu_seqlens.tolist() == [0, 0, 1, 12] and x.cu_seqlens.dtype == torch.int64
    assert x.initial_state.shape[0] == 3 and c.num_states == 3 and c.max_segment_len() == 11


def test_describe_segments():
    c = _cfg(packing="mask", segments=((5, 7),), mask_fill=-20)
    assert c.describe_segments() == "reset mask; row 0: starts [0, 5] lengths [5, 7]"
    assert "mask[[5, 7]]" in c.short() and "fill=-20.0" in c.short()


def test_guarded_copy_sits_between_nan_guards():
    x = torch.randn(1, 3, 2, 5, generator=torch.Generator().manual_seed(0))
    g = guarded(x)
    assert torch.equal(g, x) and g.is_contiguous() and g.data_ptr() != x.data_ptr()
    whole = torch.empty(0).set_(g.untyped_storage())  # the buffer the kernel pointer lives in
    pad = GUARD_STEPS * 2 * 5  # GUARD_STEPS time steps of H*D elements on each side
    assert whole.numel() == x.numel() + 2 * pad
    assert whole[:pad].isnan().all() and whole[pad + x.numel():].isnan().all()
    assert guarded(None) is None
    ints = torch.arange(3)
    assert torch.equal(guarded(ints), ints)


def test_mode_inputs_are_guarded_copies():
    inputs = build_case(CaseConfig(op="gla", dtype="float32", B=1, T=4, H=1, K=3, V=2, initial_state=True))
    q, k, v = inputs.mode_args()
    kw = inputs.mode_kwargs()
    for got, want in ((q, inputs.q), (k, inputs.k), (v, inputs.v), (kw["g"], inputs.g),
                      (kw["initial_state"], inputs.initial_state)):
        assert torch.equal(got, want) and got.data_ptr() != want.data_ptr()
        assert got.untyped_storage().nbytes() > want.untyped_storage().nbytes()


# -- chunk size and state layout ----------------------------------------------------------
@pytest.mark.parametrize("kw, msg", [
    (dict(chunk_size=8), "chunk_size must be one of 16, 32, 64"),
    (dict(chunk_size=128), "chunk_size must be one of"),
    (dict(chunk_size=True), "chunk_size must be one of"),
    (dict(state_v_first=1), "state_v_first must be true or false"),
])
def test_chunk_size_and_state_layout_are_validated(kw, msg):
    with pytest.raises(CaseError, match=msg):
        _cfg(**kw)


def test_chunk_size_and_state_layout_round_trip_and_stay_out_of_default_json():
    assert "chunk_size" not in _cfg().to_json() and "state_v_first" not in _cfg().to_json()
    c = _cfg(chunk_size=16, state_v_first=True, initial_state=True)
    data = json.loads(json.dumps(c.to_json()))
    assert data["chunk_size"] == 16 and data["state_v_first"] is True
    assert CaseConfig.from_json(data) == c and c.state_layout == "vk"
    assert "-chunk16-vk-" in c.short() and "chunk" not in _cfg().short()


def test_chunk_size_goes_to_the_mode_by_keyword():
    assert "chunk_size" not in build_case(_cfg()).option_kwargs()
    assert build_case(_cfg(chunk_size=32)).mode_kwargs()["chunk_size"] == 32


def _v_first_spy(seen: dict):
    def mode(q, k, v, *, initial_state=None, state_v_first=False, **kw):
        seen.update(h0=initial_state, v_first=state_v_first)
        N, H, V, K = initial_state.shape
        ht = (initial_state * 2).contiguous()  # a v-first final state: [N, H, V, K]
        return torch.zeros_like(v), ht
    return mode


def test_state_layout_is_identity_for_kv_cases():
    inputs = build_case(_cfg(initial_state=True))
    fn = _v_first_spy({})
    assert inputs.state_layout(fn) is fn


def test_state_layout_hands_h0_over_as_vk_and_reads_ht_back_transposed():
    inputs = build_case(_cfg(initial_state=True, state_v_first=True))  # K=16, V=8
    seen: dict = {}
    o, ht = inputs.state_layout(_v_first_spy(seen))(*inputs.mode_args(), **inputs.mode_kwargs())
    h0 = inputs.initial_state
    assert seen["v_first"] is True and tuple(seen["h0"].shape) == (1, 2, 8, 16)
    assert torch.equal(seen["h0"], h0.transpose(-1, -2)) and seen["h0"].is_contiguous()
    whole = torch.empty(0).set_(seen["h0"].untyped_storage())  # the transposed copy is NaN-guarded too
    assert whole.isnan().sum() == whole.numel() - h0.numel()
    assert tuple(ht.shape) == tuple(h0.shape) and torch.equal(ht, 2 * h0)


def test_state_layout_passes_gradients_back_in_kv_layout():
    inputs = build_case(_cfg(initial_state=True, state_v_first=True))
    h0 = inputs.initial_state.clone().requires_grad_()
    weights = torch.randn(h0.shape)
    _, ht = inputs.state_layout(_v_first_spy({}))(inputs.q, inputs.k, inputs.v, initial_state=h0)
    (ht * weights).sum().backward()
    assert torch.equal(h0.grad, 2 * weights)  # dh0 = d(2 h0 . w)/dh0, [K, V] like h0


def test_state_layout_leaves_malformed_returns_to_the_runner():
    inputs = build_case(_cfg(state_v_first=True))
    assert inputs.state_layout(lambda *a, **kw: "nonsense")(inputs.q, inputs.k, inputs.v) == "nonsense"
