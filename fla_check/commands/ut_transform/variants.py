"""The ways of computing one chunk's UT transform that ``fla-check ut-transform`` compares.

Every variant maps ``(UTInputs, chunk_size)`` to ``(A_inv [1,T,H,BT], w [1,T,H,K], u [1,T,H,V])``
and declares its arithmetic (:class:`~fla_check.verdict.arithmetic.Arithmetic`, the chunk size
filled in per case), from which its baseline is emulated (:mod:`fla_check.commands.ut_transform.engine`):

- ``closed(+)``: float64 ``(I + A)^-1`` by ``torch.linalg.inv`` (the DeltaNet paper's form);
- ``closed(-)``: float64 ``(I - A)^-1``, the sign printed in the Gated DeltaNet paper. Both
  closed forms are judged against the tightest declaration any variant makes (the kernel
  variant's: fp32 stores, IEEE dots, blocked inverse): closed(+) is float64, thousands of times
  inside it; a sign error is an O(1) error, thousands of times outside it;
- ``kernel``: fla-check's public Triton ``ut_transform`` entry (the step inside the built-in
  delta / gated_delta chunk kernels): K K^T on the inputs in the case dtype (exact products,
  fp32 accumulation), the inverse blocked (16x16 diagonal blocks by forward substitution,
  merged with dots), every fp32-operand dot IEEE at every dtype (the entry passes
  ``precision="ieee"``; the chunk kernels themselves use TF32 for half inputs and declare
  ``fp32-ieee`` in :mod:`fla_check.ops`), A_inv, w, u stored in fp32;
- ``fla``: flash-linear-attention's own step, when fla-core is importable: DeltaNet
  ``prepare_wy_repr_fwd`` (``chunk_scaled_dot_kkt_fwd`` + ``solve_tril`` + ``recompute_w_u_fwd``),
  Gated DeltaNet ``chunk_local_cumsum(scale=1/ln 2)`` + ``chunk_gated_delta_rule_fwd_intra``
  (fused kkt + solve_tril at BT=64). fla stores A_inv, w, u in the input dtype and merges the
  16x16 blocks of its inverse with TF32 dots (``solve_tril`` autotunes ieee vs tf32; the fused
  Gated DeltaNet kernel always uses tf32): declared as the loosest of those.

A variant that cannot run raises :class:`VariantUnsupported` with the reason.
"""
from __future__ import annotations

import functools
import importlib.util
import warnings
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Callable, Optional

from torch import Tensor

from fla_check.commands.ut_transform.cases import UTInputs
from fla_check.providers.fla import FLA_DELTA_CHUNK
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.errors import VariantUnsupported  # noqa: F401 (re-exported)

UTOutputs = tuple[Tensor, Tensor, Tensor]
OUTPUT_NAMES = ("A_inv", "w", "u")
# the public ut_transform entry's declaration: fp32 stores, IEEE fp32-operand dots at every input
# dtype, blocked inverse (also the closed forms' judge: the tightest any variant makes)
FP32_BLOCKED = Arithmetic("chunk", 64, store="fp32", dot="ieee", inverse="blocked")
# fla's delta-rule chunk declaration: A_inv, w, u stored in the input dtype, 16x16 blocks merged with TF32 dots
FLA_BLOCKED = FLA_DELTA_CHUNK


@dataclass(frozen=True)
class Variant:
    """One way of computing the UT transform, with the arithmetic it declares."""

    name: str
    description: str
    run: Callable[[UTInputs, int], UTOutputs]
    arithmetic: Arithmetic = FP32_BLOCKED  # its chunk is replaced by the case's chunk size
    float64: bool = False  # closed forms: float64, summarised once over every dtype
    external: bool = False  # a provider's kernel (errors under the interpreter -> UNSUPPORTED)

    def declared(self, chunk_size: int) -> Arithmetic:
        """The declared arithmetic at `chunk_size` (the chunk the case runs)."""
        return replace(self.arithmetic, chunk=chunk_size)

    def declaration(self) -> str:
        """The declaration in words, without the chunk size (it is the case's)."""
        a = self.arithmetic
        return f"stores {a.store}, {a.dot} fp32 dots, {a.inverse} inverse"


