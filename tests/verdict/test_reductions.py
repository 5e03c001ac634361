"""fla_check.verdict.reductions: stacked reductions give each output's own values (maxima and
counts exactly, sums to float64 rounding) in a number of ops that does not grow with the group."""
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fla_check.verdict import reductions
from fla_check.verdict.reductions import ReferenceTerms, difference_terms, output_terms


class _CountOps(TorchDispatchMode):
    """Counts the aten ops that reach the backend and are not views (a kernel launch each on a GPU)."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not func.is_view
        return func(*args, **(kwargs or {}))


def _pairs(n, seed=0, shape=(1, 12, 2, 8)):
    """`n` (kernel fp32, reference float64) pairs, every third sharing the previous reference (the
    modes of one case); from six on, a NaN in one kernel, a NaN and an inf in one reference, one
    reference a transposed view."""
    gen = torch.Generator().manual_seed(seed)
    pairs, ref = [], None
    for i in range(n):
        if ref is None or i % 3:
            ref = torch.randn(shape, generator=gen, dtype=torch.float64)
        kernel = (ref + 1e-3 * torch.randn(shape, generator=gen, dtype=torch.float64)).float()
        pairs.append((kernel, ref))
    if n < 6:
        return pairs
    pairs[1][0][0, 3, 1, 2] = math.nan
    bad = pairs[4][1].clone()
    bad[0, 5, 0, 1], bad[0, 6, 1, 0] = math.nan, -math.inf
    pairs[4] = (pairs[4][0], bad)
    pairs[5] = (pairs[5][0].transpose(1, 2).contiguous().transpose(1, 2), pairs[5][1].transpose(1, 2).contiguous()
                .transpose(1, 2))
    return pairs


def _values(terms):
    return [[float(t) for t in row] for row in terms]


def _close(got, want):
    for row_got, row_want in zip(got, want, strict=True):
        assert len(row_got) == len(row_want)
        for j, (x, y) in enumerate(zip(row_got, row_want)):
            if j in (0, 1) or not math.isfinite(y):  # counts; non-finite values
                assert x == y or (math.isnan(x) and math.isnan(y)), (j, x, y)
            else:
                assert math.isclose(x, y, rel_tol=1e-12, abs_tol=0), (j, x, y)


def test_stacked_output_terms_are_each_outputs_own():
    pairs = _pairs(9)
    stacked = _values(output_terms(pairs, ReferenceTerms()))
    alone = [_values(output_terms([p], ReferenceTerms()))[0] for p in pairs]
    _close(stacked, alone)
    assert stacked[1][0] == 1 and stacked[4][1] == pairs[4][1].numel() - 2  # the kernel's NaN; the reference's two
    for j in (2, 5):  # maxima: exactly the output's own (NaN where it has one)
        assert all(a[j] == b[j] or math.isnan(a[j]) and math.isnan(b[j]) for a, b in zip(stacked, alone))


def test_groups_by_shape_and_dtype_and_cuts_large_groups(monkeypatch):
    pairs = _pairs(6) + [(k[:, :7].contiguous(), r[:, :7].contiguous()) for k, r in _pairs(4, seed=1)]
    pairs += [(k.half(), r) for k, r in _pairs(3, seed=2)] + [(torch.zeros(0), torch.zeros(0, dtype=torch.float64))]
    alone = [_values(output_terms([p], ReferenceTerms()))[0] for p in pairs]
    monkeypatch.setattr(reductions, "STACK_ELEMENTS", 2 * pairs[0][0].numel())  # groups of two at most
    got = _values(output_terms(pairs, ReferenceTerms()))
    assert got[-1] == [] and alone[-1] == []
    _close(got, alone)


def test_stacked_references_are_kept_for_the_judges_later_reductions():
    pairs = _pairs(6)
    refs = ReferenceTerms()
    earlier = refs.rms(pairs[0][1])
    output_terms(pairs, refs)
    assert refs.rms(pairs[0][1]) is earlier  # what was cached stays
    for _, ref in pairs[1:]:
        fresh = ReferenceTerms()
        assert torch.equal(refs.finite(ref), fresh.finite(ref))
        assert int(refs.finite_count(ref)) == int(fresh.finite_count(ref))
        _close([[float(refs.max_abs(ref)), float(refs.rms(ref))]], [[float(fresh.max_abs(ref)), float(fresh.rms(ref))]])


def test_stacked_difference_terms_are_each_pairs_own():
    pairs = _pairs(7)
    items = [(k, (k.double() + 1e-4 * r).float(), r) for k, r in pairs]
    stacked = _values(difference_terms(items, ReferenceTerms()))
    alone = [_values(difference_terms([item], ReferenceTerms()))[0] for item in items]
    _close(stacked, alone)
    assert [row[0] for row in stacked] == [0, 1, 0, 0, 2, 0, 0]  # a's NaN; the NaN and inf b took from its reference


@pytest.mark.parametrize("reduce", ["outputs", "differences"])
def test_a_groups_ops_do_not_grow_with_its_size(reduce):
    def ops(n):
        pairs, refs, counter = _pairs(n), ReferenceTerms(), _CountOps()
        if reduce == "differences":
            output_terms(pairs, refs)  # as the judge does first: the references' terms are kept
        with counter:
            if reduce == "outputs":
                output_terms(pairs, refs)
            else:
                difference_terms([(k, k, r) for k, r in pairs], refs)
        return counter.ops

    assert ops(24) == ops(6) < 2 * ops(1)
