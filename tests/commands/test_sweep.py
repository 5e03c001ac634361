"""fla_check.commands.sweep.engine: fill parsing, classification (OK / LEAK / DIVERGED / NONFINITE), safe
intervals, advice, and the done-when facts on the built-in kernels (CPU, fp32)."""
import json
import math

import pytest
import torch

from _fake_modes import chunk_cumsum_gla, make_clean, raises
from device import DEVICE
from fla_check.cases import CaseError
from fla_check.ops import ModeSpec, get_op
from fla_check.verdict.arithmetic import RECURRENT_FP32
from fla_check.commands.sweep.engine import (CONTROL, LAYOUTS, Cell, CaseOutcome, Outcome, SweepError, SweepResult, _CaseJudge,
                             case_config, case_layouts, effective_fill, fill_label, parse_value_list, parse_values,
                             sweep)


def test_values_are_canonical_deduplicated_and_ordered_weak_to_strong():
    fills = parse_values(["-inf", "-1e3", "-1000", "-0.1*finfo.max", "-1", "-max"])
    assert fills == [-1.0, -1000.0, "-0.1max", "-max", "-inf"]
    assert [fill_label(f) for f in fills] == ["-1", "-1e3", "-0.1max", "-max", "-inf"]
    assert fill_label(-2.5e6) == "-2.5e6" and fill_label(-20.0) == "-20"
    assert parse_value_list("cu_seqlens, -20") == [-20.0]
    with pytest.raises(SweepError):
        parse_value_list("cu_seqlens")
    with pytest.raises(CaseError):
        parse_value_list("-1,abc")


def test_effective_fill_is_what_the_kernel_dtype_sees():
    assert effective_fill("-0.1max", torch.float16) == pytest.approx(-6552.0)
    assert effective_fill(-1e6, torch.float16) == -math.inf  # beyond fp16's range
    assert effective_fill(-1e40, torch.float32) == -math.inf
    assert effective_fill("-max", torch.float32) == -torch.finfo(torch.float32).max


