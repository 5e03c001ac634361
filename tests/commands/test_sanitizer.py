"""fla-check run --sanitizer: the UNSUPPORTED path on CPU, case picking, memcheck output parsing."""
import json
import subprocess

import pytest
from device import DEVICE
from _fake_modes import registered
from click.testing import CliRunner

from fla_check.cli import main
from fla_check.commands.run import sanitizer
from fla_check.commands.run.sanitizer import SanitizerPolicy, pick_cases, sanitize, summarize, unsupported_reason
from fla_check.errors import UsageError
from fla_check.verdict.results import SearchResult

MEMCHECK_LOG = """========= COMPUTE-SANITIZER
========= Invalid __global__ read of size 2 bytes
=========     at 0x2b0 in gla_recurrent_fwd_kernel
=========     by thread (60,0,0) in block (0,1,0)
=========     Address 0x7f3a1c000200 is out of bounds
========= Invalid __global__ read of size 2 bytes
=========     at 0x2b0 in gla_recurrent_fwd_kernel
=========     by thread (61,0,0) in block (0,1,0)
========= Program hit cudaErrorLaunchFailure (error 719) due to "unspecified launch failure" on CUDA API call
========= ERROR SUMMARY: 3 errors
"""


def test_unsupported_on_cpu_and_without_the_tool():
    assert "needs a CUDA GPU" in unsupported_reason("cpu")
    assert "not on PATH" in unsupported_reason("cuda", which=lambda _: None)
    assert unsupported_reason("cuda", which=lambda _: "/usr/local/cuda/bin/compute-sanitizer") is None


def test_policy_parsing():
    assert SanitizerPolicy.parse("failing") == SanitizerPolicy(0)
    assert SanitizerPolicy.parse("sample:3") == SanitizerPolicy(3)
    for bad in ("sample:0", "sample:x", "all"):
        with pytest.raises(UsageError):
            SanitizerPolicy.parse(bad)


def test_summary_counts_errors_and_names_their_kinds():
    errors, text = summarize(MEMCHECK_LOG)
    assert errors == 3
    assert text == ("ERROR SUMMARY: 3 errors; Invalid __global__ read of size 2 bytes; Program hit "
                    "cudaErrorLaunchFailure (error 719) due to \"unspecified launch failure\" on CUDA API call")
    assert summarize("========= ERROR SUMMARY: 0 errors\n")[0] == 0
    assert summarize("Traceback ...\nRuntimeError: boom")[0] is None


def _result(n_cases, failures):
    return SearchResult(op="gla", modes=["chunk"], options={}, cases=[None] * n_cases, failures=failures)


def test_cases_picked_are_the_failing_ones_plus_a_seeded_sample():
    result = _result(10, {"chunk": 7, "recurrent": 7})
    assert pick_cases(result, SanitizerPolicy()) == [7]
    picked = pick_cases(result, SanitizerPolicy(3))
    assert picked[0] == 7 and len(set(picked)) == 4 and picked == pick_cases(result, SanitizerPolicy(3))


def test_sanitize_runs_each_replay_under_memcheck(monkeypatch, tmp_path):
    monkeypatch.setattr(sanitizer.shutil, "which", lambda _: "/usr/local/cuda/bin/compute-sanitizer")
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        out = MEMCHECK_LOG if cmd[cmd.index("--case") + 1] == "2" else "========= ERROR SUMMARY: 0 errors\n"
        return subprocess.CompletedProcess(cmd, 0, out, "")

    record = sanitize(_result(4, {"chunk": 2}), tmp_path / "r.json", SanitizerPolicy(1), "cuda", ("fla",), fake_run)
    assert record["status"] == "ERRORS" and [c["case"] for c in record["cases"]][0] == 2
    assert calls[0][:3] == ["compute-sanitizer", "--tool", "memcheck"] and calls[0][-2:] == ["--provider", "fla"]
    assert "replay" in calls[0] and record["cases"][0]["errors"] == 3 and record["cases"][1]["errors"] == 0
    assert sanitizer.sanitizer_failed(record)
    assert sanitize(_result(4, {}), tmp_path / "r.json", SanitizerPolicy(), "cpu")["status"] == "UNSUPPORTED"


@pytest.mark.skipif(DEVICE != "cpu", reason="the CPU path of --sanitizer; on a GPU host triton is already set up for cuda")
def test_cli_run_with_sanitizer_on_cpu_says_unsupported(tmp_path):
    path = tmp_path / "r.json"
    with registered():
        r = CliRunner().invoke(main, ["run", "--op", "gla", "--modes", "test:clean", "--examples", "2", "--seed", "1",
                                      "--max-seq-len", "12", "--dtypes", "fp32", "--device", "cpu", "--report",
                                      str(path), "--sanitizer"])
    assert r.exit_code == 0, r.output
    assert "sanitizer: UNSUPPORTED: compute-sanitizer needs a CUDA GPU" in r.stdout
    record = json.loads(path.read_text())["options"]["sanitizer"]
    assert record["status"] == "UNSUPPORTED" and record["cases"] == []
    bad = CliRunner().invoke(main, ["run", "--op", "gla", "--modes", "recurrent", "--sanitizer=every"])
    assert bad.exit_code == 2 and "--sanitizer 'every'" in bad.output
