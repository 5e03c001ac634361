"""The CLI: usage errors (exit 2, one line), run/replay/list, exit codes, Ctrl-C, and the
end-to-end done-when checks on the built-in kernels (Triton interpreter, tiny budgets)."""
import json
import re
import shlex

import pytest
from _fake_modes import PROVIDER, make_clean, registered
from click.testing import CliRunner
from device import DEVICE

from fla_check import ops
from fla_check.cli import main
from fla_check.ops import ModeSpec


@pytest.fixture(autouse=True)
def fake_modes():
    with registered():
        yield


def _run(*args, **env):
    return CliRunner().invoke(main, [str(a) for a in args], env=env or None)


FAST = ["--examples", 3, "--seed", 1, "--max-seq-len", 20, "--dtypes", "fp32"]


@pytest.mark.parametrize("args, message", [
    (["--op", "foo", "--modes", "chunk"], "unknown op 'foo'; valid ops: gla, delta, gated_delta, simple_gla, kda"),
    (["--op", "gla", "--modes", "chunky"], "unknown mode 'chunky' for op gla; valid modes: chunk, fused_chunk,"),
    (["--op", "gla", "--modes", " , "], "empty mode list; give --modes with some of: recurrent, chunk"),
    (["--op", "gla", "--modes", "chunk", "--examples", "-1"], "--examples must be >= 1, got -1"),
    (["--op", "gla", "--modes", "chunk", "--examples", "0"], "--examples must be >= 1, got 0 (a run that checks no"),
    (["--op", "gla", "--modes", "chunk", "--examples", "3", "--shard", "4/4"],
     "--shard 4/4: this shard has no example (3 example(s) over 4 shards)"),
    (["--op", "gla", "--modes", "chunk", "--mask-fill=5"], "mask fill '5': a log-gate fill must be <= 0"),
    (["--op", "gla", "--modes", "chunk", "--mask-fill=-20,1e-3"], "mask fill '1e-3': a log-gate fill must be <= 0"),
    (["--op", "gla", "--modes", "chunk", "--mask-fill=inf"], "a log-gate fill must be <= 0"),
    (["--op", "gla", "--modes", "chunk", "--dtypes", "fp8"], "unknown dtype 'fp8'"),
    (["--op", "delta", "--modes", "chunk", "--mask-fill=-0.1max"],
     "DeltaNet has no gate; pack with cu_seqlens"),
    (["--op", "gla", "--modes", "chunk", "--mask-fill", "-0.3max"], "only -0.1max and -max are symbolic"),
    (["--op", "gla", "--modes", "chunk", "--max-seq-len", "0"], "--max-seq-len must be >= 1"),
    (["--op", "gla", "--modes", "chunk", "--chunk-sizes", "8"], "--chunk-sizes '8': a comma list of default, 16, 32"),
    (["--op", "gla", "--modes", "chunk", "--state-layouts", "kv,xy"], "--state-layouts 'kv,xy': a comma list of kv"),
])
def test_usage_errors_are_one_line_exit_2(args, message):
    r = _run("run", *args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fla-check: error: ") and message in lines[0]


def test_unproven_bf16_is_explained(monkeypatch):
    from fla_check import backend

    reason = "bf16 tl.dot is wrong on this backend (the Triton interpreter ..., triton issue 11584)"
    monkeypatch.setattr(backend, "get_backend", lambda device=None: backend.Backend("cpu", True, False, reason))
    r = _run("run", "--op", "gla", "--modes", "chunk", "--dtypes", "fp32,bf16")
    assert r.exit_code == 2 and "bfloat16 cannot be checked on cpu / Triton interpreter" in r.stderr
    assert "triton issue 11584" in r.stderr and "use --dtypes fp32,fp16 here" in r.stderr


def test_bf16_runs_where_the_probe_proves_it():
    from fla_check.backend import get_backend

    if not get_backend().bf16_dot_ok:
        pytest.skip("bf16 unproven here (test_unproven_bf16_is_explained)")
    r = _run("run", "--op", "gla", "--modes", "test:clean", "--examples", 2, "--seed", 1, "--max-seq-len", 20,
             "--dtypes", "bf16")
    assert r.exit_code == 0, r.output


def test_cuda_without_a_gpu_is_a_usage_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    r = _run("run", "--op", "gla", "--modes", "chunk", "--device", "cuda")
    assert r.exit_code == 2 and "no CUDA device" in r.stderr


def test_run_ok_writes_report_and_json(tmp_path):
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "test:clean", *FAST, "--report", path)
    assert r.exit_code == 0, r.output
    assert "verdict: OK" in r.stdout and path.exists()
    r = _run("run", "--op", "gla", "--modes", "test:clean", *FAST, "--report", path, "--json")
    data = json.loads(r.stdout)
    assert r.exit_code == 0 and data["summary"]["test:clean"]["verdict"] == "OK"
    assert json.loads(path.read_text())["examples"] == data["examples"]


