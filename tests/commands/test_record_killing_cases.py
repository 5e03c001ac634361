"""The killing-case recorder: what it writes for a caught mutant (and that it replays), sorted
merges that keep other entries, and nothing written for a mutant that escapes."""
import dataclasses
import json

from fla_check.cases import CaseConfig
from fla_check.commands.selftest import mutants as catalog
from fla_check.commands.selftest.engine import replay_mutant
from fla_check.commands.selftest.mutants import MUTANTS
from tests.commands.record_killing_cases import load, merge, record
from tests.gla_recurrent_source import STORE_O, TIMES_ONE

SCALE = next(m for m in MUTANTS if m.id == "gla.recurrent.scale")


def test_a_caught_mutant_is_recorded_and_its_case_kills_it_again(tmp_path):
    path = tmp_path / "cases.json"
    merge({"zzz.other": {"op": "x"}}, path)
    assert record(ids=["gla.recurrent.scale"], path=path) == 0
    data = load(path)
    assert list(data) == ["gla.recurrent.scale", "zzz.other"]  # merged, the other entry kept
    assert list(json.loads(path.read_text())["gla.recurrent.scale"]) == sorted(data["gla.recurrent.scale"])
    rec = data["gla.recurrent.scale"]
    assert (rec["op"], rec["mode"], rec["verdict"], rec["backward"], rec["configs"], rec["repeat"]) == (
        "gla", "recurrent", "DIVERGED", False, "first", "off")
    (r,) = replay_mutant(SCALE, CaseConfig.from_json(rec["killing"]))
    assert r.caught and r.verdict == "DIVERGED"


def test_an_escaping_mutant_is_not_recorded(tmp_path, monkeypatch):
    """An equivalent rewrite (times one) cannot be caught: counted as not caught, nothing written."""
    same = dataclasses.replace(SCALE, id="gla.recurrent.times-one", replacements=((STORE_O, TIMES_ONE),))
    monkeypatch.setattr(catalog, "MUTANTS", (same,))
    monkeypatch.setattr(catalog, "USAGE_CASES", ())
    path = tmp_path / "cases.json"
    assert record(ids=["gla.recurrent.times-one"], path=path, examples=3) == 1
    assert not path.exists()
