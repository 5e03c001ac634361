"""Execution backend: CUDA when present, else Triton's CPU interpreter.

`TRITON_INTERPRET=1` must be set before triton is imported, so every module that
imports triton calls :func:`select_backend` (via ``fla_check.kernels``) first.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Backend:
    """Where kernels run and what the platform can do."""

    device: str  # "cuda" or "cpu"
    interpreter: bool
    bf16_dot_ok: bool
    bf16_dot_reason: str

    def dtype_unsupported_reason(self, dtype: torch.dtype) -> str | None:
        """Why `dtype` cannot be tested here, or None when it can."""
        if dtype == torch.bfloat16 and not self.bf16_dot_ok:
            return self.bf16_dot_reason
        return None

    def describe(self) -> str:
        mode = "Triton interpreter (TRITON_INTERPRET=1)" if self.interpreter else "compiled Triton"
        return f"{self.device} / {mode}"


_SELECTED: str | None = None


class BackendError(RuntimeError):
    """The requested backend cannot be used in this process."""


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


@functools.lru_cache(maxsize=None)
def _probe_bf16_dot(device: str) -> tuple[bool, str]:
    """Run a 16x16 bf16 tl.dot and compare with torch; the interpreter gets it wrong."""
    import triton
    import triton.language as tl

    @triton.jit
    def _dot_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
        offs = tl.arange(0, N)
        a = tl.load(a_ptr + offs[:, None] * N + offs[None, :])
        b = tl.load(b_ptr + offs[:, None] * N + offs[None, :])
        c = tl.dot(a, b)
        tl.store(c_ptr + offs[:, None] * N + offs[None, :], c)

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=gen).to(device=device, dtype=torch.bfloat16)
    b = torch.randn(16, 16, generator=gen).to(device=device, dtype=torch.bfloat16)
    c = torch.empty(16, 16, device=device, dtype=torch.float32)
    try:
        _dot_kernel[(1,)](a, b, c, N=16)
    except Exception as exc:  # noqa: BLE001 - any failure means bf16 is unusable
        return False, f"bf16 tl.dot fails on this backend: {type(exc).__name__}: {exc}"
    want = a.float() @ b.float()
    err = (c - want).abs().max().item()
    if not (err <= 1e-2 * max(1.0, want.abs().max().item())):
        return False, (
            f"bf16 tl.dot is wrong on this backend (max error {err:.3g} in a 16x16 probe; "
            "the Triton interpreter multiplies raw bf16 bit patterns, triton issue 11584)"
        )
    return True, ""


@functools.lru_cache(maxsize=None)
def get_backend(device: str | None = None) -> Backend:
    """Select the backend and probe its capabilities (cached per device)."""
    dev = select_backend(device)
    ok, reason = _probe_bf16_dot(dev)
    return Backend(device=dev, interpreter=dev == "cpu", bf16_dot_ok=ok, bf16_dot_reason=reason)
