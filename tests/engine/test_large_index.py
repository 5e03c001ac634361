"""The large-index check (engine/large_index.py) with a tiny threshold: the pack's sampled
sequences cross it, their slices are judged by the run's error model, a kernel wrong only past an
offset (an emulated index wrap, a 2% error) is caught, the honest kernels are quiet; the budget
refusal; the int32-offset mutant's selftest path (skipped on CPU, checked on the large case)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from fla_check.commands.selftest.engine import CAUGHT, ESCAPED, SKIPPED, run_large_mutant, run_mutant
from fla_check.commands.selftest.mutants import Mutant, select
from fla_check.engine.large_index import (INDEX_LIMIT, LargeIndexCase, build_inputs, check_budget,
                                          large_index_case, run_large_index)
from fla_check.errors import CaseError, UsageError
from fla_check.ops import get_mode, get_op
from fla_check.verdict.compare import Verdict
from fla_check.verdict.results import LargeIndexResult, SearchResult
from tests.device import DEVICE
from tests.gla_recurrent_source import STORE_O

TINY = dict(H=1, K=16, V=16, seq_len=4, min_elements=300, grid_limits=False)  # 64 elements per sequence
_GLA_R = "fla_check.kernels.gla.recurrent"
_P_Q = "    p_q = q + (bos * H + i_h) * K + o_k\n"


def _mutant(name: str, old: str, new: str) -> Mutant:
    return Mutant(f"gla.recurrent.{name}", "int32-offset", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
                  ((old, new),), name, large_index=True)


# q's offset wraps modulo 320 elements (the int32 wrap at 2^32, scaled down): tokens from offset 320 on read
# an earlier token's q -- sequence 5 onwards of the tiny pack
WRAP = _mutant("wrap-320", _P_Q, "    p_q = q + ((bos * H + i_h) * K) % 320 + o_k\n")
# the int32 wrap itself, scaled to a signed 9-bit offset: offsets in [256, 512) become offset - 512, a read
# BEFORE q -- into g's memory, since the inputs share one buffer with q last (no fault, a wrong value)
SIGNED = _mutant("signed-wrap-256", _P_Q,
                 "    p_q = q + tl.where((bos * H + i_h) * K >= 256, (bos * H + i_h) * K - 512, (bos * H + i_h) * K)"
                 " + o_k\n")
# o x1.02 for sequences whose offsets start at or past 320
LATE = _mutant("o-late-past-320", STORE_O,
               "        tl.store(p_o, (b_o * tl.where(bos * H * K >= 320, 1.02, 1.0)).to(p_o.dtype.element_ty), "
               "mask=m_v & (o_v * 0 + t > 0))\n")


def test_real_pack_passes_2_31_with_launch_axes_of_1024_to_65535_blocks():
    case = large_index_case("gla", "bf16")
    assert case.elements > INDEX_LIMIT and case.min_elements == INDEX_LIMIT
    assert all(1024 <= n <= 65535 for n in case.grid().values())
    assert case.offset(case.sampled[-1]) > INDEX_LIMIT and case.sampled[0] == 0
    assert any(case.offset(s) >= INDEX_LIMIT for s in case.sampled[:-1])  # another one past it
    assert case.tensor_bytes()["inputs"] == 4 * case.elements * 2  # q, k, v, g in bf16
    with pytest.raises(CaseError, match="65535"):  # too many sequences x heads for a grid's y axis
        large_index_case("gla", "bf16", seq_len=128)


def test_sampled_sequences_cross_the_threshold_and_round_trip():
    case = large_index_case("gla", "fp32", **TINY)
    assert case.sampled == (0, 3, 4, 5, 6) and case.num_seqs == 7
    assert case.offset(4) < 300 < case.offset(5)  # 4 straddles it, 5 and 6 lie past it
    assert [case.past(s) for s in case.sampled] == [False, False, True, True, True]
    assert LargeIndexCase.from_json(case.to_json()) == case


def test_inputs_are_seeded_views_of_one_buffer_with_q_last():
    case = large_index_case("gated_delta", "fp32", **TINY)
    a, b = build_inputs(case, DEVICE), build_inputs(case, DEVICE)
    assert list(a) == ["k", "v", "g", "beta", "q"]
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert a["q"].untyped_storage().data_ptr() == a["k"].untyped_storage().data_ptr()
    assert a["q"].data_ptr() > a["k"].data_ptr() and a["q"].is_contiguous()
    assert (a["g"] <= 0).all() and torch.allclose(a["k"].norm(dim=-1), torch.ones(1, device=DEVICE))
    other = build_inputs(dataclasses.replace(case, seed=1), DEVICE)
    assert not torch.equal(a["q"], other["q"])


def _run(specs, labels, case=None):
    op = get_op("gla")
    return run_large_index(op, specs, case or large_index_case("gla", "fp32", **TINY), device=DEVICE,
                           labels=labels)


def test_honest_kernels_pass_and_a_wrap_past_the_offset_is_caught():
    op = get_op("gla")
    wrap = WRAP.mode_specs()[0]
    result = _run([get_mode(op, "recurrent"), get_mode(op, "chunk"), wrap], ["recurrent", "chunk", "wrap"])
    assert result.modes["recurrent"].verdict is Verdict.OK and result.modes["chunk"].verdict is Verdict.OK
    assert all(s.verdict is Verdict.OK for s in result.sequences["recurrent"])
    assert result.modes["wrap"].verdict is Verdict.DIVERGED
    bad = [s.index for s in result.sequences["wrap"] if s.verdict.failed]
    assert bad == [5, 6]  # exactly the sampled sequences past offset 320
    assert "sequence 5" in result.modes["wrap"].reason
    back = LargeIndexResult.from_json(result.to_json())
    assert back.to_json() == result.to_json() and back.failed_modes == ["wrap"]


def test_a_negative_wrapped_offset_reads_the_buffer_before_q_not_a_fault():
    result = _run([SIGNED.mode_specs()[0]], ["signed"])
    assert result.modes["signed"].verdict is Verdict.DIVERGED  # not ERROR / NONFINITE: g's values, read as q
    assert [s.index for s in result.sequences["signed"] if s.verdict.failed] == [4, 5, 6]  # offsets >= 256


def test_a_two_percent_error_past_the_offset_is_caught_only_where_sampled():
    late = LATE.mode_specs()[0]
    caught = _run([late], ["late"])
    assert caught.modes["late"].verdict is Verdict.DIVERGED
    assert [s.index for s in caught.sequences["late"] if s.verdict.failed] == [5, 6]
    below = dataclasses.replace(large_index_case("gla", "fp32", **TINY), sampled=(0, 3, 4))
    assert _run([late], ["late"], below).modes["late"].verdict is Verdict.OK  # the sampling is what sees it


def test_large_index_rows_make_a_run_fail_and_survive_the_report():
    wrap = _run([WRAP.mode_specs()[0]], ["recurrent"])
    run = SearchResult("gla", ["recurrent"], {}, large_index=[wrap])
    data = run.to_json()
    assert run.failed and data["verdict"] == "FAIL" and data["large_index"][0]["label"] == "large-index"
    assert data["large_index"][0]["case"]["elements"] == 448
    assert SearchResult.from_json(data).to_json() == data
    assert "large_index" not in SearchResult("gla", ["recurrent"], {}).to_json()  # earlier reports unchanged


def test_budget_refusal_names_the_needed_size():
    case = large_index_case("gla", "fp32")
    with pytest.raises(UsageError, match=r"needs 4[0-9]\.\d GiB.*budget of 40 GiB"):
        check_budget([case], [], "cpu", 40)
    assert check_budget([case], [], "cpu", 64)["float32"] > 40


def test_large_index_mutant_is_caught_on_the_large_case_and_skipped_on_cpu():
    entry, = run_large_mutant(WRAP, device=DEVICE, shape=TINY)
    assert entry.status == CAUGHT and entry.verdict == "DIVERGED" and entry.shrunk_control == "OK"
    assert entry.killing["min_elements"] == 300 and "sequence 5" in entry.note
    clean = dataclasses.replace(WRAP, replacements=((_P_Q, _P_Q),))  # an identity rewrite: the honest kernel
    entry, = run_large_mutant(clean, device=DEVICE, shape=TINY)
    assert entry.status == ESCAPED and not entry.caught
    small, = run_large_mutant(WRAP, device=DEVICE, shape=TINY, budget_gib=1e-9)  # a device too small: skipped
    assert small.status == SKIPPED and "0.02 MiB" in small.note and not small.caught
    real, = select(None, ["gla.recurrent.int32-offset"])
    assert real.large_index and real.gpu_only
    if DEVICE == "cpu":
        skipped, = run_mutant(real)
        assert skipped.status == SKIPPED and "GPU only" in skipped.note
