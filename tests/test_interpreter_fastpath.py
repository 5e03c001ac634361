"""fla_check.interpreter_fastpath: device-function calls inside a launch stop re-patching
triton.language, with results unchanged. Kernel tests only under the interpreter (on a GPU the
process runs compiled Triton and the fast path is not installed)."""
import resource
import sys
import types

import pytest
import torch

import fla_check.kernels  # noqa: F401  (selects the backend before triton)
import triton
import triton.language as tl
from triton.language import core as tl_core

from fla_check import interpreter_fastpath as fastpath
from fla_check.backend import get_backend

interpreter_only = pytest.mark.skipif(not get_backend().interpreter or fastpath.check_internals() is not None,
                                      reason="the fast path patches Triton 3.9's CPU interpreter")


@triton.jit
def _decay(x, g):
    return x * tl.exp(g)


@triton.jit
def _step(h, x, g):
    return _decay(h, g) + tl.sigmoid(x)


@triton.jit
def _scan_kernel(x_ptr, g_ptr, o_ptr, T: tl.constexpr, N: tl.constexpr):
    """h_t = h_{t-1} * exp(g_t) + sigmoid(x_t) over T steps of N lanes: two nested helpers per step."""
    offs = tl.arange(0, N)
    h = tl.zeros([N], dtype=tl.float32)
    for t in range(T):
        h = _step(h, tl.load(x_ptr + t * N + offs), tl.load(g_ptr + t * N + offs))
        tl.store(o_ptr + t * N + offs, h)


