"""The pytest plugin with isolation (its default): a planted mode that aborts fails its own
generated test as CRASHED (JUnit property included) and the session goes on."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROVIDERS = Path(__file__).parent / "providers"


def test_an_aborting_mode_fails_its_test_as_crashed_and_the_session_completes(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(PROVIDERS)]), NO_COLOR="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    xml = tmp_path / "junit.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "fla_check.pytest_plugin", "-p", "no:cacheprovider",
                        "--fla-check=gla:planted:ref,planted:abort", "--fla-check-provider", "planted_provider:provider",
                        "--fla-check-profile", "smoke", "--fla-check-examples", "2", "--fla-check-max-seq-len", "10",
                        "--fla-check-dtypes", "fp32", "--fla-check-seed", "1", "--junitxml", str(xml)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr  # a test failed; the session itself did not die
    cases = {}
    for tc in ET.parse(xml).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        cases[tc.get("name")] = (tc.find("failure") is not None, props)
    failed, props = cases["gla[planted:abort]"]
    assert failed and props["fla_check.planted:abort.verdict"] == "CRASHED"
    failed, props = cases["gla[planted:ref]"]
    assert not failed and props["fla_check.planted:ref.verdict"] == "OK"
    assert "CRASHED" in r.stdout and "SIGABRT" in r.stdout