def test_a_run_that_checks_no_case_is_not_ok(tmp_path):
    """Every mode UNSUPPORTED on every case: the tables and the report say why, the verdict is
    NOTHING CHECKED (not OK) and the exit code is the usage error's, with the reason on stderr."""
    import torch

    ops.register_modes("gla", [ModeSpec("fp32only", PROVIDER, make_clean(ops.get_op("gla").step),
                                        dtypes=frozenset({torch.float32}))])
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "test:fp32only", "--examples", 2, "--seed", 1, "--max-seq-len", 8,
             "--dtypes", "fp16", "--report", path, "--no-color")
    assert r.exit_code == 2, r.output
    out = " ".join(r.stdout.split())  # rich wraps at 80 columns
    assert "verdict: NOTHING CHECKED" in out and "verdict: OK" not in out
    assert "test:fp32only: unsupported on 2 case(s): test:fp32only does not support float16" in out
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "fla-check: error: nothing was checked: every mode was UNSUPPORTED on every case "
        "(test:fp32only: test:fp32only does not support float16)")
    assert json.loads(path.read_text())["summary"]["test:fp32only"]["verdict"] == "UNSUPPORTED"
    as_json = _run("run", "--op", "gla", "--modes", "test:fp32only,test:clean", "--examples", 2, "--seed", 1,
                   "--max-seq-len", 8, "--dtypes", "fp16", "--report", path, "--json")
    assert as_json.exit_code == 0, as_json.output  # one mode checked every case: a verdict
    assert json.loads(as_json.stdout)["summary"]["test:clean"]["cases"] == 2
    replay = _run("replay", path, "--case", 0)  # the report's modes include a runnable one
    assert replay.exit_code == 0, replay.output
    data = json.loads(path.read_text())
    data["modes"] = ["test:fp32only"]  # a report of a mode that cannot run its case here
    path.write_text(json.dumps(data))
    replay = _run("replay", path, "--case", 0)
    assert replay.exit_code == 2 and "nothing was checked: every mode is UNSUPPORTED here" in replay.stderr


def test_run_fail_then_replay_reproduces(tmp_path):
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "test:clean,test:dropped", "--examples", 10, "--seed", 3,
             "--max-seq-len", 40, "--dtypes", "fp32", "--report", path)
    assert r.exit_code == 1, r.output
    assert "test:dropped: DIVERGED on case" in r.stdout and "packing: unpacked" in r.stdout
    cmd = re.search(r"replay: (fla-check replay .*)", r.stdout).group(1)
    replay = _run(*shlex.split(cmd)[1:])
    assert replay.exit_code == 1 and "DIVERGED" in replay.stdout and "T=17" in replay.stdout
    as_json = json.loads(_run(*shlex.split(cmd)[1:], "--json").stdout)
    assert as_json["modes"]["test:dropped"]["verdict"] == "DIVERGED"
    assert as_json["modes"]["test:clean"]["verdict"] == "OK"