def _closed(sign: int) -> Callable[[UTInputs, int], UTOutputs]:
    def run(x: UTInputs, chunk_size: int) -> UTOutputs:
        from fla_check.references.ut import ut_closed_form

        k, v, beta, g = (None if t is None else t.cpu() for t in (x.k, x.v, x.beta, x.g))
        return ut_closed_form(k, v, beta, g, chunk_size=chunk_size, sign=sign)

    return run


def closed_plus() -> Variant:
    return Variant("closed(+)", "(I + A)^-1, float64 torch.linalg.inv", _closed(+1), arithmetic=FP32_BLOCKED,
                   float64=True)


def closed_minus() -> Variant:
    return Variant("closed(-)", "(I - A)^-1 (GDN paper's printed sign), float64", _closed(-1),
                   arithmetic=FP32_BLOCKED, float64=True)


def kernel_variant(fn: Optional[Callable] = None, name: str = "kernel") -> Variant:
    """fla-check's Triton UT transform; `fn` replaces the entry (planted-bug mutants)."""

    def run(x: UTInputs, chunk_size: int) -> UTOutputs:
        entry = fn
        if entry is None:
            from fla_check.kernels.common.ut_transform import ut_transform as entry
        return entry(x.k, x.v, x.beta, x.g, chunk_size=chunk_size)

    return Variant(name, "fla_check.kernels.common.ut_transform (Triton, blocked in-kernel inverse)", run,
                   arithmetic=FP32_BLOCKED)


# -- fla ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def fla_wy() -> SimpleNamespace:
    """fla's UT-step functions, imported after fla-check's fla setup (pinned Triton path,
    autotune pinned under the interpreter). Raises VariantUnsupported when fla is absent."""
    missing = [m for m in ("fla", "einops") if importlib.util.find_spec(m) is None]
    if missing:
        from fla_check.providers.fla import INSTALL_HINT

        raise VariantUnsupported(f"fla-core not importable (missing {', '.join(missing)}): {INSTALL_HINT}")
    from fla_check.providers.fla import fla_ops

    fla_ops()  # environment + backend + autotune pin, once
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Triton is not supported on current platform")
        from fla.ops.delta_rule.wy_fast import prepare_wy_repr_fwd
        from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_intra
        from fla.ops.utils.constant import RCP_LN2
        from fla.ops.utils.cumsum import chunk_local_cumsum
    return SimpleNamespace(prepare_wy_repr_fwd=prepare_wy_repr_fwd, intra=chunk_gated_delta_rule_fwd_intra,
                           cumsum=chunk_local_cumsum, RCP_LN2=RCP_LN2)


def _fla_run(x: UTInputs, chunk_size: int) -> UTOutputs:
    fla = fla_wy()
    if x.g is None:
        w, u, A = fla.prepare_wy_repr_fwd(k=x.k, v=x.v, beta=x.beta, cu_seqlens=None, chunk_size=chunk_size)
    else:
        g_cum = fla.cumsum(x.g, chunk_size=chunk_size, scale=fla.RCP_LN2)
        w, u, A = fla.intra(k=x.k, v=x.v, g=g_cum, beta=x.beta, chunk_size=chunk_size)
    return A, w, u


def fla_variant() -> Variant:
    return Variant("fla", "fla.ops chunk_scaled_dot_kkt + solve_tril + recompute_w_u (prepare_wy_repr_fwd / "
                   "chunk_gated_delta_rule_fwd_intra)", _fla_run, arithmetic=FLA_BLOCKED, external=True)


def default_variants() -> list[Variant]:
    """closed(+), closed(-), the built-in kernel, fla (reported UNSUPPORTED when absent)."""
    return [closed_plus(), closed_minus(), kernel_variant(), fla_variant()]
