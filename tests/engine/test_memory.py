"""Memory-safety checks (engine/memory.py): poisoned allocations, guarded inputs, padded tokens
after cu_seqlens[-1]; each planted memory bug caught by them and missed by a plain call, the
honest built-ins quiet under them."""
import math

import pytest
import torch

from fla_check.cases import CaseConfig, build_case
from fla_check.commands.selftest.mutants import select
from fla_check.engine.memory import (MemoryChecks, describe_unwritten, fill_sentinel, finite_variants, is_sentinel,
                                     poisoned_allocations, with_slack)
from fla_check.engine.runner import check_case
from fla_check.verdict.compare import Verdict

PLAIN = MemoryChecks.off(zeroed=True)  # no guards, no padding, empty memory that happens to be zero


# -- units -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_sentinel_is_a_nan_that_arithmetic_does_not_make(dtype):
    t = fill_sentinel(torch.empty(5, dtype=dtype))
    assert torch.isnan(t).all() and is_sentinel(t).all()
    made = torch.tensor([math.nan, -math.nan, math.inf - math.inf, 0.0], dtype=dtype)
    assert not is_sentinel(made).any()
    assert not is_sentinel(torch.zeros(3, dtype=dtype)).any()


def test_poisoned_allocations_fill_empty_allocators_only():
    x = torch.ones(2, 3)
    with poisoned_allocations():
        made = [torch.empty(2, 3), torch.empty_like(x), x.new_empty(4), torch.empty_strided((2, 2), (1, 2))]
        zeros, ints = torch.zeros(3), torch.empty(3, dtype=torch.int64)
    assert all(is_sentinel(t).all() for t in made)
    assert (zeros == 0).all() and not is_sentinel(zeros).any()
    assert ints.dtype == torch.int64  # left as allocated
    with poisoned_allocations(value=0.0):
        assert (torch.empty(4) == 0).all()


def test_describe_unwritten_names_tokens_sequences_heads_and_states():
    mask = torch.zeros(1, 10, 2, 4, dtype=torch.bool)
    mask[0, 7:9, 1] = True
    text = describe_unwritten("o", mask, False, [0, 4, 10])
    assert text == "o: 8 of 80 elements never written, tokens 7-8 (sequences 1 of cu_seqlens [0, 4, 10]) (b 0, heads 1)"
    st = torch.zeros(3, 1, 2, 2, dtype=torch.bool)
    st[1] = True
    assert describe_unwritten("ht", st, True) == "ht: 4 of 12 elements never written, states 1"


def test_with_slack_pads_per_token_inputs_of_varlen_cases_only():
    cfg = CaseConfig(op="delta", dtype="float32", B=1, T=7, H=1, K=4, V=4, packing="varlen", segments=((3, 4),))
    inputs = build_case(cfg)
    padded = with_slack(inputs, 3, math.nan)
    for name in ("q", "k", "v", "beta"):
        x, y = getattr(inputs, name), getattr(padded, name)
        assert y.shape[1] == 10 and torch.equal(y[:, :7], x) and torch.isnan(y[:, 7:]).all()
    assert torch.equal(padded.cu_seqlens, inputs.cu_seqlens)
    flat = build_case(CaseConfig(op="delta", dtype="float32", B=2, T=7, H=1, K=4, V=4))
    assert with_slack(flat, 3, math.nan) is flat
    whats = [w for w, _ in finite_variants(MemoryChecks(), varlen=True)]
    assert whats[0].startswith("the 3 padded tokens") and whats[1].startswith("memory past the ends")
    assert [w for w, _ in finite_variants(MemoryChecks(), varlen=False)] == [whats[1]]


# -- planted memory bugs: caught by the checks, missed by a plain call -------------------------
def _verdict(mutant_id, config, memory=None, **kw):
    (mutant,) = select(ids=[mutant_id])
    (spec,) = mutant.mode_specs()
    result = check_case(mutant.op, [spec], config, memory=memory, **kw)
    (mode,) = result.modes.values()
    return mode


def _gla(**kw):
    return CaseConfig(**{**dict(op="gla", dtype="float32", B=1, H=1, K=16, V=16, seed=1), **kw})


