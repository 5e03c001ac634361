"""Localization: first bad step and head, chunk index/boundary, segment and reset context."""
import math

import torch

from fla_check.cases import CaseConfig
from fla_check.verdict.localize import Localization, localize_output, localize_state


def _o(B=2, T=80, H=2, V=4):
    return torch.randn(B, T, H, V, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _cfg(**kw):
    base = dict(op="gla", dtype="float32", B=2, T=80, H=2, K=16, V=4)
    base.update(kw)
    return CaseConfig(**base)


def test_none_when_within_tolerance():
    r = _o()
    assert localize_output("o", r + 1e-9, r, 1e-6, _cfg()) is None


def test_first_step_over_batch_rows_then_head():
    r = _o()
    k = r.clone()
    k[1, 20, 1, 2] += 1.0  # earliest step, in row 1
    k[0, 30, 0, 0] += 1.0
    k[1, 20, 0, 0] += 1e-9  # within tolerance
    loc = localize_output("o", k, r, 1e-6, _cfg())
    assert (loc.batch, loc.t, loc.head) == (1, 20, 1)
    assert loc.chunks == {16: 1, 64: 0} and loc.chunk_boundary == ()
    assert loc.error == __import__("pytest").approx(1.0)


def test_chunk_boundary_and_nonfinite():
    r = _o()
    k = r.clone()
    k[0, 64, 1, 0] = math.nan
    loc = localize_output("o", k, r, 1e-6, _cfg())
    assert loc.t == 64 and loc.chunk_boundary == (16, 64) and loc.chunks == {16: 4, 64: 1}
    assert loc.error == math.inf and "on a chunk boundary (16/64)" in loc.describe()


def test_mask_packed_segment_and_reset_in_same_chunk():
    cfg = _cfg(packing="mask", segments=((37, 43), (80,)), mask_fill="-0.1max")
    r = _o()
    k = r.clone()
    k[0, 50, 0, 0] += 1.0
    loc = localize_output("o", k, r, 1e-6, cfg)
    assert (loc.segment, loc.segment_start, loc.t) == (1, 37, 50)
    assert loc.reset_in_chunk == (64,)  # 37 and 50 share a 64-chunk, not a 16-chunk
    assert not loc.at_segment_start


def test_reset_in_same_16_chunk():
    cfg = _cfg(packing="mask", segments=((34, 46), (80,)), mask_fill=-20)
    r = _o()
    k = r.clone()
    k[0, 36, 0, 0] += 1.0
    loc = localize_output("o", k, r, 1e-6, cfg)
    assert loc.reset_in_chunk == (16, 64) and "its reset (t=34) lies in the same 16/64-chunk" in loc.describe()


def test_at_segment_start():
    cfg = _cfg(packing="mask", segments=((37, 43), (80,)), mask_fill=-20)
    r = _o()
    k = r.clone()
    k[0, 37, 0, 0] += 1.0
    loc = localize_output("o", k, r, 1e-6, cfg)
    assert loc.at_segment_start and loc.reset_in_chunk == () and "at the start of segment 1" in loc.describe()


def test_varlen_chunks_restart_per_sequence():
    cfg = _cfg(B=1, packing="varlen", segments=((0, 20, 60),))
    r = _o(B=1)
    k = r.clone()
    k[0, 36, 0, 0] += 1.0  # 16 steps into sequence 2 (which starts at t=20)
    loc = localize_output("o", k, r, 1e-6, cfg)
    assert (loc.segment, loc.segment_start) == (2, 20)
    assert loc.chunks == {16: 1, 64: 0} and loc.chunk_boundary == (16,)


def test_state_localization_and_json():
    r = torch.zeros(3, 2, 4, 4, dtype=torch.float64)
    k = r.clone()
    k[2, 1, 0, 3] = 5.0
    loc = localize_state("ht", k, r)
    assert (loc.batch, loc.head, loc.t, loc.error) == (2, 1, None, 5.0)
    assert "sequence 2, head 1" in loc.describe()
    assert Localization.from_json(loc.to_json()) == loc


def test_json_round_trip_with_inf():
    r = _o()
    k = r.clone()
    k[0, 3, 0, 0] = math.inf
    loc = localize_output("o", k, r, 1e-6, _cfg())
    assert Localization.from_json(loc.to_json()) == loc