def test_replay_errors(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert "not a fla-check run report" in _run("replay", bad).stderr
    path = tmp_path / "r.json"
    _run("run", "--op", "gla", "--modes", "test:clean", *FAST, "--report", path)
    r = _run("replay", path, "--case", 99)
    assert r.exit_code == 2 and "--case 99 out of range" in r.stderr
    assert _run("replay", path).exit_code == 0  # default: first failing case, else case 0


def test_internal_error_exit_3(monkeypatch):
    import fla_check.engine.search

    def boom(*a, **k):
        raise RuntimeError("harness bug")

    monkeypatch.setattr(fla_check.engine.search, "search", boom)
    r = _run("run", "--op", "gla", "--modes", "test:clean", *FAST)
    assert r.exit_code == 3 and "internal error: RuntimeError: harness bug" in r.stderr


def test_ctrl_c_writes_the_partial_report(tmp_path):
    calls = []
    clean = make_clean(ops.get_op("gla").step)

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return clean(*a, **kw)

    ops.register_modes("gla", [ModeSpec("ctrlc", PROVIDER, interrupted)])
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "test:ctrlc", "--examples", 10, "--report", path,
             "--invariance", "none")  # the test counts calls: no extra invariance calls
    assert r.exit_code == 130 and "interrupted" in r.stdout
    data = json.loads(path.read_text())
    assert data["interrupted"] and data["examples"] == 2


def test_a_harness_out_of_memory_stops_the_run_with_exit_3_and_keeps_the_report(tmp_path, monkeypatch):
    import torch

    import fla_check.engine.runner as runner

    calls, reference = [], runner.reference

    def third_runs_out(*a, **kw):  # the float64 reference of the third case does not fit
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
        return reference(*a, **kw)

    monkeypatch.setattr(runner, "reference", third_runs_out)
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "test:clean", "--examples", 10, "--seed", 1, "--max-seq-len", 20,
             "--dtypes", "fp32", "--report", path)
    assert r.exit_code == 3 and len(calls) == 3  # not shrunk: no case after the third
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    from fla_check.backend import get_backend

    where = "GPU" if get_backend().device == "cuda" else "CPU"  # the harness runs on the backend's device
    assert re.search(rf"stopped: {where} out of memory in the float64 reference for a case of [\d,]+ input elements "
                     r"\(gla-float32-B\d+T\d+", r.stderr)
    assert "not a kernel's failure" in r.stderr and "--max-seq-len" in r.stderr
    assert f"fla-check replay {path} --stopped" in r.stderr.replace("\n", "")
    data = json.loads(path.read_text())
    assert data["interrupted"] and data["examples"] == 2 and data["stopped"]["stage"] == "the float64 reference"
    replayed = _run("replay", path, "--stopped")  # the reference fits now
    assert replayed.exit_code == 0 and "replay of the case the run stopped on" in replayed.stdout
    as_json = json.loads(_run("replay", path, "--stopped", "--json").stdout)
    assert as_json["config"] == data["stopped"]["config"]
    assert _run("replay", path, "--stopped", "--case", 0).exit_code == 2


def test_replay_stopped_needs_a_stopped_run(tmp_path):
    path = tmp_path / "r.json"
    assert _run("run", "--op", "gla", "--modes", "test:clean", *FAST, "--report", path).exit_code == 0
    r = _run("replay", path, "--stopped")
    assert r.exit_code == 2 and "this report's run was not stopped on a case" in r.stderr


def test_no_color(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)  # the caller's shell may set it
    args = ["run", "--op", "gla", "--modes", "test:clean", *FAST, "--report", tmp_path / "r.json"]
    assert "\x1b[" in _run(*args, FORCE_COLOR="1").stdout
    assert "\x1b[" not in _run(*args, "--no-color", FORCE_COLOR="1").stdout
    assert "\x1b[" not in _run(*args, FORCE_COLOR="1", NO_COLOR="1").stdout


def test_list():
    r = _run("list")
    assert r.exit_code == 0
    for text in (f"backend: {DEVICE}", "bf16 tl.dot probe", "fp32 tl.dot at tf32", "gated_delta", "simple_gla", "fused_chunk",
                 "providers:", "test"):
        assert text in r.stdout
    data = json.loads(_run("list", "--json").stdout)
    assert [o["name"] for o in data["ops"]] == ["gla", "delta", "gated_delta", "simple_gla", "kda"]
    b = data["backend"]
    assert b["interpreter"] in (True, False) and {"bf16_dot_ok", "bf16_dot", "shim", "tf32_dots", "tf32"} <= set(b)
    if b["interpreter"] and b["bf16_dot_ok"]:
        assert "bf16 tl.dot probe: ok via interpreter shim" in r.stdout and b["shim"] == "installed"


