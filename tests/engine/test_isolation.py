"""Crash and hang isolation of mode calls (fla_check.engine.isolation): planted modes that abort,
segfault, hang or poison the CUDA context end as CRASHED / TIMEOUT, the worker restarts, the
other modes of the case are judged as usual."""
import os
import signal
import time
from pathlib import Path

import pytest

from device import DEVICE
from _fake_modes import PROVIDER, make_clean, registered
from fla_check import ops
from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Verdict, worst
from fla_check.engine import isolation
from fla_check.engine.isolation import Isolation, describe_exit, stack_excerpt
from fla_check.ops import ModeSpec
from fla_check.providers import load_provider, unload_provider
from fla_check.engine.runner import check_case

PROVIDERS = Path(__file__).parent.parent / "providers"
PLANTED = "planted_provider:provider"
CFG = CaseConfig(op="gla", dtype="float32", B=1, T=9, H=1, K=16, V=16, seed=3)  # T >= MIN_T: triggers
SHORT = CaseConfig(op="gla", dtype="float32", B=1, T=5, H=1, K=16, V=16, seed=3)  # below the trigger


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.syspath_prepend(str(PROVIDERS))
    load_provider(PLANTED)
    yield
    unload_provider("planted")


def _check(modes, config=CFG, timeout=None, **kw):
    return check_case("gla", modes, config, isolation=Isolation("process", timeout), **kw)


def test_abort_and_segfault_are_crashed_with_signal_and_stack_and_the_worker_restarts(planted):
    w = isolation.worker(DEVICE)
    result = _check(["planted:abort", "planted:ref", "planted:segfault"])
    abort, ref, segv = (result.modes[m] for m in ("planted:abort", "planted:ref", "planted:segfault"))
    assert abort.verdict is Verdict.CRASHED and "SIGABRT (signal 6)" in abort.reason
    assert segv.verdict is Verdict.CRASHED and "SIGSEGV (signal 11)" in segv.reason
    for r, frame in ((abort, "in _abort"), (segv, "in _segfault")):
        assert "Fatal Python error" in r.stderr and frame in r.stderr and not r.outputs
    assert ref.verdict is Verdict.OK and ref.outputs  # judged in the parent after the crash
    assert result.verdict is Verdict.CRASHED and result.failed_modes == ["planted:abort", "planted:segfault"]
    starts = w.starts
    again = _check(["planted:abort", "planted:ref"], SHORT)  # below the trigger: a fresh worker, all OK
    assert again.verdict is Verdict.OK and w.starts == starts + 1


def test_a_hang_past_the_case_timeout_is_timeout_with_the_stuck_stack(planted):
    result = _check(["planted:hang", "planted:ref"], timeout=1.0)
    hang = result.modes["planted:hang"]
    assert hang.verdict is Verdict.TIMEOUT and "no result after 1 s" in hang.reason
    assert "in _hang" in hang.stderr  # faulthandler dump requested before the kill
    assert result.modes["planted:ref"].verdict is Verdict.OK


def test_a_cuda_context_error_is_crashed_and_the_worker_is_replaced(planted):
    w = isolation.worker(DEVICE)
    r = _check(["planted:cuda_fault"]).modes["planted:cuda_fault"]
    assert r.verdict is Verdict.CRASHED and "CUDA context lost" in r.reason and "illegal memory access" in r.reason
    assert "_cuda_fault" in r.stderr and not w.alive  # exited: later calls get a fresh context
    assert _check(["planted:ref"]).verdict is Verdict.OK and w.alive


def test_a_crash_on_the_second_call_of_the_determinism_check_is_crashed(planted):
    isolation.shutdown()  # a fresh worker: planted:abort3 aborts on the third call it gets there
    assert _check(["planted:abort3"], SHORT).verdict is Verdict.OK  # call 1
    result = _check(["planted:abort3", "planted:ref"], SHORT, repeat="all")  # calls 2 and 3 (the repeat)
    r = result.modes["planted:abort3"]
    assert r.verdict is Verdict.CRASHED and r.reason == "second call: worker process killed by SIGABRT (signal 6)"
    assert "in abort3" in r.stderr and result.modes["planted:ref"].verdict is Verdict.OK


