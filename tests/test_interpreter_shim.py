"""fla_check.interpreter_shim: bf16 and TF32 in Triton's CPU interpreter, checked against torch.

The bit helpers are tested everywhere; the kernel tests only under the interpreter (on a GPU the
process runs compiled Triton and the shim is not installed)."""
import numpy as np
import pytest
import torch

import fla_check.kernels  # noqa: F401  (selects the backend before triton)
import triton
import triton.language as tl

from fla_check import interpreter_shim as shim
from fla_check.backend import get_backend

interpreter_only = pytest.mark.skipif(not get_backend().interpreter or shim.check_internals() is not None,
                                      reason="the shim patches Triton 3.9's CPU interpreter")


@pytest.fixture
def shim_state():
    """Restore the process-wide shim as get_backend left it (installed, TF32 as probed)."""
    before = shim.status()
    yield
    shim.uninstall()
    if before:
        shim.install(tf32=before.tf32)


# -- bit helpers ------------------------------------------------------------------------------

def test_bf16_conversions_match_torch_round_to_nearest_even():
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(4096, generator=gen) * 10.0 ** torch.randint(-30, 30, (4096,), generator=gen),
                   torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 3.3895e38, 1e-40, -1e-42])])
    bits = shim.f32_to_bf16_bits(x.numpy())
    assert np.array_equal(bits, x.bfloat16().view(torch.int16).numpy().view(np.uint16))
    assert np.array_equal(shim.bf16_bits_to_f32(bits), x.bfloat16().float().numpy())
    assert np.isnan(shim.bf16_bits_to_f32(shim.f32_to_bf16_bits(np.array([np.nan], np.float32))))[0]


def test_float64_rounds_once_and_rtz_truncates():
    x = 1 + 2.0**-8 + 2.0**-30  # above the bf16 midpoint; float32 would round it onto the midpoint
    assert shim.to_bf16_bits(np.array([x]))[0] == 0x3F81  # 1 + 2**-7 (twice rounded: 0x3F80)
    assert shim.to_bf16_bits(np.array([1 + 2.0**-7 - 2.0**-20], np.float32), rtz=True)[0] == 0x3F80
    assert shim.to_bf16_bits(np.array([-1e39]))[0] == 0xFF80  # overflow -> -inf


def test_tf32_truncation_clears_the_low_13_bits():
    x = np.array([1 + 1.875 * 2.0**-11, -(1 + 2.0**-10 + 2.0**-12), np.inf, 3.0], np.float32)
    assert list(shim.tf32_truncate(x)) == [1.0, -(1 + 2.0**-10), np.inf, 3.0]
    gen = torch.Generator().manual_seed(0)
    half = torch.randn(1000, generator=gen).half().float().numpy()  # fp16 and bf16 values are exact in TF32
    assert np.array_equal(shim.tf32_truncate(half), half)
    bf16 = torch.randn(1000, generator=gen).bfloat16().float().numpy()
    assert np.array_equal(shim.tf32_truncate(bf16), bf16)


# -- kernels under the interpreter -------------------------------------------------------------

@triton.jit
def _dot(a_ptr, b_ptr, c_ptr, M: tl.constexpr, K: tl.constexpr, N: tl.constexpr, PREC: tl.constexpr):
    m, k, n = tl.arange(0, M), tl.arange(0, K), tl.arange(0, N)
    a = tl.load(a_ptr + m[:, None] * K + k[None, :])
    b = tl.load(b_ptr + k[:, None] * N + n[None, :])
    tl.store(c_ptr + m[:, None] * N + n[None, :], tl.dot(a, b, input_precision=PREC))


@triton.jit
def _dot_default(a_ptr, b_ptr, c_ptr, M: tl.constexpr, K: tl.constexpr, N: tl.constexpr):
    m, k, n = tl.arange(0, M), tl.arange(0, K), tl.arange(0, N)
    a = tl.load(a_ptr + m[:, None] * K + k[None, :])
    b = tl.load(b_ptr + k[:, None] * N + n[None, :])
    tl.store(c_ptr + m[:, None] * N + n[None, :], tl.dot(a, b))


