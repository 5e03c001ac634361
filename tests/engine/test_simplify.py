"""Localization-guided simplification: candidates and the greedy loop."""
from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Verdict
from fla_check.verdict.localize import Localization
from fla_check.engine.runner import ModeResult
from fla_check.engine.simplify import candidates, simplify


def _cfg(**kw):
    base = dict(op="gla", dtype="float32", B=2, T=40, H=2, K=64, V=32, gate_norm=0.1, initial_state=True,
                packing="mask", segments=((10, 5, 25), (1, 30, 9)), mask_fill="-0.1max", seed=99)
    base.update(kw)
    return CaseConfig(**base)


def _loc(b=1, t=33):
    return Localization(output="o", batch=b, head=1, t=t)


def test_first_candidates_cut_at_the_failure():
    cands = [c for c in candidates(_cfg(), _loc()) if c is not None]
    assert cands[0].T == 34 and cands[0].segments == ((10, 5, 19), (1, 30, 3))
    assert cands[1].B == 1 and cands[1].segments == ((1, 30, 9),)  # the failing row
    assert all(c != _cfg() for c in cands)
    merged = [c.segments for c in cands if c.segments != _cfg().segments and c.T == 40 and c.B == 2]
    assert ((15, 25), (1, 30, 9)) in merged and ((10, 5, 25), (31, 9)) in merged


def test_varlen_truncation_stays_valid():
    c = _cfg(B=1, packing="varlen", segments=((0, 12, 0, 28),), mask_fill=None)
    cut = next(candidates(c, _loc(b=0, t=15)))
    assert cut.T == 16 and cut.segments == ((0, 12, 0, 4),)


def test_simplify_reaches_the_minimal_masking_case():
    """A stand-in for the chunk masking bug: fails when a reset is followed by another step."""

    def fails(c):
        for b in range(c.B):
            starts = c.segment_starts(b)
            if c.packing == "mask" and any(0 < s < c.T - 1 for s in starts):
                t = min(s for s in starts if 0 < s < c.T - 1) + 1
                return ModeResult("chunk", Verdict.DIVERGED, localization=_loc(b, t))
        return None

    start = _cfg()
    out = simplify(start, fails(start), fails, budget=200)
    assert (out.B, out.T, out.H, out.K, out.V, out.seed, out.initial_state) == (1, 3, 1, 16, 16, 0, False)
    assert out.segments == ((1, 2),) and out.gate_norm == 1.0


def test_simplify_respects_the_budget():
    calls = []

    def fails(c):
        calls.append(c)
        return None

    assert simplify(_cfg(), ModeResult("chunk", Verdict.DIVERGED, localization=_loc()), fails, budget=3) == _cfg()
    assert len(calls) == 3
