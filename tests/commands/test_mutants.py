"""The mutant catalog stays valid: every rewrite matches its kernel function exactly once (so a
kernel edit cannot silently disable a mutant), an edit to a targeted function flags its mutants
for review, and mutated modules reach the mode entry."""
import ast
import inspect
import importlib
import subprocess
import sys

import pytest

from fla_check.commands.selftest import mutants as catalog
from fla_check.commands.selftest.mutants import (KINDS, MUTANTS, REHASH_COMMAND, REVIEWED_HASHES, USAGE_CASES, Mutant,
                                                 _chain, all_entries, current_hashes, rehash, review_message, select,
                                                 stale_targets)
from fla_check.commands.selftest.mutate import MutationError, function_source
from fla_check.cases import STATE_LAYOUTS
from fla_check.ops import OPS


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_every_pattern_matches_exactly_once_in_its_function(mutant):
    source = inspect.getsource(importlib.import_module(mutant.module))
    body = function_source(source, mutant.function)
    for old, new in mutant.replacements:
        assert body.count(old) == 1, f"{mutant.id}: pattern occurs {body.count(old)} times in {mutant.function}"
        assert old != new
    mutated = mutant.source()
    assert mutated != source
    # only the target function changed
    assert mutated.replace(function_source(mutated, mutant.function), "") == source.replace(body, "")


def _stale(function: str, old: str, module: str = MUTANTS[0].module, new: str = "new") -> Mutant:
    return Mutant("x.recurrent.stale", "scale", "gla", ("recurrent",), module, function, ((old, new),), "stale")


def test_a_pattern_that_no_longer_matches_is_an_error():
    with pytest.raises(MutationError, match="occurs 0 times in gla_recurrent_fwd_kernel"):
        _stale("gla_recurrent_fwd_kernel", "this line is not in the kernel").source()


def test_matching_is_scoped_to_the_function():
    """The sequence_bounds call is in all three delta recurrent kernels: once per function is
    enough; a pattern of another function of the same module is not found in this one."""
    call = "    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)\n"
    module = "fla_check.kernels.delta.recurrent"
    assert inspect.getsource(importlib.import_module(module)).count(call) == 3
    fwd = _stale("delta_rule_recurrent_fwd_kernel", call, module, new=call + "    bos = bos + 0\n")
    assert fwd.source().count(call) == 3
    assert "bos = bos + 0" in function_source(fwd.source(), "delta_rule_recurrent_fwd_kernel")
    assert fwd.source().count("bos = bos + 0") == 1
    with pytest.raises(MutationError, match="occurs 0 times in delta_rule_recurrent_fwd_kernel"):
        _stale("delta_rule_recurrent_fwd_kernel", "tl.store(p_dbeta", module).source()
    with pytest.raises(MutationError, match="occurs 2 times in delta_rule_recurrent_fwd_kernel"):
        _stale("delta_rule_recurrent_fwd_kernel", "mask=n_mk, other=0.0).to(tl.float32)", module).source()


def test_a_missing_function_is_an_error():
    with pytest.raises(MutationError, match="'gla_recurrent_gone' is defined 0 times"):
        _stale("gla_recurrent_gone", "b_o").source()
    with pytest.raises(MutationError, match="defined 0 times"):
        _stale("gla_recurrent_gone", "b_o").mode_specs()


def test_a_method_is_named_class_dot_method():
    source = inspect.getsource(importlib.import_module("fla_check.kernels.gla.chunk"))
    assert function_source(source, "GlaChunkFunction.forward").lstrip().startswith(("def forward", "@staticmethod"))
    with pytest.raises(MutationError, match="defined 0 times"):
        function_source(source, "forward")  # not at module level


# -- reviewed hashes of the targeted functions ------------------------------------------------
def test_targeted_functions_are_as_reviewed():
    stale = stale_targets(REVIEWED_HASHES)
    assert not stale, review_message(stale)