def test_unwritten_tail_is_named_by_the_poison():
    cfg = _gla(T=70)  # the last 64-chunk holds tokens 64..69
    caught = _verdict("gla.chunk.unwritten-tail", cfg)
    assert caught.verdict is Verdict.UNWRITTEN
    assert caught.reason == "o: 96 of 1120 elements never written, tokens 64-69 (b 0, heads 0)"
    plain = _verdict("gla.chunk.unwritten-tail", cfg, PLAIN)  # zeros there: some error, not its cause
    assert plain.verdict is Verdict.DIVERGED and "never written" not in plain.reason
    assert _verdict("gla.chunk.unwritten-tail", _gla(T=64)).verdict is Verdict.OK  # T % 64 == 0: no partial chunk


def test_unwritten_final_state_of_an_empty_sequence_passes_on_zeroed_memory():
    cfg = _gla(T=9, packing="varlen", segments=((4, 0, 5),))
    caught = _verdict("gla.recurrent.unwritten-state", cfg)
    assert caught.verdict is Verdict.UNWRITTEN and caught.reason == "ht: 256 of 768 elements never written, states 1"
    assert _verdict("gla.recurrent.unwritten-state", cfg, PLAIN).verdict is Verdict.OK


@pytest.mark.parametrize("K", [60, 100])
def test_one_element_overread_on_the_last_row_is_caught_by_the_guards(K):
    cfg = _gla(T=9, K=K, V=8)
    caught = _verdict("gla.recurrent.overread-last-row", cfg)
    assert caught.verdict is Verdict.OVERREAD
    assert caught.reason.startswith("reads memory past the ends of its input tensors") and "t=8" in caught.reason
    # invariance off: the layout check's NaN-padded slices of k, g can see the same over-read
    assert _verdict("gla.recurrent.overread-last-row", cfg, PLAIN, invariance="none").verdict is Verdict.OK
    assert _verdict("gla.recurrent.overread-last-row", _gla(T=9, K=64, V=8)).verdict is Verdict.OK  # K == BK


def test_reading_past_cu_seqlens_is_caught_by_the_padded_tokens():
    cfg = _gla(T=9, packing="varlen", segments=((4, 5),))
    caught = _verdict("gla.recurrent.past-cu-seqlens", cfg)
    assert caught.verdict is Verdict.OVERREAD and caught.reason.startswith("reads the 3 padded tokens after cu_seqlens[-1]")
    assert _verdict("gla.recurrent.past-cu-seqlens", cfg, PLAIN).verdict is Verdict.OK
    zero_padding = MemoryChecks(slack_fill=0.0)  # what users pad with: the bug stays silent
    assert _verdict("gla.recurrent.past-cu-seqlens", cfg, zero_padding).verdict is Verdict.OK


# -- honest built-ins: quiet under every check ---------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_honest_builtins_are_quiet_under_the_checks(dtype):
    cfg = CaseConfig(op="gla", dtype=dtype, B=1, T=70, H=1, K=60, V=20, packing="varlen",
                     segments=((0, 30, 1, 39),), initial_state=True, seed=3)
    result = check_case("gla", ["recurrent", "chunk"], cfg)
    for mode in result.modes.values():
        assert not mode.verdict.failed, (mode.mode, mode.verdict, mode.reason)
    delta = CaseConfig(op="delta", dtype=dtype, B=2, T=67, H=1, K=100, V=16, seed=4)
    for mode in check_case("delta", ["recurrent", "chunk"], delta).modes.values():
        assert not mode.verdict.failed, (mode.mode, mode.verdict, mode.reason)


def test_honest_backward_is_quiet_with_padded_tokens():
    cfg = CaseConfig(op="gla", dtype="float32", B=1, T=21, H=1, K=60, V=16, packing="varlen",
                     segments=((17, 4),), initial_state=True, seed=5)
    result = check_case("gla", ["recurrent", "chunk"], cfg, backward=True)
    for mode in result.modes.values():
        assert mode.verdict is Verdict.OK, (mode.mode, mode.verdict, mode.reason)
