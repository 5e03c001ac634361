"""`fla-check selftest` on CPU: every planted bug is caught, the clean kernels pass the same
cases, and the CLI reports the mutation score with the right exit code.

Every mutant is replayed on its recorded killing case (tests/commands/killing_cases.json, written by
tests/commands/record_killing_cases.py), with the selftest's kill rule; a case that no longer kills
falls back to the full ci search. The search itself stays proven on one mutant of every bug class
(and on every mutant caught by a check other than the reference comparison) and on the gla usage
case. Budget: the ci profile's strategies and example budget, but no shrinking (the shrink budget
only polishes the reported case, it never decides a catch) -- see docs/selftest.md.
"""
import dataclasses
import json
import warnings

import pytest
from click.testing import CliRunner

from fla_check.backend import get_backend
from fla_check.commands.selftest import engine as selftest_engine
from fla_check.commands.selftest import mutants as catalog
from fla_check.cases import CaseConfig
from fla_check.cli import main
from fla_check.verdict.compare import Verdict
from fla_check.commands.selftest.mutants import MUTANTS, SUBTLE, USAGE_CASES, Mutant, UsageCase

from fla_check.engine.profiles import PROFILES
from fla_check.engine.runner import CaseResult, ModeResult, check_case
from fla_check.engine.search import SearchResult
from fla_check.commands.selftest.engine import (KILLING, BROKEN, CAUGHT, EntryResult, _check_broken, _Clock, _Control,
                                                _find_kill, replay_mutant, replay_usage, run_mutant, run_usage)
from fla_check.commands.selftest import suite as selftest_suite
from fla_check.commands.selftest.suite import run_selftest
from fla_check.commands.selftest.render import results_table
from tests.commands.record_killing_cases import RECORDER, load
from tests.gla_recurrent_source import STORE_O, TIMES_ONE

RECORDED = load()
MUTANTS_BY_ID = {m.id: m for m in MUTANTS}


@pytest.fixture
def no_shrink(monkeypatch):
    monkeypatch.setitem(PROFILES, "ci", dataclasses.replace(PROFILES["ci"], shrink_cases=0))
    monkeypatch.setattr(selftest_suite, "SHRINK_CASES", 0)


@pytest.fixture
def short_smoke(monkeypatch):
    """The smoke profile cut to 3 cases: the tests that use it check the score, status and exit
    code of a mutant that is broken on every case or equivalent on every case (3 cases show it
    as well as 8)."""
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(PROFILES["smoke"], examples=3))


# checks other than the comparison with the reference: the memory checks (UNWRITTEN / OVERREAD),
# the invariance checks (NOT_INVARIANT), the determinism check (NONDETERMINISTIC)
OTHER_CHECKS = {"unwritten-tail", "unwritten-state", "overread-last-row", "past-cu-seqlens", "non-contiguous",
                "split-state", "row-mixing", "nondeterministic"}
_RUNNABLE = [m for m in MUTANTS if not m.gpu_only]
# the full ci search: the first mutant of every bug class, and every field mutant of another check
SEARCHED = [m for i, m in enumerate(_RUNNABLE) if m.kind not in {n.kind for n in _RUNNABLE[:i]}
            or (m.field and m.kind in OTHER_CHECKS)]


def _assert_caught_by(r: EntryResult, mutant: Mutant, how: str) -> None:
    assert r.caught and r.status == CAUGHT, f"{mutant.id} ({how}): {r.status}: {r.note}"
    assert r.backward == mutant.backward
    # wrong numbers, wrong memory (UNWRITTEN / OVERREAD: the memory checks), a failed invariance
    # check (NOT_INVARIANT) or a second call that differs (NONDETERMINISTIC): the killing verdicts; not ERROR
    assert r.verdict in {v.value for v in KILLING} and r.examples <= PROFILES["ci"].examples, how


