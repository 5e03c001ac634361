"""Make Triton's CPU interpreter compute bf16 (and, optionally, TF32 dots) the way a GPU does.

Triton 3.9's interpreter (``triton/runtime/interpreter.py``) stores bf16 tensors as their raw
``uint16`` bit patterns and hands those to numpy untouched, so (measured on a 16-element kernel):

- ``tl.dot`` of bf16 blocks multiplies the bit patterns as integers (triton issue 11584);
- bf16 ``+ - *``, ``-x``, ``min/max``, comparisons (so ``tl.where(x > y, ...)``), ``fma``,
  ``tl.sum``/``tl.cumsum`` and int -> bf16 casts are integer arithmetic on the bits;
- fp32 -> bf16 casts truncate (a GPU rounds to nearest even): off by one bf16 ulp.

Loads, stores, ``tl.abs``, ``tl.where`` selection and bf16 -> fp32 casts are already exact.
:func:`install` patches the interpreter builder (a process-wide change of class attributes) so
that bf16 operands are decoded to float, computed there and rounded back to bf16 once (round to
nearest even; ``rtz`` where a cast asks for it), and bf16 ``tl.dot`` operands are decoded to fp32
and multiplied exactly with fp32 accumulation, as a GPU's tensor cores do. Reductions and scans of
bf16 tensors accumulate in fp32 and round the result once (a GPU rounds its bf16 partial sums:
this is the one place the shim is more accurate than the hardware).

With ``tf32=True`` an fp32 ``tl.dot`` at ``input_precision="tf32"`` (also Triton's default) has
its operands truncated to TF32 (top 10 mantissa bits kept, round toward zero: the low 13 bits of
the float32 pattern cleared, Inf/NaN kept), then multiplied exactly: what an H200 measurably does.
``"ieee"`` and ``"tf32x3"`` stay exact. Half-precision operands are never touched (fp16 and bf16
values are exact in TF32).

Version-robust: :func:`install` checks the internals it patches (names, signatures, bf16 stored as
``uint16``) and returns a :class:`ShimStatus` saying why it did not install instead of raising.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

_U16 = np.uint16
_U32 = np.uint32


@dataclass(frozen=True)
class ShimStatus:
    """Outcome of :func:`install` (truthy when the shim is in place)."""

    installed: bool
    tf32: bool  # fp32 tf32 dots are truncated to TF32
    reason: str = ""  # why not installed (or why TF32 is off), else ""

    def __bool__(self) -> bool:
        return self.installed


# -- bit-level conversions (pure numpy) ------------------------------------------------------

def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bf16 bit patterns (exact: bf16 is the top half of a float32)."""
    return (np.asarray(bits).astype(_U32) << _U32(16)).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray, rtz: bool = False) -> np.ndarray:
    """bf16 bit patterns of float32 values, rounded to nearest even (toward zero if `rtz`);
    NaN stays a (quiet) NaN, overflow rounds to Inf as on a GPU."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(_U32)
    nan = (bits & _U32(0x7FFFFFFF)) > _U32(0x7F800000)
    if rtz:
        rounded = bits >> _U32(16)
    else:
        rounded = (bits + (_U32(0x7FFF) + ((bits >> _U32(16)) & _U32(1)))) >> _U32(16)
    return np.where(nan, (bits >> _U32(16)) | _U32(0x0040), rounded).astype(_U16)


def _f64_to_f32_odd(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounded to odd (toward zero, sticky last bit): rounding that to bf16
    gives the correctly rounded bf16 of `x` (float32 has more than 2 * 8 + 2 mantissa bits)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        t = x.astype(np.float32)
        away = np.abs(t.astype(np.float64)) > np.abs(x)
        t = np.where(away, np.nextafter(t, np.float32(0)), t).astype(np.float32)
        inexact = np.isfinite(x) & (t.astype(np.float64) != x)
    return (np.ascontiguousarray(t).view(_U32) | inexact.astype(_U32)).view(np.float32)


def to_bf16_bits(x: np.ndarray, rtz: bool = False) -> np.ndarray:
    """bf16 bit patterns of any real array (float64/ints rounded once, not twice)."""
    x = np.asarray(x)
    if x.dtype in (np.float32, np.float16):
        return f32_to_bf16_bits(x.astype(np.float32), rtz)
    return f32_to_bf16_bits(_f64_to_f32_odd(x.astype(np.float64)), rtz)


def tf32_truncate(x: np.ndarray) -> np.ndarray:
    """float32 values truncated to TF32 (10 mantissa bits, toward zero); Inf/NaN unchanged."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(_U32)
    special = (bits & _U32(0x7F800000)) == _U32(0x7F800000)
    return np.where(special, bits, bits & _U32(0xFFFFE000)).astype(_U32).view(np.float32)


