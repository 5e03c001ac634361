"""Execution backend: CUDA when present, else Triton's CPU interpreter.

`TRITON_INTERPRET=1` must be set before triton is imported, so every module that
imports triton calls :func:`select_backend` (via ``fla_check.kernels``) first.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from fla_check.errors import BackendError  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class Backend:
    """Where kernels run and what the platform can do."""

    device: str  # "cuda" or "cpu"
    interpreter: bool
    bf16_dot_ok: bool
    bf16_dot_reason: str
    tf32_dots: bool = False  # fp32 tl.dot at input_precision="tf32" truncates its operands to TF32 here
    tf32_detail: str = ""  # how: "hardware", "emulated by the interpreter shim", or why dots are exact
    shim: str = ""  # the interpreter shim: "installed", "not installed: <why>"; "" on compiled Triton

    def dtype_unsupported_reason(self, dtype: torch.dtype, triton: bool = True) -> str | None:
        """Why `dtype` cannot be tested here, or None when it can. Only modes that run Triton
        kernels (`triton=True`) depend on the bf16 tl.dot probe; plain torch modes never do."""
        if triton and dtype == torch.bfloat16 and not self.bf16_dot_ok:
            return self.bf16_dot_reason
        return None

    def describe(self) -> str:
        mode = "Triton interpreter (TRITON_INTERPRET=1)" if self.interpreter else "compiled Triton"
        return f"{self.device} / {mode}"

    def describe_bf16(self) -> str:
        """The bf16 tl.dot probe's outcome, for ``fla-check list``."""
        if not self.bf16_dot_ok:
            return f"unsupported ({self.bf16_dot_reason})"
        return "ok via interpreter shim" if self.shim == "installed" else "ok"

    def describe_tf32(self) -> str:
        """How fp32 tl.dot at input_precision="tf32" treats its operands here."""
        if self.tf32_dots:
            return f"truncated to TF32 ({self.tf32_detail})"
        return f"exact ({self.tf32_detail})" if self.tf32_detail else "exact"


_SELECTED: str | None = None


def select_backend(device: str | None = None) -> str:
    """Pick 'cuda' or 'cpu' once per process and set TRITON_INTERPRET accordingly.

    `device=None` means CUDA when available, else CPU. Choosing a different device
    after triton was imported with the other setting raises BackendError.
    """
    global _SELECTED
    if device is None:
        device = _SELECTED or os.environ.get("FLA_CHECK_DEVICE") or (
            "cuda" if torch.cuda.is_available() else "cpu"
        )
    if device not in ("cuda", "cpu"):
        raise BackendError(f"unknown device {device!r}; use 'cuda' or 'cpu'")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendError("--device cuda requested but torch sees no CUDA device")
    want_interp = device == "cpu"
    import sys

    if "triton" in sys.modules:
        have_interp = os.environ.get("TRITON_INTERPRET") == "1"
        if have_interp != want_interp and _SELECTED != device:
            if _SELECTED is not None or have_interp:
                raise BackendError(
                    f"triton was already imported for {'cpu' if have_interp else 'cuda'}; "
                    f"cannot switch to {device} in the same process"
                )
    if want_interp:
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    _SELECTED = device
    return device


TF32_ENV = "FLA_CHECK_INTERPRETER_TF32"  # "0": exact fp32 dots on the interpreter (no TF32 emulation)
FASTPATH_ENV = "FLA_CHECK_INTERPRETER_FASTPATH"  # "0": Triton's own device-function calls (fla_check.interpreter_fastpath)


def _probe_bf16_dot(device: str) -> tuple[bool, str]:
    """Run a 16x16 bf16 tl.dot, a bf16 add and an fp32 -> bf16 cast, and compare with torch:
    the dot within fp32 accumulation error of the exact bf16 products, add and cast bit for bit
    (round to nearest even). Triton's own interpreter fails all three (triton issue 11584)."""
    import triton
    import triton.language as tl

    @triton.jit
    def _dot_kernel(a_ptr, b_ptr, c_ptr, s_ptr, r_ptr, N: tl.constexpr):
        offs = tl.arange(0, N)
        idx = offs[:, None] * N + offs[None, :]
        a = tl.load(a_ptr + idx)
        b = tl.load(b_ptr + idx)
        c = tl.dot(a, b)
        tl.store(c_ptr + idx, c)
        tl.store(s_ptr + idx, a + b)
        tl.store(r_ptr + idx, c.to(tl.bfloat16))

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=gen).to(device=device, dtype=torch.bfloat16)
    b = torch.randn(16, 16, generator=gen).to(device=device, dtype=torch.bfloat16)
    c = torch.empty(16, 16, device=device, dtype=torch.float32)
    sums, rounded = torch.empty_like(a), torch.empty_like(a)
    try:
        _dot_kernel[(1,)](a, b, c, sums, rounded, N=16)
    except Exception as exc:  # noqa: BLE001 - any failure means bf16 is unusable
        return False, f"bf16 tl.dot fails on this backend: {type(exc).__name__}: {exc}"
    want = a.double() @ b.double()
    err = (c.double() - want).abs().max().item()
    bound = 1e-5 * max(1.0, (a.double().abs() @ b.double().abs()).max().item())
    if not err <= bound:
        return False, (
            f"bf16 tl.dot is wrong on this backend (max error {err:.3g} in a 16x16 probe; "
            "the Triton interpreter multiplies raw bf16 bit patterns, triton issue 11584)"
        )
    bad_add = (sums.float() != (a.float() + b.float()).bfloat16().float()).sum().item()
    bad_cast = (rounded.float() != c.bfloat16().float()).sum().item()
    if bad_add or bad_cast:
        return False, (f"bf16 arithmetic is wrong on this backend ({bad_add}/256 bf16 sums and {bad_cast}/256 "
                       "fp32 -> bf16 casts differ from torch's round-to-nearest-even)")
    return True, ""