def _run_dot(dtype, prec=None, M=16, K=64, N=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(M, K, generator=gen).to(dtype), torch.randn(K, N, generator=gen).to(dtype)
    c = torch.empty(M, N)
    if prec is None:
        _dot_default[(1,)](a, b, c, M=M, K=K, N=N)
    else:
        _dot[(1,)](a, b, c, M=M, K=K, N=N, PREC=prec)
    return a, b, c


def _tf32(x):
    return (x.float().view(torch.int32) & ~0x1FFF).view(torch.float32)


def _fp32_accumulation_bound(a, b):
    """|error| of an fp32-accumulated product of exact operands: K ulps of sum |a||b|."""
    return a.shape[1] * 2.0**-24 * (a.double().abs() @ b.double().abs())


@interpreter_only
def test_bf16_dot_matches_fp32_accumulation_of_exact_products(shim_state):
    shim.uninstall()
    a, b, c = _run_dot(torch.bfloat16, "tf32")
    want = a.double() @ b.double()
    assert (c.double() - want).abs().max() > 1e3  # Triton's own interpreter: raw bit patterns
    assert shim.install(tf32=True)
    a, b, c = _run_dot(torch.bfloat16, "tf32")
    assert ((c.double() - want).abs() <= _fp32_accumulation_bound(a, b)).all()
    assert torch.equal(c, _run_dot(torch.bfloat16, "ieee")[2])  # no TF32 effect on bf16 operands


@triton.jit
def _elementwise(x_ptr, y_ptr, f_ptr, o_ptr, N: tl.constexpr):
    i = tl.arange(0, N)
    x, y, f = tl.load(x_ptr + i), tl.load(y_ptr + i), tl.load(f_ptr + i)
    outs = (x + y, x - y, x * y, -x, x * 2.0, tl.maximum(x, y), tl.minimum(x, y), tl.where(x > y, x, y),
            tl.abs(x), f.to(tl.bfloat16), (x / y).to(tl.bfloat16), tl.fma(x, y, x),
            tl.zeros([N], tl.bfloat16) + tl.sum(x, 0), tl.zeros([N], tl.bfloat16) + tl.max(x, 0),
            tl.zeros([N], tl.bfloat16) + tl.min(x, 0), tl.cumsum(x, 0), (i - 7).to(tl.bfloat16),
            x.to(tl.float16).to(tl.bfloat16), f.to(tl.bfloat16, fp_downcast_rounding="rtz"))
    for j in tl.static_range(len(outs)):
        tl.store(o_ptr + j * N + i, outs[j])
    tl.store(o_ptr + len(outs) * N + i, x.to(tl.float32).to(tl.int32).to(tl.bfloat16))


@interpreter_only
def test_bf16_elementwise_casts_and_reductions_match_torch():
    n = 32
    gen = torch.Generator().manual_seed(1)
    x, y = (torch.randn(n, generator=gen).bfloat16() for _ in range(2))
    f = torch.randn(n, generator=gen) * 3
    o = torch.zeros(20, n, dtype=torch.bfloat16)
    _elementwise[(1,)](x, y, f, o, N=n)
    xf, yf = x.float(), y.float()
    fx = lambda t: t.expand(n)  # noqa: E731
    rtz = (f.view(torch.int32) & ~0xFFFF).view(torch.float32)
    want = [xf + yf, xf - yf, xf * yf, -xf, xf * 2, torch.maximum(xf, yf), torch.minimum(xf, yf),
            torch.where(xf > yf, xf, yf), xf.abs(), f, xf / yf, (xf.double() * yf.double() + xf.double()),
            fx(xf.sum()), fx(xf.max()), fx(xf.min()), xf.cumsum(0), torch.arange(n) - 7.0, xf.half().float(),
            rtz, xf.trunc()]
    for j, w in enumerate(want):
        assert torch.equal(o[j], w.float().bfloat16()), j


@interpreter_only
@pytest.mark.parametrize("prec", ["tf32", None])
def test_fp32_tf32_dots_truncate_operands(shim_state, prec):
    assert shim.install(tf32=True).tf32
    a, b, c = _run_dot(torch.float32, prec)
    trunc = _tf32(a).double() @ _tf32(b).double()
    assert ((c.double() - trunc).abs() <= _fp32_accumulation_bound(a, b)).all()
    assert (c.double() - a.double() @ b.double()).abs().max() > 100 * _fp32_accumulation_bound(a, b).max()


@interpreter_only
@pytest.mark.parametrize("prec", ["ieee", "tf32x3"])
def test_ieee_dots_stay_exact(shim_state, prec):
    assert shim.install(tf32=True).tf32
    a, b, c = _run_dot(torch.float32, prec)
    assert ((c.double() - a.double() @ b.double()).abs() <= _fp32_accumulation_bound(a, b)).all()


@interpreter_only
def test_tf32_emulation_can_be_switched_off(shim_state):
    assert not shim.install(tf32=False).tf32
    a, b, c = _run_dot(torch.float32, "tf32")
    assert ((c.double() - a.double() @ b.double()).abs() <= _fp32_accumulation_bound(a, b)).all()


@interpreter_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_operands_are_unaffected_by_tf32(shim_state, dtype):
    shim.install(tf32=True)
    on = _run_dot(dtype, "tf32")[2]
    shim.set_tf32(False)
    assert torch.equal(on, _run_dot(dtype, "tf32")[2])


@interpreter_only
def test_changed_internals_are_reported_not_raised(shim_state, monkeypatch):
    shim.uninstall()
    monkeypatch.setattr(shim, "_TARGETS", shim._TARGETS + (("InterpreterBuilder", "create_gone", ("x",)),))
    status = shim.install()
    assert not status and "InterpreterBuilder.create_gone is missing" in status.reason
    assert not shim.status()  # nothing was patched
    monkeypatch.setattr(shim, "_TARGETS", (("InterpreterBuilder", "create_dot", ("a", "b")),))
    assert "is not the expected" in shim.install().reason


@interpreter_only
def test_install_is_idempotent_and_uninstall_restores(shim_state):
    from triton.runtime import interpreter

    shim.uninstall()
    original = interpreter.InterpreterBuilder.create_dot
    assert shim.install(tf32=True) and shim.install(tf32=False) == shim.ShimStatus(True, False)
    assert interpreter.InterpreterBuilder.create_dot is not original
    shim.uninstall()
    assert interpreter.InterpreterBuilder.create_dot is original and not shim.status()


@interpreter_only
def test_a_missing_get_bf16_is_supplied(shim_state, monkeypatch):
    """Triton 3.6's builder has no get_bf16 (bf16 constants raise there): the shim adds one."""
    from triton.runtime import interpreter

    shim.uninstall()
    monkeypatch.delattr(interpreter.InterpreterBuilder, "get_bf16", raising=False)
    assert shim.check_internals() is None and shim.install()
    assert shim.bf16_bits_to_f32(interpreter.interpreter_builder.get_bf16(1 + 2.0**-8 + 2.0**-30).data)[0] == 1 + 2**-7
    shim.uninstall()
    assert not hasattr(interpreter.InterpreterBuilder, "get_bf16")
