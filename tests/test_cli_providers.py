"""`--provider SPEC` on run / replay / list / sweep-mask-values, auto-loading `prov:mode` names,
and `list` showing discovered providers (the third-party provider of tests/providers)."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fla_check import ops
from fla_check.cli import main
from fla_check.providers import unload_provider
from fake_dist import install_fake_dist
from optional_deps import FLA_HINT, require, require_installed

PROVIDERS = Path(__file__).parent / "providers"
SPEC = "thirdparty_provider:provider"
FAST = ["--examples", 3, "--seed", 1, "--max-seq-len", 16, "--dtypes", "fp32"]


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.syspath_prepend(str(PROVIDERS))
    yield
    unload_provider("thirdparty")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_with_a_provider_checks_its_modes(tmp_path):
    path = tmp_path / "r.json"
    r = _run("run", "--provider", SPEC, "--op", "gla", "--modes", "thirdparty:ref,thirdparty:buggy,recurrent",
             *FAST, "--report", path)
    assert r.exit_code == 1, r.output
    summary = json.loads(path.read_text())["summary"]
    assert summary["thirdparty:ref"]["verdict"] == "OK" and summary["recurrent"]["verdict"] == "OK"
    assert summary["thirdparty:buggy"]["verdict"] == "DIVERGED"
    replay = _run("replay", path, "--provider", SPEC, "--json")  # module:object providers need --provider
    assert replay.exit_code == 1 and json.loads(replay.stdout)["modes"]["thirdparty:buggy"]["verdict"] == "DIVERGED"


def test_capabilities_become_unsupported_and_backward_uses_them(tmp_path):
    r = _run("run", "--provider", SPEC, "--op", "gla", "--modes", "thirdparty:ref,thirdparty:buggy", "--backward",
             *FAST, "--report", tmp_path / "r.json", "--no-color")
    assert r.exit_code == 0, r.output
    assert "thirdparty:buggy: unsupported on 3 case(s): thirdparty:buggy is forward only" in r.stdout


@pytest.mark.parametrize("command", [["run", "--op", "gla", "--modes", "chunk"], ["list"],
                                     ["sweep-mask-values", "--op", "gla"]])
@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:provider", "no module named 'no_such_module_xyz'"),
    ("thirdparty_provider:not_a_provider", "names a int"),
    ("no_such_entry_point", "no provider named 'no_such_entry_point'"),
    ("a:b:c", "is not 'module:object'"),
])
def test_provider_errors_are_one_line_usage_errors(command, spec, message):
    r = _run(*command, "--provider", spec)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fla-check: error: --provider: ") and message in lines[0]


def test_qualified_mode_names_auto_load_entry_point_providers(tmp_path, monkeypatch):
    install_fake_dist(tmp_path, monkeypatch, f"thirdparty = {SPEC}")
    assert "thirdparty:ref" not in ops.get_op("gla").modes
    r = _run("run", "--op", "gla", "--modes", "thirdparty:ref", *FAST, "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert "thirdparty:ref" in ops.get_op("gla").modes
    r = _run("run", "--op", "gla", "--modes", "nowhere:chunk", "--examples", 0)
    assert r.exit_code == 2 and "--modes nowhere:chunk: no provider named 'nowhere'" in r.stderr


def test_fla_modes_load_the_fla_provider_by_name():
    require("fla", "einops", hint=FLA_HINT)
    require_installed()
    unload_provider("fla")
    try:
        # --modes is resolved (loading fla) before the budget is checked: --examples 0 stops the
        # run there, a usage error, without running fla's kernels
        r = _run("run", "--op", "gla", "--modes", "fla:recurrent,fla:chunk", "--examples", 0)
        assert r.exit_code == 2 and "--examples must be >= 1" in r.stderr, r.output
        assert {"fla:recurrent", "fla:chunk"} <= set(ops.get_op("gla").modes)
    finally:
        unload_provider("fla")


def test_list_shows_loaded_and_discovered_providers(tmp_path, monkeypatch):
    install_fake_dist(tmp_path, monkeypatch, f"thirdparty = {SPEC}\nbroken = thirdparty_provider:factory_raises")
    r = _run("list", "--no-color")
    assert r.exit_code == 0, r.output
    assert ("thirdparty (available, entry point thirdparty_provider:provider): gla: thirdparty:ref, "
            "thirdparty:buggy (use with --modes thirdparty:MODE or --provider thirdparty)") in r.stdout
    assert "broken (unavailable: provider spec 'broken': its factory raised RuntimeError: boom" in r.stdout
    assert "builtin (loaded): gla: recurrent, chunk, fused_chunk" in r.stdout
    data = json.loads(_run("list", "--provider", SPEC, "--json").stdout)
    providers = {p["name"]: p for p in data["providers"]}
    assert providers["thirdparty"]["registered"] and providers["thirdparty"]["modes"] == {
        "gla": ["thirdparty:ref", "thirdparty:buggy"]}
    modes = {m["name"]: m for op in data["ops"] if op["name"] == "gla" for m in op["modes"]}
    assert modes["thirdparty:buggy"]["backward_reason"] == "thirdparty:buggy is forward only"


def test_unavailable_provider_shows_its_install_hint(monkeypatch):
    import importlib.util

    require_installed()  # `list` discovers the fla provider through its entry point
    real = importlib.util.find_spec  # neither fla nor einops, whatever this machine has
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("fla", "einops") else real(name, *a))
    r = _run("list", "--no-color")
    assert r.exit_code == 0, r.output
    assert "fla (unavailable: the fla provider needs fla and einops: install fla-check[fla]" in r.stdout


def test_sweep_accepts_provider_modes(tmp_path):
    r = _run("sweep-mask-values", "--provider", SPEC, "--op", "gla", "--modes", "thirdparty:ref", "--dtypes", "fp32",
             "--values=-20", "--cases", 1, "--report", tmp_path / "s.json", "--json")
    assert r.exit_code == 0, r.output
    assert "thirdparty:ref" in json.dumps(json.loads(r.stdout))