# -- the patches ------------------------------------------------------------------------------

_ORIGINALS: dict[tuple[type, str], Any] = {}
_STATE = {"tf32": False}

# (owner attribute in triton.runtime.interpreter, method, parameter names after self); the methods
# in _OPTIONAL are added where missing (Triton 3.6's builder has no get_bf16: bf16 constants raise)
_OPTIONAL = frozenset({"get_bf16"})
_ABSENT = object()  # _ORIGINALS value of a method the shim added (uninstall deletes it)
_TARGETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("InterpreterBuilder", "binary_op", ("lhs", "rhs", "op")),
    ("InterpreterBuilder", "unary_op", ("arg", "op")),
    ("InterpreterBuilder", "ternary_op", ("lhs", "rhs", "other", "op")),
    ("InterpreterBuilder", "create_fma", ("x", "y", "z")),
    ("InterpreterBuilder", "cast_impl", ("src", "dst_type")),
    ("InterpreterBuilder", "create_fp_to_fp", ("src", "dst_type", "rounding_mode")),
    ("InterpreterBuilder", "get_bf16", ("value",)),
    ("InterpreterBuilder", "create_dot", ("a", "b", "d", "input_precision", "max_num_imprecise_acc")),
    ("ReduceOps", "min_max", ("input", "val_reduce_op", "idx_reduce_op")),
    ("ReduceOps", "sum", ("input",)),
    ("ScanOps", "cumsum", ("input",)),
    ("ScanOps", "cumprod", ("input",)),
)


def _interp():
    from triton.runtime import interpreter

    return interpreter


def _is_bf16(h) -> bool:
    """A handle holding bf16 bits (comparison results keep the operand dtype but hold bools)."""
    import triton.language as tl

    return h.dtype.scalar == tl.bfloat16 and h.data.dtype == _U16


def _decoded(h) -> np.ndarray:
    return bf16_bits_to_f32(h.data).astype(np.float64) if _is_bf16(h) else h.data


def _handle(data: np.ndarray, dtype) -> Any:
    return _interp().TensorHandle(data, dtype)


def _binary_op(orig: Callable) -> Callable:
    def binary_op(self, lhs, rhs, op):
        if not (_is_bf16(lhs) or _is_bf16(rhs)):
            return orig(self, lhs, rhs, op)
        out = np.asarray(op(_decoded(lhs), _decoded(rhs)))
        return _handle(out if out.dtype == np.bool_ else to_bf16_bits(out), lhs.dtype.scalar)
    return binary_op


def _unary_op(orig: Callable) -> Callable:
    def unary_op(self, arg, op):
        if not _is_bf16(arg):
            return orig(self, arg, op)
        return _handle(to_bf16_bits(np.asarray(op(_decoded(arg)))), arg.dtype.scalar)
    return unary_op


def _ternary_op(orig: Callable) -> Callable:
    def ternary_op(self, lhs, rhs, other, op):
        if not any(_is_bf16(h) for h in (lhs, rhs, other)):
            return orig(self, lhs, rhs, other, op)
        out = np.asarray(op(_decoded(lhs), _decoded(rhs), _decoded(other)))
        import triton.language as tl

        if other.dtype.scalar == tl.bfloat16 and out.dtype != np.bool_:
            out = to_bf16_bits(out)
        return _handle(out, other.dtype.scalar)
    return ternary_op