@pytest.mark.parametrize("mutant", SEARCHED, ids=lambda m: m.id)
def test_the_ci_search_catches_every_bug_class(mutant, no_shrink):
    (r,) = run_mutant(mutant, profile="ci")
    _assert_caught_by(r, mutant, "the ci search")
    assert r.shrunk is not None and r.shrunk_control == "OK"  # the reported case kills it
    if mutant.modes != ("fused_chunk",) or mutant.kind in OTHER_CHECKS:  # the clean fused_chunk fails strong decay
        assert r.control_failures == 0  # the clean kernel passes every case of that run


def catch_on_recorded_case(mutant: Mutant, recorded: dict) -> tuple[EntryResult, str]:
    """The mutant's result on its recorded killing case (replayed with the selftest's kill rule),
    or, when that case does not kill it (another backend, a kernel or verdict change), on the full
    ci search, with a warning to re-record; and which of the two it was."""
    rec = recorded.get(mutant.id)
    assert rec is not None, (f"{mutant.id} has no recorded killing case in tests/commands/killing_cases.json: "
                             f"run `{RECORDER} --ids {mutant.id}` and commit the file")
    config = CaseConfig.from_json(rec["killing"])
    (r,) = replay_mutant(mutant, config)
    if r.caught:
        return r, f"recorded case {config.short()}"
    how = (f"full ci search (fallback: the recorded case {config.short()}, recorded on {rec['backend']}, "
           f"did not kill it here: {r.status}, mutant {r.verdict or '-'}, clean {r.shrunk_control}; {r.note})")
    warnings.warn(f"{mutant.id}: {how}; re-record with `{RECORDER} --ids {mutant.id}`")
    (r,) = run_mutant(mutant, profile="ci")
    return r, how


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_every_mutant_is_caught_on_its_killing_case(mutant, no_shrink):
    if mutant.gpu_only and get_backend().interpreter:
        pytest.skip(f"GPU only: {mutant.gpu_only}")  # its CPU skip is tested in tests/commands/selftest/
    if mutant.large_index:  # one case, the large-index pack (GPU): the selftest's own path, nothing to record
        (r,) = run_mutant(mutant, profile="ci")
        _assert_caught_by(r, mutant, "the large-index case")
        return
    r, how = catch_on_recorded_case(mutant, RECORDED)
    _assert_caught_by(r, mutant, how)


def test_a_mutant_without_a_recorded_case_fails_naming_the_recorder():
    with pytest.raises(AssertionError, match="record_killing_cases.py --ids gla.recurrent.scale"):
        catch_on_recorded_case(MUTANTS_BY_ID["gla.recurrent.scale"], {})


def test_a_recorded_case_that_does_not_kill_falls_back_to_the_full_search(monkeypatch):
    """o x1.02 from the second chunk on is invisible on a one-chunk case: the replay does not
    kill it, the full search runs (stubbed here: its own test is above) and the path says so."""
    mutant = MUTANTS_BY_ID["gla.chunk.o-late"]
    searched = []

    def fake_search(m, profile):
        searched.append(m.id)
        return [EntryResult(m.id, m.kind, m.op, "chunk", True, 3, 1.0, verdict="DIVERGED", status=CAUGHT)]

    monkeypatch.setitem(globals(), "run_mutant", fake_search)
    one_chunk = CaseConfig(op="gla", dtype="float32", B=1, T=8, H=1, K=16, V=16, seed=0)
    with pytest.warns(UserWarning, match="re-record"):
        r, how = catch_on_recorded_case(mutant, {mutant.id: {"killing": one_chunk.to_json(), "backend": "cuda"}})
    assert searched == [mutant.id] and r.caught
    assert how.startswith("full ci search (fallback") and "recorded on cuda" in how and "mutant OK" in how


def test_recorded_cases_name_current_catalog_entries():
    """No stale id: every recorded case belongs to a mutant or usage case of the catalog, on its op and mode."""
    entries = {e.id: e for e in (*MUTANTS, *USAGE_CASES)}
    stale = sorted(set(RECORDED) - set(entries))
    assert not stale, f"stale ids in tests/commands/killing_cases.json: {stale}"
    for key, rec in RECORDED.items():
        entry = entries[key]
        modes = entry.flagged if isinstance(entry, UsageCase) else entry.modes
        assert rec["op"] == entry.op == rec["killing"]["op"] and rec["mode"] in modes, key
        assert CaseConfig.from_json(rec["killing"]).to_json() == rec["killing"], key  # replays as recorded


