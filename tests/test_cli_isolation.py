"""`fla-check run` with crash and hang isolation (the default): planted modes that abort,
segfault and hang end as CRASHED / TIMEOUT, shrunk and replayable, while the run completes, the
clean mode stays OK and the report on disk lists everything; Ctrl-C and SIGTERM keep the report."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fla_check.cli import main
from fla_check.providers import unload_provider

PROVIDERS = Path(__file__).parent / "providers"
SPEC = "planted_provider:provider"
MIN_T = 8  # planted_provider.MIN_T: the modes fail from this length on
FAST = ["--profile", "smoke", "--examples", 3, "--seed", 1, "--max-seq-len", 12, "--dtypes", "fp32"]


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.syspath_prepend(str(PROVIDERS))
    yield
    unload_provider("planted")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_abort_segfault_and_hang_end_as_verdicts_and_the_report_keeps_everything(tmp_path):
    path = tmp_path / "r.json"
    r = _run("run", "--provider", SPEC, "--op", "gla",
             "--modes", "planted:ref,planted:abort,planted:segfault,planted:hang", *FAST,
             "--case-timeout", 0.5, "--report", path, "--no-color")
    assert r.exit_code == 1, r.output
    data = json.loads(path.read_text())
    assert data["interrupted"] is False and data["options"]["isolation"] == {"kind": "process", "case_timeout": 0.5}
    summary = {m: s["verdict"] for m, s in data["summary"].items()}
    assert summary == {"planted:ref": "OK", "planted:abort": "CRASHED", "planted:segfault": "CRASHED",
                       "planted:hang": "TIMEOUT"}
    for case in data["cases"]:  # judged by the trigger alone (shrink steps run the shrinking mode only)
        modes = case["modes"]
        for mode, verdict in (("planted:ref", "OK"), ("planted:abort", "CRASHED"),
                              ("planted:segfault", "CRASHED"), ("planted:hang", "TIMEOUT")):
            if mode in modes:
                want = verdict if case["config"]["T"] >= MIN_T and mode != "planted:ref" else "OK"
                assert modes[mode]["verdict"] == want, (mode, case["config"])
    expect = {"planted:abort": ("SIGABRT (signal 6)", "in _abort"),
              "planted:segfault": ("SIGSEGV (signal 11)", "in _segfault"),
              "planted:hang": ("no result after 0.5 s", "in _hang")}
    assert set(data["failures"]) == set(expect)
    for mode, (reason, frame) in expect.items():
        case = data["cases"][data["failures"][mode]]
        assert case["config"]["T"] == MIN_T  # shrunk to the trigger: each shrink step restarted the worker
        assert reason in case["modes"][mode]["reason"] and frame in case["modes"][mode]["stderr"]
        assert case["modes"]["planted:ref"]["verdict"] == "OK"
    out = " ".join(r.stdout.split())
    assert "planted:abort: CRASHED on case" in out and "crashed: worker process killed by SIGABRT" in out
    assert "planted:hang: TIMEOUT on case" in out and "in _hang" in out

    replay = _run("replay", path, "--provider", SPEC, "--case", data["failures"]["planted:segfault"], "--json")
    assert replay.exit_code == 1, replay.output
    again = json.loads(replay.stdout)
    assert again["modes"]["planted:segfault"]["verdict"] == "CRASHED"
    assert again["modes"]["planted:hang"]["verdict"] == "TIMEOUT"  # the report's 0.5 s timeout is reused
    assert again["modes"]["planted:ref"]["verdict"] == "OK"


def test_without_isolation_a_timeout_is_a_usage_error():
    r = _run("run", "--op", "gla", "--modes", "recurrent", "--isolation", "none", "--case-timeout", 5)
    assert r.exit_code == 2 and "--case-timeout needs --isolation process" in r.stderr
    r = _run("run", "--op", "gla", "--modes", "recurrent", "--case-timeout", 0)
    assert r.exit_code == 2 and "--case-timeout must be > 0" in r.stderr


def test_an_interrupted_run_writes_the_report_of_what_finished(tmp_path):
    """A run stuck in a hanging mode (no --case-timeout: 900 s) is stopped by Ctrl-C: the worker
    is killed, the finished cases are in the report, the exit code is 130 (SIGTERM takes the same
    path: tests/engine/test_isolation.py)."""
    path = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROVIDERS), str(Path(__file__).parent.parent),
                                                       os.environ.get("PYTHONPATH", "")]), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fla_check.cli", "run", "--provider", SPEC, "--op", "gla",
                             "--modes", "planted:ref,planted:hang", "--examples", "30", "--seed", "1",
                             "--dtypes", "fp32", "--max-seq-len", "12", "--report", str(path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert path.exists(), proc.communicate()
        time.sleep(3)  # into the hang (the first case of T >= 8)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and str(path) in err
    data = json.loads(path.read_text())
    assert data["interrupted"] is True and data["cases"]
    for case in data["cases"]:
        assert case["modes"]["planted:ref"]["verdict"] == "OK"


def test_a_crash_that_depends_on_the_workers_history_keeps_its_evidence(tmp_path):
    """planted:abort3 aborts on the third call its worker gets: the report's failing case stays
    CRASHED even though re-running it with every mode (for the pairs) passes."""
    from fla_check.engine import isolation

    isolation.shutdown()  # a fresh worker: the planted call count starts at 1
    path = tmp_path / "r.json"
    r = _run("run", "--provider", SPEC, "--op", "gla", "--modes", "planted:ref,planted:abort3", "--examples", 8,
             "--seed", 1, "--dtypes", "fp32", "--max-seq-len", 32, "--report", path, "--no-color")
    assert r.exit_code == 1, r.output
    data = json.loads(path.read_text())
    assert data["summary"]["planted:abort3"]["verdict"] == "CRASHED"
    assert data["summary"]["planted:ref"]["verdict"] == "OK"
    failing = data["cases"][data["failures"]["planted:abort3"]]["modes"]["planted:abort3"]
    assert failing["verdict"] == "CRASHED" and "SIGABRT" in failing["reason"]
