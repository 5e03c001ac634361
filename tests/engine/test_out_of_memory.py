"""Out of memory: a harness stage's becomes HarnessOutOfMemory and stops a search without
shrinking; a mode's own stays its ERROR verdict, after the CUDA cache is released."""
import re

import pytest
import torch
from _fake_modes import PROVIDER, make_clean, registered
from device import DEVICE

import fla_check.engine.runner as runner
from fla_check import ops
from fla_check.cases import CaseConfig
from fla_check.engine.out_of_memory import harness_stage, input_elements, is_out_of_memory, release
from fla_check.engine.runner import check_case
from fla_check.engine.search import search
from fla_check.errors import HarnessOutOfMemory
from fla_check.ops import ModeSpec
from fla_check.verdict.compare import Verdict

CFG = CaseConfig(op="gla", dtype="float32", B=2, T=40, H=2, K=16, V=8, seed=1)
WHERE = "GPU" if DEVICE == "cuda" else "CPU"  # what the harness runs on (the backend's device)


@pytest.fixture(autouse=True)
def fake_modes():
    with registered():
        yield


@pytest.fixture
def emptied(monkeypatch):
    """Calls of torch.cuda.empty_cache, with CUDA made to look initialised."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    return calls


def test_out_of_memory_is_recognised_on_both_allocators():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                                         "allocate memory: you tried to allocate 8 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(MemoryError())  # Python's own: not an allocator of tensors


def test_a_harness_stage_names_what_ran_out_and_the_case():
    with pytest.raises(HarnessOutOfMemory) as info:
        with harness_stage("the float64 reference", CFG, "cpu"):
            raise torch.OutOfMemoryError("CUDA out of memory")
    err = info.value
    assert err.stage == "the float64 reference" and err.elements == input_elements(CFG) == 2 * 40 * (2 * 2 * 16 + 2 * 8)
    assert str(err) == f"CPU out of memory in the float64 reference for a case of 6,400 input elements ({CFG.short()})"
    assert isinstance(err.__cause__, torch.OutOfMemoryError)


def test_a_harness_stage_lets_other_errors_through_unchanged():
    with pytest.raises(ValueError, match="not memory"):
        with harness_stage("the float64 reference", CFG, "cpu"):
            raise ValueError("not memory")


def test_release_empties_the_cuda_cache_after_an_out_of_memory_only(emptied):
    release(ValueError("x"))
    assert emptied == []
    release(torch.OutOfMemoryError("x"))
    assert emptied == [1]


def _oom_on_call(monkeypatch, module, name, n):
    """Make module.name raise torch.OutOfMemoryError on its n-th call; the list of calls."""
    calls, original = [], getattr(module, name)

    def wrapped(*a, **kw):
        calls.append(1)
        if len(calls) == n:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
        return original(*a, **kw)

    monkeypatch.setattr(module, name, wrapped)
    return calls


@pytest.mark.parametrize("name, stage", [("reference", "the float64 reference"),
                                         ("build_case", "building the inputs"),
                                         ("sample_groups", "the float64 baseline emulation (recurrent)")])
def test_check_case_raises_a_harness_out_of_memory_naming_the_stage(monkeypatch, name, stage):
    _oom_on_call(monkeypatch, runner, name, 1)
    want = rf"{WHERE} out of memory in {re.escape(stage)} for a case of [\d,]+ input"
    with pytest.raises(HarnessOutOfMemory, match=want):
        check_case("gla", ["test:clean"], CFG)


def test_a_mode_out_of_memory_stays_its_error_after_releasing_the_cache(emptied):
    def hungry(*a, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")

    ops.register_modes("gla", [ModeSpec("hungry", PROVIDER, hungry)])
    result = check_case("gla", ["test:hungry", "test:clean"], CFG)
    assert result.modes["test:hungry"].verdict is Verdict.ERROR
    assert "OutOfMemoryError" in result.modes["test:hungry"].reason and emptied == [1]
    assert result.modes["test:clean"].verdict is Verdict.OK


def test_a_harness_out_of_memory_stops_the_search_unshrunk_keeping_the_cases_before(monkeypatch):
    calls = _oom_on_call(monkeypatch, runner, "reference", 3)
    partial = []
    r = search("gla", ["test:clean"], examples=12, seed=5, max_seq_len=40, dtypes=["fp32"], database_root=None,
               checkpoint=partial.append)
    assert len(calls) == 3  # hypothesis did not shrink it: no case ran after the third
    assert r.interrupted and len(r.cases) == 2 and [len(p.cases) for p in partial] == [1, 2]
    assert r.stopped["stage"] == "the float64 reference"
    assert r.stopped["reason"].startswith(f"{WHERE} out of memory in the float64 reference for a case of")
    stopped = CaseConfig.from_json(r.stopped["config"])
    assert stopped not in [c.config for c in r.cases] and stopped.short() in r.stopped["reason"]


def test_a_failing_mode_still_shrinks_so_the_stop_is_what_differs(monkeypatch):
    """The control of the test above: a mode raising the same error is a failure hypothesis shrinks."""
    def hungry(*a, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory")

    ops.register_modes("gla", [ModeSpec("hungry", PROVIDER, hungry)])
    r = search("gla", ["test:hungry"], examples=12, seed=5, max_seq_len=40, dtypes=["fp32"], database_root=None)
    assert not r.interrupted and not r.stopped and r.shrunk == ["test:hungry"]
