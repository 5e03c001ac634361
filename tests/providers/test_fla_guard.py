"""fla #640: the fla provider reads fla's own Hopper / Triton flags, declares the backward of the modes
that reach gated chunk_bwd_dqkwg unsupported where fla refuses it, and lifts the guard on request
(FLA_CHECK_FLA_UNGUARDED=640). Hopper with Triton 3.6 is simulated by patching the flags in the
module that checks them (fla.ops.common.chunk_o); no kernel of fla runs here except the guard itself.
"""
import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fla_check.cli import main
from fla_check.errors import FlaUnguardedError, UsageError
from fla_check.providers import fla as fla_provider
from optional_deps import needs_fla

ENV = fla_provider.UNGUARDED_ENV
HOPPER_TRITON_3_6 = {"IS_NVIDIA_HOPPER": True, "TRITON_ABOVE_3_4_0": True, "TRITON_ABOVE_3_7_1": False}
NOT_HOPPER = {**HOPPER_TRITON_3_6, "IS_NVIDIA_HOPPER": False}
BACKWARD = dict(dtype=torch.bfloat16, varlen=True, initial_state=True, backward=True, interpreter=False)


@pytest.fixture
def chunk_o(monkeypatch):
    """fla's chunk_o with its flags restorable (monkeypatch) and no lift left behind."""
    monkeypatch.delenv(ENV, raising=False)
    module = fla_provider._guard_module()
    for flag in fla_provider.GUARD_FLAGS:
        monkeypatch.setattr(module, flag, getattr(module, flag))
    yield module
    fla_provider.restore_guard()  # before monkeypatch puts fla's values back


def _flags(module, monkeypatch, flags):
    for flag, value in flags.items():
        monkeypatch.setattr(module, flag, value)


def _modes() -> dict:
    return {(op, m.name): m for op, specs in fla_provider.build().modes.items() for m in specs}


@needs_fla
def test_hopper_with_triton_3_6_declares_the_gated_backward_unsupported(chunk_o, monkeypatch):
    _flags(chunk_o, monkeypatch, NOT_HOPPER)
    plain = _modes()
    _flags(chunk_o, monkeypatch, HOPPER_TRITON_3_6)
    hopper = _modes()
    assert fla_provider.DQKWG_GATED == {("simple_gla", "chunk"), ("gated_delta", "chunk")}
    for key, mode in hopper.items():
        if key in fla_provider.DQKWG_GATED:
            reason = mode.unsupported_reason(**BACKWARD)
            assert "#640" in reason and ">= 3.4.0 and < 3.7.1" in reason and f"{ENV}=640" in reason
            assert mode.unsupported_reason(**{**BACKWARD, "backward": False}) is None  # forward stays
            assert dataclasses.replace(mode, backward=True, backward_reason="") == plain[key]
        else:
            assert mode == plain[key], key  # unaffected modes: untouched
    assert all(plain[key].unsupported_reason(**BACKWARD) is None for key in fla_provider.DQKWG_GATED)


@needs_fla
@pytest.mark.parametrize("flags", [NOT_HOPPER, {**HOPPER_TRITON_3_6, "TRITON_ABOVE_3_7_1": True},
                                   {**HOPPER_TRITON_3_6, "TRITON_ABOVE_3_4_0": False}],
                         ids=["not-hopper", "triton-3.7.1", "triton-3.3"])
def test_backward_stays_supported_where_fla_does_not_refuse(chunk_o, monkeypatch, flags):
    _flags(chunk_o, monkeypatch, flags)
    modes = _modes()
    for key in fla_provider.DQKWG_GATED:
        assert modes[key].backward and modes[key].unsupported_reason(**BACKWARD) is None and not modes[key].caveat


@needs_fla
def test_the_simulated_flags_are_the_ones_fla_checks(chunk_o, monkeypatch):
    """fla's real chunk_bwd_dqkwg refuses under the simulated flags (its guard runs before any launch)."""
    _flags(chunk_o, monkeypatch, HOPPER_TRITON_3_6)
    B, T, H, K, V = 1, 16, 1, 16, 16
    q, k, v, do = (torch.zeros(B, T, H, D) for D in (K, K, V, V))
    h = dh = torch.zeros(B, 1, H, K, V)
    with pytest.raises(RuntimeError, match="#640"):
        chunk_o.chunk_bwd_dqkwg(q=q, k=k, v=v, do=do, h=h, dh=dh, g=torch.zeros(B, T, H))
    monkeypatch.setenv(ENV, "640")
    fla_provider.build()
    try:  # past the guard, fla's kernel is launched (here on the interpreter, which may refuse it)
        chunk_o.chunk_bwd_dqkwg(q=q, k=k, v=v, do=do, h=h, dh=dh, g=torch.zeros(B, T, H))
    except Exception as exc:  # noqa: BLE001 - any failure but the guard's
        assert "#640" not in str(exc)


