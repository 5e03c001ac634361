"""The ut-transform engine: ground truth, the error model's baseline, drawing, verdicts, planted
bugs (sign flips, a 2% error), and the fla false alarm (TF32 merges, input-dtype stores) fixed."""
import json

import pytest
import torch

from fla_check.verdict.compare import Verdict
from fla_check.commands.selftest.mutate import load_mutant
from fla_check.commands.ut_transform.cases import UTCase, build_inputs, regimes
from fla_check.commands.ut_transform.engine import (TOLERANCE_RULE, _check_variant, baseline_scales, check_ut, condition,
                                draw_cases, emulated_samples, ground_truth, inverse_recursion)
from fla_check.commands.ut_transform.variants import (FLA_BLOCKED, FP32_BLOCKED, Variant, VariantUnsupported, closed_minus,
                                   closed_plus, fla_variant, kernel_variant)
from fla_check.verdict.emulation import SAMPLES
from optional_deps import FLA_HINT, require

UT_MODULE = "fla_check.kernels.common.ut_transform"


def _dtypes():
    """fp32 and fp16 always; bf16 where the backend proves the interpreter shim (GPU: always)."""
    from fla_check.backend import get_backend

    bf16 = get_backend().dtype_unsupported_reason(torch.bfloat16) is None
    return ("float32", "float16") + (("bfloat16",) if bf16 else ())


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


def test_baseline_is_the_emulated_declaration():
    """Samples of a partial chunk (T < BT, padded like the kernels; the blocked inverse needs the
    full 64 rows) have the outputs' shapes, are seeded by the case, and are looser for fla's
    declaration (input-dtype stores, TF32) than for the kernel's (fp32 stores, IEEE, blocked)."""
    case = UTCase(64, "fp16", T=40, H=2, K=32, V=16, beta_max=2.0, keys="unnormalized", decay="moderate", seed=5)
    x = build_inputs(case)
    refs, _ = ground_truth(x, 64)
    samples = emulated_samples(case, x, FLA_BLOCKED)
    assert {n: tuple(t.shape) for n, t in samples.items()} == {
        "A_inv": (SAMPLES, 1, 40, 2, 64), "w": (SAMPLES, 1, 40, 2, 32), "u": (SAMPLES, 1, 40, 2, 16)}
    assert samples["A_inv"][..., 40:].abs().max() < 1e-7  # columns of the padding: zero (+ underflow noise)
    fla = baseline_scales(case, x, FLA_BLOCKED, refs)
    assert fla == baseline_scales(case, x, FLA_BLOCKED, refs)  # seeded: replays are exact
    fp32 = baseline_scales(case, x, FP32_BLOCKED, refs)
    for name in refs:
        assert 1e-8 < fp32[name].rel_rms < 1e-5 < 1e-4 < fla[name].rel_rms < 1e-2, (name, fp32[name], fla[name])
        assert fp32[name].max_abs < fla[name].max_abs
    other = baseline_scales(UTCase(**{**case.to_json(), "seed": 6}), x, FLA_BLOCKED, refs)
    assert other != fla  # another case, other noise (same inputs here: only the seed differs)


def test_tolerance_rule_names_the_error_model():
    assert "emulations of the variant's declared arithmetic" in TOLERANCE_RULE


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
    dtypes = _dtypes()
    result = check_ut((16, 64), dtypes=dtypes, examples=6, seed=0,
                      variants=[closed_plus(), closed_minus(), kernel_variant()])
    n = 12 * len(dtypes)  # 6 regimes x 2 chunk sizes per dtype
    plus, minus = _summary(result, "closed(+)", "float64"), _summary(result, "closed(-)", "float64")
    assert plus.verdict is Verdict.OK and plus.cases == n and plus.max_rel < 1e-13 and plus.score < 1e-6
    assert minus.verdict is Verdict.DIVERGED and minus.failed == minus.cases == n and minus.score > 100
    for dt in dtypes:
        k = _summary(result, "kernel", dt)
        assert k.verdict is Verdict.OK and k.cases == 12 and 0 < k.max_rel < 1e-5 and k.score < 0.5, k
    assert result.correct_sign() == "+" and not result.failed
    assert result.conclusion().startswith("correct sign: +")
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["correct_sign"] == "+" and data["verdict"] == "OK" and len(data["cases"]) == n
    assert data["arithmetic"]["kernel"] == {"store": "fp32", "dot": "ieee", "inverse": "blocked"}
    out = data["cases"][0]["variants"]["kernel"]["outputs"][0]
    assert out["name"] == "A_inv" and {"baseline", "bound_rel_rms", "bound_max_abs", "score", "scale"} <= set(out)


def test_gated_kernel_passes_on_every_regime():
    """Every gated regime (moderate and strong decay: exp of the chunk cumsum underflows fp32
    mid-chunk) in every dtype the backend runs."""
    dtypes = _dtypes()
    result = check_ut((16,), gated=True, dtypes=dtypes, examples=1, seed=1,
                      variants=[closed_plus(), closed_minus(), kernel_variant()])
    assert {c.case.regime for c in result.cases} == set(regimes(True))
    for dt in dtypes:
        k = _summary(result, "kernel", dt)
        assert k.verdict is Verdict.OK and k.cases == 12 and k.score < 0.5, k
    assert result.correct_sign() == "+" and not result.failed