TF32_X = 1.0 + 1.875 * 2.0**-11  # TF32 keeps 10 mantissa bits: truncation gives 1, rounding 1 + 2**-10


def _probe_tf32_dot(device: str) -> tuple[str, str]:
    """How an fp32 tl.dot at input_precision="tf32" treats operands whose low mantissa bits
    matter: ("truncated" | "rounded" | "exact" | "other", detail). Every product is TF32_X**2,
    16 of them per output: 16.0 when truncated, 16 * (1 + 2**-10)**2 when rounded."""
    import triton
    import triton.language as tl

    @triton.jit
    def _tf32_kernel(a_ptr, c_ptr, N: tl.constexpr):
        offs = tl.arange(0, N)
        idx = offs[:, None] * N + offs[None, :]
        a = tl.load(a_ptr + idx)
        tl.store(c_ptr + idx, tl.dot(a, a, input_precision="tf32"))

    a = torch.full((16, 16), TF32_X, device=device, dtype=torch.float32)
    c = torch.empty_like(a)
    try:
        _tf32_kernel[(1,)](a, c, N=16)
    except Exception as exc:  # noqa: BLE001
        return "other", f"the tf32 probe fails: {type(exc).__name__}: {exc}"
    got = c.double()
    for name, value in (("truncated", 16.0), ("rounded", 16 * (1 + 2.0**-10) ** 2), ("exact", 16 * TF32_X**2)):
        if (got - value).abs().max().item() <= 1e-6 * value:
            return name, f"16x16 probe gives {got[0, 0].item():.9g}"
    return "other", f"16x16 probe gives {got[0, 0].item():.9g}, none of truncated/rounded/exact"


def _interpreter_capabilities(device: str) -> Backend:
    """Install the interpreter fast path (unless FLA_CHECK_INTERPRETER_FASTPATH=0) and the
    interpreter shim (TF32 on unless FLA_CHECK_INTERPRETER_TF32=0), and prove the shim:
    bf16 is allowed only when the bf16 probe passes, TF32 counts only when the tf32 probe sees
    truncation. A shim that fails the bf16 probe is uninstalled again (Triton's own behaviour)."""
    from fla_check import interpreter_fastpath, interpreter_shim

    if os.environ.get(FASTPATH_ENV, "1") != "0":
        interpreter_fastpath.install()  # speed only; on a Triton it does not fit, the interpreter's own path
    want_tf32 = os.environ.get(TF32_ENV, "1") != "0"
    status = interpreter_shim.install(tf32=want_tf32)
    ok, reason = _probe_bf16_dot(device)
    if not ok:
        if status:
            interpreter_shim.uninstall()
            reason += "; even with the interpreter shim installed"
        else:
            reason += f"; interpreter shim not installed: {status.reason}"
        shim = "not installed: " + (status.reason or "it failed the bf16 probe")
        return Backend(device, True, False, reason, False, "the interpreter shim is not installed", shim)
    if not status:  # this Triton's interpreter computes bf16 correctly on its own
        return Backend(device, True, True, "", False, "interpreter dots are exact", "not installed: " + status.reason)
    if not want_tf32:
        return Backend(device, True, True, "", False, f"{TF32_ENV}=0", "installed")
    regime, detail = _probe_tf32_dot(device)
    if regime != "truncated":
        interpreter_shim.set_tf32(False)
        return Backend(device, True, True, "", False, f"TF32 emulation not proven: {regime}, {detail}", "installed")
    return Backend(device, True, True, "", True, "emulated by the interpreter shim", "installed")


@functools.lru_cache(maxsize=None)
def get_backend(device: str | None = None) -> Backend:
    """Select the backend and probe its capabilities (cached per device). On the interpreter
    this installs :mod:`fla_check.interpreter_shim` (process-wide) before probing."""
    dev = select_backend(device)
    if dev == "cpu":
        return _interpreter_capabilities(dev)
    ok, reason = _probe_bf16_dot(dev)
    regime, detail = _probe_tf32_dot(dev)
    tf32 = regime in ("truncated", "rounded")
    return Backend(dev, False, ok, reason, tf32, f"hardware, {regime}: {detail}" if tf32 else f"{regime}: {detail}")
