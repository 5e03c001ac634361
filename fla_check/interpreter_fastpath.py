"""Five repeated costs of Triton's CPU interpreter, skipped with unchanged results.

Re-patching ``triton.language`` on every device-function call.
The interpreter swaps every builtin of ``triton.language`` (``tl``, ``tl.tensor``, ``tl.math``, ...)
for an interpreted one when a kernel launch starts (``GridExecutor.__call__`` -> ``_patch_lang``)
and restores them when it ends. A ``@triton.jit`` helper called inside the kernel runs
``_patch_lang`` again (``InterpretedFunction.__call__``), for every call of every program: each
scans the language modules with ``inspect.getmembers`` (about 1 ms) and finds nothing left to
patch, since the launch patched them already (a patched member is no longer a builtin); the scope
it returns is discarded. In the selftest's recurrent GLA searches that was 8,429 scans, 18 % of the
test's time.

:func:`install` keeps, per running launch, the language modules its ``_patch_lang`` calls patched,
and returns an empty scope to a nested call whose modules are all among them (a helper that sees
another module, e.g. ``triton.language.core``, still patches it). Values are unchanged: only
redundant work is skipped. The interpreter is not re-entrant, so one stack suffices.

Rebuilding a dict of 19 dtypes in every ``_get_np_dtype`` call (226,834 calls in the same test, 7 %
of its time): :func:`_np_dtype` remembers each scalar dtype's answer from the interpreter's own
function.

An integer-overflow check that is thrown away. The interpreter runs with ``sanitize_overflow`` on,
so every int32 ``+``, ``-`` and ``*`` (index arithmetic) first casts both operands to int64, redoes
the operation, compares it with the int32 range and hands the result to ``device_assert``, which
drops it unless the interpreter's builder runs with ``debug`` (its options leave it off). In the
selftest's recurrent GLA searches that was 28 % of the interpreter's time (cProfile).
:func:`_sanitize_overflow` returns at once when ``debug`` is off and runs the original otherwise:
what was checked before is checked still.

Type checking two operands of one type. Every binary operation runs ``binary_op_type_checking_impl``:
promotion to a computation type, a cast to it and a broadcast, each building types and comparing
them. For two tensors of one non-pointer type (same scalar, same shape) outside a division or
modulo, the computation type is that type, the cast returns the operand and the broadcast returns
both unchanged: :func:`_binary_operands` returns them at once (`tl.tensor` operands only).

Thrashing CPython's frame stack. CPython 3.11+ keeps frames on a per-thread data stack of 16 KiB
chunks: a call that does not fit maps a new chunk (``mmap``), and the chunk is unmapped when that
frame returns. The interpreter's deep per-op call chains crossed a chunk boundary back and forth:
in the same test, 228,075 ``mmap``s of 16 KiB in a minute under strace, 8.3 s of system time out of
20 s. Each launch now runs below a padding frame of :data:`_STACK_PAD_SLOTS` unused locals
(34 KiB): it never fits the current chunk, so CPython maps a 64 KiB chunk with the padding at its
start, and the launch begins at the same offset whatever the caller's depth, with about 30 KiB of
room before the next boundary (the test: 8.9 s, 0.35 s of system time). On older Pythons, whose
frames are heap objects, the padding costs one 34 KiB frame per launch.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

_ORIGINALS: dict[str, Any] = {}
# triton.language and numpy's uint64, bound by install(): the hot paths import nothing, and this module
# imports no triton before the backend is chosen (fla_check.backend)
_TL: Any = None
_UINT64: Any = None
_SEMANTIC: Any = None  # the interpreter's TritonSemantic instance, bound by install() too
_LAUNCHES: list[set[int]] = []  # per running launch: ids of the language modules patched in it


def _interp():
    from triton.runtime import interpreter

    return interpreter


def check_internals() -> Optional[str]:
    """Why this Triton's interpreter does not fit the fast path (internals changed), or None."""
    try:
        interp = _interp()
    except Exception as exc:  # noqa: BLE001 - any import failure means no fast path
        return f"cannot import triton.runtime.interpreter: {type(exc).__name__}: {exc}"
    for name in ("_patch_lang", "_LangPatchScope", "GridExecutor", "InterpretedFunction", "_get_np_dtype"):
        if not hasattr(interp, name):
            return f"triton.runtime.interpreter.{name} is missing"
    if tuple(inspect.signature(interp._patch_lang).parameters) != ("fn",):
        return "triton.runtime.interpreter._patch_lang does not take (fn)"
    if "_patch_lang" not in interp.InterpretedFunction.__call__.__code__.co_names:
        return "InterpretedFunction.__call__ no longer calls _patch_lang"
    semantic = getattr(interp, "interpreter_semantic", None)
    if not callable(getattr(semantic, "binary_op_sanitize_overflow_impl", None)):
        return "triton.runtime.interpreter.interpreter_semantic.binary_op_sanitize_overflow_impl is missing"
    if "debug" not in type(semantic).device_assert.__code__.co_names:
        return "device_assert no longer depends on the debug option"
    checking = getattr(semantic, "binary_op_type_checking_impl", None)
    if not callable(checking) or tuple(inspect.signature(checking).parameters) != _CHECKING_PARAMETERS:
        return "binary_op_type_checking_impl's parameters changed"
    return None


def _language_modules(fn: Callable) -> set[int]:
    """Ids of the language modules `fn`'s globals name (the ones ``_patch_lang`` patches for it)."""
    return {id(v) for v in fn.__globals__.values() if inspect.ismodule(v) and (v is _TL or v is _TL.core)}