def test_default_layouts_cover_the_packing_regimes():
    layouts = case_layouts(3)
    starts = [s for lay in layouts for s in lay.starts]
    assert all(lay.T <= 80 for lay in LAYOUTS)
    assert any(s % 64 == 0 for s in starts) and any(s % 16 == 0 and s % 64 for s in starts)
    assert any(s % 16 for s in starts)  # mid-chunk
    assert any(min(lay.segments) == 1 for lay in layouts)
    assert any(max(sum(1 for s in lay.starts if s // 16 == c) for c in range(5)) >= 3 for lay in layouts)
    assert case_layouts(5)[4] == LAYOUTS[0]  # cycling


def _judge(fill, op="gla"):
    return _CaseJudge.build(get_op(op), case_config(op, "float32", LAYOUTS[0], 0, fill), DEVICE)


def test_classification_against_truth_and_literal_reference():
    judge = _judge(-1.0)
    f32 = lambda d: {k: v.float() for k, v in d.items()}  # noqa: E731
    assert judge.classify(f32(judge.truth), 0, RECURRENT_FP32).outcome is Outcome.OK
    leak = judge.classify(f32(judge.literal), 0, RECURRENT_FP32)  # a correct kernel applying a too-weak fill
    assert leak.outcome is Outcome.LEAK and leak.error > 1e-2 and leak.literal_error < 1e-5
    gen = torch.Generator().manual_seed(0)
    noisy = {k: v.float() + 0.1 * torch.randn(v.shape, generator=gen).to(v.device) for k, v in judge.truth.items()}
    assert judge.classify(noisy, 0, RECURRENT_FP32).outcome is Outcome.DIVERGED
    nan = f32(judge.truth)
    nan["o"][0, 20] = math.nan
    got = judge.classify(nan, 0, RECURRENT_FP32)
    assert got.outcome is Outcome.NONFINITE and got.error == math.inf


def test_control_has_no_literal_reference_so_a_wrong_result_diverges():
    judge = _judge(CONTROL)
    assert judge.config.varlen and judge.literal is None
    wrong = {k: 1.01 * v.float() for k, v in judge.truth.items()}
    assert judge.classify(wrong, 0, RECURRENT_FP32).outcome is Outcome.DIVERGED


def test_sweep_with_plain_pytorch_modes():
    step = get_op("gla").step
    clean = ModeSpec("clean", "test", make_clean(step))
    chunky = ModeSpec("chunk16", "test", chunk_cumsum_gla)
    fixed = ModeSpec("fixed", "test", make_clean(step), varlen=False)
    crash = ModeSpec("crash", "test", raises)
    r = sweep("gla", [clean, chunky, fixed, crash], dtypes=["fp32"], values=["-inf", "-1", "-20", "-0.1max"],
              cases=2, seed=1)
    assert r.values == ["-1", "-20", "-0.1max", "-inf", CONTROL] and len(r.cases) == 2
    out = lambda v, m: r.outcome(v, f"test:{m}", "float32")  # noqa: E731
    assert [out(v, "clean") for v in r.values] == [Outcome.LEAK] + [Outcome.OK] * 4
    assert [out(v, "chunk16") for v in r.values] == [Outcome.LEAK, Outcome.OK, Outcome.DIVERGED,
                                                     Outcome.NONFINITE, Outcome.OK]
    assert out(CONTROL, "fixed") is Outcome.UNSUPPORTED and "cu_seqlens" in r.cell(CONTROL, "test:fixed",
                                                                                       "float32").reason
    assert out("-20", "crash") is Outcome.ERROR and r.failed
    assert r.safe_interval("test:clean", "float32") == ("-20", "-inf")
    assert r.safe_interval("test:chunk16", "float32") == ("-20", "-20")
    assert r.safe_interval("test:crash", "float32") is None
    assert r.common_safe() is None  # the crashing mode is OK nowhere
    advice = " ".join(r.advice())
    assert "cu_seqlens" in advice and "no cu_seqlens support: test:fixed" in advice
    data = json.loads(json.dumps(r.to_json(), allow_nan=False))
    assert data["kind"] == "sweep-mask-values" and data["failed"] is True
    assert {(c["value"], c["mode"]): c["outcome"] for c in data["cells"]}[("-inf", "test:chunk16")] == "NONFINITE"


def _synthetic(outcomes: dict[str, Outcome], dtype: str) -> SweepResult:
    fills = {v: parse_values([v])[0] for v in outcomes}
    r = SweepResult("gla", ["m"], [dtype], list(fills) + [CONTROL], fills, {"m": True}, [])
    for v, o in outcomes.items():
        r.cells[(v, "m", dtype)] = Cell(v, "m", dtype, [CaseOutcome(0, o)])
    return r


def test_safe_interval_follows_the_dtype_order_of_fills():
    outcomes = {"-5": Outcome.LEAK, "-20": Outcome.OK, "-1e3": Outcome.OK, "-1e4": Outcome.DIVERGED,
                "-0.1max": Outcome.OK}
    # fp16: -0.1max = -6552 lies between -1e3 and -1e4, so it extends the OK run
    assert _synthetic(outcomes, "float16").safe_interval("m", "float16") == ("-20", "-0.1max")
    # fp32: -0.1max = -3.4e37 comes after the DIVERGED -1e4: the longest run stops at -1e3
    assert _synthetic(outcomes, "float32").safe_interval("m", "float32") == ("-20", "-1e3")


def test_delta_has_no_gate():
    with pytest.raises(SweepError, match="cu_seqlens"):
        sweep("delta")
    with pytest.raises(SweepError, match="cases"):
        sweep("gla", cases=0)


@pytest.mark.parametrize("op,modes", [("gla", ["recurrent", "chunk", "fused_chunk"]),
                                      ("gated_delta", ["recurrent", "chunk"])])
def test_done_when_builtin_kernels_fp32(op, modes):
    """-1 leaks everywhere, -20 is OK everywhere, -0.1max and -inf break the chunked modes only."""
    r = sweep(op, modes, dtypes=["fp32"], values=["-1", "-20", "-0.1max", "-inf"])
    for mode in modes:
        got = {v: r.outcome(v, mode, "float32") for v in r.values}
        assert got["-1"] is Outcome.LEAK, (mode, got)
        assert got["-20"] is Outcome.OK, (mode, got)
        assert got[CONTROL] is Outcome.OK, (mode, got)
        chunked = mode != "recurrent"
        for strong in ("-0.1max", "-inf"):
            assert got[strong].flagged is chunked, (mode, strong, got)
    assert not r.failed