def _create_fma(orig: Callable) -> Callable:
    def create_fma(self, x, y, z):
        if not _is_bf16(z):
            return orig(self, x, y, z)
        out = _decoded(x) * _decoded(y) + _decoded(z)  # bf16 products are exact in float64
        return _handle(to_bf16_bits(out), z.dtype.scalar)
    return create_fma


def _cast_impl(orig: Callable) -> Callable:
    import triton.language as tl

    def cast_impl(self, src, dst_type):
        dst = dst_type.scalar
        if _is_bf16(src):
            if dst == tl.bfloat16:
                return _handle(src.data.copy(), dst)
            return orig(self, _handle(bf16_bits_to_f32(src.data), tl.float32), dst_type)
        if dst == tl.bfloat16 and src.dtype.scalar != tl.bfloat16:
            return _handle(to_bf16_bits(src.data), dst)
        return orig(self, src, dst_type)
    return cast_impl


def _create_fp_to_fp(orig: Callable) -> Callable:
    import triton.language as tl

    def create_fp_to_fp(self, src, dst_type, rounding_mode):
        dst = dst_type.scalar
        if _is_bf16(src):
            src = _handle(bf16_bits_to_f32(src.data), tl.float32)
            if dst == tl.float32:
                return src
        if dst != tl.bfloat16:
            return orig(self, src, dst_type, rounding_mode)
        if src.dtype.scalar not in (tl.float16, tl.float32, tl.float64):  # fp8: exact in fp32
            src = orig(self, src, tl.float32, rounding_mode)
        rtz = rounding_mode == _interp()._ir.ROUNDING_MODE.RTZ
        return _handle(to_bf16_bits(src.data, rtz=rtz), dst)
    return create_fp_to_fp


def _get_bf16(orig: Any) -> Callable:
    import triton.language as tl

    def get_bf16(self, value):  # a GPU rounds a bf16 constant once (`orig` is never needed)
        return _handle(to_bf16_bits(np.array([value], dtype=np.float64)), tl.bfloat16)
    return get_bf16


def _create_dot(orig: Callable) -> Callable:
    import triton.language as tl

    tf32_enum = _interp()._ir.INPUT_PRECISION.TF32

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        a_bf, b_bf = _is_bf16(a), _is_bf16(b)
        fp32 = a.dtype.scalar == tl.float32 and b.dtype.scalar == tl.float32
        tf32 = _STATE["tf32"] and fp32 and input_precision == tf32_enum
        if not (a_bf or b_bf or tf32):
            return orig(self, a, b, d, input_precision, max_num_imprecise_acc)
        a_data = bf16_bits_to_f32(a.data) if a_bf else a.data.astype(np.float32)
        b_data = bf16_bits_to_f32(b.data) if b_bf else b.data.astype(np.float32)
        if tf32:
            a_data, b_data = tf32_truncate(a_data), tf32_truncate(b_data)
        out = np.matmul(a_data, b_data, dtype=np.float32) + d.data
        return _handle(out.astype(d.data.dtype), d.dtype.scalar)
    return create_dot


def _as_f32_tensor(t):
    """A tl tensor of bf16 bits as a float32 tl tensor (other tensors unchanged)."""
    import triton.language as tl

    if not _is_bf16(t.handle):
        return t
    return tl.core.tensor(_handle(bf16_bits_to_f32(t.handle.data), tl.float32),
                          t.type.with_element_ty(tl.float32))


def _as_bf16_tensor(t):
    import triton.language as tl

    return tl.core.tensor(_handle(to_bf16_bits(t.handle.data), tl.bfloat16), t.type.with_element_ty(tl.bfloat16))


def _reduction(orig: Callable) -> Callable:
    """Wrap a ReduceOps/ScanOps fast path: bf16 input -> fp32, result values -> bf16 once."""
    import triton.language as tl

    def run(self, input, *args, **kwargs):
        first = input[0] if isinstance(input, (tuple, list)) else input
        if not _is_bf16(first.handle):
            return orig(self, input, *args, **kwargs)
        if isinstance(input, (tuple, list)):
            input = type(input)(_as_f32_tensor(t) for t in input)
        else:
            input = _as_f32_tensor(input)
        ret = orig(self, input, *args, **kwargs)
        fix = lambda t: _as_bf16_tensor(t) if t.dtype == tl.float32 else t  # noqa: E731 - idx stays int32
        if isinstance(ret, (tuple, list)):
            return type(ret)(fix(t) for t in ret)
        return fix(ret)
    return run


