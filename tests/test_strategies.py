"""The configuration space: valid draws, the corners it must reach, simple minimal examples."""
import dataclasses
import math

import pytest
from hypothesis import HealthCheck, find, given, settings

from fla_check.cases import SYMBOLIC_FILLS, CaseConfig
from fla_check.strategies import (HEAD_DIMS, SpaceOptions, case_configs, chunked_length, covering_configs,
                                  digits_at_risk, seq_lens, strata)

# derandomize: the same draws on every run and machine (no test depends on an unseeded draw)
FAST = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
FIND = settings(max_examples=3000, database=None, deadline=None, derandomize=True)


@FAST
@given(case_configs(SpaceOptions(op="gla", dtypes=("fp32", "fp16"), max_seq_len=70)))
def test_draws_are_valid_and_bounded(c):
    assert 1 <= c.T <= 70 and c.K in HEAD_DIMS and c.V in HEAD_DIMS and c.dtype in ("float32", "float16")
    assert c.B <= 2 and c.H <= 2
    if c.packing == "mask":
        assert c.mask_fill not in SYMBOLIC_FILLS and -1e4 <= c.mask_fill <= -5
        assert all(sum(row) == c.T for row in c.segments)


@FAST
@given(case_configs(SpaceOptions(op="delta", max_seq_len=40)))
def test_delta_never_mask_packed(c):
    assert c.packing in ("none", "varlen") and c.mask_fill is None


@FAST
@given(case_configs(SpaceOptions(op="simple_gla", max_seq_len=40)))
def test_simple_gla_draws_no_beta_range(c):
    assert c.beta_max == 1.0


def test_simple_gla_is_mask_packed_through_its_gate():
    c = find(case_configs(SpaceOptions(op="simple_gla", max_seq_len=40)), lambda c: c.packing == "mask",
             settings=FIND)
    assert c.mask_fill is not None


@FAST
@given(case_configs(SpaceOptions(op="gated_delta", max_seq_len=40, mask_fills=("-0.1max", "-inf"))))
def test_requested_fills_force_mask_packing(c):
    assert c.packing == "mask" and c.mask_fill in ("-0.1max", "-inf")


@pytest.mark.parametrize("name, cond", [
    ("T on a 64 multiple", lambda c: c.T == 64),
    ("T just above a 64 multiple", lambda c: c.T == 65),
    ("several 64-chunks", lambda c: c.T > 128),
    ("K = 60", lambda c: c.K == 60),
    ("V = 100", lambda c: c.V == 100),
    ("reset on a 16-chunk boundary", lambda c: c.packing == "mask" and any(
        s % 16 == 0 and s > 0 for s in c.segment_starts(0))),
    ("reset mid-chunk", lambda c: c.packing == "mask" and any(s % 16 == 7 for s in c.segment_starts(0))),
    ("several resets in one chunk", lambda c: c.packing == "mask" and len(
        [s for s in c.segment_starts(0) if 0 < s < 16]) >= 3),
    ("length-1 mask segment", lambda c: c.packing == "mask" and 1 in c.segments[0][1:]),
    ("empty varlen sequence", lambda c: c.varlen and 0 in c.segments[0]),
    ("length-1 varlen sequence", lambda c: c.varlen and 1 in c.segments[0]),
    ("strong decay", lambda c: c.gate_norm <= 0.01),
    ("weak decay", lambda c: c.gate_norm >= 10),
    ("zero gates", lambda c: c.zero_gate_frac == 1.0),
    ("near-zero decay", lambda c: c.near_zero_decay),
    ("initial state", lambda c: c.initial_state),
    ("fill -1e4", lambda c: c.mask_fill == -1e4),
])
def test_space_reaches(name, cond):
    find(case_configs(SpaceOptions(op="gla", max_seq_len=200)), cond, settings=FIND)


def test_beta_range_two_is_reachable():
    find(case_configs(SpaceOptions(op="gated_delta", max_seq_len=20)), lambda c: c.beta_max == 2.0,
         settings=FIND)


def test_extreme_fills_only_when_asked():
    opts = SpaceOptions(op="gla", max_seq_len=20, extreme_fills=True)
    find(case_configs(opts), lambda c: c.mask_fill == "-inf", settings=FIND)
    assert set(SYMBOLIC_FILLS) & set(SpaceOptions(op="gla").fills()) == set()


def test_minimal_examples_are_simple():
    opts = SpaceOptions(op="gla", dtypes=("fp32", "fp16"), max_seq_len=200)
    c = find(case_configs(opts), lambda c: True, settings=FIND)
    assert (c.T, c.B, c.H, c.K, c.V, c.packing, c.seed, c.dtype) == (1, 1, 1, 16, 16, "none", 0, "float32")
    m = find(case_configs(opts), lambda c: c.packing == "mask" and len(c.segments[0]) >= 2, settings=FIND)
    assert m.T == 2 and m.segments == ((1, 1),)


def test_bad_options():
    with pytest.raises(ValueError):
        SpaceOptions(op="gla", max_seq_len=0)
    with pytest.raises(ValueError):
        SpaceOptions(op="gla", dtypes=())
    with pytest.raises(ValueError):
        SpaceOptions(op="gla", max_seq_len=10, min_seq_len=11)