@needs_fla
def test_the_opt_in_lifts_the_guard_and_keeps_the_backward(chunk_o, monkeypatch):
    _flags(chunk_o, monkeypatch, HOPPER_TRITON_3_6)
    monkeypatch.setenv(ENV, "640")
    modes = _modes()
    assert chunk_o.TRITON_ABOVE_3_7_1 is True  # the flag fla's guard reads, set in its module
    for key in fla_provider.DQKWG_GATED:
        assert modes[key].unsupported_reason(**BACKWARD) is None
        assert "#640 guard lifted" in modes[key].caveat and "incorrect results" in modes[key].caveat
    assert not any(m.caveat for key, m in modes.items() if key not in fla_provider.DQKWG_GATED)
    assert _modes() == modes  # idempotent: the lifted flag still reads as fla set it
    fla_provider.restore_guard()
    assert chunk_o.TRITON_ABOVE_3_7_1 is False
    monkeypatch.delenv(ENV)
    assert not _modes()[("gated_delta", "chunk")].backward


@needs_fla
def test_the_opt_in_says_so_where_the_guard_does_not_fire(chunk_o, monkeypatch):
    _flags(chunk_o, monkeypatch, NOT_HOPPER)
    monkeypatch.setenv(ENV, "640")
    modes = _modes()
    assert chunk_o.TRITON_ABOVE_3_7_1 is False  # nothing lifted
    for key in fla_provider.DQKWG_GATED:
        assert modes[key].backward and "does not fire here" in modes[key].caveat


@pytest.mark.parametrize("value", ["641", "640,64", "yes"])
def test_an_unknown_guard_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(FlaUnguardedError, match=rf"{ENV}={value}: unknown fla guard .*known: 640 \(fla #640"):
        fla_provider.build()
    assert issubclass(FlaUnguardedError, UsageError)


@needs_fla
def test_the_cli_ends_an_unknown_guard_with_exit_2(monkeypatch):
    monkeypatch.setenv(ENV, "641")
    r = CliRunner().invoke(main, ["run", "--op", "simple_gla", "--modes", "fla:chunk",
                                  "--provider", "fla_check.providers.fla:provider"])
    assert r.exit_code == 2 and "unknown fla guard 641" in r.output and "known: 640" in r.output


def _gated_dqkwg_callers(package: Path) -> set[str]:
    """Files of `package` that call chunk_bwd_dqkwg with a gate other than None."""
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "func", None)
            if getattr(name, "id", getattr(name, "attr", None)) == "chunk_bwd_dqkwg":
                g = {kw.arg: kw.value for kw in node.keywords}.get("g")
                if g is not None and not (isinstance(g, ast.Constant) and g.value is None):
                    found.add(path.name)
    return found


@needs_fla
def test_the_affected_modes_are_read_off_fla(chunk_o):
    """DQKWG_GATED is what fla's source says: the op packages whose chunk backward passes the gate
    to chunk_bwd_dqkwg (never a fused_recurrent file)."""
    ops_dir = Path(importlib.util.find_spec("fla").submodule_search_locations[0]) / "ops"
    packages = {"gla": "gla", "simple_gla": "simple_gla", "delta": "delta_rule", "gated_delta": "gated_delta_rule",
                "kda": "kda"}
    callers = {op: _gated_dqkwg_callers(ops_dir / pkg) for op, pkg in packages.items()}
    assert not any(f.startswith("fused_recurrent") for files in callers.values() for f in files)
    assert {(op, "chunk") for op, files in callers.items() if files} == fla_provider.DQKWG_GATED


def test_fla_check_list_shows_a_caveat_and_only_where_one_is_set():
    from golden import GOLDENS
    from fla_check.commands.listing.engine import _mode_info
    from fla_check.commands.listing.render import render_inventory
    from fla_check.ops import get_mode, get_op
    from fla_check.report.console import make_console
    from fla_check.report.storage import read_report

    chunk = get_mode(get_op("gla"), "chunk")
    assert "caveat" not in _mode_info(chunk, interpreter=True)  # the list.json golden stays as it was
    assert _mode_info(dataclasses.replace(chunk, caveat="lifted"), interpreter=True)["caveat"] == "lifted"
    info = read_report(GOLDENS / "list.json")
    info["ops"][0]["modes"][0]["caveat"] = "guard lifted in this process"
    console = make_console(width=80, no_color=True)
    with console.capture() as cap:
        render_inventory(console, info)
    mode = info["ops"][0]["modes"][0]["name"]
    assert f"{info['ops'][0]['name']}/{mode} caveat: guard lifted in this process" in cap.get()
