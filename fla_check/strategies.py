"""Hypothesis strategies: draw a case *configuration* plus a seed, never tensor elements.

Tensors are built from the drawn :class:`~fla_check.cases.CaseConfig` by
:func:`~fla_check.cases.build_case` (a seeded ``torch.Generator``), so shrinking works on a
handful of meaningful choices (T, head dims, segment layout, fill, ...) and every simpler
value comes first: shrinking heads for T=1, K=V=16, B=H=1, one segment, seed 0.

Shape space: head dims from a few compile buckets (``HEAD_DIMS``, including the non-powers of
two 60 and 100), small ones favoured on CPU; T from 1, just below/at/above multiples of the
chunk sizes 16 and 64, and anything up to ``max_seq_len``. Packing: reset masks with starts
mid-chunk, on chunk boundaries, several per chunk and length-1 segments; varlen ``cu_seqlens``
with empty and length-1 sequences. Default mask fills span -5 .. -1e4; the extreme fills
(-0.1*finfo.max, -finfo.max, -inf) only when asked for (``mask_fills`` or ``extreme_fills``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from hypothesis import strategies as st

from fla_check.cases import GATE_OPS, SYMBOLIC_FILLS, CaseConfig, Fill, canonical_fill, dtype_name

HEAD_DIMS = (16, 32, 60, 64, 100)
SMALL_HEAD_DIMS = (16, 32, 16, 60, 32, 64, 16, 100)  # CPU: weighted towards the cheap buckets
CHUNK_SIZES = (16, 64)
DEFAULT_FILLS: tuple[float, ...] = (-20.0, -5.0, -10.0, -100.0, -1e3, -1e4)
EXTREME_FILLS: tuple[str, ...] = SYMBOLIC_FILLS
GATE_NORMS = (1.0, 0.01, 0.1, 10.0, 0.5, 3.0)
ZERO_GATE_FRACS = (0.0, 0.5, 1.0, 0.1)


@dataclass(frozen=True)
class SpaceOptions:
    """The part of the configuration space a run explores."""

    op: str
    dtypes: tuple[str, ...] = ("float32",)
    max_seq_len: int = 128
    packings: Optional[tuple[str, ...]] = None  # None: every packing the op supports
    mask_fills: Optional[tuple[Fill, ...]] = None  # None: DEFAULT_FILLS (+ EXTREME_FILLS)
    extreme_fills: bool = False
    small: bool = True  # CPU: favour small head dims, B, H <= 2
    max_batch: Optional[int] = None
    max_heads: Optional[int] = None

    def __post_init__(self) -> None:
        if self.max_seq_len < 1:
            raise ValueError(f"max_seq_len must be >= 1, got {self.max_seq_len}")
        object.__setattr__(self, "dtypes", tuple(dtype_name(d) for d in self.dtypes))
        if not self.dtypes:
            raise ValueError("no dtypes to draw from")
        if self.mask_fills is not None:
            object.__setattr__(self, "mask_fills", tuple(canonical_fill(f) for f in self.mask_fills))

    def allowed_packings(self) -> tuple[str, ...]:
        base = ("none", "mask", "varlen") if GATE_OPS[self.op] else ("none", "varlen")
        wanted = self.packings or (("mask",) if self.mask_fills else base)
        return tuple(p for p in wanted if p in base)

    def fills(self) -> tuple[Fill, ...]:
        if self.mask_fills:
            return self.mask_fills
        return DEFAULT_FILLS + (EXTREME_FILLS if self.extreme_fills else ())


def seq_lens(max_len: int, min_len: int = 1) -> st.SearchStrategy[int]:
    """T: 1, just below/at/above chunk multiples (several chunks), or anything up to max_len."""
    min_len = min(min_len, max_len)
    special = {1, 2, 3}
    for c in CHUNK_SIZES:
        for m in range(1, max_len // c + 2):
            special |= {m * c - 1, m * c, m * c + 1}
    special = sorted(t for t in special if min_len <= t <= max_len)
    return st.one_of(st.sampled_from(special), st.integers(min_len, max_len))


def head_dims(small: bool) -> st.SearchStrategy[int]:
    return st.sampled_from(SMALL_HEAD_DIMS if small else HEAD_DIMS)


@st.composite
def reset_segments(draw, T: int) -> tuple[int, ...]:
    """Segment lengths of one mask-packed row: starts mid-chunk, on chunk boundaries,
    several per chunk, length-1 segments."""
    if T < 2:
        return (T,)
    boundaries = [m * c for c in CHUNK_SIZES for m in range(1, (T - 1) // c + 1)]
    pos = st.integers(1, T - 1)
    if boundaries:
        pos = st.one_of(pos, st.sampled_from(boundaries))
    starts = set(draw(st.lists(pos, min_size=1, max_size=6)))
    if draw(st.booleans()):  # a length-1 segment right after one of the starts
        starts.add(min(starts) + 1)
    return _lengths(sorted(s for s in starts if 0 < s < T), T)


@st.composite
def varlen_segments(draw, T: int) -> tuple[int, ...]:
    """cu_seqlens lengths summing to T (empty and length-1 sequences allowed)."""
    cuts = sorted(draw(st.lists(st.integers(0, T), max_size=4)))
    return _lengths(cuts, T)


def _lengths(cuts: Sequence[int], T: int) -> tuple[int, ...]:
    bounds = [0, *cuts, T]
    return tuple(e - s for s, e in zip(bounds[:-1], bounds[1:]))


@st.composite
def case_configs(draw, options: SpaceOptions) -> CaseConfig:
    """A full case configuration (with its seed) from `options`' space."""
    op = options.op
    dtype = draw(st.sampled_from(options.dtypes))
    packing = draw(st.sampled_from(options.allowed_packings()))
    T = draw(seq_lens(options.max_seq_len, min_len=2 if packing == "mask" else 1))
    max_b = options.max_batch or (2 if options.small else 4)
    max_h = options.max_heads or (2 if options.small else 4)
    B = 1 if packing == "varlen" else draw(st.integers(1, max_b))
    H = draw(st.integers(1, max_h))
    K = draw(head_dims(options.small))
    V = draw(head_dims(options.small))
    segments: tuple[tuple[int, ...], ...] = ()
    fill = None
    if packing == "mask":
        segments = tuple(draw(reset_segments(T)) for _ in range(B))
        fill = draw(st.sampled_from(options.fills()))
    elif packing == "varlen":
        segments = (draw(varlen_segments(T)),)
    gate = _draw_gate(draw) if GATE_OPS[op] else {}
    beta_max = draw(st.sampled_from((1.0, 2.0))) if op != "gla" else 1.0
    return CaseConfig(
        op=op, dtype=dtype, B=B, T=T, H=H, K=K, V=V, beta_max=beta_max,
        initial_state=draw(st.booleans()), packing=packing, segments=segments, mask_fill=fill,
        seed=draw(st.integers(0, 2**32 - 1)), **gate,
    )


def _draw_gate(draw) -> dict:
    """Gate regime: logsigmoid(x)/n with n in [0.01, 10], zero-gate fraction, near-zero decay."""
    norm = draw(st.one_of(st.sampled_from(GATE_NORMS), st.floats(0.01, 10.0)))
    return dict(gate_norm=norm, zero_gate_frac=draw(st.sampled_from(ZERO_GATE_FRACS)),
                near_zero_decay=draw(st.booleans()))