def test_a_raising_mode_is_error_with_the_workers_traceback(planted):
    w = isolation.worker(DEVICE)
    result = _check(["planted:raises", "planted:ref"])
    r = result.modes["planted:raises"]
    assert r.verdict is Verdict.ERROR and r.reason == "ValueError: planted failure"
    assert "in _raise" in r.traceback and "planted_provider.py" in r.traceback
    assert w.alive and result.modes["planted:ref"].verdict is Verdict.OK  # no restart for a plain exception


def test_a_mode_the_worker_cannot_load_runs_in_process_and_is_listed():
    step = ops.get_op("gla").step
    with registered():
        ops.register_modes("gla", [ModeSpec("closure", PROVIDER, make_clean(step))])
        result = _check([f"{PROVIDER}:closure"], SHORT)
    assert result.modes[f"{PROVIDER}:closure"].verdict is Verdict.OK
    assert f"{PROVIDER}:closure" in isolation.in_process_modes()


def test_builtin_modes_give_the_same_numbers_isolated_and_in_process():
    cfg = CaseConfig(op="gla", dtype="float32", B=1, T=12, H=1, K=16, V=16, seed=5)
    a = check_case("gla", ["recurrent"], cfg).modes["recurrent"]
    b = _check(["recurrent"], cfg).modes["recurrent"]
    assert a.verdict is b.verdict is Verdict.OK
    assert [c.kernel.max_abs for c in a.outputs] == [c.kernel.max_abs for c in b.outputs]


def test_sigterm_stops_the_run_like_ctrl_c():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with isolation.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_verdict_severity_and_failure():
    assert worst([Verdict.ERROR, Verdict.TIMEOUT, Verdict.OK]) is Verdict.TIMEOUT
    assert worst([Verdict.TIMEOUT, Verdict.CRASHED, Verdict.NONFINITE]) is Verdict.CRASHED
    assert Verdict.CRASHED.failed and Verdict.TIMEOUT.failed


def test_isolation_options_are_validated():
    assert Isolation.of(None) == Isolation("none") and Isolation.of("process").isolated
    with pytest.raises(ValueError, match="needs process isolation"):
        Isolation("none", 3.0)
    with pytest.raises(ValueError, match="> 0"):
        Isolation("process", 0.0)
    with pytest.raises(ValueError, match="valid: process, none"):
        Isolation("thread")


def test_exit_descriptions_and_stack_excerpt():
    assert describe_exit(-6) == "killed by SIGABRT (signal 6)" and describe_exit(3) == "exited with code 3"
    log = ("noise\nFatal Python error: Aborted\n\nStack (most recent call first):\n"
           '  File "/x/kernel.py", line 3 in bad\n  File "/usr/lib/python3/multiprocessing/process.py", line 1 in run\n'
           "\nExtension modules: torch._C (total: 1)\n")
    assert stack_excerpt(log).splitlines() == ["Fatal Python error: Aborted", "Stack (most recent call first):",
                                               '  File "/x/kernel.py", line 3 in bad']
    assert stack_excerpt("a\nb\nc", lines=2) == "b\nc"  # no stack dump: the tail


def test_memory_checks_run_in_the_worker(planted):
    """Poisoned allocations and NaN guards are applied inside the worker: an output slot left
    unwritten there comes back with the sentinel bits (UNWRITTEN), and the over-read diagnosis
    re-runs there with finite guards (OVERREAD); neither mode fell back to this process."""
    result = _check(["planted:unwritten", "planted:overread", "planted:ref"], SHORT)
    unwritten, over = result.modes["planted:unwritten"], result.modes["planted:overread"]
    assert unwritten.verdict is Verdict.UNWRITTEN and "o: 16 of 80 elements never written, tokens 4" in unwritten.reason
    assert over.verdict is Verdict.OVERREAD and "memory past the ends of its input tensors" in over.reason
    assert result.modes["planted:ref"].verdict is Verdict.OK
    assert not isolation.in_process_modes(["planted:unwritten", "planted:overread"])