def test_every_field_mutant_caught_by_another_check_is_searched():
    """A field mutant whose recorded verdict is not DIVERGED / NONFINITE (another check caught it)
    must be among the fully searched ones."""
    plain = {Verdict.DIVERGED.value, Verdict.NONFINITE.value}
    other = [m for m in MUTANTS if m.field and m.id in RECORDED and RECORDED[m.id]["verdict"] not in plain]
    assert [m.id for m in other if m not in SEARCHED] == []


@pytest.mark.parametrize("case", [c for c in USAGE_CASES if c.op == "gla"], ids=lambda c: c.id)
def test_mask_fill_flags_chunk_and_not_recurrent(case, no_shrink):
    """The full search of one usage case. T <= 128 (two 64-chunks; the ci default on CPU is 256):
    a reset inside a chunk with gates after it is all the chunk cumsum bug needs, and the clean
    recurrent run's 30 cases cost about a third less. `fla-check selftest` itself runs at the
    default cap."""
    (r,) = run_usage(case, profile="ci", max_seq_len=128)
    assert r.caught, r.note
    assert r.mode == "chunk" and r.control_failures == 0 and "recurrent: OK" in r.shrunk_control


@pytest.mark.parametrize("case", USAGE_CASES, ids=lambda c: c.id)
def test_mask_fill_flags_chunk_and_not_recurrent_on_its_recorded_case(case, no_shrink):
    rec = RECORDED.get(case.id)
    assert rec is not None, f"{case.id}: no recorded killing case: run `{RECORDER} --ids {case.id}`"
    config = CaseConfig.from_json(rec["killing"])
    (r,) = replay_usage(case, config)
    how = f"recorded case {config.short()}"
    if not r.caught:
        how = f"full ci search (fallback: the recorded case {config.short()} did not flag it: {r.note})"
        warnings.warn(f"{case.id}: {how}; re-record with `{RECORDER} --ids {case.id}`")
        (r,) = run_usage(case, profile="ci", max_seq_len=128)
    assert r.caught, f"{how}: {r.note}"
    assert r.mode == "chunk" and r.control_failures == 0 and "recurrent: OK" in r.shrunk_control, how


FP16_STATE = [m for m in MUTANTS if m.kind == "fp16-accumulator"]


@pytest.mark.parametrize("mutant", FP16_STATE, ids=lambda m: m.id)
def test_fp16_state_is_caught_on_the_fp32_final_state_with_margin(mutant):
    """An fp16 state costs ~1e-3 rel-RMSE at T=130 (fp16, no decay). The recurrent modes declare
    an fp32 state, so the emulated baseline of `ht` rounds no state: the clean kernel sits >= 10x
    inside its bound and the mutant >= 10x outside it. (Before the error model this took a
    per-mode fp32_state flag judging `ht` at fp32 floors.)"""
    (spec,) = mutant.mode_specs()
    gate = {} if mutant.op == "delta" else dict(zero_gate_frac=1.0)
    config = CaseConfig(op=mutant.op, dtype="float16", B=1, T=130, H=1, K=16, V=16, seed=0, **gate)
    r = check_case(mutant.op, [spec, "recurrent"], config)
    bad, clean = r.modes["mutant:recurrent"], r.modes["recurrent"]
    assert bad.verdict.failed and not clean.verdict.failed
    ht, clean_ht = (next(c for c in m.outputs if c.name == "ht") for m in (bad, clean))
    assert ht.kernel.rel_rms > 10 * ht.bound_rel_rms
    assert clean_ht.kernel.rel_rms < 0.1 * clean_ht.bound_rel_rms


def _cli(*args):
    return CliRunner().invoke(main, ["selftest", *map(str, args)])


