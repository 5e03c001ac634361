"""The small public API of `fla_check`: lazy, complete, and usable end to end."""
import subprocess
import sys

import fla_check


def test_import_is_light():
    code = "import sys, fla_check; print(sorted(m for m in ('torch', 'triton') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_exported_name_resolves():
    for name in fla_check.__all__:
        assert getattr(fla_check, name) is not None, name
    assert sorted(dir(fla_check)) == sorted(fla_check.__all__)


def test_unknown_name_is_an_attribute_error():
    try:
        fla_check.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_check_case_through_the_public_names():
    from fla_check import CaseConfig, Verdict, check_case

    cfg = CaseConfig(op="gla", dtype="float32", B=1, T=20, H=1, K=16, V=16, seed=1)
    assert check_case("gla", ["recurrent"], cfg).modes["recurrent"].verdict is Verdict.OK


def test_check_cases_through_the_public_names():
    from fla_check import CaseConfig, Verdict, check_cases

    configs = [CaseConfig(op="gla", dtype="float32", B=1, T=20, H=1, K=16, V=16, seed=seed) for seed in (1, 2)]
    results = check_cases("gla", ["recurrent"], configs)
    assert [r.config.seed for r in results] == [1, 2]
    assert all(r.modes["recurrent"].verdict is Verdict.OK for r in results)