# -- end to end on the built-in kernels (the done-when, tiny budgets) -----------------
def test_builtin_gla_clean_run_exits_0(tmp_path):
    r = _run("run", "--op", "gla", "--modes", "recurrent,chunk", "--examples", 4, "--seed", 0,
             "--max-seq-len", 24, "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output


@pytest.fixture
def short_shrink(monkeypatch):
    """The smoke profile with a budget of 8 shrink cases (the interpreter runs chunk kernels slowly)."""
    import dataclasses

    from fla_check.engine import profiles

    monkeypatch.setitem(profiles.PROFILES, "smoke",
                        dataclasses.replace(profiles.PROFILES["smoke"], shrink_cases=8))


@pytest.mark.parametrize("op, modes", [("gla", "recurrent,chunk,fused_chunk"), ("gated_delta", "recurrent,chunk")])
def test_builtin_masking_failure_found_shrunk_and_replayed(op, modes, tmp_path, short_shrink):
    path = tmp_path / "r.json"
    r = _run("run", "--op", op, "--modes", modes, "--mask-fill=-0.1max", "--examples", 8, "--seed", 0,
             "--max-seq-len", 24, "--dtypes", "fp32", "--profile", "smoke", "--report", path)
    assert r.exit_code == 1, r.output
    summary = json.loads(path.read_text())["summary"]
    assert summary["recurrent"]["verdict"] == "OK"
    assert summary["chunk"]["verdict"] in ("DIVERGED", "NONFINITE")
    block = r.stdout[r.stdout.index("chunk: "):]
    assert "packing: reset mask; row 0: starts [0, " in block and "fill -0.1max" in block
    cmd = re.search(r"replay: (fla-check replay .*)", block).group(1)
    replay = _run(*shlex.split(cmd)[1:], "--json")
    assert replay.exit_code == 1
    assert json.loads(replay.stdout)["modes"]["chunk"]["verdict"] == summary["chunk"]["verdict"]


def test_chunk_sizes_and_state_layouts_are_drawn_reported_and_replayed(tmp_path):
    from _fake_modes import make_v_first

    ops.register_modes("gla", [ModeSpec("vk", PROVIDER, make_v_first(ops.get_op("gla").step), state_v_first=True)])
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "test:vk,test:clean", "--examples", 12, "--seed", 2, "--max-seq-len",
             12, "--dtypes", "fp32", "--chunk-sizes", "default,16", "--state-layouts", "all", "--report", path,
             "--no-color")
    assert r.exit_code == 0, r.output
    report = json.loads(path.read_text())
    counts = {v: sum(c["config"].get(k) == x for c in report["cases"])
              for v, k, x in (("chunk default", "chunk_size", None), ("chunk 16", "chunk_size", 16),
                              ("state vk", "state_v_first", True))}
    out = " ".join(r.stdout.split())
    assert (f"drawn (of {len(report['cases'])} cases): chunk default {counts['chunk default']}, chunk 16 "
            f"{counts['chunk 16']}, state kv {len(report['cases']) - counts['state vk']}, state vk {counts['state vk']}") in out
    assert "never drawn" not in out
    assert report["options"]["chunk_sizes"] == [None, 16] and report["options"]["state_layouts"] == ["kv", "vk"]
    cases = report["cases"]
    vk = next(i for i, c in enumerate(cases) if c["config"].get("state_v_first"))
    assert {c["config"].get("chunk_size") for c in cases} == {None, 16}
    assert cases[vk]["modes"]["test:vk"]["verdict"] == "OK"
    assert cases[vk]["modes"]["test:clean"]["verdict"] == "UNSUPPORTED"
    replay = _run("replay", path, "--case", vk, "--no-color")
    assert replay.exit_code == 0, replay.output
    assert "state_v_first: h0 handed over as [N, HV, V, K]" in " ".join(replay.stdout.split())
