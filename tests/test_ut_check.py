"""The ut-transform engine: ground truth, tolerance rule, drawing, verdicts, planted sign flips."""
import json
import math

import pytest
import torch

from fla_check.compare import Verdict
from fla_check.mutate import load_mutant
from fla_check.ut_cases import UTCase, regimes
from fla_check.ut_check import (ULPS, _check_variant, allowed_error, check_ut, condition, draw_cases,
                                gate_factor, inverse_recursion)
from fla_check.ut_variants import Variant, VariantUnsupported, closed_minus, closed_plus, fla_variant, kernel_variant

UT_MODULE = "fla_check.kernels.common.ut_transform"


def _summary(result, variant, dtype):
    return next(s for s in result.summaries() if s.variant == variant and s.dtype == dtype)


def test_inverse_recursion_is_the_inverse():
    gen = torch.Generator().manual_seed(0)
    L = torch.randn(2, 20, 20, generator=gen, dtype=torch.float64).tril(-1)
    T = inverse_recursion(L)
    eye = torch.eye(20, dtype=torch.float64)
    assert ((eye + L) @ T - eye).abs().max() < 1e-9
    assert (T - torch.linalg.inv(eye + L)).abs().max() < 1e-9 * T.abs().max()
    assert condition(torch.zeros(1, 5, 5, dtype=torch.float64)) == pytest.approx(1.0)


def test_allowed_error_rule():
    e32, e16 = torch.finfo(torch.float32).eps, torch.finfo(torch.float16).eps
    assert allowed_error(2.0, 16, 3.0, torch.float32, torch.float32) == pytest.approx(ULPS * 3 * (16 + 1) * e32 * 2)
    assert allowed_error(0.5, 8, 1.0, torch.float32, torch.float16) == pytest.approx(ULPS * (8 * e32 * 0.5 + e16 * 0.5))
    tiny = allowed_error(1e-9, 8, 1.0, torch.float32, torch.float16)  # below fp16's normal range
    assert tiny == pytest.approx(ULPS * (8 * e32 * 1e-9 + 8 * 2.0**-24))
    gated = allowed_error(1.0, 8, 1.0, torch.float32, torch.float32, gate=5.0)
    assert gated == pytest.approx(ULPS * (8 * e32 * 5 + e32))


def test_gate_factor():
    assert gate_factor(None) == 1.0
    g = torch.tensor([-2.0, -1.0, -30.0]).view(1, 3, 1)  # G = -2, -3, -33
    # L (i > j): 3 e^-1, 33 e^-30, 33 e^-31; w (i >= j = 0): |G_0| = 2, 3 e^-1, 33 e^-31
    want = 1 + max(2, 3 * math.exp(-1), 33 * math.exp(-30))
    assert gate_factor(g) == pytest.approx(want)


def test_draw_cases_is_reproducible_and_covers_every_regime():
    cases = draw_cases((16, 32), ("float32",), gated=True, examples=13, seed=5)
    assert len(cases) == 2 * 24  # 13 rounded up to two rounds of the 12 regimes
    assert cases == draw_cases((16, 32), ("float32",), gated=True, examples=13, seed=5)
    assert cases != draw_cases((16, 32), ("float32",), gated=True, examples=13, seed=6)
    for cs in (16, 32):
        mine = [c for c in cases if c.chunk_size == cs]
        assert {c.regime for c in mine} == set(regimes(True))
        assert all(1 <= c.T <= cs for c in mine) and len({(c.T, c.K, c.seed) for c in mine}) > 3