@pytest.mark.parametrize("lo, hi", [(1, 256), (2, 256), (65, 128), (129, 192), (193, 256), (5, 14), (1, 1), (2, 2)])
def test_seq_lens_stay_in_range(lo, hi):
    @FAST
    @given(seq_lens(hi, lo))
    def in_range(t):
        assert lo <= t <= hi

    in_range()


def test_strata_beyond_one_two_three_chunks_per_dtype_and_sub_chunks():
    opts = SpaceOptions(op="gla", dtypes=("fp32", "fp16", "bf16"), max_seq_len=256)
    got = [(s.dtype, s.min_len, s.max_len) for s in strata(opts)]
    chunks = [(d, lo, hi) for lo, hi in ((65, 128), (129, 192), (193, 256)) for d in opts.dtypes]
    assert got == chunks + [("float32", 17, 32), ("float16", 33, 48), ("bfloat16", 49, 64)]
    short = strata(SpaceOptions(op="gla", dtypes=("fp32",), max_seq_len=130))
    assert [(s.min_len, s.max_len) for s in short] == [(65, 128), (129, 130), (17, 32), (33, 48), (49, 64)]
    assert [(s.min_len, s.max_len) for s in strata(SpaceOptions(op="gla", max_seq_len=40))] == [(17, 32), (33, 40)]


@pytest.mark.parametrize("op", ["gla", "delta", "gated_delta", "kda"])
def test_covering_configs_one_per_stratum_repeatable(op):
    opts = SpaceOptions(op=op, dtypes=("fp32", "fp16", "bf16"), max_seq_len=256)
    cases = covering_configs(opts, seed=0)
    assert len(cases) == len(strata(opts)) == len(set(cases))
    for stratum, c in zip(strata(opts), cases):
        assert c.dtype == stratum.dtype and stratum.min_len <= chunked_length(c) <= c.T <= stratum.max_len
    assert covering_configs(opts, seed=0) == cases != covering_configs(opts, seed=1)
    assert len({(c.B, c.H, c.K, c.V, c.packing) for c in cases}) > 1  # random draws, not the minimal ones


def test_digits_at_risk_grow_with_decay_fills_and_length():
    base = CaseConfig(op="gla", dtype="float16", B=1, T=64, H=1, K=16, V=16, seed=0)
    strong = dataclasses.replace(base, gate_norm=0.01)
    filled = dataclasses.replace(base, packing="mask", segments=((30, 34),), mask_fill=-1e4)
    longer = dataclasses.replace(base, T=256)
    d = digits_at_risk
    assert d(strong) > d(base) + 1.5 and d(filled) > d(base) + 2 and d(longer) > d(base)
    delta = CaseConfig(op="delta", dtype="float32", B=1, T=64, H=1, K=16, V=16, seed=0)
    assert d(delta) > 0.5 * math.log10(64)  # the UT inverse's amplification counts


# -- chunk size and state layout --------------------------------------------------------------
def test_chunk_sizes_and_state_layouts_are_not_drawn_unless_asked():
    opts = SpaceOptions(op="gla", max_seq_len=20)
    assert opts.chunk_draws() == (None,) and opts.layout_draws() == ("kv",)
    plain = find(case_configs(opts), lambda c: c.T > 5, settings=FIND)
    same = find(case_configs(dataclasses.replace(opts, chunk_sizes=(None,), state_layouts=("kv",))),
                lambda c: c.T > 5, settings=FIND)
    assert plain == same and plain.chunk_size is None and not plain.state_v_first


@pytest.mark.parametrize("name, cond", [
    ("chunk 16", lambda c: c.chunk_size == 16), ("chunk 32", lambda c: c.chunk_size == 32),
    ("explicit chunk 64", lambda c: c.chunk_size == 64), ("v-first states", lambda c: c.state_v_first),
    ("v-first with h0 and chunk 16", lambda c: c.state_v_first and c.initial_state and c.chunk_size == 16),
])
def test_asked_chunk_sizes_and_layouts_are_all_reached(name, cond):
    opts = SpaceOptions(op="kda", max_seq_len=20, chunk_sizes=(None, 16, 32, 64), state_layouts=("kv", "vk"))
    find(case_configs(opts), cond, settings=FIND)


def test_chunk_and_layout_draws_shrink_to_the_defaults_and_respect_restrictions():
    opts = SpaceOptions(op="gla", max_seq_len=20, chunk_sizes=(None, 16), state_layouts=("kv", "vk"))
    c = find(case_configs(opts), lambda c: True, settings=FIND)
    assert c.chunk_size is None and not c.state_v_first
    only = SpaceOptions(op="gla", max_seq_len=20, chunk_sizes=(32,), state_layouts=("vk",))
    c = find(case_configs(only), lambda c: True, settings=FIND)
    assert c.chunk_size == 32 and c.state_v_first


@pytest.mark.parametrize("kw", [dict(chunk_sizes=(8,)), dict(chunk_sizes=()), dict(state_layouts=("kv", "xy"))])
def test_bad_chunk_sizes_and_layouts(kw):
    with pytest.raises(ValueError):
        SpaceOptions(op="gla", **kw)
