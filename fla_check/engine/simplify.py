"""Localization-guided simplification of a failing case (after hypothesis' shrinking).

Hypothesis shrinks choice by choice; with kernels that take seconds per case under the Triton
interpreter its budget often runs out on a large case. The localization of a failure says
where to cut: outputs are causal, so the first bad step ``t`` of row ``b`` and head ``h``
suggests ``T = t + 1``, ``B = 1`` (that row's segment layout), ``H = 1``. Further candidates
reset the other knobs to their simplest values (no grouped value heads, no in-kernel options,
the default chunk size and state layout, K = V = 16, moderate gate, no initial state, fewer
segments, seed 0). A candidate is kept when the mode still fails the same way; the loop
restarts from the first candidate after every success, within a budget of candidate runs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional

from fla_check.cases import CaseConfig, CaseError
from fla_check.verdict.localize import Localization
from fla_check.verdict.results import ModeResult

SIMPLE = dict(gate_norm=1.0, zero_gate_frac=0.0, near_zero_decay=False, beta_max=1.0, initial_state=False)


def _cut(lengths: tuple[int, ...], T: int) -> tuple[int, ...]:
    """Segment lengths truncated to a row of T steps."""
    out, total = [], 0
    for n in lengths:
        if total >= T and out:
            break
        out.append(min(n, T - total))
        total += out[-1]
    return tuple(out)


def _replace(config: CaseConfig, **changes) -> Optional[CaseConfig]:
    try:
        new = dataclasses.replace(config, **changes)
    except CaseError:
        return None
    return None if new == config else new


def candidates(config: CaseConfig, loc: Optional[Localization]) -> Iterator[CaseConfig]:
    """Simpler variants of `config`, the biggest jumps first (None-free, all valid)."""
    c = config
    if loc is not None and loc.t is not None and loc.t + 1 < c.T:
        T = loc.t + 1
        yield _replace(c, T=T, segments=tuple(_cut(row, T) for row in c.segments))
    if c.B > 1:
        row = loc.batch if loc is not None and c.packing == "mask" else 0
        yield _replace(c, B=1, segments=(c.segments[row],) if c.packing == "mask" else c.segments)
    yield _replace(c, H=1)
    yield _replace(c, value_ratio=1)  # grouped value heads off (HV = H)
    yield _replace(c, qk_l2norm=False, qk_scale=1.0)  # in-kernel options off, one at a time
    yield _replace(c, safe_gate=False)
    yield _replace(c, lower_bound=None, safe_gate=False)
    yield _replace(c, gate_in_kernel=False, lower_bound=None, safe_gate=False)
    yield _replace(c, beta_sigmoid=False)
    yield _replace(c, chunk_size=None)  # the kernel's default chunks
    yield _replace(c, state_v_first=False)  # [K, V] states
    yield _replace(c, qk_scale=1.0)
    yield _replace(c, K=16)
    yield _replace(c, V=16)
    for name, value in SIMPLE.items():
        yield _replace(c, **{name: value})
    if len(c.segments) == 1:  # one row: shorten a segment (T follows)
        row = c.segments[0]
        for i, n in enumerate(row):
            for m in sorted({1, n // 2} - {n}) if n > 1 else ():
                new = row[:i] + (m,) + row[i + 1 :]
                yield _replace(c, T=sum(new), segments=(new,))
    for b, row in enumerate(c.segments):  # merge each segment into its predecessor
        for i in range(1, len(row)):
            merged = row[: i - 1] + (row[i - 1] + row[i],) + row[i + 1 :]
            yield _replace(c, segments=c.segments[:b] + (merged,) + c.segments[b + 1 :])
    if c.T > 1:
        yield _replace(c, T=c.T - 1, segments=tuple(_cut(row, c.T - 1) for row in c.segments))
    yield _replace(c, seed=0)


def simplify(config: CaseConfig, result: ModeResult, fails: Callable[[CaseConfig], Optional[ModeResult]],
             budget: int, allowed: Optional[Callable[[CaseConfig], bool]] = None) -> CaseConfig:
    """Greedily simplify `config` (whose mode result is `result`) while ``fails(candidate)``
    returns the mode's result for a candidate that still fails the same way (else None).
    At most `budget` candidates are tried; with `allowed` (a preset's space), only those it admits."""
    tried: set[CaseConfig] = set()
    improved = True
    while improved and len(tried) < budget:
        improved = False
        for cand in candidates(config, result.localization):
            if cand is None or cand in tried or len(tried) >= budget or (allowed and not allowed(cand)):
                continue
            tried.add(cand)
            outcome = fails(cand)
            if outcome is not None:
                config, result, improved = cand, outcome, True
                break
    return config