def _patch_lang(fn: Callable):
    patched = _LAUNCHES[-1] if _LAUNCHES else None
    if patched is None:
        return _ORIGINALS["_patch_lang"](fn)
    wanted = _language_modules(fn)
    if patched and wanted and wanted <= patched:  # (none visible: the original's own assertion)
        return _interp()._LangPatchScope()  # already patched by this launch: nothing to undo
    scope = _ORIGINALS["_patch_lang"](fn)
    patched |= wanted
    return scope


_NP_DTYPES: dict[Any, Any] = {}


def _np_dtype(tt_dtype: Any):
    """The interpreter's ``_get_np_dtype``, memoised per scalar dtype: a block answers for its
    element type, a pointer (or a block of pointers) is uint64, as in the original."""
    scalar = tt_dtype.element_ty if isinstance(tt_dtype, _TL.block_type) else tt_dtype
    if isinstance(scalar, _TL.pointer_type):
        return _UINT64
    try:
        return _NP_DTYPES[scalar]
    except KeyError:
        _NP_DTYPES[scalar] = _ORIGINALS["_get_np_dtype"](scalar)
        return _NP_DTYPES[scalar]
    except TypeError:  # unhashable: no memo
        return _ORIGINALS["_get_np_dtype"](tt_dtype)


def _sanitize_overflow(lhs: Any, rhs: Any, binary_op: Callable) -> None:
    """The interpreter's int32 overflow check, only where its ``device_assert`` would keep it (debug)."""
    if _SEMANTIC.builder.options.debug:
        _ORIGINALS["sanitize"](_SEMANTIC, lhs, rhs, binary_op)


_CHECKING_PARAMETERS = ("lhs", "rhs", "allow_lhs_ptr", "allow_rhs_ptr", "arithmetic_check", "div_or_mod")


def _binary_operands(lhs: Any, rhs: Any, allow_lhs_ptr: bool = False, allow_rhs_ptr: bool = False,
                     arithmetic_check: bool = True, div_or_mod: bool = False) -> tuple[Any, Any]:
    """The interpreter's operand promotion and broadcast, returning two tensors of one non-pointer
    type unchanged (what the original returns for them) without computing it."""
    tensor = _TL.tensor
    if arithmetic_check and not div_or_mod and type(lhs) is tensor and type(rhs) is tensor:
        ty = lhs.type
        if (ty is rhs.type or ty == rhs.type) and not ty.scalar.is_ptr():
            return lhs, rhs
    return _ORIGINALS["checking"](_SEMANTIC, lhs, rhs, allow_lhs_ptr, allow_rhs_ptr, arithmetic_check, div_or_mod)


_STACK_PAD_SLOTS = 4200  # locals of the padding frame: 8 bytes each, more than two 16 KiB chunks


def _stack_padded_caller() -> Callable[..., Any]:
    """``call(*args, **kwargs)`` from a frame of :data:`_STACK_PAD_SLOTS` locals (never assigned:
    the dead branch only declares them)."""
    names = "=".join(f"_pad{i}" for i in range(_STACK_PAD_SLOTS))
    source = ("def call_below_padding(call, args, kwargs):\n"
              f"    if False:\n        {names} = None\n"
              "    return call(*args, **kwargs)\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, f"{__name__}:<stack padding>", "exec"), namespace)  # noqa: S102 - fixed source
    return namespace["call_below_padding"]


_call_below_padding = _stack_padded_caller()


def _launch(self, *args: Any, **kwargs: Any):
    _LAUNCHES.append(set())
    try:
        return _call_below_padding(_ORIGINALS["GridExecutor.__call__"], (self,) + args, kwargs)
    finally:
        _LAUNCHES.pop()


def install() -> Optional[str]:
    """Install the fast path (idempotent); why not, when this Triton's internals differ."""
    if _ORIGINALS:
        return None
    problem = check_internals()
    if problem:
        return problem
    global _TL, _UINT64, _SEMANTIC
    import numpy as np
    import triton.language as tl

    _TL, _UINT64 = tl, np.dtype(np.uint64)
    interp = _interp()
    _ORIGINALS["_patch_lang"] = interp._patch_lang
    _ORIGINALS["GridExecutor.__call__"] = interp.GridExecutor.__dict__["__call__"]
    _ORIGINALS["_get_np_dtype"] = interp._get_np_dtype
    interp._patch_lang = _patch_lang
    interp.GridExecutor.__call__ = _launch
    interp._get_np_dtype = _np_dtype
    semantic = _SEMANTIC = interp.interpreter_semantic
    _ORIGINALS["sanitize"] = type(semantic).binary_op_sanitize_overflow_impl
    semantic.binary_op_sanitize_overflow_impl = _sanitize_overflow  # this instance only: not the GPU compiler's
    _ORIGINALS["checking"] = type(semantic).binary_op_type_checking_impl
    semantic.binary_op_type_checking_impl = _binary_operands
    return None


def installed() -> bool:
    """Whether the fast path is installed now."""
    return bool(_ORIGINALS)


def uninstall() -> None:
    """Restore the interpreter's own functions (no-op when not installed)."""
    if not _ORIGINALS:
        return
    interp = _interp()
    interp._patch_lang = _ORIGINALS.pop("_patch_lang")
    interp.GridExecutor.__call__ = _ORIGINALS.pop("GridExecutor.__call__")
    interp._get_np_dtype = _ORIGINALS.pop("_get_np_dtype")
    for name in ("binary_op_sanitize_overflow_impl", "binary_op_type_checking_impl"):
        delattr(interp.interpreter_semantic, name)
    _ORIGINALS.pop("sanitize")
    _ORIGINALS.pop("checking")
    _NP_DTYPES.clear()
