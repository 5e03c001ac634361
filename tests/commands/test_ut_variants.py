"""The UT-transform variants: closed forms of both signs, the kernel entry, fla's availability."""
import pytest

from fla_check.commands.ut_transform import variants as ut_variants
from fla_check.references.ut import ut_recursion
from fla_check.commands.ut_transform.cases import UTCase, build_inputs
from fla_check.commands.ut_transform.variants import (VariantUnsupported, closed_minus, closed_plus, default_variants,
                                   fla_variant, kernel_variant)
from fla_check.verdict.arithmetic import Arithmetic


def _chunk(decay="moderate"):
    return build_inputs(UTCase(16, "fp32", T=12, H=2, K=16, V=16, beta_max=2.0, decay=decay, seed=1))


def test_plus_form_is_the_recursion_and_minus_is_not():
    x = _chunk()
    rw, ru = ut_recursion(x.k, x.v, x.beta, x.g, chunk_size=16)
    _, w, u = closed_plus().run(x, 16)
    assert (w - rw).abs().max() < 1e-12 and (u - ru).abs().max() < 1e-12
    A_minus, w, u = closed_minus().run(x, 16)
    assert (w - rw).abs().max() > 1e-2 and A_minus.shape == (1, 12, 2, 16)


def test_declared_arithmetic_of_each_variant():
    """kernel (the public ``ut_transform`` entry): fp32 stores, IEEE fp32-operand dots at every
    input dtype (it passes ``precision="ieee"``), a blocked inverse; fla: input-dtype stores, TF32
    merges of a blocked inverse; the closed forms are judged at the kernel's (the tightest)
    declaration."""
    kernel = kernel_variant().declared(32)
    assert kernel == Arithmetic("chunk", 32, store="fp32", dot="ieee", inverse="blocked")
    assert fla_variant().declared(16) == Arithmetic("chunk", 16, store="input", dot="tf32", inverse="blocked")
    assert closed_plus().declared(32) == closed_minus().declared(32) == kernel
    assert closed_plus().float64 and not kernel_variant().float64
    assert fla_variant().declaration() == "stores input, tf32 fp32 dots, blocked inverse"
    assert [v.name for v in default_variants()] == ["closed(+)", "closed(-)", "kernel", "fla"]


def test_kernel_variant_calls_the_given_entry():
    seen = {}

    def entry(k, v, beta, g, *, chunk_size):
        seen.update(chunk_size=chunk_size, gated=g is not None)
        return k, k, v

    kernel_variant(entry, name="mutant").run(_chunk(), 16)
    assert seen == {"chunk_size": 16, "gated": True}


def test_fla_missing_is_unsupported_with_reason(monkeypatch):
    real = ut_variants.importlib.util.find_spec
    monkeypatch.setattr(ut_variants.importlib.util, "find_spec",
                        lambda name, *a: None if name == "fla" else real(name, *a))
    ut_variants.fla_wy.cache_clear()
    try:
        with pytest.raises(VariantUnsupported, match="fla-core not importable"):
            fla_variant().run(_chunk(), 16)
    finally:
        ut_variants.fla_wy.cache_clear()
