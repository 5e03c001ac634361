"""The pytest plugin: import-light loading, options, the fixture/marker/generated tests on the
example kernel package (pytest in a subprocess, JUnit XML checked), pytest-xdist with one GPU
per worker, and FlaCheck.check in-process (properties, skip)."""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from fla_check.pytest_plugin import PROFILE_NAMES, FlaCheck, Options, parse_spec
from optional_deps import XDIST_HINT, require

EXAMPLE_DIR = Path(__file__).parent / "example_kernel_pkg"
REPO = Path(__file__).resolve().parents[1]
FAST = ["--fla-check-profile", "smoke", "--fla-check-examples", "3", "--fla-check-max-seq-len", "20",
        "--fla-check-dtypes", "fp32"]


def _plugin_args() -> list[str]:
    """Load the plugin by its entry point when installed (pip install -e .), else by module."""
    installed = any(ep.group == "pytest11" and ep.name == "fla_check"  # what pytest itself iterates
                    for dist in importlib.metadata.distributions() for ep in dist.entry_points)
    return ["-p", "fla_check"] if installed else ["-p", "fla_check.pytest_plugin"]


def _pytest(cwd: Path, *args: str, autoload: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    """pytest in a subprocess; without autoload only our plugin (and xdist when asked) loads,
    which saves seconds of assertion rewriting of other plugins per process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(cwd)]), NO_COLOR="1", COLUMNS="120")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    plugin = _plugin_args()
    if autoload:
        plugin = [] if plugin == ["-p", "fla_check"] else plugin
    else:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", *plugin, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _junit(path: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (outcome, properties) of every testcase."""
    cases = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        outcome = "failed" if tc.find("failure") is not None else "skipped" if tc.find("skipped") is not None \
            else "error" if tc.find("error") is not None else "passed"
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        cases[tc.get("name")] = (outcome, props)
    return cases


@pytest.fixture
def example_repo(tmp_path) -> Path:
    """A copy of the example kernel repository (its runs write reports there, not in ours)."""
    return Path(shutil.copytree(EXAMPLE_DIR, tmp_path / "repo", ignore=shutil.ignore_patterns("__pycache__")))


# -- loading and options ---------------------------------------------------------------------
def test_importing_the_plugin_imports_no_heavy_module():
    code = ("import sys, fla_check.pytest_plugin; "
            "print(sorted(m for m in ('torch', 'triton', 'hypothesis', 'numpy', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    assert out.strip() == "[]"


def test_pyproject_registers_the_entry_point():
    text = (REPO / "pyproject.toml").read_text()
    assert '[project.entry-points.pytest11]\nfla_check = "fla_check.pytest_plugin"' in text


def test_a_session_without_fla_check_options_stays_light(tmp_path):
    """No --fla-check: no torch; fla-check's hypothesis profiles selectable. Only our plugin and
    hypothesis' are loaded: what other installed plugins import is theirs, not ours to test."""
    (tmp_path / "test_light.py").write_text(
        "import sys\nfrom hypothesis import settings\n\n"
        "def test_light():\n    assert 'torch' not in sys.modules\n\n"
        "def test_profile():\n"
        "    assert settings.default.max_examples == 8 and settings.default.deadline is None\n"
        "    assert settings.default.derandomize and settings.default.database is None\n")
    res = _pytest(tmp_path, "-q", "-p", "no:cacheprovider", "-p", "_hypothesis_pytestplugin",
                  "--hypothesis-profile", "fla-check-smoke", "test_light.py")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed" in res.stdout
    # autoloaded through its pytest11 entry point (with whatever else is installed): its options are known
    bad = _pytest(tmp_path, "-q", "-p", "no:cacheprovider", "--fla-check-shard", "3/2", "test_light.py",
                  autoload=True)
    assert bad.returncode == 4 and "--fla-check-shard" in bad.stderr


def test_parse_spec():
    assert parse_spec("gla:recurrent,chunk") == ("gla", ("recurrent", "chunk"))
    assert parse_spec("gla") == ("gla", ())
    assert parse_spec("gla:fla:chunk, recurrent") == ("gla", ("fla:chunk", "recurrent"))
    for bad in ("", ":chunk", "gla:", "g la:chunk"):
        with pytest.raises(pytest.UsageError):
            parse_spec(bad)


def test_profile_names_match_the_profiles():
    from fla_check.engine.profiles import PROFILES

    assert set(PROFILE_NAMES) == set(PROFILES)
    assert all(p.derandomize for n, p in PROFILES.items() if n != "nightly")


# -- the example kernel package --------------------------------------------------------------
def test_fixture_marker_and_generated_tests_with_junit(example_repo, tmp_path):
    junit, reports = tmp_path / "junit.xml", tmp_path / "reports"
    res = _pytest(example_repo, *FAST, "--fla-check=gla:example:recurrent,example:buggy",
                  "--fla-check-report-dir", str(reports), f"--junitxml={junit}", "-rA")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "2 failed, 2 passed" in out
    cases = _junit(junit)
    assert set(cases) == {"test_good_modes", "test_buggy_mode", "gla[example:recurrent]", "gla[example:buggy]"}
    assert {n: o for n, (o, _) in cases.items()} == {
        "test_good_modes": "passed", "test_buggy_mode": "failed",
        "gla[example:recurrent]": "passed", "gla[example:buggy]": "failed"}

    _, good = cases["test_good_modes"]
    assert good["fla_check.verdict"] == "OK" and good["fla_check.profile"] == "smoke"
    for mode in ("example:recurrent", "example:fused"):
        assert good[f"fla_check.{mode}.verdict"] == "OK"
        assert 0 < float(good[f"fla_check.{mode}.max_abs"]) < 1e-4
        assert 0 < float(good[f"fla_check.{mode}.rel_rms"]) < 1e-5
        assert int(good[f"fla_check.{mode}.cases"]) == 3
    _, bad = cases["gla[example:buggy]"]
    assert bad["fla_check.verdict"] == "FAIL"
    assert bad["fla_check.example:buggy.verdict"] == "DIVERGED"
    assert float(bad["fla_check.example:buggy.rel_rms"]) > 0.1
    replay = bad["fla_check.example:buggy.replay"]
    assert replay.startswith("fla-check replay ") and "--case" in replay
    report = Path(bad["fla_check.report"])
    assert report.exists() and report.parent == reports
    assert "shrunk by hypothesis" in out and "replay: fla-check replay" in out  # the failure text

    _check_replay(example_repo, replay)


def _check_replay(example_repo: Path, replay: str) -> None:
    """The recorded replay command rebuilds the failing case (provider loaded in-process)."""
    from click.testing import CliRunner
    from device import DEVICE

    from fla_check.cli import main
    from fla_check.providers import load_provider, unload_provider

    sys.path.insert(0, str(example_repo))
    try:
        load_provider("example_kernels:provider")
        args = replay.split()[1:] + ["--device", DEVICE, "--no-color"]
        res = CliRunner().invoke(main, args, catch_exceptions=False)
        assert res.exit_code == 1 and "DIVERGED" in res.output
    finally:
        unload_provider("example")
        sys.path.remove(str(example_repo))
        sys.modules.pop("example_kernels", None)


def test_xdist_workers_get_one_gpu_each_and_split_the_budget(example_repo, tmp_path):
    require("xdist", hint=XDIST_HINT)
    (example_repo / "check_env.py").write_text(
        "import os\n\n"
        "def test_env(request):\n"
        "    request.node.user_properties.append(('worker', os.environ.get('PYTEST_XDIST_WORKER')))\n"
        "    request.node.user_properties.append(('gpu', os.environ.get('CUDA_VISIBLE_DEVICES')))\n")
    junit = tmp_path / "junit.xml"
    res = _pytest(example_repo, "-p", "xdist", "-n", "2", "check_env.py", *FAST, "--fla-check=gla:example:recurrent",
                  "--fla-check-split", "2", "--fla-check-gpus", "3,5", "--fla-check-report-dir",
                  str(tmp_path / "r"), f"--junitxml={junit}")
    assert res.returncode == 0, res.stdout + res.stderr
    cases = _junit(junit)
    assert {n: o for n, (o, _) in cases.items()} == {
        "test_env": "passed", "gla[example:recurrent-part1of2]": "passed",
        "gla[example:recurrent-part2of2]": "passed"}
    _, env = cases["test_env"]
    assert env["gpu"] == {"gw0": "3", "gw1": "5"}[env["worker"]]
    shards = {cases[f"gla[example:recurrent-part{j}of2]"][1]["fla_check.shard"] for j in (1, 2)}
    assert shards == {"1/2", "2/2"}


# -- FlaCheck in-process ---------------------------------------------------------------------
def _node(name: str = "test_x") -> SimpleNamespace:
    return SimpleNamespace(name=name, nodeid=f"test_mod.py::{name}", user_properties=[])


@pytest.fixture
def example_modes(monkeypatch):
    from fla_check.providers import unload_provider

    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    yield ("example_kernels:provider",)
    unload_provider("example")


def test_check_records_properties_and_shards_the_budget(tmp_path, example_modes):
    from device import DEVICE

    from fla_check.engine.sharding import Shard

    opts = Options(profile="smoke", providers=example_modes, examples=5, dtypes="fp32", max_seq_len=16,
                   device=DEVICE, shard=Shard(2, 2), report_dir=tmp_path, database_root=tmp_path,
                   invocation_dir=tmp_path)
    node = _node()
    result = FlaCheck(node, opts).check("gla", "example:recurrent")
    assert len(result.cases) == Shard(2, 2).budget(5) == 2
    props = dict(node.user_properties)
    assert props["fla_check.shard"] == "2/2" and props["fla_check.example:recurrent.verdict"] == "OK"
    assert (tmp_path / "test_mod.py_test_x.json").exists()
    # the other shard draws other cases (both start with hypothesis' simplest case)
    other = FlaCheck(_node("test_y"), Options(**{**opts.__dict__, "shard": Shard(1, 2)})).check(
        "gla", "example:recurrent")
    assert len(other.cases) == 3
    assert len({c.config for c in other.cases} & {c.config for c in result.cases}) <= 1


def test_check_skips_when_nothing_runs_and_fails_with_the_case(tmp_path, example_modes):
    from device import DEVICE

    opts = Options(profile="smoke", providers=example_modes, examples=0, device=DEVICE, report_dir=tmp_path,
                   database_root=tmp_path, invocation_dir=tmp_path)
    with pytest.raises(pytest.skip.Exception, match="nothing ran"):
        FlaCheck(_node(), opts).check("gla", ["example:recurrent"])
    opts = Options(**{**opts.__dict__, "examples": 2, "dtypes": "fp32", "max_seq_len": 8})
    node = _node()
    with pytest.raises(pytest.fail.Exception, match="example:buggy: DIVERGED") as exc:
        FlaCheck(node, opts).check("gla", ["example:buggy"])
    assert "replay: fla-check replay" in str(exc.value)
    assert dict(node.user_properties)["fla_check.example:buggy.failed_cases"] >= 1


def test_check_fails_on_an_invariance_check_and_records_it(tmp_path):
    from device import DEVICE

    from fla_check import ops
    from fla_check.commands.selftest.mutants import select

    spec = select(ids=["gla.recurrent.non-contiguous"])[0].mode_specs()[0]
    ops.register_modes("gla", [spec])
    try:
        opts = Options(profile="smoke", examples=3, dtypes="fp32", max_seq_len=8, device=DEVICE,
                       invariance="layout", invariance_scope="all", report_dir=tmp_path, database_root=tmp_path,
                       invocation_dir=tmp_path)
        node = _node()
        with pytest.raises(pytest.fail.Exception, match="NOT_INVARIANT"):
            FlaCheck(node, opts).check("gla", [spec.qualified])
        props = dict(node.user_properties)
        assert props[f"fla_check.{spec.qualified}.verdict"] == "NOT_INVARIANT"
        assert props[f"fla_check.{spec.qualified}.invariance_failed"] == "layout"
    finally:
        ops.remove_modes("mutant")
