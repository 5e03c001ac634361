"""The mutant catalog stays valid: every rewrite matches the current kernel source exactly once
(so a kernel edit cannot silently disable a mutant), and mutated modules reach the mode entry."""
import inspect
import importlib

import pytest

from fla_check.commands.selftest.mutants import KINDS, MUTANTS, USAGE_CASES, Mutant, _chain, all_entries, select
from fla_check.commands.selftest.mutate import MutationError
from fla_check.ops import OPS


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_every_pattern_matches_exactly_once(mutant):
    source = inspect.getsource(importlib.import_module(mutant.module))
    for old, new in mutant.replacements:
        assert source.count(old) == 1, f"{mutant.id}: pattern occurs {source.count(old)} times: {old!r}"
        assert old != new
    assert mutant.source() != source


def test_a_pattern_that_no_longer_matches_is_an_error():
    stale = Mutant("x.recurrent.stale", "scale", "gla", ("recurrent",), MUTANTS[0].module,
                   (("this line is not in the kernel", "neither is this"),), "stale")
    with pytest.raises(MutationError, match="occurs 0 times"):
        stale.source()


def test_catalog_is_consistent():
    ids = [e.id for e in all_entries()]
    assert len(ids) == len(set(ids))
    for e in all_entries():
        assert e.kind in KINDS and e.op in OPS and e.id.startswith(e.op + ".")
        assert set(e.modes) <= set(OPS[e.op].modes)
    assert {e.kind for e in all_entries()} == set(KINDS)  # every bug class of the issue is planted
    covered = {(m.op, mode) for m in MUTANTS for mode in m.modes}
    assert covered == {(op, mode) for op, spec in OPS.items() for mode, m in spec.modes.items()
                       if m.provider == "builtin"}


def test_mode_specs_call_the_mutated_code_through_the_registered_entry():
    m = next(m for m in MUTANTS if m.id == "gated_delta.chunk.ut-sign")
    (spec,) = m.mode_specs()
    assert spec.qualified == "mutant:chunk" and spec.name == "chunk"
    clean = OPS["gated_delta"].modes["chunk"]
    assert (spec.varlen, spec.initial_state, spec.dtypes) == (clean.varlen, clean.initial_state, clean.dtypes)
    wrapper = inspect.getmodule(spec.target)
    assert wrapper.__name__ != "fla_check.kernels.gated_delta.chunk"  # a fresh copy of the wrapper ...
    chunk = inspect.getmodule(wrapper.chunk_delta_rule)  # ... over a copy of delta.chunk ...
    assert chunk.__name__ != "fla_check.kernels.delta.chunk"
    ut = inspect.getmodule(chunk.ut_transform_fwd)  # ... over the mutated UT transform
    assert "b_Ai = tl.where(m_A, b_A, 0.0)" in inspect.getsource(ut)
    assert "b_Ai = -tl.where" in inspect.getsource(importlib.import_module("fla_check.kernels.common.ut_transform"))


def test_chain_lists_the_modules_between_entry_and_mutated_module():
    k = "fla_check.kernels."
    assert _chain(k + "gated_delta.chunk", k + "common.ut_transform") == [
        k + "delta.chunk_bwd", k + "delta.chunk", k + "gated_delta.chunk"]  # the backward uses it too
    assert _chain(k + "gla.chunk", k + "common.ut_transform") == []


def test_select_by_op_id_prefix_and_class():
    assert {e.op for e in select(["delta"])} == {"delta"}
    assert [e.id for e in select(ids=["gla.chunk.scale"])] == ["gla.chunk.scale"]
    assert {e.id for e in select(ids=["gla.chunk"])} == {m.id for m in MUTANTS if m.id.startswith("gla.chunk.")}
    assert {e.kind for e in select(ids=["ut-sign"])} == {"ut-sign"}
    assert select(["gla"], ["mask-fill"]) == [USAGE_CASES[0]]
    with pytest.raises(ValueError, match="no mutant matches"):
        select(ids=["gla.nope"])


CHUNK_MODES = {("gla", "chunk"), ("gla", "fused_chunk"), ("delta", "chunk"), ("gated_delta", "chunk"),
               ("simple_gla", "chunk"), ("kda", "chunk")}


@pytest.mark.parametrize("kind", ["o-late", "ht-late", "fp16-state"])
def test_subtle_mutants_cover_every_chunk_mode(kind):
    assert {(m.op, mode) for m in MUTANTS if m.kind == kind for mode in m.modes} == CHUNK_MODES


def test_backward_mutants_are_the_gradient_ones_and_their_modes_have_a_backward():
    backward = [m for m in MUTANTS if m.backward]
    assert {m.id for m in backward} == {m.id for m in MUTANTS if m.kind == "grad-scale"}
    assert {m.id for m in backward} == {
        "gla.chunk.dq-scale", "gla.chunk.dk-scale", "gla.chunk.dg-scale",
        "gla.recurrent.dq-scale", "gla.recurrent.dk-scale", "gla.recurrent.dg-scale",
        "delta.chunk.dbeta-scale", "gated_delta.chunk.dbeta-scale", "delta.recurrent.dbeta-scale",
        "simple_gla.chunk.dq-scale", "simple_gla.chunk.dg-scale", "simple_gla.recurrent.dg-scale",
        "kda.recurrent.dg-scale"}
    for m in backward:
        assert all(OPS[m.op].modes[mode].backward for mode in m.modes), m.id
    assert select(ids=["grad-scale"]) == backward
