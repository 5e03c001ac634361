"""Memory-safety checks around one mode call (issue 15, part 4): poisoned allocations, guarded
inputs and padded tokens beyond ``cu_seqlens[-1]``.

- **Poisoned outputs.** While a mode runs, every floating-point ``torch.empty``,
  ``torch.empty_like``, ``torch.empty_strided`` and ``Tensor.new_empty`` it calls (outputs,
  final states, intermediates, gradient buffers) is filled with a *sentinel*: a quiet NaN with a
  payload no arithmetic produces (:data:`SENTINEL_BITS`). An output slot that still holds those
  exact bits after the call was never written (or was copied from memory that never was): verdict
  UNWRITTEN, naming the region (:func:`describe_unwritten`), not NONFINITE, and not a pass by
  luck of zeroed memory.
- **Guarded inputs.** Inputs sit inside NaN guard buffers (:func:`fla_check.cases.guarded`), so
  an over-read past a tensor's end (fla #1134: the last row of head dims 60/100) poisons the
  result.
- **Padded T.** A ``cu_seqlens`` case is called with :data:`SLACK_TOKENS` extra tokens after
  ``cu_seqlens[-1]`` (fla #892), NaN-filled: the kernel must ignore them; outputs there are cut
  off, not compared. A read of them reaches the compared outputs as NaN.

A NONFINITE result under guards is re-run with finite guards (:func:`finite_variants`): if that
run is finite, the NaN came from memory outside the inputs: verdict OVERREAD, naming where.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from fla_check.cases import CaseInputs

SLACK_TOKENS = 3  # padded tokens after cu_seqlens[-1]: lands mid-chunk unless T % 64 > 61
# quiet NaNs with a payload (canonical NaNs are 0x7FC00000, 0x7E00, 0x7FC0, 0x7FF8000000000000)
SENTINEL_BITS: dict[torch.dtype, tuple[torch.dtype, int]] = {
    torch.float32: (torch.int32, 0x7FC0F1A7),
    torch.float16: (torch.int16, 0x7E5A),
    torch.bfloat16: (torch.int16, 0x7FDA),
    torch.float64: (torch.int64, 0x7FF80000DEADF1A7),
}
_aten = torch.ops.aten
_ALLOCATORS = frozenset({_aten.empty, _aten.empty_like, _aten.empty_strided, _aten.new_empty})  # overload packets


@dataclass(frozen=True)
class MemoryChecks:
    """Which memory checks a mode call runs under (all on by default; :meth:`off` is the plain call)."""

    poison: bool = True  # fill the mode's empty allocations (with the sentinel, or `fill`)
    fill: Optional[float] = None  # what they hold instead of the sentinel (0.0: lucky zeroed memory)
    guard: bool = True  # NaN around every input (else zeros: what lucky memory would hold)
    slack: int = SLACK_TOKENS  # padded tokens after cu_seqlens[-1] (varlen cases only)
    slack_fill: float = math.nan  # their value (0: the zero padding users have)

    @classmethod
    def off(cls, zeroed: bool = False) -> "MemoryChecks":
        """A plain call: no poison, zero guards, no padded tokens; `zeroed`: empty allocations
        hold zeros (the luck of zeroed memory, deterministic for tests)."""
        return cls(poison=zeroed, fill=0.0 if zeroed else None, guard=False, slack=0)

    @property
    def sentinel(self) -> bool:
        """Whether empty allocations hold the sentinel (so unwritten slots can be told)."""
        return self.poison and self.fill is None

    @property
    def guard_fill(self) -> float:
        return math.nan if self.guard else 0.0

    @property
    def nan_guarded(self) -> bool:
        """Whether anything outside the inputs proper holds NaN (what :func:`finite_variants` relaxes)."""
        return self.guard or (self.slack > 0 and math.isnan(self.slack_fill))


def finite_variants(checks: MemoryChecks, varlen: bool) -> list[tuple[str, MemoryChecks]]:
    """The re-runs that tell where a NaN came from, first match wins: (what was read, checks
    with that memory finite)."""
    out = []
    if varlen and checks.slack > 0 and math.isnan(checks.slack_fill):
        out.append((f"the {checks.slack} padded tokens after cu_seqlens[-1]",
                    dataclasses.replace(checks, slack_fill=0.0)))
    if checks.guard:
        out.append(("memory past the ends of its input tensors",
                    dataclasses.replace(checks, guard=False, slack_fill=0.0 if varlen else checks.slack_fill)))
    return out


# -- poisoned allocations ------------------------------------------------------------------
def fill_sentinel(t: Tensor) -> Tensor:
    """Fill a floating-point tensor with its dtype's sentinel NaN (in place; others untouched)."""
    spec = SENTINEL_BITS.get(t.dtype)
    if spec is not None and t.numel():
        t.view(spec[0]).fill_(spec[1])
    return t