def test_cli_json_and_exit_0_when_caught(no_shrink):
    res = _cli("--mutants", "gla.recurrent.scale", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["caught"], data["total"], data["score"]) == (1, 1, 1.0)
    (row,) = data["results"]
    assert row["id"] == "gla.recurrent.scale" and row["examples"] >= 1 and row["seconds"] >= 0


def test_cli_table_and_exit_1_when_a_mutant_escapes(monkeypatch, short_smoke):
    # an equivalent mutant (multiplies by one): nothing can catch it
    same = Mutant("gla.recurrent.times-one", "scale", "gla", ("recurrent",), "fla_check.kernels.gla.recurrent",
                  "gla_recurrent_fwd_kernel", ((STORE_O, TIMES_ONE),), "no-op")
    monkeypatch.setattr(catalog, "MUTANTS", (same,))
    res = _cli("--mutants", "gla.recurrent", "--profile", "smoke", "--no-color")
    assert res.exit_code == 1, res.output
    assert "mutation score: 0/1 (0.0%)" in res.stdout and "missed gla.recurrent.times-one" in res.stdout


def test_cli_list_and_usage_errors():
    res = _cli("--list", "--op", "delta", "--no-color")
    assert res.exit_code == 0 and "delta.chunk.ut-sign" in res.stdout and "gla.chunk" not in res.stdout
    res = _cli("--mutants", "gla.nope")
    assert res.exit_code == 2 and "no mutant matches 'gla.nope'" in res.output
    assert _cli("--op", "foo").exit_code == 2


def test_selftest_result_counts_the_score(no_shrink):
    result = run_selftest(ids=["gla.chunk.scale"])
    assert (result.caught, result.total, result.all_caught) == (1, 1, True)
    assert json.loads(json.dumps(result.to_json()))["results"][0]["mode"] == "chunk"


# -- the kill rule: ERROR is a broken mutant, not a caught bug ---------------------------------
NOT_COMPILING = Mutant("gla.recurrent.not-compiling", "scale", "gla", ("recurrent",), "fla_check.kernels.gla.recurrent",
                       "gla_recurrent_fwd_kernel", (("        b_o = tl.sum(b_h * b_q[:, None], 0)\n",
                         "        b_o = tl.sum(b_h * b_q[:, None], 0) + name_that_is_not_defined\n"),),
                       "a rewrite that does not compile")


def test_a_mutant_that_does_not_compile_is_broken_not_caught(short_smoke):
    (r,) = run_mutant(NOT_COMPILING, profile="smoke")
    assert (r.caught, r.status) == (False, BROKEN)
    assert r.errors == r.searched > 0 and "name_that_is_not_defined" in r.error
    assert r.examples is None and r.verdict == "" and "broken mutant" in r.note


def test_broken_counts_as_not_caught_in_the_score_and_the_cli(monkeypatch, short_smoke):
    monkeypatch.setattr(catalog, "MUTANTS", (NOT_COMPILING,))
    result = run_selftest(ids=["gla.recurrent"], profile="smoke")
    assert (result.caught, result.total, result.broken, result.all_caught) == (0, 1, 1, False)
    assert json.loads(json.dumps(result.to_json()))["results"][0]["status"] == "broken"
    res = _cli("--mutants", "gla.recurrent", "--profile", "smoke", "--no-color")
    assert res.exit_code == 1, res.output
    assert "mutation score: 0/1 (0.0%), 1 broken (not caught)" in res.stdout
    assert "broken gla.recurrent.not-compiling" in res.stdout and "BROKEN" in res.stdout