_WRAPPERS: dict[str, Callable[[Callable], Callable]] = {
    "binary_op": _binary_op, "unary_op": _unary_op, "ternary_op": _ternary_op, "create_fma": _create_fma,
    "cast_impl": _cast_impl, "create_fp_to_fp": _create_fp_to_fp, "get_bf16": _get_bf16,
    "create_dot": _create_dot, "min_max": _reduction, "sum": _reduction, "cumsum": _reduction,
    "cumprod": _reduction,
}


def check_internals() -> Optional[str]:
    """Why this Triton's interpreter cannot be shimmed (internals changed), or None."""
    try:
        import triton.language as tl

        interp = _interp()
    except Exception as exc:  # noqa: BLE001 - any import failure means no shim
        return f"cannot import triton.runtime.interpreter: {type(exc).__name__}: {exc}"
    try:
        if interp._get_np_dtype(tl.bfloat16) != np.dtype(_U16):
            return "the interpreter does not store bf16 as uint16 bits"
        interp._ir.INPUT_PRECISION.TF32, interp._ir.ROUNDING_MODE.RTZ  # noqa: B018 - must exist
        interp.TensorHandle  # noqa: B018
    except Exception as exc:  # noqa: BLE001
        return f"interpreter internals changed: {type(exc).__name__}: {exc}"
    for owner_name, method, params in _TARGETS:
        owner = getattr(interp, owner_name, None)
        fn = _ORIGINALS.get((owner, method)) or getattr(owner, method, None)
        if (fn is None or fn is _ABSENT) and owner is not None and method in _OPTIONAL:
            continue
        if owner is None or fn is None:
            return f"triton.runtime.interpreter.{owner_name}.{method} is missing"
        try:
            got = tuple(inspect.signature(fn).parameters)[1:]
        except (TypeError, ValueError):
            return f"cannot inspect {owner_name}.{method}"
        if got != params:
            return f"{owner_name}.{method}{got} is not the expected {params}"
    return None


def install(tf32: bool = True) -> ShimStatus:
    """Patch the interpreter (idempotent; a second call only switches TF32 emulation).
    Returns why not, instead of raising, when this Triton's internals differ."""
    if not _ORIGINALS:
        problem = check_internals()
        if problem:
            return ShimStatus(False, False, problem)
        interp = _interp()
        patched: dict[tuple[type, str], Any] = {}
        try:
            for owner_name, method, _ in _TARGETS:
                owner = getattr(interp, owner_name)
                absent = method in _OPTIONAL and method not in owner.__dict__
                orig = _ABSENT if absent else owner.__dict__[method]
                patched[(owner, method)] = orig
                setattr(owner, method, _WRAPPERS[method](orig))
        except Exception as exc:  # noqa: BLE001 - restore whatever was patched
            _restore(patched)
            return ShimStatus(False, False, f"patching failed: {type(exc).__name__}: {exc}")
        _ORIGINALS.update(patched)
    _STATE["tf32"] = bool(tf32)
    return status()


def set_tf32(enabled: bool) -> None:
    """Switch TF32 truncation of fp32 tf32 dots (only effective while installed)."""
    _STATE["tf32"] = bool(enabled)


def status() -> ShimStatus:
    """Whether the shim is installed now, and whether TF32 truncation is on."""
    if not _ORIGINALS:
        return ShimStatus(False, False, "not installed")
    return ShimStatus(True, _STATE["tf32"])


def _restore(originals: dict[tuple[type, str], Any]) -> None:
    for (owner, method), orig in originals.items():
        if orig is _ABSENT:
            delattr(owner, method)
        else:
            setattr(owner, method, orig)


def uninstall() -> None:
    """Restore Triton's own interpreter methods (no-op when not installed)."""
    _restore(_ORIGINALS)
    _ORIGINALS.clear()
    _STATE["tf32"] = False
