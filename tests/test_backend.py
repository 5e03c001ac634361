"""fla_check.backend: the bf16 and tf32 probes, the interpreter shim behind them, and which modes
the bf16 capability limits (Triton modes only; plain torch modes run bf16 anywhere)."""
import pytest
import torch
from _fake_modes import PROVIDER, make_clean

from fla_check import backend as backend_mod
from fla_check import interpreter_shim, ops
from fla_check.backend import TF32_ENV, Backend, get_backend
from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Verdict
from fla_check.ops import ModeSpec
from fla_check.engine.runner import check_case

interpreter_only = pytest.mark.skipif(not get_backend().interpreter, reason="probes the CPU interpreter")
shim_applies = pytest.mark.skipif(not get_backend().interpreter or interpreter_shim.check_internals() is not None,
                                  reason="the shim patches Triton 3.9's CPU interpreter")


@pytest.fixture
def fresh_backend(monkeypatch):
    """A backend probed anew inside the test; the process default is rebuilt afterwards."""
    get_backend.cache_clear()
    interpreter_shim.uninstall()
    yield
    monkeypatch.undo()
    get_backend.cache_clear()
    interpreter_shim.uninstall()
    get_backend()


@pytest.fixture
def torch_modes():
    """The same fp32 recurrence (plain torch) declared as a Triton mode and as a torch mode."""
    step = ops.get_op("gla").step
    ops.register_modes("gla", [ModeSpec("as_triton", PROVIDER, make_clean(step)),
                               ModeSpec("torch_only", PROVIDER, make_clean(step), triton=False)])
    yield ["test:as_triton", "test:torch_only"]
    ops.remove_modes(PROVIDER)


def _bf16_case():
    return CaseConfig(op="gla", dtype="bfloat16", B=1, T=24, H=2, K=16, V=16, seed=3, initial_state=True)


def _break_shim(monkeypatch):
    monkeypatch.setattr(interpreter_shim, "check_internals", lambda: "simulated: internals changed")


@shim_applies
def test_interpreter_backend_is_proven_by_the_probes():
    b = get_backend()
    assert b.bf16_dot_ok and b.bf16_dot_reason == "" and b.shim == "installed"
    assert b.tf32_dots and interpreter_shim.status() == interpreter_shim.ShimStatus(True, True)
    assert b.dtype_unsupported_reason(torch.bfloat16) is None
    assert b.describe_bf16() == "ok via interpreter shim"
    assert b.describe_tf32() == "truncated to TF32 (emulated by the interpreter shim)"
    assert backend_mod._probe_tf32_dot("cpu")[0] == "truncated"


@interpreter_only
def test_without_the_shim_bf16_is_unsupported_with_the_reason(fresh_backend, monkeypatch):
    _break_shim(monkeypatch)
    b = get_backend()
    assert not b.bf16_dot_ok and not b.tf32_dots and b.shim == "not installed: simulated: internals changed"
    reason = b.dtype_unsupported_reason(torch.bfloat16)
    assert "triton issue 11584" in reason and "simulated: internals changed" in reason
    assert b.dtype_unsupported_reason(torch.bfloat16, triton=False) is None
    assert b.dtype_unsupported_reason(torch.float16) is None
    assert b.describe_bf16().startswith("unsupported (bf16 tl.dot is wrong")
    assert backend_mod._probe_tf32_dot("cpu")[0] == "exact"  # Triton's interpreter: exact fp32 dots


@shim_applies
def test_a_shim_that_fails_the_probe_is_taken_out(fresh_backend, monkeypatch):
    monkeypatch.setitem(interpreter_shim._WRAPPERS, "create_dot", lambda orig: orig)  # dots left unfixed
    b = get_backend()
    assert not b.bf16_dot_ok and "even with the interpreter shim installed" in b.bf16_dot_reason
    assert not interpreter_shim.status() and not b.tf32_dots


@shim_applies
def test_tf32_emulation_is_off_with_the_env_var(fresh_backend, monkeypatch):
    monkeypatch.setenv(TF32_ENV, "0")
    b = get_backend()
    assert b.bf16_dot_ok and not b.tf32_dots and b.describe_tf32() == f"exact ({TF32_ENV}=0)"
    assert interpreter_shim.status() == interpreter_shim.ShimStatus(True, False)
    assert backend_mod._probe_tf32_dot("cpu")[0] == "exact"


@shim_applies
def test_unproven_tf32_emulation_is_switched_off(fresh_backend, monkeypatch):
    monkeypatch.setattr(backend_mod, "_probe_tf32_dot", lambda device: ("rounded", "simulated"))
    b = get_backend()
    assert b.bf16_dot_ok and not b.tf32_dots and "not proven: rounded" in b.tf32_detail
    assert not interpreter_shim.status().tf32


@interpreter_only
def test_torch_modes_run_bf16_even_where_triton_modes_cannot(fresh_backend, monkeypatch, torch_modes):
    _break_shim(monkeypatch)
    r = check_case("gla", torch_modes, _bf16_case())
    assert r.modes["test:as_triton"].verdict is Verdict.UNSUPPORTED
    assert "triton issue 11584" in r.modes["test:as_triton"].reason
    assert r.modes["test:torch_only"].verdict is Verdict.OK


def test_bf16_gets_a_verdict_where_the_backend_proves_it(torch_modes):
    r = check_case("gla", torch_modes, _bf16_case())
    assert r.modes["test:torch_only"].verdict is Verdict.OK
    want = Verdict.OK if get_backend().bf16_dot_ok else Verdict.UNSUPPORTED
    assert r.modes["test:as_triton"].verdict is want


def test_triton_defaults_to_true_and_limits_only_bf16():
    assert ModeSpec("m", PROVIDER, make_clean(ops.get_op("gla").step)).triton
    b = Backend("cpu", True, False, "no bf16 dots here")
    assert b.dtype_unsupported_reason(torch.bfloat16) == "no bf16 dots here"
    assert b.dtype_unsupported_reason(torch.bfloat16, triton=False) is None
    assert b.dtype_unsupported_reason(torch.float32) is None
    assert b.describe_tf32() == "exact" and b.describe_bf16() == "unsupported (no bf16 dots here)"