@pytest.mark.parametrize("old,new", [
    ("b_Ai = -tl.where(m_A, b_A, 0.0)", "b_Ai = tl.where(m_A, b_A, 0.0)"),  # the sign trick's negation
    ("b_a += tl.sum(b_a[:, None] * b_D, 0)", "b_a -= tl.sum(b_a[:, None] * b_D, 0)"),  # substitution step
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
    """fla's fp32 UT step runs its dots at TF32: exact where dots are exact, TF32-level error
    (~1e-3) where they are truncated: on a GPU, and on the interpreter with the shim's TF32
    emulation (fla_check.backend). Its declaration (TF32, input-dtype stores, blocked inverse)
    covers both: the GPU's false alarm (130x the old cond-based allowance) is gone."""
    from fla_check.backend import get_backend

    require("fla", "einops", hint=FLA_HINT)
    result = check_ut((16,), dtypes=("float32",), examples=1, seed=0, variants=[fla_variant()])
    s = _summary(result, "fla", "float32")
    if s.verdict is Verdict.UNSUPPORTED:
        assert "interpreter" in s.reason, s
        return
    assert s.verdict is Verdict.OK and s.score < 1, s
    if get_backend().tf32_dots:
        assert 1e-4 < s.max_rel < 1e-2, s


# -- the fla false alarm, reproduced on CPU with a torch proxy (tests/ut_fla_like.py) -----------
def test_fla_like_step_passes_at_its_declaration_and_not_at_fp32():
    """The torch fla-like step (A_inv, w, u stored in the input dtype; 16x16 blocks merged with
    TF32-truncated dots) passes at fla's declaration in fp32 and fp16, gated (the GPU's false
    alarm, chunk 64: two levels of merges) and not (chunk 32), on every regime. Judged as if it
    declared the built-in kernel's fp32-IEEE arithmetic it DIVERGES: its TF32 error is real, and
    the declaration is what the bound follows."""
    from ut_fla_like import fla_like_variant

    variants = [fla_like_variant(), fla_like_variant("fla-like@fp32", arithmetic=FP32_BLOCKED)]
    for gated, chunk in ((True, 64), (False, 32)):
        result = check_ut((chunk,), gated=gated, dtypes=("float32", "float16"), examples=1, seed=2,
                          variants=variants)
        assert {c.case.regime for c in result.cases} == set(regimes(gated))
        for dt in ("float32", "float16"):
            s = _summary(result, "fla-like", dt)
            assert s.verdict is Verdict.OK and s.score < 0.7, (gated, s)
        tight = _summary(result, "fla-like@fp32", "float32")
        assert tight.verdict is Verdict.DIVERGED and tight.failed > tight.cases // 2, (gated, tight)
        assert _summary(result, "fla-like@fp32", "float16").verdict is Verdict.DIVERGED


def test_fp16_store_underflow_is_not_a_divergence(monkeypatch):
    """Strong decay in fp16: w ~ exp(G) ~ 1e-9 lies below fp16's subnormal spacing (6e-8), fla
    stores it as 0 (a 100% relative error). Rounding to fp16 errs by max(u|x|, 2^-25): with the
    absolute part sampled (emulation.Rounding._underflow) the fla-like step passes; without it
    (the relative noise alone) this is the false alarm."""
    from fla_check.commands.ut_transform import engine as ut_check
    from ut_fla_like import fla_like_variant

    case = UTCase(16, "fp16", T=13, H=1, K=60, V=16, beta_max=2.0, keys="unnormalized", decay="strong", seed=1)
    w = ut_check.check_chunk(case, [fla_like_variant()]).variants["fla-like"]
    assert w.verdict is Verdict.OK, w
    assert w.outputs[1].name == "w" and w.outputs[1].max_abs < 2e-9 and w.outputs[1].rel > 0.99
    from fla_check.verdict import emulation

    monkeypatch.setattr(emulation.Rounding, "_underflow", lambda self, x, tiny: x)
    w = ut_check.check_chunk(case, [fla_like_variant()]).variants["fla-like"]
    assert w.verdict is Verdict.DIVERGED and w.outputs[1].verdict is Verdict.DIVERGED


def test_planted_two_percent_error_is_flagged_at_fla_declaration():
    """beta off by 2% in the fla-like step: DIVERGED on every chunk even at the loosest
    declaration (fla's), in fp32 and fp16."""
    from ut_fla_like import fla_like_variant

    result = check_ut((64,), gated=True, dtypes=("float32", "float16"), examples=1, seed=3,
                      variants=[fla_like_variant("2%", beta_scale=1.02)])
    for dt in ("float32", "float16"):
        s = _summary(result, "2%", dt)
        assert s.verdict is Verdict.DIVERGED and s.failed == s.cases == 12, s
    assert result.failed and "2% float16 DIVERGED" in result.conclusion()


def _raising(exc, external):
    def run(x, chunk_size):
        raise exc
    return Variant("v", "raises", run, external=external)


def _no_baseline(arith):
    raise AssertionError("a variant that did not run needs no baseline")


def test_variants_that_cannot_run():
    case = UTCase(16, "fp32", T=4, H=1, K=16, V=16)
    check = lambda v, interp: _check_variant(v, case, None, {}, _no_baseline, interp)  # noqa: E731
    r = check(_raising(VariantUnsupported("no fla here"), True), True)
    assert r.verdict is Verdict.UNSUPPORTED and r.reason == "no fla here"
    r = check(_raising(RuntimeError("int has no attribute to"), True), True)
    assert r.verdict is Verdict.UNSUPPORTED and "interpreter" in r.reason
    assert check(_raising(RuntimeError("boom"), True), False).verdict is Verdict.ERROR
    assert check(_raising(RuntimeError("boom"), False), True).verdict is Verdict.ERROR
