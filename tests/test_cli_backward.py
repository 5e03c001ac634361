"""`fla-check run --backward` and replay of its cases; the pytest plugin's backward option."""
import json
import re
import shlex
from types import SimpleNamespace

import pytest
import torch
from _fake_modes import PROVIDER, make_clean, registered
from click.testing import CliRunner
from device import DEVICE

from fla_check import ops
from fla_check.cli import main
from fla_check.ops import ModeSpec
from fla_check.pytest_plugin import FlaCheck, Options, options_from_config


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.1


@pytest.fixture(autouse=True)
def modes():
    """test:bclean (correct, differentiable) and test:dg110 (its dg 10% too large)."""
    with registered("gla"):
        clean = make_clean(ops.get_op("gla").step)
        ops.register_modes("gla", [
            ModeSpec("bclean", PROVIDER, clean, backward=True),
            ModeSpec("dg110", PROVIDER, lambda q, k, v, g=None, **kw: clean(q, k, v, g=_ScaleGrad.apply(g), **kw),
                     backward=True),
        ])
        yield


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_clean_builtin_gla_passes_with_backward(tmp_path):
    """The issue's done-when at a tiny budget: recurrent and chunk gradients agree with float64
    autograd; fused_chunk is forward only and says so."""
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "recurrent,chunk,fused_chunk", "--backward", "--examples", 3,
             "--seed", 0, "--max-seq-len", 24, "--dtypes", "fp32", "--report", path, "--no-color")
    assert r.exit_code == 0, r.output
    assert "outputs and gradients vs float64 reference" in r.stdout
    assert "fused_chunk: unsupported on 3 case(s): builtin:fused_chunk is forward only" in r.stdout
    data = json.loads(path.read_text())
    assert data["options"]["backward"] is True and all(c["backward"] for c in data["cases"])
    names = {o["name"] for c in data["cases"] for o in c["modes"]["chunk"]["outputs"]}
    assert names == {"o", "ht", "dq", "dk", "dv", "dg"} | ({"dh0"} if any(
        c["config"]["initial_state"] for c in data["cases"]) else set())
    for row in ("dq", "dk", "dv", "dg"):
        assert re.search(rf"^\s+{row}\s+OK", r.stdout, re.M), row


def test_dg_bug_is_flagged_and_replay_rebuilds_the_upstream_gradients(tmp_path):
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "test:bclean,test:dg110", "--backward", "--examples", 4,
             "--seed", 2, "--max-seq-len", 20, "--dtypes", "fp32", "--report", path, "--no-color")
    assert r.exit_code == 1, r.output
    block = r.stdout[r.stdout.index("test:dg110: DIVERGED"):]
    assert re.search(r"^\s+dg\s+DIVERGED", block, re.M) and re.search(r"^\s+dq\s+OK", block, re.M)
    data = json.loads(path.read_text())
    index = data["failures"]["test:dg110"]
    cmd = re.search(r"replay: (fla-check replay .*)", block).group(1)
    replay = _run(*shlex.split(cmd)[1:], "--json")
    assert replay.exit_code == 1
    again = json.loads(replay.stdout)
    assert again["backward"] is True
    assert again["modes"]["test:dg110"]["outputs"] == data["cases"][index]["modes"]["test:dg110"]["outputs"]


def test_forward_runs_are_unchanged(tmp_path):
    path = tmp_path / "r.json"
    r = _run("run", "--op", "gla", "--modes", "test:dg110", "--examples", 2, "--seed", 0, "--max-seq-len", 8,
             "--dtypes", "fp32", "--report", path)
    assert r.exit_code == 0, r.output  # the dg bug is invisible without --backward
    data = json.loads(path.read_text())
    assert "backward" not in data["options"] and not data["cases"][0]["backward"]
    assert [o["name"] for o in data["cases"][0]["modes"]["test:dg110"]["outputs"]] == ["o", "ht"]


def test_pytest_plugin_backward(tmp_path):
    opts = Options(profile="smoke", examples=2, dtypes="fp32", max_seq_len=12, device=DEVICE,
                   report_dir=tmp_path, database_root=tmp_path, invocation_dir=tmp_path, backward=True)
    node = SimpleNamespace(name="t", nodeid="test_m.py::t", user_properties=[])
    with pytest.raises(pytest.fail.Exception, match="test:dg110: DIVERGED"):
        FlaCheck(node, opts).check("gla", "test:dg110")
    result = FlaCheck(node, opts).check("gla", "test:dg110", backward=False)  # per-check override
    assert "backward" not in result.options
    fwd = Options(**{**opts.__dict__, "backward": False})
    assert FlaCheck(node, fwd).check("gla", "test:bclean", backward=True).options["backward"] is True


@pytest.mark.parametrize("flag", [True, False])
def test_pytest_plugin_option_parses(tmp_path, flag):
    values = dict(fla_check_specs=["gla:recurrent"], fla_check_shard=None, fla_check_split=1, fla_check_examples=None,
                  fla_check_report_dir=None, fla_check_profile=None, fla_check_providers=[], fla_check_seed=None,
                  fla_check_dtypes=None, fla_check_max_seq_len=None, fla_check_device=None,
                  fla_check_backward=flag)
    config = SimpleNamespace(getoption=values.__getitem__, rootpath=tmp_path,
                             invocation_params=SimpleNamespace(dir=tmp_path))
    assert options_from_config(config).backward is flag


def test_gate_reruns_the_gradients_of_a_backward_baseline(tmp_path):
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    r = _run("run", "--op", "gla", "--modes", "test:bclean", "--backward", "--examples", 2, "--seed", 0,
             "--max-seq-len", 8, "--dtypes", "fp32", "--report", base)
    assert r.exit_code == 0, r.output
    r = _run("gate", "--baseline", base, "--report", new)
    assert r.exit_code == 0, r.output
    case = json.loads(new.read_text())["cases"][0]
    assert case["backward"] and {"dq", "dg"} <= {o["name"] for o in case["modes"]["test:bclean"]["outputs"]}