@pytest.mark.parametrize("function, old, reason", [
    ("gla_recurrent_gone", "b_o", "'gla_recurrent_gone' is defined 0 times"),
    ("gla_recurrent_bwd_kernel", "        b_o = tl.sum(b_h * b_q[:, None], 0)\n", "occurs 0 times in gla_recurrent_bwd_kernel"),
    ("gla_recurrent_fwd_kernel", "mask=n_mk, other=0.0)", "occurs 3 times in gla_recurrent_fwd_kernel"),
])
def test_a_rewrite_that_does_not_apply_to_its_function_is_broken(monkeypatch, function, old, reason):
    """Missing function, pattern only elsewhere in the module, pattern twice in the function:
    broken with the reason, not searched; the CLI exits 1 and says why."""
    stale = dataclasses.replace(NOT_COMPILING, id="gla.recurrent.stale", function=function, replacements=((old, "x"),))
    (r,) = run_mutant(stale, profile="smoke")
    assert (r.caught, r.status, r.searched, r.examples) == (False, BROKEN, 0, None)
    target = "fla_check.kernels.gla.recurrent:" + function
    assert reason in r.error and target in r.error and reason in r.note and "broken mutant" in r.note
    monkeypatch.setattr(catalog, "MUTANTS", (stale,))
    res = _cli("--mutants", "gla.recurrent.stale", "--no-color")
    assert res.exit_code == 1, res.output
    assert "1 broken (not caught)" in res.stdout and reason in res.stdout


def _fake_case(config, label, verdict):
    return CaseResult(config, {label: ModeResult(label, verdict, reason="boom" if verdict is Verdict.ERROR else "")})


def test_a_kill_does_not_count_when_the_mutant_also_raises():
    """A DIVERGED case the clean mode passes, then a case where the mutant raises and the clean
    mode does not: broken (not caught); an ERROR where the clean mode raises too is not the mutant's."""
    a = CaseConfig(op="gla", dtype="float32", B=1, T=4, H=1, K=16, V=16, seed=1)
    b = CaseConfig(op="gla", dtype="float32", B=1, T=4, H=1, K=16, V=16, seed=2)
    control = _Control("gla", "recurrent", None)
    control.cache = {a: _fake_case(a, "recurrent", Verdict.OK), b: _fake_case(b, "recurrent", Verdict.OK)}
    result = SearchResult("gla", ["mutant:recurrent"], {}, cases=[_fake_case(a, "mutant:recurrent", Verdict.DIVERGED),
                                                                  _fake_case(b, "mutant:recurrent", Verdict.ERROR)])
    entry = EntryResult("x", "scale", "gla", "recurrent", caught=False)
    _find_kill(entry, result, "mutant:recurrent", control, _Clock())
    assert entry.caught and entry.examples == 1
    _check_broken(entry, result, "mutant:recurrent", control)
    assert (entry.caught, entry.status, entry.errors, entry.error) == (False, BROKEN, 1, "boom")
    control.cache[b] = _fake_case(b, "recurrent", Verdict.ERROR)  # the clean kernel raises too
    entry = EntryResult("x", "scale", "gla", "recurrent", caught=False)
    _find_kill(entry, result, "mutant:recurrent", control, _Clock())
    _check_broken(entry, result, "mutant:recurrent", control)
    assert (entry.caught, entry.status, entry.errors) == (True, CAUGHT, 0)


def test_an_error_alone_does_not_kill():
    a = CaseConfig(op="gla", dtype="float32", B=1, T=4, H=1, K=16, V=16, seed=1)
    control = _Control("gla", "recurrent", None)
    control.cache = {a: _fake_case(a, "recurrent", Verdict.OK)}
    result = SearchResult("gla", ["mutant:recurrent"], {}, cases=[_fake_case(a, "mutant:recurrent", Verdict.ERROR)])
    entry = EntryResult("x", "scale", "gla", "recurrent", caught=False)
    _find_kill(entry, result, "mutant:recurrent", control, _Clock())
    assert not entry.caught and entry.examples is None



def test_run_mutant_draws_the_mutant_state_layouts(monkeypatch):
    """Mutant.state_layouts reaches the search (``--state-layouts``); other mutants draw [K, V] only."""
    seen = []

    def fake_search(op, modes, **kwargs):
        seen.append(kwargs["state_layouts"])
        return SearchResult(op, [f"mutant:{m.name}" for m in modes], {}, cases=[])

    monkeypatch.setattr(selftest_engine, "search", fake_search)
    run_mutant(MUTANTS_BY_ID["gla.recurrent.v-first-transposed"])
    run_mutant(MUTANTS_BY_ID["gla.recurrent.scale"])
    assert seen == [("kv", "vk"), None]

