"""Profiles: budgets and the hypothesis settings derived from them."""
import pytest
from hypothesis import settings

from fla_check.profiles import PROFILES, database_dir, get_profile, hypothesis_settings, register_hypothesis_profiles


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
