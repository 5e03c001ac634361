"""Model presets: each draws only what it declares (shrinking and simplification included), the
CLI takes and refuses them, ``list`` shows them. No kernel runs here (tests/commands/test_preset_runs.py
runs each preset on the built-ins)."""
from __future__ import annotations

import dataclasses
import json

import pytest
from device import DEVICE
from click.testing import CliRunner
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from fla_check.cases import CaseConfig
from fla_check.cli import main
from fla_check.engine.search import planned_cases, search
from fla_check.engine.simplify import simplify
from fla_check.errors import PresetError
from fla_check.presets import PRESETS, get_preset, preset_op
from fla_check.strategies import SpaceOptions, case_configs
from fla_check.verdict.compare import Verdict
from fla_check.verdict.results import ModeResult

NAMES = sorted(PRESETS)


def _space(name: str, small: bool) -> SpaceOptions:
    p = PRESETS[name]
    return SpaceOptions(op=p.op, dtypes=p.dtypes, max_seq_len=80, small=small, preset=p)


@pytest.mark.parametrize("small", [True, False])
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_preset_draws_only_what_it_declares(name, small, data):
    p = PRESETS[name]
    c = data.draw(case_configs(_space(name, small)))
    assert p.admits(c)
    assert (c.op, c.dtype, c.K, c.V, c.options, c.beta_max) == (p.op, "bfloat16", 128, 128, p.kernel_options, 1.0)
    assert c.H in {h for _, h in p.heads(small)} and c.HV == c.H * p.value_heads // p.key_heads
    assert c.packing in ("none", "varlen") and c.mask_fill is None


def test_the_declared_numbers():
    """Heads per GPU at TP 1/2/4/8 as the configs give them (docs/presets.md); ratio 3 among them."""
    heads = {n: {tp: (h, h * p.value_ratio) for tp, h in p.heads()} for n, p in PRESETS.items()}
    assert heads["qwen3-next"] == {1: (16, 32), 2: (8, 16), 4: (4, 8), 8: (2, 4)}
    assert heads["qwen3.5-27b"][1] == (16, 48) and heads["qwen3.5-27b"][8] == (2, 6)
    assert heads["qwen3.5-397b-a17b"][1] == (16, 64) and heads["kimi-linear"][1] == (32, 32)
    assert {p.value_ratio for p in PRESETS.values()} == {1, 2, 3, 4}
    assert all(p.K == p.V == 128 and p.dtypes == ("bfloat16",) for p in PRESETS.values())
    assert PRESETS["kimi-linear"].op == "kda" and PRESETS["qwen3-next"].kernel_options == ("qk_l2norm",)
    assert PRESETS["qwen3-next"].heads(small=True) == ((8, 2),)  # CPU: the fewest heads per GPU


@pytest.mark.parametrize("change", [dict(H=1), dict(value_ratio=1), dict(K=64, V=64), dict(qk_l2norm=False),
                                    dict(dtype="float32"), dict(beta_max=2.0), dict(op="kda", value_ratio=1, qk_l2norm=False)])
def test_admits_refuses_anything_outside(change):
    inside = find(case_configs(_space("qwen3-next", small=False)), lambda c: True)
    assert PRESETS["qwen3-next"].admits(inside)
    outside = dataclasses.replace(inside, **change) if "qk_l2norm" not in change else \
        dataclasses.replace(inside, qk_scale=1.0, **change)
    assert not PRESETS["qwen3-next"].admits(outside)


def test_shrinking_stays_inside_the_preset():
    """Hypothesis' minimal long case of a ratio-3 preset: T shrinks to its bucket's lowest (at most
    the first T beyond one 64-chunk), heads to TP 8's, the rest to the simplest, options kept on."""
    p = PRESETS["qwen3.5-27b"]
    c = find(case_configs(_space(p.name, small=False)), lambda c: c.T > 40 and c.initial_state)
    assert p.admits(c) and 40 < c.T <= 65 and (c.H, c.HV) == (2, 6) and c.qk_l2norm and c.B == 1


def test_simplification_stays_inside_the_preset():
    """simplify() cuts H to 1, K to 16, the options off -- unless the preset's space is passed (then
    B, T, h0 and the seed are cut; H = 4 is TP 4's, and simplify only tries H = 1)."""
    p = PRESETS["qwen3-next"]
    c = CaseConfig(op="gated_delta", dtype="bf16", B=2, T=20, H=4, K=128, V=128, value_ratio=2, qk_l2norm=True,
                   initial_state=True, seed=5)
    failing = ModeResult("chunk", Verdict.DIVERGED)
    free = simplify(c, failing, lambda cand: failing, budget=60)
    assert not p.admits(free) and free.H == 1 and free.K == 16
    kept = simplify(c, failing, lambda cand: failing, budget=60, allowed=p.admits)
    assert p.admits(kept) and (kept.B, kept.T, kept.H, kept.initial_state, kept.seed) == (1, 1, 4, False, 0)


def test_names_and_ops():
    assert preset_op("kimi-linear", None) == "kda" == preset_op("kimi-linear", "kda")
    with pytest.raises(PresetError, match="preset kimi-linear runs op kda, not gated_delta"):
        preset_op("kimi-linear", "gated_delta")
    with pytest.raises(PresetError, match="unknown preset 'qwen4'; valid presets: qwen3-next"):
        get_preset("qwen4")


def test_search_with_a_preset_draws_inside_and_refuses_what_it_fixes():
    cases = planned_cases(None, modes=("recurrent",), preset="qwen3.5-27b", device=DEVICE, examples=6, seed=1,
                          max_seq_len=40)
    assert len(cases) == 6 and all(PRESETS["qwen3.5-27b"].admits(c) and c.value_ratio == 3 for c in cases)
    for bad, message in ((dict(dtypes=("fp32",)), "runs bfloat16, not float32"),
                         (dict(value_ratios=(2,)), "fixes the value ratios"),
                         (dict(mask_fills=(-20.0,)), "fixes the mask fills")):
        with pytest.raises(PresetError, match=message):
            search("gated_delta", ["recurrent"], preset="qwen3-next", device=DEVICE, examples=2, database_root=None,
                   **bad)  # refused before any case runs


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    (["--preset", "qwen4"], "--preset: unknown preset 'qwen4'"),
    (["--preset", "qwen3-next", "--op", "kda"], "preset qwen3-next runs op gated_delta, not kda"),
    (["--preset", "qwen3-next", "--value-ratios", "1"], "--preset qwen3-next fixes what --value-ratios"),
    (["--preset", "kimi-linear", "--mask-fill=-20"], "fixes what --mask-fill would set"),
    (["--preset", "qwen3-next", "--dtypes", "fp16"], "preset qwen3-next runs bfloat16, not float16"),
    ([], "give --op"),
])
def test_the_cli_refuses(args, message):
    out = _cli("run", "--modes", "recurrent", "--device", DEVICE, "--examples", "1", *args)
    assert out.exit_code == 2, out.output
    assert message in out.stderr and "internal error" not in out.stderr


def test_list_shows_the_presets():
    data = json.loads(_cli("list", "--device", DEVICE, "--json").stdout)
    assert [p["name"] for p in data["presets"]] == list(PRESETS)
    assert data["presets"][1]["heads_per_gpu"]["8"] == [2, 6]
    text = _cli("list", "--device", DEVICE, "--no-color").stdout
    assert all(f"  {name}: " in text for name in PRESETS) and "TP8 2/6" in text
