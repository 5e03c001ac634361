"""Chunks for ``fla-check ut-transform``: a frozen configuration, its regimes, a hypothesis
strategy for the free parameters, and the seeded tensors it stands for.

A case is ONE chunk (``T <= chunk_size`` rows, ``B = 1``, ``H`` heads) in one *regime*:

- ``beta_max``: beta ~ U[0, 1] (eigenvalues of I - beta k k^T in [0, 1]) or U[0, 2]
  (negative eigenvalues allowed, as with fla's ``allow_neg_eigval``);
- ``keys``: ``normalized`` (L2-normalised), ``near_dup`` (every key within 1e-3 of one
  direction: nearly parallel, the worst-conditioned I + A among normalised keys) or
  ``unnormalized`` (random directions with norms U[0.25, 2]);
- ``decay`` (gated only): ``moderate`` = logsigmoid(x), about -0.7 per step, or ``strong`` =
  logsigmoid(x) / 0.1, about -7 per step (exp of the chunk cumsum underflows fp32 mid-chunk).

The engine runs every regime at least once per chunk size and dtype; hypothesis draws the
free parameters (T, H, K, V, seed), so every chunk is rebuilt exactly from its JSON.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor

from fla_check.cases import DTYPES, dtype_name

CHUNK_SIZES = (16, 32, 64)
BETA_MAXES = (1.0, 2.0)
KEY_KINDS = ("normalized", "near_dup", "unnormalized")
DECAYS = ("moderate", "strong")
DECAY_NORM = {"none": None, "moderate": 1.0, "strong": 0.1}
NEAR_DUP_EPS = 1e-3
UNNORMALIZED_NORMS = (0.25, 2.0)
HEAD_DIMS = (16, 32, 60, 64)


@dataclass(frozen=True)
class Regime:
    """The part of a case that decides its difficulty."""

    beta_max: float
    keys: str
    decay: str  # "none" for DeltaNet

    def label(self) -> str:
        decay = "" if self.decay == "none" else f", {self.decay} decay"
        return f"beta<={self.beta_max:g}, {self.keys} keys{decay}"


def regimes(gated: bool) -> tuple[Regime, ...]:
    """Every regime of the DeltaNet (6) or Gated DeltaNet (12) UT transform."""
    decays = DECAYS if gated else ("none",)
    return tuple(Regime(b, k, d) for d, b, k in itertools.product(decays, BETA_MAXES, KEY_KINDS))


@dataclass(frozen=True)
class UTCase:
    """One chunk: everything that decides its tensors."""

    chunk_size: int
    dtype: str
    T: int
    H: int
    K: int
    V: int
    beta_max: float = 1.0
    keys: str = "normalized"
    decay: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.chunk_size not in CHUNK_SIZES:
            raise ValueError(f"chunk_size must be one of {CHUNK_SIZES}, got {self.chunk_size}")
        if not 1 <= self.T <= self.chunk_size:
            raise ValueError(f"T must be in [1, chunk_size={self.chunk_size}], got {self.T}")
        if self.keys not in KEY_KINDS or self.decay not in DECAY_NORM:
            raise ValueError(f"unknown regime keys={self.keys!r} decay={self.decay!r}")

    @property
    def gated(self) -> bool:
        return self.decay != "none"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def regime(self) -> Regime:
        return Regime(self.beta_max, self.keys, self.decay)

    def short(self) -> str:
        return (f"BT{self.chunk_size}-{self.dtype}-T{self.T}H{self.H}K{self.K}V{self.V}-"
                f"beta{self.beta_max:g}-{self.keys}-{self.decay}-seed={self.seed}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "UTCase":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class UTInputs:
    """k [1,T,H,K], v [1,T,H,V], beta [1,T,H], g [1,T,H] (raw log gate) or None, in the case dtype."""

    k: Tensor
    v: Tensor
    beta: Tensor
    g: Optional[Tensor]


def free_params(chunk_size: int) -> st.SearchStrategy[dict]:
    """T (full chunks favoured, partial ones too), H, K, V (incl. 60: not a power of two), seed."""
    return st.fixed_dictionaries({
        "T": st.one_of(st.just(chunk_size), st.integers(2, chunk_size)),
        "H": st.integers(1, 2),
        "K": st.sampled_from(HEAD_DIMS),
        "V": st.sampled_from(HEAD_DIMS),
        "seed": st.integers(0, 2**31 - 1),
    })


def build_inputs(case: UTCase, device: str = "cpu") -> UTInputs:
    """The seeded tensors of `case` (built in fp32, then cast to the case dtype)."""
    gen = torch.Generator().manual_seed(case.seed)
    shape = (1, case.T, case.H)
    k = _keys(case, gen)
    v = torch.randn(*shape, case.V, generator=gen)
    beta = case.beta_max * torch.rand(*shape, generator=gen)
    g = None
    if case.gated:
        g = F.logsigmoid(torch.randn(*shape, generator=gen)) / DECAY_NORM[case.decay]
    cast = lambda x: None if x is None else x.to(device=device, dtype=case.torch_dtype)  # noqa: E731
    return UTInputs(cast(k), cast(v), cast(beta), cast(g))


def _keys(case: UTCase, gen: torch.Generator) -> Tensor:
    shape = (1, case.T, case.H, case.K)
    raw = torch.randn(*shape, generator=gen)
    if case.keys == "normalized":
        return F.normalize(raw, dim=-1)
    if case.keys == "near_dup":
        base = F.normalize(torch.randn(1, 1, case.H, case.K, generator=gen), dim=-1)
        return F.normalize(base + NEAR_DUP_EPS * raw, dim=-1)
    lo, hi = UNNORMALIZED_NORMS
    norms = lo + (hi - lo) * torch.rand(1, case.T, case.H, 1, generator=gen)
    return F.normalize(raw, dim=-1) * norms
