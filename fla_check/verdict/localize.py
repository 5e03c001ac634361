"""Where a failure starts: first time step and head whose error exceeds the tolerance.

For the output ``o [B,T,H,V]`` the first bad step is the smallest ``t`` (over batch rows) where
some element is non-finite or off by more than the tolerance; the location is described by
its chunk index for the chunk sizes the kernels use (16 and 64), whether ``t`` sits on a chunk
boundary, which packed segment it is in and how far past that segment's start. Chunk indices
restart at each varlen sequence (kernels chunk per sequence) but not at mask-packed resets
(the kernel does not know them): "a reset earlier in the same chunk" is the masking signature.
For the final state ``[N,H,K,V]`` only the worst (sequence, head) is reported.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

from fla_check.cases import CaseConfig

CHUNK_SIZES = (16, 64)


@dataclass(frozen=True)
class Localization:
    """The first place an output goes wrong."""

    output: str
    batch: int  # batch row (o) or sequence index (final state)
    head: int
    t: Optional[int] = None  # time step in the (packed) row; None for states
    error: float = 0.0  # max |k - r| at that (batch, t, head); inf when non-finite
    segment: int = 0  # index of the packed segment containing t
    segment_start: int = 0  # its start position in the row
    chunks: dict[int, int] = field(default_factory=dict)  # chunk size -> chunk index of t
    chunk_boundary: tuple[int, ...] = ()  # chunk sizes for which t starts a chunk
    reset_in_chunk: tuple[int, ...] = ()  # chunk sizes whose chunk of t holds the segment's reset (< t)

    @property
    def at_segment_start(self) -> bool:
        return self.t is not None and self.t == self.segment_start

    def describe(self) -> str:
        """One line, e.g. 'o first exceeds tolerance at t=37 (row 0, head 1), ...'."""
        if self.t is None:
            return f"{self.output}: worst at sequence {self.batch}, head {self.head} (error {self.error:.3g})"
        chunks = ", ".join(f"chunk {i} of {c}" for c, i in sorted(self.chunks.items()))
        parts = [f"{self.output} first exceeds tolerance at t={self.t} (row {self.batch}, head {self.head}, "
                 f"error {self.error:.3g}): {chunks}"]
        if self.chunk_boundary:
            parts.append("on a chunk boundary (" + "/".join(map(str, self.chunk_boundary)) + ")")
        if self.at_segment_start and self.segment_start > 0:
            parts.append(f"at the start of segment {self.segment}")
        elif self.segment_start > 0 or self.segment > 0:
            parts.append(f"{self.t - self.segment_start} steps into segment {self.segment} "
                         f"(starts at t={self.segment_start})")
        if self.reset_in_chunk:
            parts.append(f"its reset (t={self.segment_start}) lies in the same "
                         + "/".join(map(str, self.reset_in_chunk)) + "-chunk")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["chunks"] = {str(c): i for c, i in self.chunks.items()}
        d["chunk_boundary"], d["reset_in_chunk"] = list(self.chunk_boundary), list(self.reset_in_chunk)
        d["error"] = self.error if self.error != float("inf") else "inf"
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Localization":
        d = dict(d)
        d["chunks"] = {int(c): i for c, i in d.get("chunks", {}).items()}
        d["chunk_boundary"] = tuple(d.get("chunk_boundary", ()))
        d["reset_in_chunk"] = tuple(d.get("reset_in_chunk", ()))
        d["error"] = float(d.get("error", 0.0))
        return cls(**d)


def bad_elements(kernel: Tensor, ref: Tensor, tol: float) -> Tensor:
    """Boolean mask: non-finite where the reference is finite, or |k - r| > tol."""
    k, r = kernel.detach().double(), ref.detach().double()
    finite_ref = torch.isfinite(r)
    return finite_ref & (~torch.isfinite(k) | ((k - r).abs() > tol))


def localize_output(name: str, kernel: Tensor, ref: Tensor, tol: float,
                    config: CaseConfig) -> Optional[Localization]:
    """First (t, head) of ``o``-like ``[B,T,H,V]`` outputs with an error above `tol`, or None."""
    bad = bad_elements(kernel, ref, tol)
    if not bool(bad.any()):
        return None
    step_bad = bad.any(dim=-1)  # [B,T,H]
    t = int(step_bad.any(dim=(0, 2)).nonzero()[0])
    b = int(step_bad[:, t].any(dim=-1).nonzero()[0])
    h = int(step_bad[b, t].nonzero()[0])
    err = (kernel[b, t, h].double() - ref[b, t, h].double()).abs()
    error = float("inf") if not bool(torch.isfinite(err).all()) else err.max().item()
    return _place(name, b, t, h, error, config)


def localize_state(name: str, kernel: Tensor, ref: Tensor) -> Localization:
    """The (sequence, head) of a ``[N,H,K,V]`` state with the largest error."""
    err = (kernel.detach().double() - ref.detach().double()).abs()
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))
    per = err.flatten(2).amax(-1)  # [N,H]
    n, h = divmod(int(per.flatten().argmax()), per.shape[1])
    return Localization(output=name, batch=n, head=h, error=per[n, h].item())


def _place(name: str, b: int, t: int, h: int, error: float, config: CaseConfig) -> Localization:
    starts = config.segment_starts(b if config.packing == "mask" else 0)
    seg = max(i for i, s in enumerate(starts) if s <= t) if config.packing != "none" else 0
    if config.varlen:  # empty sequences share a start: take the last one that contains t
        seg = max(i for i, s in enumerate(starts) if s <= t and s + config.segments[0][i] > t)
    seg_start = starts[seg]
    origin = seg_start if config.varlen else 0  # kernels chunk per varlen sequence only
    rel = t - origin
    chunks = {c: rel // c for c in CHUNK_SIZES}
    boundary = tuple(c for c in CHUNK_SIZES if rel % c == 0)
    resets = tuple(c for c in CHUNK_SIZES if config.packing == "mask" and 0 < seg_start < t
                   and seg_start // c == t // c)
    return Localization(output=name, batch=b, head=h, t=t, error=error, segment=seg,
                        segment_start=seg_start, chunks=chunks, chunk_boundary=boundary,
                        reset_in_chunk=resets)
