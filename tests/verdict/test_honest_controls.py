"""Honest controls (issue 13 item 3): the verdict never flags an honest fla-like kernel.

The controls (tests/controls/fla_like.py) compute GLA, DeltaNet and Gated DeltaNet with fla's
chunked algorithms in plain torch and round where fla-core 0.6.0's chunk kernels round on an
H100/H200 (input-dtype stores, TF32-truncated fp32 dots, blocked UT inverse); checked against
fla on an H200 with bench/fla_like_vs_fla.py. Each declares that arithmetic, so the verdict's
baseline emulates it. Over the corners of the case space -- fp32/fp16/bf16, beta up to 2, K=16
and K=64/100, T in 35/176/320, strong, zero and near-zero decay, mask fills -5/-20/-1e4, varlen
with empty sequences, h0 -- forward and backward:

- every verdict is OK (``test_honest_control_is_ok``);
- the score (the fraction of the allowed error used) stays below 1/a: 1/2 for o and ht, 1/3
  for gradients (``test_honest_control_margin``), i.e. the honest error is below the
  emulation's own largest sampled error. Per-case scores are recorded as user properties.

Cases are B=1, H=1 and run on one torch thread (tiny tensors: a second intra-op thread costs
several times the CPU on a busy machine); each case is computed once and shared by both tests.
"""
from __future__ import annotations

import functools
from typing import Optional

import pytest
from controls import fla_like

from fla_check.cases import CaseConfig
from fla_check.verdict.compare import A_BACKWARD, A_FORWARD, Verdict
from fla_check.engine.gradients import GRADIENTS
from fla_check.engine.runner import CaseResult, check_case

DTYPES = ("float32", "float16", "bfloat16")
FILL_SEGMENTS = ((5, 59, 1, 63, 48),)  # starts mid-chunk, on a chunk boundary (64), right after it, at 128
VARLEN_SEGMENTS = ((0, 70, 1, 0, 129),)  # empty first and fourth sequences, a length-1 one


def _corners(op: str) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """name -> (CaseConfig fields, control modes)."""
    gated = op != "delta"
    beta = {} if op == "gla" else dict(beta_max=2.0)
    every = tuple(fla_like.MODES[op])  # fla64, fla32, fla16 (+ fla64tt: TF32 inverse merges)
    corners = {
        "T35-K16-h0": (dict(T=35, K=16, V=16, initial_state=True, **beta), ("fla64",)),
        "T176-K64": (dict(T=176, K=64, V=64, **beta), every),
        "T320-K100": (dict(T=320, K=100, V=32, **beta), ("fla64", "fla16")),
        "varlen-empty-h0": (dict(T=200, K=32, V=32, packing="varlen", segments=VARLEN_SEGMENTS,
                                 initial_state=True, **beta), every),
    }
    if gated:
        corners["T176-K64-strong-decay"] = (dict(T=176, K=64, V=64, gate_norm=0.01, **beta), ("fla64", "fla16"))
        corners["T176-K64-zero-decay"] = (dict(T=176, K=64, V=64, zero_gate_frac=1.0, **beta), ("fla64", "fla16"))
        # exp(G) within ~an ulp of 1: GLA's cross-sub-chunk TF32 dot truncates operands that sit
        # just below a representable value by a whole ulp, every time (the tightest corner: ~0.45)
        corners["T176-K16-near-zero-decay"] = (dict(T=176, K=16, V=64, near_zero_decay=True, gate_norm=0.5,
                                                    **beta), ("fla64", "fla32"))
        for fill in (-5.0, -20.0, -1e4):
            corners[f"fill{fill:g}"] = (dict(T=176, K=16, V=16, packing="mask", segments=FILL_SEGMENTS,
                                             mask_fill=fill, **beta), ("fla64", "fla16"))
    return corners


def _cases() -> list[tuple[str, str, str, bool]]:
    return [(op, dtype, name, backward) for op in ("gla", "delta", "gated_delta") for dtype in DTYPES
            for name in _corners(op) for backward in (False, True)]


CASES = _cases()
IDS = [f"{op}-{dtype}-{name}-{'bwd' if bwd else 'fwd'}" for op, dtype, name, bwd in CASES]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/verdict/conftest.py


@functools.lru_cache(maxsize=None)
def _result(op: str, dtype: str, name: str, backward: bool) -> CaseResult:
    fields, modes = _corners(op)[name]
    seed = 1 + CASES.index((op, dtype, name, backward))
    config = CaseConfig(op=op, dtype=dtype, B=1, H=1, seed=seed, **fields)
    return check_case(op, fla_like.modes(op, modes), config, backward=backward)


def _scores(result: CaseResult) -> dict[str, dict[str, float]]:
    """mode -> {"forward": max score of o/ht, "gradients": max score of the gradients}."""
    out = {}
    for label, mode in result.modes.items():
        fwd = [c.score for c in mode.outputs if c.name not in GRADIENTS]
        grads = [c.score for c in mode.outputs if c.name in GRADIENTS]
        out[label] = {"forward": max(fwd, default=0.0), "gradients": max(grads, default=0.0)}
    return out


def _describe(result: CaseResult) -> str:
    return "; ".join(f"{label}: {mode.verdict.value} " + " ".join(f"{c.name}={c.score:.3f}" for c in mode.outputs)
                     + (f" ({mode.reason})" if mode.reason else "")
                     for label, mode in result.modes.items())


@pytest.mark.parametrize("op, dtype, name, backward", CASES, ids=IDS)
def test_honest_control_is_ok(op: str, dtype: str, name: str, backward: bool, request) -> None:
    result = _result(op, dtype, name, backward)
    for label, scores in _scores(result).items():  # recorded in the test report (user_properties)
        request.node.user_properties.append((f"{label}:forward_score", round(scores["forward"], 4)))
        if backward:
            request.node.user_properties.append((f"{label}:gradient_score", round(scores["gradients"], 4)))
    bad = {label: mode.verdict for label, mode in result.modes.items() if mode.verdict is not Verdict.OK}
    assert not bad, f"{result.config.short()}: {_describe(result)}"


@pytest.mark.parametrize("op, dtype, name, backward", CASES, ids=IDS)
def test_honest_control_margin(op: str, dtype: str, name: str, backward: bool) -> None:
    """The issue's target: an honest kernel scores below 1/a (its error is below the largest
    error the emulation of its declared arithmetic samples)."""
    result = _result(op, dtype, name, backward)
    over: dict[str, Optional[str]] = {}
    for label, scores in _scores(result).items():
        if scores["forward"] >= 1 / A_FORWARD:
            over[label] = f"forward {scores['forward']:.3f} >= 1/{A_FORWARD:g}"
        if backward and scores["gradients"] >= 1 / A_BACKWARD:
            over[label] = f"gradients {scores['gradients']:.3f} >= 1/{A_BACKWARD:g}"
    assert not over, f"{result.config.short()}: {over}; {_describe(result)}"