def test_an_edited_function_flags_exactly_its_mutants(monkeypatch):
    """Edit one targeted kernel function (here: as the no-carry mutant does): the mutants of
    that function are listed for review, those of the module's other functions are not."""
    edit = next(m for m in MUTANTS if m.id == "gla.chunk.no-carry")
    real, edited = catalog._module_source, edit.source()
    monkeypatch.setattr(catalog, "_module_source", lambda module: edited if module == edit.module else real(module))
    stale = stale_targets(REVIEWED_HASHES)
    assert stale == {edit.target: [m.id for m in MUTANTS if m.target == edit.target]}
    assert len(stale[edit.target]) > 1 and "gla.chunk.o-late" not in stale[edit.target]
    message = review_message(stale)
    assert edit.target in message and "gla.chunk.ht-late" in message and REHASH_COMMAND in message


def test_new_missing_and_unused_targets_are_stale():
    reviewed = dict(REVIEWED_HASHES, **{"fla_check.kernels.gla.chunk:gone": "0" * 16})
    gone = _stale("gla_recurrent_gone", "b_o")
    assert stale_targets(reviewed, [*MUTANTS, gone]) == {"fla_check.kernels.gla.chunk:gone": [],
                                                         gone.target: [gone.id]}


def test_rehash_rewrites_only_the_table(tmp_path):
    path = tmp_path / "mutants.py"
    original = inspect.getsource(catalog)
    path.write_text(original.replace(next(iter(REVIEWED_HASHES.values())), "0123456789abcdef"))
    assert rehash(path) == current_hashes()
    text = path.read_text()
    assert text == original
    table = next(n for n in ast.parse(text).body if isinstance(n, ast.AnnAssign) and n.target.id == "REVIEWED_HASHES")
    assert ast.literal_eval(table.value) == current_hashes() == REVIEWED_HASHES
    path.write_text(original.replace("# rehash: end", "# end"))
    with pytest.raises(ValueError, match="markers"):
        rehash(path)


def test_check_command_exits_0_when_reviewed():
    assert REHASH_COMMAND == f"python3 -m {catalog.__name__} --rehash"
    res = subprocess.run([sys.executable, "-m", catalog.__name__, "--check"], capture_output=True, text=True)
    assert res.returncode == 0 and f"all {len(REVIEWED_HASHES)} targeted functions as reviewed" in res.stdout


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



def test_layout_mutants_search_v_first_states_in_modes_that_take_them():
    """A mutant of the V-first state path draws v-first cases (a search of [K, V] cases alone
    never reaches it), in modes that declare state_v_first."""
    layout = [m for m in MUTANTS if m.state_layouts is not None]
    assert [m.id for m in layout] == ["gla.recurrent.v-first-transposed"]
    for m in layout:
        assert set(m.state_layouts) == set(STATE_LAYOUTS)
        assert all(OPS[m.op].modes[mode].state_v_first for mode in m.modes)

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


def test_varlen_helper_mutants_reach_every_kernel_module_of_their_mode():
    """A mutant of the shared varlen prologue plants its bug in every kernel module the mode runs
    (e.g. simple_gla:chunk's own kernels and the shared cumsum): each is rebound to the mutant."""
    k = "fla_check.kernels."
    helper = [m for m in MUTANTS if m.module == k + "common.varlen"]
    assert {(m.op, mode) for m in helper for mode in m.modes} == {
        ("gla", "recurrent"), ("gla", "chunk"), ("gla", "fused_chunk"), ("simple_gla", "recurrent"),
        ("simple_gla", "chunk")}
    for m in helper:
        for mode in m.modes:
            entry = OPS[m.op].modes[mode].target.partition(":")[0]
            assert entry in _chain(entry, m.module), m.id
    assert _chain(k + "simple_gla.chunk", k + "common.varlen") == [k + "common.cumsum", k + "simple_gla.chunk"]


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
