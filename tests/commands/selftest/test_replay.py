"""Replaying one recorded case (replay_mutant / replay_usage): the selftest's kill rule on a single
case -- a planted bug caught, an equivalent rewrite not, a rewrite that raises broken, and the
-0.1*finfo.max packing fill flagged in chunk while a moderate fill is not."""
import dataclasses

from fla_check.cases import CaseConfig
from fla_check.commands.selftest.engine import BROKEN, CAUGHT, ESCAPED, replay_mutant, replay_usage
from fla_check.commands.selftest.mutants import MUTANTS, USAGE_CASES
from tests.gla_recurrent_source import STORE_O, TIMES_ONE

SCALE = next(m for m in MUTANTS if m.id == "gla.recurrent.scale")
O_LATE = next(m for m in MUTANTS if m.id == "gla.chunk.o-late")
GLA_USAGE = next(c for c in USAGE_CASES if c.op == "gla")
ONE_STEP = CaseConfig(op="gla", dtype="float32", B=1, T=1, H=1, K=16, V=16, seed=0)


def test_a_planted_bug_is_caught_on_one_case():
    (r,) = replay_mutant(SCALE, ONE_STEP)
    assert (r.caught, r.status, r.examples, r.searched) == (True, CAUGHT, 1, 1)
    assert r.verdict == "DIVERGED" and r.shrunk_control == "OK" and r.killing == ONE_STEP.to_json()


def test_a_bug_the_case_cannot_show_is_not_caught():
    """o x1.02 from the second chunk on, on a one-chunk case: the mutant's output is exact."""
    config = dataclasses.replace(ONE_STEP, T=8)
    (r,) = replay_mutant(O_LATE, config)
    assert (r.caught, r.status, r.examples) == (False, ESCAPED, None) and r.shrunk_control == "OK"


def test_an_equivalent_rewrite_escapes_and_a_raising_one_is_broken():
    same = dataclasses.replace(SCALE, id="gla.recurrent.times-one", replacements=((STORE_O, TIMES_ONE),))
    (r,) = replay_mutant(same, ONE_STEP)
    assert (r.caught, r.status) == (False, ESCAPED)
    raising = dataclasses.replace(SCALE, id="gla.recurrent.not-compiling", replacements=(
        ("        b_o = tl.sum(b_h * b_q[:, None], 0)\n",
         "        b_o = tl.sum(b_h * b_q[:, None], 0) + name_that_is_not_defined\n"),))
    (r,) = replay_mutant(raising, ONE_STEP)
    assert (r.caught, r.status, r.errors) == (False, BROKEN, 1) and "name_that_is_not_defined" in r.error


def test_the_packing_fill_is_flagged_in_chunk_and_a_moderate_fill_is_not():
    """A reset at t=1 of T=3: the chunk-local cumsum absorbs the later gates after -0.1*finfo.max
    (DIVERGED), the recurrent mode is exact; at -20 both pass."""
    packed = dict(op="gla", dtype="float32", B=1, T=3, H=1, K=16, V=16, seed=0, packing="mask", segments=((1, 2),))
    (r,) = replay_usage(GLA_USAGE, CaseConfig(**packed, mask_fill="-0.1max"))
    assert (r.caught, r.status, r.mode) == (True, CAUGHT, "chunk") and r.shrunk_control == "recurrent: OK"
    (r,) = replay_usage(GLA_USAGE, CaseConfig(**packed, mask_fill=-20))
    assert (r.caught, r.status) == (False, ESCAPED) and r.verdict == "OK" and r.control_failures == 0