def test_report_marks_backward_entries():
    from rich.console import Console

    rows = [EntryResult("gla.chunk.dq-scale", "grad-scale", "gla", "chunk", True, 2, 1.5, status=CAUGHT,
                        backward=True),
            EntryResult("gla.chunk.o-late", "o-late", "gla", "chunk", True, 3, 2.0, status=CAUGHT)]
    console = Console(width=80, no_color=True, record=True)
    console.print(results_table(rows))
    lines = console.export_text().splitlines()
    assert any("gla.chunk.dq-scale" in line and "chunk bwd" in line for line in lines)
    assert any("gla.chunk.o-late" in line and "bwd" not in line for line in lines)


# -- subtle mutants (issue 13): each one on a hand-picked multi-chunk case ---------------------
# Which output each rewrite touches (a backward mutant of GLA's recurrent dq/dk also moves dg,
# which is built from them; only the named output is asserted).
_OUTPUT = {"o-late": "o", "o-small": "o", "ht-late": "ht", "fp16-state": "ht", "dq-scale": "dq",
           "dk-scale": "dk", "dg-scale": "dg", "dbeta-scale": "dbeta"}


def _subtle_case(mutant: Mutant, dtype: str = "float32", **kw) -> CaseConfig:
    """T = 100: two 64-token chunks (chunk, delta chunk), seven 16-token ones (fused_chunk)."""
    return CaseConfig(op=mutant.op, dtype=dtype, B=1, T=100, H=1, K=16, V=16, seed=0, **kw)


def _run_subtle(mutant: Mutant, config: CaseConfig):
    (spec,) = mutant.mode_specs()
    r = check_case(mutant.op, [spec, spec.name], config, backward=mutant.backward)
    return r.modes[f"mutant:{spec.name}"], r.modes[spec.name]


def _assert_caught(mutant: Mutant, config: CaseConfig) -> None:
    bad, clean = _run_subtle(mutant, config)
    assert clean.verdict is Verdict.OK, [(c.name, c.score) for c in clean.outputs]
    name = _OUTPUT[mutant.id.rsplit(".", 1)[1]]
    out = next(c for c in bad.outputs if c.name == name)
    assert bad.verdict is Verdict.DIVERGED and out.verdict is Verdict.DIVERGED, \
        f"{name}: rel_rms {out.kernel.rel_rms:.3g} bound {out.bound_rel_rms:.3g}"


@pytest.mark.parametrize("mutant", SUBTLE, ids=lambda m: m.id)
def test_subtle_mutant_diverges_on_a_two_chunk_fp32_case(mutant):
    _assert_caught(mutant, _subtle_case(mutant))


FP16_CAUGHT = [m for m in SUBTLE if m.kind in ("o-late", "ht-late", "grad-scale")]


@pytest.mark.parametrize("mutant", FP16_CAUGHT, ids=lambda m: m.id)
def test_subtle_mutant_diverges_on_a_two_chunk_fp16_case(mutant):
    """A 2% error is far outside fp16's error (about 3e-4 rel-RMSE here)."""
    _assert_caught(mutant, _subtle_case(mutant, "float16"))


# No fp16-input test for the fp16-state mutants: every chunk mode declares TF32 (or half-precision)
# dots for half inputs (the delta-rule chunk forward since its tensor-core rewrite), so a clean
# kernel's ht error on fp16 inputs is of the fp16 state's size (delta chunk: bound 5.9e-3, fp16
# state 1.1e-3). The fp16 states are caught on fp32 inputs (test_subtle_mutant_diverges_on_a_two_chunk_fp32_case).


O_SMALL = next(m for m in SUBTLE if m.kind == "o-small")