def test_plus_and_kernel_pass_minus_is_flagged():
    result = check_ut((16,), dtypes=("float32", "float16"), examples=6, seed=0,
                      variants=[closed_plus(), closed_minus(), kernel_variant()])
    plus, minus = _summary(result, "closed(+)", "float64"), _summary(result, "closed(-)", "float64")
    assert plus.verdict is Verdict.OK and plus.cases == 12 and plus.max_rel < 1e-13
    assert minus.verdict is Verdict.DIVERGED and minus.failed == minus.cases == 12 and minus.max_rel > 1e-2
    for dt in ("float32", "float16"):
        k = _summary(result, "kernel", dt)
        assert k.verdict is Verdict.OK and k.cases == 6 and 0 < k.max_rel < 1e-5 and k.score < 0.5
    assert result.correct_sign() == "+" and not result.failed
    assert result.conclusion().startswith("correct sign: +")
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["correct_sign"] == "+" and data["verdict"] == "OK" and len(data["cases"]) == 12


def test_gated_kernel_passes_with_strong_decay():
    result = check_ut((16,), gated=True, dtypes=("float32",), examples=1, seed=1,
                      variants=[closed_plus(), closed_minus(), kernel_variant()])
    assert {c.case.decay for c in result.cases} == {"moderate", "strong"}
    assert _summary(result, "kernel", "float32").verdict is Verdict.OK
    assert result.correct_sign() == "+" and not result.failed


@pytest.mark.parametrize("old,new", [
    ("b_Ai = -tl.where(m_A, b_A, 0.0)", "b_Ai = tl.where(m_A, b_A, 0.0)"),  # the sign trick's negation
    ("b_a += tl.sum(b_a[:, None] * b_Ai, 0)", "b_a -= tl.sum(b_a[:, None] * b_Ai, 0)"),  # substitution step
], ids=["negation", "substitution"])
def test_planted_sign_flip_in_the_kernel_is_flagged(old, new):
    mutant = load_mutant(UT_MODULE, [(old, new)], tag=f"ut_check_{'neg' if '-tl' in old else 'sub'}")
    result = check_ut((16,), dtypes=("float32",), examples=3, seed=0,
                      variants=[closed_plus(), kernel_variant(mutant.ut_transform)])
    k = _summary(result, "kernel", "float32")
    assert k.verdict is Verdict.DIVERGED and k.failed >= 1 and k.max_rel > 1e-3
    assert result.failed
    assert "kernel float32 DIVERGED" in result.conclusion()


def test_fla_step_runs_or_is_reported_unsupported():
    """fla's fp32 solve_tril runs its dots at TF32 (its first autotune config): exact where dots are
    exact, TF32-level error (~1e-3, which the fp32 verdict flags) where they are truncated: on a
    GPU, and on the interpreter with the shim's TF32 emulation (fla_check.backend)."""
    from fla_check.backend import get_backend

    pytest.importorskip("fla")
    result = check_ut((16,), dtypes=("float32",), examples=1, seed=0, variants=[fla_variant()])
    s = _summary(result, "fla", "float32")
    if s.verdict is Verdict.UNSUPPORTED:
        assert "interpreter" in s.reason, s
    elif get_backend().tf32_dots:
        assert s.verdict in (Verdict.OK, Verdict.DIVERGED) and 1e-4 < s.max_rel < 1e-2, s
    else:
        assert s.verdict is Verdict.OK, s


def _raising(exc, external):
    def run(x, chunk_size):
        raise exc
    return Variant("v", "raises", run, external=external)


def test_variants_that_cannot_run():
    case = UTCase(16, "fp32", T=4, H=1, K=16, V=16)
    check = lambda v, interp: _check_variant(v, case, None, {}, 1.0, 1.0, interp)  # noqa: E731
    r = check(_raising(VariantUnsupported("no fla here"), True), True)
    assert r.verdict is Verdict.UNSUPPORTED and r.reason == "no fla here"
    r = check(_raising(RuntimeError("int has no attribute to"), True), True)
    assert r.verdict is Verdict.UNSUPPORTED and "interpreter" in r.reason
    assert check(_raising(RuntimeError("boom"), True), False).verdict is Verdict.ERROR
    assert check(_raising(RuntimeError("boom"), False), True).verdict is Verdict.ERROR
