"""fla_check.references.batch: one step loop for many cases gives each case what its own float64
reference gives (every op, dtype, packing, initial state, GVA, head dims and in-kernel option of the
covering phase's cases, mixed in one batch), and refuses cases of another step."""
import dataclasses

import pytest
import torch

from fla_check.cases import build_case
from fla_check.ops import get_op
from fla_check.references.batch import RowCase, batch_key, reference_batch
from fla_check.references.recurrence import reference
from fla_check.strategies import SpaceOptions, covering_configs

OPS = ("gla", "simple_gla", "delta", "gated_delta", "kda")


def _one_shape(op: str, seed: int, max_seq_len: int = 40, dtypes=("float32", "bfloat16")) -> list:
    """The covering phase's cases of `op` (every packing, dtype, initial state, option drawn), all
    given the head counts and dims of the first: cases one batch can hold."""
    configs = covering_configs(SpaceOptions(op=op, dtypes=dtypes, max_seq_len=max_seq_len), seed=seed)
    base = configs[0]
    return [dataclasses.replace(c, H=base.H, K=base.K, V=base.V, value_ratio=base.value_ratio) for c in configs]


def _row_case(config) -> RowCase:
    x = build_case(config)
    return RowCase(x.tensors(), x.initial_state, x.cu_seqlens, x.prepare)


def _alone(step, case: RowCase):
    return reference(step, *case.tensors, initial_state=case.initial_state, output_final_state=True,
                     cu_seqlens=case.cu_seqlens, prepare=case.prepare)


@pytest.mark.parametrize("op", OPS)
def test_each_case_of_a_batch_gets_its_own_reference(op):
    """Every covering case of the op (head counts, head dims, packings, dtypes, h0, options all
    mixed) in one batch, and a second batch of cases of one shape."""
    step = get_op(op).step
    for configs in (covering_configs(SpaceOptions(op=op, dtypes=("float32", "bfloat16"), max_seq_len=40), seed=3),
                    _one_shape(op, seed=4)):
        cases = [_row_case(c) for c in configs]
        assert len({batch_key(step, c) for c in cases}) == 1
        for config, case, (o, ht) in zip(configs, cases, reference_batch(step, cases)):
            o_ref, ht_ref = _alone(step, case)
            assert o.dtype == torch.float64 and o.shape == o_ref.shape and ht.shape == ht_ref.shape, config.short()
            torch.testing.assert_close(o, o_ref, rtol=1e-12, atol=1e-12, msg=config.short)
            torch.testing.assert_close(ht, ht_ref, rtol=1e-12, atol=1e-12, msg=config.short)
    shapes = {(c.HV, c.K, c.V) for c in covering_configs(
        SpaceOptions(op=op, dtypes=("float32", "bfloat16"), max_seq_len=40), seed=3)}
    assert len(shapes) > 1  # the first batch pads head dims and mixes head counts


def test_a_wrong_state_in_one_case_shows_in_that_case_only():
    """The batch keeps cases apart: one case's initial state changed moves its outputs alone."""
    step = get_op("gated_delta").step
    cases = [_row_case(c) for c in _one_shape("gated_delta", seed=1)][:3]
    assert len({batch_key(step, c) for c in cases}) == 1
    before = reference_batch(step, cases)
    first = cases[0]
    h0 = first.initial_state
    bumped = RowCase(first.tensors, (torch.zeros_like(before[0][1]) if h0 is None else h0) * 1.02 + 0.01,
                     first.cu_seqlens, first.prepare)
    after = reference_batch(step, [bumped] + cases[1:])
    assert not torch.equal(after[0][0], before[0][0])  # its outputs (its final state may have decayed away)
    for (o, ht), (o2, ht2) in zip(before[1:], after[1:]):
        assert torch.equal(o, o2) and torch.equal(ht, ht2)


def test_cases_of_another_step_or_inputs_are_refused():
    gla, delta = (covering_configs(SpaceOptions(op=op, max_seq_len=40), seed=0)[0] for op in ("gla", "delta"))
    with pytest.raises(ValueError, match="one step"):
        reference_batch(get_op("gla").step, [_row_case(gla), _row_case(delta)])
    assert reference_batch(get_op("gla").step, []) == []