def _scan(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    o = torch.empty_like(x)
    _scan_kernel[(1,)](x, g, o, T=x.shape[0], N=x.shape[1])
    return o


@pytest.fixture
def counted(monkeypatch):
    """Counts the interpreter's own _patch_lang runs (the scans the fast path saves)."""
    calls = []
    original = fastpath._ORIGINALS.get("_patch_lang")
    if original is None:
        pytest.skip("fast path not installed")

    def counting(fn):
        calls.append(fn.__name__)
        return original(fn)

    monkeypatch.setitem(fastpath._ORIGINALS, "_patch_lang", counting)
    return calls


@pytest.fixture
def restore():
    """Leave the process-wide fast path as get_backend installed it (list it before `monkeypatch`:
    teardown runs in reverse, so the patches are undone before it reinstalls)."""
    was = fastpath.installed()
    yield
    fastpath.uninstall()
    if was:
        fastpath.install()


@interpreter_only
def test_helpers_inside_a_launch_do_not_patch_again_and_results_are_bit_identical(counted, restore):
    gen = torch.Generator().manual_seed(0)
    x, g = torch.randn(12, 16, generator=gen), -torch.rand(12, 16, generator=gen)
    fast = _scan(x, g)
    assert counted == ["_scan_kernel"]  # one patch per launch; the 24 helper calls reuse it
    fastpath.uninstall()
    slow = _scan(x, g)
    assert torch.equal(fast, slow)
    expected, h = torch.empty_like(x), torch.zeros(16)
    for t in range(12):
        h = h * g[t].exp() + x[t].sigmoid()
        expected[t] = h
    torch.testing.assert_close(fast, expected)


@triton.jit
def _core_helper(x):
    return tl_core.abs(x)  # this module's globals name triton.language.core too


@interpreter_only
def test_a_launch_patches_again_only_for_a_language_module_it_has_not_patched(counted):
    fastpath._LAUNCHES.append({id(tl)})
    try:
        fastpath._patch_lang(_core_helper.fn)  # sees tl and tl.core: tl.core is new, so it patches
        fastpath._patch_lang(_core_helper.fn)  # both patched now: skipped
    finally:
        patched = fastpath._LAUNCHES.pop()
    assert counted == ["_core_helper"]
    assert patched == {id(tl), id(tl_core)}


@interpreter_only
def test_a_helper_that_sees_no_language_module_still_gets_the_interpreters_error():
    blind = types.FunctionType(_decay.fn.__code__, {}, "blind")  # its globals name no triton.language
    fastpath._LAUNCHES.append({id(tl), id(tl_core)})
    try:
        with pytest.raises(AssertionError, match="triton.language must be visible"):
            fastpath._patch_lang(blind)
    finally:
        fastpath._LAUNCHES.pop()


def test_outside_a_launch_and_uninstalled_the_interpreters_own_function_runs(restore, monkeypatch):
    if fastpath.check_internals() is not None:
        pytest.skip(fastpath.check_internals())
    fastpath.install()
    from triton.runtime import interpreter

    assert interpreter._patch_lang is fastpath._patch_lang
    calls = []
    monkeypatch.setitem(fastpath._ORIGINALS, "_patch_lang", lambda fn: calls.append(fn) or "scope")
    assert fastpath._patch_lang(_decay.fn) == "scope" and calls == [_decay.fn]  # no launch running
    monkeypatch.undo()
    fastpath.uninstall()
    assert interpreter._patch_lang is not fastpath._patch_lang and not fastpath.installed()
    fastpath.uninstall()  # idempotent


def test_a_triton_whose_internals_differ_is_left_alone(restore, monkeypatch):
    fastpath.uninstall()
    monkeypatch.setattr(fastpath, "check_internals", lambda: "triton.runtime.interpreter._patch_lang is missing")
    assert fastpath.install() == "triton.runtime.interpreter._patch_lang is missing"
    assert not fastpath.installed()


def test_np_dtypes_are_the_interpreters_own(restore):
    if fastpath.check_internals() is not None:
        pytest.skip(fastpath.check_internals())
    fastpath.install()
    original = fastpath._ORIGINALS["_get_np_dtype"]
    scalars = [tl.int1, tl.float16, tl.float32, tl.float64, tl.int8, tl.uint8, tl.int16, tl.uint16, tl.int32,
               tl.uint32, tl.int64, tl.uint64, tl.bfloat16, tl.float8e5, tl.float8e4nv]
    types = scalars + [tl.block_type(t, [4, 2]) for t in scalars] + [tl.pointer_type(tl.float32),
                                                                     tl.block_type(tl.pointer_type(tl.bfloat16), [8])]
    for t in types + types:  # the second pass answers from the memo
        assert fastpath._np_dtype(t) == original(t), t
    with pytest.raises(KeyError):
        fastpath._np_dtype(tl.void)  # what the interpreter raises for a type it does not store


def _at_depth(n: int, fn):
    return fn() if n == 0 else _at_depth(n - 1, fn)


def _page_faults_of_launches_at_many_depths() -> int:
    """Minor page faults of 40 launches started at call depths spread over more than a 16 KiB frame chunk."""
    x, g = torch.randn(64, 16), -torch.rand(64, 16)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for depth in range(0, 160, 4):
        _at_depth(depth, lambda: _scan(x, g))
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@interpreter_only
@pytest.mark.skipif(sys.version_info < (3, 11), reason="frames live on a chunked data stack from CPython 3.11")
def test_launches_run_below_the_stack_padding_and_stop_mapping_frame_chunks(monkeypatch):
    assert fastpath.installed()
    _page_faults_of_launches_at_many_depths()  # warm: compiled helpers, allocator pools
    padded = _page_faults_of_launches_at_many_depths()
    monkeypatch.setattr(fastpath, "_call_below_padding", lambda call, args, kwargs: call(*args, **kwargs))
    unpadded = _page_faults_of_launches_at_many_depths()
    # unpadded, some depths put a 16 KiB chunk boundary inside the helpers' calls: a fresh chunk is
    # mapped and touched at each crossing (measured: 23,567 faults against 415 padded)
    assert unpadded > 10 * padded, (padded, unpadded)


@triton.jit
def _mixed_kernel(x_ptr, y_ptr, h_ptr, i_ptr, o_ptr, oh_ptr, oi_ptr, N: tl.constexpr):
    """Binary operations of every kind the fast operands meet: same-type fp32 and fp16 tensors,
    fp16 division (promoted to fp32), a Python scalar, a broadcast, integer index arithmetic and
    modulo, pointer offsets."""
    offs = tl.arange(0, N)
    x = tl.load(x_ptr + offs)
    y = tl.load(y_ptr + offs)
    h = tl.load(h_ptr + offs)
    i = tl.load(i_ptr + offs)
    outer = x[:, None] * y[None, :] - 0.5 * x[:, None]
    same = x * y + x - y
    half = h * h + h / (h + 2.0)
    index = (i * 3 + i) % 5 - i
    tl.store(o_ptr + offs[:, None] * N + offs[None, :], outer + same[None, :])
    tl.store(oh_ptr + offs, half)
    tl.store(oi_ptr + offs, index)


def _mixed(x, y, h, i):
    N = x.numel()
    o, oh, oi = x.new_empty(N, N), torch.empty_like(h), torch.empty_like(i)
    _mixed_kernel[(1,)](x, y, h, i, o, oh, oi, N=N)
    return o, oh, oi


@interpreter_only
def test_operands_of_one_type_skip_the_checking_and_every_result_is_bit_identical(restore, monkeypatch):
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    h = torch.randn(16, generator=gen).half()
    i = torch.randint(-50, 50, (16,), generator=gen, dtype=torch.int32)
    fastpath.install()
    checked = []
    original = fastpath._ORIGINALS["checking"]
    monkeypatch.setitem(fastpath._ORIGINALS, "checking", lambda *a: checked.append(1) or original(*a))
    fast = _mixed(x, y, h, i)
    checked_fast = len(checked)
    monkeypatch.undo()
    fastpath.uninstall()
    from triton.runtime import interpreter

    semantic = type(interpreter.interpreter_semantic)
    checked.clear()
    monkeypatch.setattr(semantic, "binary_op_type_checking_impl",
                        lambda *a, _own=semantic.binary_op_type_checking_impl: checked.append(1) or _own(*a))
    slow = _mixed(x, y, h, i)
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    # scalars, broadcasts, the division, pointers still take the interpreter's own checking; same types do not
    assert 0 < checked_fast < len(checked)
    torch.testing.assert_close(slow[0], (x[:, None] * y[None, :] - 0.5 * x[:, None]) + (x * y + x - y)[None, :])


@triton.jit
def _overflow_kernel(i_ptr, o_ptr):
    i = tl.load(i_ptr)
    tl.store(o_ptr, i * i)


@interpreter_only
def test_the_int32_overflow_check_runs_where_its_assert_would_fire(restore, monkeypatch):
    """The interpreter's int32 overflow check is built only to be handed to device_assert, which
    drops it without the debug option: skipped then (the product wraps either way), the
    interpreter's own check when debugging."""
    import dataclasses

    from triton.runtime import interpreter
    from triton.runtime.errors import InterpreterError

    fastpath.install()
    big, out = torch.tensor([70_000], dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    _overflow_kernel[(1,)](big, out)
    assert int(out) == (70_000 * 70_000 + 2**31) % 2**32 - 2**31  # wrapped, no assert (as uninstalled)
    builder = interpreter.interpreter_semantic.builder
    monkeypatch.setattr(builder, "options", dataclasses.replace(builder.options, debug=True))
    with pytest.raises(InterpreterError, match="int32 overflow detected for operation mul"):
        _overflow_kernel[(1,)](big, out)
    fastpath.uninstall()
    with pytest.raises(InterpreterError, match="int32 overflow detected for operation mul"):
        _overflow_kernel[(1,)](big, out)  # the interpreter's own behaviour, for comparison