def is_sentinel(t: Tensor) -> Tensor:
    """Bool mask: elements holding exactly the sentinel bits (never written)."""
    spec = SENTINEL_BITS.get(t.dtype)
    if spec is None:
        return torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    return t.detach().contiguous().view(spec[0]) == spec[1]


class _Poison(TorchDispatchMode):
    """Fills what the empty-allocators return: the sentinel, or `value` when given.

    A dispatch mode sees aten ops only, not a tensor's attributes: a Triton launch reads
    ``data_ptr()`` and ``dtype`` of every argument, which a function mode intercepts one by one
    (about 1.7 us each against 0.1 us, tens per launch)."""

    def __init__(self, value: Optional[float] = None):
        super().__init__()
        self.value = value

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """False: torch would wrap ``__torch_dispatch__`` in ``torch._dynamo.disable``, whose first
        call imports dynamo (1.7 s, 900 modules); nothing here is ever compiled."""
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in _ALLOCATORS and isinstance(out, Tensor) and out.is_floating_point():
            fill_sentinel(out) if self.value is None else out.fill_(self.value)  # below autograd: not recorded
        return out


@contextlib.contextmanager
def poisoned_allocations(enabled: bool = True, value: Optional[float] = None) -> Iterator[None]:
    """Within: floating-point empty allocations hold the sentinel (or `value`); a no-op when not `enabled`."""
    if not enabled:
        yield
        return
    with _Poison(value):
        yield


# -- padded tokens after cu_seqlens[-1] ----------------------------------------------------
def with_slack(inputs: CaseInputs, n: int, fill: float) -> CaseInputs:
    """`inputs` with `n` tokens of `fill` appended along T to every per-token tensor (B == 1,
    cu_seqlens unchanged); `inputs` itself when there is no cu_seqlens or n == 0."""
    if inputs.cu_seqlens is None or n <= 0:
        return inputs

    def pad(x: Optional[Tensor]) -> Optional[Tensor]:
        if x is None:
            return None
        tail = torch.full((x.shape[0], n) + tuple(x.shape[2:]), fill, dtype=x.dtype, device=x.device)
        return torch.cat([x, tail], dim=1)

    return dataclasses.replace(inputs, q=pad(inputs.q), k=pad(inputs.k), v=pad(inputs.v), g=pad(inputs.g),
                               beta=pad(inputs.beta))


# -- describing what was never written ----------------------------------------------------
def describe_unwritten(name: str, mask: Tensor, state: bool, cu_seqlens: Optional[list[int]] = None) -> str:
    """E.g. 'o: 96 of 4160 elements never written, tokens 64 (b 0, heads 0-1)' or
    'ht: 2048 of 4096 elements never written, states [1]'."""
    n, total = int(mask.sum()), mask.numel()
    head = f"{name}: {n} of {total} elements never written"
    if state or mask.dim() < 3:
        rows = sorted({int(i) for i in mask.reshape(mask.shape[0], -1).any(1).nonzero().flatten()})
        return f"{head}, states {_ranges(rows)}"
    per_t = mask.reshape(mask.shape[0], mask.shape[1], mask.shape[2], -1).any(-1)  # [B,T,H]
    ts = sorted({int(i) for i in per_t.any(2).any(0).nonzero().flatten()})
    bs = sorted({int(i) for i in per_t.any(2).any(1).nonzero().flatten()})
    hs = sorted({int(i) for i in per_t.any(1).any(0).nonzero().flatten()})
    where = f"tokens {_ranges(ts)}"
    if cu_seqlens is not None and ts:
        seqs = sorted({max(i for i, s in enumerate(cu_seqlens[:-1]) if s <= t) for t in ts})
        where += f" (sequences {_ranges(seqs)} of cu_seqlens {cu_seqlens})"
    return f"{head}, {where} (b {_ranges(bs)}, heads {_ranges(hs)})"


def _ranges(xs: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts, start = [], None
    for i, x in enumerate(xs):
        if start is None:
            start = x
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            parts.append(f"{start}" if start == x else f"{start}-{x}")
            start = None
    return ", ".join(parts) or "none"
