"""Profiles: budgets and the hypothesis settings derived from them."""
import pytest
from hypothesis import settings

from fla_check.engine.profiles import PROFILES, database_dir, get_profile, hypothesis_settings, register_hypothesis_profiles
from fla_check.engine.search import default_max_seq_len, planned_cases, search, tiny_quota
from fla_check.strategies import SpaceOptions, chunked_length, covering_configs, strata

from _fake_modes import registered
from device import DEVICE


def test_ci_is_derandomized_without_database():
    s = hypothesis_settings(get_profile("ci"))
    assert s.derandomize and s.database is None and s.deadline is None and s.max_examples == 30


def test_nightly_uses_a_database_under_reports(tmp_path):
    db = database_dir("space", tmp_path)
    s = hypothesis_settings(get_profile("nightly"), database=db, examples=7)
    assert not s.derandomize and s.database is not None and s.max_examples == 7
    assert db.parent == tmp_path / ".hypothesis" and database_dir("space", tmp_path) == db != database_dir("x", tmp_path)


def test_seed_turns_off_derandomize_and_database(tmp_path):
    s = hypothesis_settings(get_profile("nightly"), seed=3, database=database_dir("s", tmp_path))
    assert not s.derandomize and s.database is None


def test_budgets_grow_and_unknown_profile():
    assert PROFILES["smoke"].examples < PROFILES["ci"].examples < PROFILES["nightly"].examples
    assert PROFILES["nightly"].extreme_fills and not PROFILES["ci"].extreme_fills
    with pytest.raises(ValueError, match="valid profiles: smoke, ci, nightly"):
        get_profile("weekly")


def test_registered_hypothesis_profiles(tmp_path):
    register_hypothesis_profiles(tmp_path)
    assert settings.get_profile("fla-check-ci").derandomize
    assert settings.get_profile("fla-check-ci").database is None
    nightly = settings.get_profile("fla-check-nightly")
    assert nightly.database is not None and nightly.max_examples == PROFILES["nightly"].examples
    assert nightly.verbosity.name == "normal"


def test_ci_and_nightly_cover_smoke_does_not():
    assert PROFILES["ci"].cover and PROFILES["nightly"].cover and not PROFILES["smoke"].cover


ALL_DTYPES = ("float32", "float16", "bfloat16")
CHUNK_BANDS = ((65, 128), (129, 192), (193, 256))  # beyond one, two, three 64-chunks (T <= 256 on CPU)
SUB_CHUNK_BANDS = ((17, 32), (33, 48), (49, 64))  # beyond one, two, three 16-sub-chunks
# The CPU interpreter's default space (T <= 256): a process whose Triton runs compiled on a GPU
# cannot switch to the interpreter, so that plan is only drawn where the backend is the CPU.
cpu_space = pytest.mark.skipif(DEVICE != "cpu", reason="draws the CPU interpreter's default search space")


@cpu_space
@pytest.mark.parametrize("op", ["gla", "delta", "gated_delta", "simple_gla", "kda"])
def test_ci_profile_draws_distinct_cases_beyond_one_two_three_chunks_for_every_dtype(op):
    """What the ci search of `fla-check run --op <op> --modes recurrent,chunk` draws on CPU
    (all three dtypes), without running a kernel (every case passing, so hypothesis' targeting
    follows the digits at risk only). Hypothesis also mixes literal constants of the loaded
    modules into its draws, so the exact cases differ from one process to another; these
    properties hold by construction (covering phase, repeated draws not counted, T <= 2 quota)."""
    assert default_max_seq_len("cpu") == 256
    cases = planned_cases(op, modes=("recurrent", "chunk"), dtypes=ALL_DTYPES, device="cpu", profile="ci")
    assert len(cases) == PROFILES["ci"].examples and len(set(cases)) == len(cases)
    for dtype in ALL_DTYPES:
        lengths = [chunked_length(c) for c in cases if c.dtype == dtype]  # cu_seqlens: the longest sequence
        for lo, hi in CHUNK_BANDS:
            assert any(lo <= n <= hi for n in lengths), (dtype, lo, hi, lengths)
    for lo, hi in SUB_CHUNK_BANDS:
        assert any(lo <= chunked_length(c) <= hi for c in cases), (lo, hi)
    assert sum(c.T <= 2 for c in cases) <= len(cases) // 4
    assert max(c.T for c in cases) <= 256


def test_fewer_dtypes_and_shorter_spaces_keep_their_bands():
    cases = planned_cases("gla", modes=("recurrent",), dtypes=("fp16",), device=DEVICE, max_seq_len=130)
    assert len(set(cases)) == len(cases) == 30 and all(c.dtype == "float16" and c.T <= 130 for c in cases)
    assert any(chunked_length(c) >= 129 for c in cases) and any(65 <= chunked_length(c) <= 128 for c in cases)


def test_small_budgets_have_no_covering_phase():
    """The covering phase takes at most half of the budget: smoke runs and small --examples only
    draw with hypothesis (still all different)."""
    for profile, examples in (("smoke", None), ("ci", 10)):
        cases = planned_cases("delta", dtypes=ALL_DTYPES, device=DEVICE, profile=profile, examples=examples)
        assert len(set(cases)) == len(cases) == (examples or PROFILES[profile].examples)
    assert tiny_quota(10) == 3 and tiny_quota(500) == 83


def test_ci_search_ends_with_the_covering_phase_and_reports_its_failures():
    """A real ci search (plain-torch test mode): 30 different cases, the last ones one per
    stratum; a failure only the covering phase finds is reported (simplified, not shrunk)."""
    space = SpaceOptions(op="gla", dtypes=("float32",), max_seq_len=70, small=DEVICE == "cpu")  # as search's
    cover = covering_configs(space, seed=0)
    assert [(s.min_len, s.max_len) for s in strata(space)] == [(65, 70), (17, 32), (33, 48), (49, 64)]
    with registered("gla"):
        result = search("gla", ["test:clean"], dtypes=["fp32"], max_seq_len=70, device=DEVICE, database_root=None,
                        failing=lambda case: ["test:clean"] if case.config == cover[-1] else [])
    configs = [c.config for c in result.cases]  # the run's 30, then simplify's candidates
    assert len(set(configs[:30])) == 30 and result.options["covering"] == 4 and configs[26:30] == cover
    assert all(c.modes["test:clean"].verdict.value == "OK" for c in result.cases)
    assert result.failures == {"test:clean": 29} and result.shrunk == result.simplified == []