def test_a_0_3_percent_error_diverges_in_fp32_with_a_1e4_mask_fill():
    """o x1.003 on a packed fp32 case with the -1e4 fill inside the first chunk: the clean chunk
    kernel's error is ~1e-4 (the fp32 chunk-local cumsum holds the gates after the fill to
    ~1e-3 absolute), the mutant's 3e-3. A flat large-fill allowance (the verdict before the
    error model: bound 4.5e-3) let it through; the bound from the emulated chunked algorithm
    (~5e-4) must not."""
    _assert_caught(O_SMALL, _subtle_case(O_SMALL, packing="mask", segments=((40, 60),), mask_fill=-1e4))


@pytest.mark.parametrize("mutant", [m for m in SUBTLE if m.kind in ("o-late", "ht-late")], ids=lambda m: m.id)
def test_late_mutants_are_invisible_on_a_single_chunk(mutant):
    """The o-late / ht-late rewrites only act from the second chunk on: the search has to reach a
    multi-chunk case to catch them."""
    (spec,) = mutant.mode_specs()
    T = 16 if spec.name == "fused_chunk" else 40
    config = CaseConfig(op=mutant.op, dtype="float32", B=1, T=T, H=1, K=16, V=16, seed=0)
    bad, clean = _run_subtle(mutant, config)
    assert bad.verdict is Verdict.OK and clean.verdict is Verdict.OK
    assert [c.kernel.rel_rms for c in bad.outputs] == [c.kernel.rel_rms for c in clean.outputs]


def test_shrink_cases_reaches_the_search_and_the_record(monkeypatch):
    """--shrink-cases N is recorded and handed to every entry's search (default SHRINK_CASES; how
    far the search then shrinks: tests/engine/test_search.py); 0 keeps the killing case itself."""
    data = json.loads(_cli("--mutants", "gla.recurrent.scale", "--shrink-cases", "0", "--json").stdout)
    (row,) = data["results"]
    assert data["options"]["shrink_cases"] == 0 and row["caught"] and row["shrunk"] == row["killing"]
    seen = []

    def search(*args, **kwargs):
        seen.append(kwargs["shrink_cases"])
        return SearchResult("gla", ["recurrent"], {}, interrupted=True)

    monkeypatch.setattr(selftest_engine, "search", search)
    for args in ((), ("--shrink-cases", "3")):
        data = json.loads(_cli("--mutants", "gla.recurrent.scale", "--json", *args).stdout)
        assert data["interrupted"] == 1 and data["results"] == []
    assert seen == [selftest_suite.SHRINK_CASES, 3] and data["options"]["shrink_cases"] == 3


def test_an_interrupted_selftest_reports_the_entries_it_finished(monkeypatch):
    """Ctrl-C (or SIGTERM) during the third entry: the two finished ones are the result, the JSON
    says how many were not run, the progress lines were on stderr, and the exit is 130."""
    from fla_check.commands.selftest import suite

    ids = ["gla.recurrent.scale", "gla.recurrent.gate-after-write", "gla.chunk.scale", "gla.chunk.h0-ignored"]
    real, calls = suite.run_entry, []

    def entry(e, **options):
        calls.append(e.id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(e, **options)

    monkeypatch.setattr(suite, "run_entry", entry)
    monkeypatch.setattr(suite, "SHRINK_CASES", 0)
    res = _cli("--mutants", ",".join(ids), "--profile", "smoke", "--json")
    assert res.exit_code == 130, res.output
    data = json.loads(res.stdout)
    assert data["interrupted"] == 2 and [r["id"] for r in data["results"]] == ids[:2]
    assert data["caught"] == data["total"] == 2
    assert "[2/4] caught gla.recurrent.gate-after-write" in res.stderr and "2 entries not run" in res.stderr


def test_a_search_cut_by_ctrl_c_ends_the_entry_instead_of_judging_it(monkeypatch):
    monkeypatch.setattr(selftest_engine, "search", lambda *a, **k: SearchResult("gla", ["recurrent"], {},
                                                                             interrupted=True))
    with pytest.raises(KeyboardInterrupt):
        run_mutant(MUTANTS_BY_ID["gla.recurrent.scale"], profile="smoke")
