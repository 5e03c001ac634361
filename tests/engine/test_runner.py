"""check_case and search on test-only modes (plain PyTorch: fast, no interpreter)."""
import json

import pytest
import torch
from _fake_modes import PROVIDER, make_clean, registered

from fla_check import ops
from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Verdict
from fla_check.ops import ModeSpec
from fla_check.engine.runner import CaseResult, check_case
from fla_check.engine.search import search
from fla_check.engine.search import SearchResult


@pytest.fixture(autouse=True)
def fake_modes():
    with registered():
        yield


def _cfg(**kw):
    base = dict(op="gla", dtype="float32", B=1, T=40, H=2, K=16, V=16, seed=1)
    base.update(kw)
    return CaseConfig(**base)


ALL = ["test:clean", "test:dropped", "test:nan16", "test:shape", "test:raises"]


def test_verdicts_of_clean_and_planted_modes():
    r = check_case("gla", ALL, _cfg(initial_state=True))
    v = {m: x.verdict for m, x in r.modes.items()}
    assert v == {"test:clean": Verdict.OK, "test:dropped": Verdict.DIVERGED, "test:nan16": Verdict.NONFINITE,
                 "test:shape": Verdict.ERROR, "test:raises": Verdict.ERROR}
    assert r.verdict is Verdict.ERROR and r.failed_modes == ALL[1:]
    assert r.modes["test:dropped"].localization.t == 16
    assert r.modes["test:nan16"].localization.chunk_boundary == (16,)
    assert "wrong output shape: o is (1, 39, 2, 16)" in r.modes["test:shape"].reason
    assert "planted kernel crash" in r.modes["test:raises"].traceback
    assert [c.name for c in r.modes["test:clean"].outputs] == ["o", "ht"]


def test_missing_final_state_is_an_error():
    ops.register_modes("gla", [ModeSpec("nostate", PROVIDER, lambda q, k, v, **kw: (torch.zeros_like(v), None))])
    r = check_case("gla", ["test:nostate"], _cfg())
    assert r.modes["test:nostate"].verdict is Verdict.ERROR and "no final state" in r.modes["test:nostate"].reason


def test_unsupported_modes_give_the_reason():
    fp32_only = ModeSpec("fp32only", PROVIDER, make_clean(ops.get_op("gla").step),
                         dtypes=frozenset({torch.float32}), varlen=False)
    ops.register_modes("gla", [fp32_only])
    r = check_case("gla", ["test:fp32only"], _cfg(dtype="float16"))
    assert r.modes["test:fp32only"].verdict is Verdict.UNSUPPORTED
    assert r.modes["test:fp32only"].reason == "test:fp32only does not support float16"
    r = check_case("gla", ["test:fp32only"], _cfg(packing="varlen", segments=((10, 30),)))
    assert "cu_seqlens" in r.modes["test:fp32only"].reason


def test_bf16_gets_a_verdict_where_the_backend_proves_it():
    """On CPU the interpreter shim makes bf16 exact enough (tests/test_backend.py: the fallback)."""
    from fla_check.backend import get_backend

    r = check_case("gla", ["test:clean"], _cfg(dtype="bfloat16"))
    if get_backend().bf16_dot_ok:
        assert r.modes["test:clean"].verdict is Verdict.OK
    else:
        assert r.modes["test:clean"].verdict is Verdict.UNSUPPORTED and "bf16" in r.modes["test:clean"].reason


def test_kernels_cannot_corrupt_the_inputs_of_later_modes():
    def vandal(q, k, v, *, g=None, **kw):
        q.fill_(7.0)
        g.fill_(0.0)
        raise RuntimeError("wrote into its inputs")

    ops.register_modes("gla", [ModeSpec("vandal", PROVIDER, vandal)])
    r = check_case("gla", ["test:vandal", "test:clean"], _cfg())
    assert r.modes["test:clean"].verdict is Verdict.OK


def test_pairwise_agreement():
    ops.register_modes("gla", [ModeSpec("clean2", PROVIDER, make_clean(ops.get_op("gla").step))])
    r = check_case("gla", ["test:clean", "test:clean2", "test:dropped", "test:raises"], _cfg())
    pairs = {(p.a, p.b): p for p in r.pairs}
    assert set(pairs) == {("test:clean", "test:clean2"), ("test:clean", "test:dropped"),
                          ("test:clean2", "test:dropped")}  # no pair with a mode that raised
    assert pairs[("test:clean", "test:clean2")].agree and pairs[("test:clean", "test:clean2")].metric("max_abs") == 0
    assert not pairs[("test:clean", "test:dropped")].agree


@pytest.mark.parametrize("fill, verdict", [(-1.0, Verdict.OK), (-20.0, Verdict.OK),
                                           ("-0.1max", Verdict.DIVERGED), ("-inf", Verdict.NONFINITE)])
def test_reference_applies_the_fill_literally(fill, verdict):
    """-1 leaks state across segments in the reference too (so a kernel is not blamed for it);
    the chunk-cumsum algorithm breaks at -0.1*finfo.max and -inf."""
    cfg = _cfg(packing="mask", segments=((5, 30, 5),), mask_fill=fill)
    r = check_case("gla", ["test:clean", "test:chunk16"], cfg)
    assert r.modes["test:clean"].verdict is Verdict.OK
    assert r.modes["test:chunk16"].verdict is verdict


def test_case_result_json_round_trip():
    r = check_case("gla", ALL, _cfg(packing="mask", segments=((5, 35),), mask_fill="-inf"))
    text = json.dumps(r.to_json(), allow_nan=False)
    back = CaseResult.from_json(json.loads(text))
    assert back.to_json() == r.to_json()


def test_op_mismatch_is_rejected():
    with pytest.raises(ValueError, match="case is for op 'delta'"):
        check_case("gla", ["test:clean"], _cfg(op="delta"))


# -- search ---------------------------------------------------------------------------------
def _search(modes, **kw):
    kw.setdefault("examples", 12)
    kw.setdefault("seed", 5)
    kw.setdefault("max_seq_len", 40)
    kw.setdefault("dtypes", ["fp32"])
    return search("gla", modes, database_root=None, **kw)


def test_search_clean_mode_passes_and_is_deterministic():
    a = _search(["test:clean"])
    b = _search(["test:clean"])
    assert not a.failed and len(a.cases) >= 5
    assert [c.config for c in a.cases] == [c.config for c in b.cases]
    assert a.summary("test:clean").verdict is Verdict.OK


def test_search_shrinks_the_dropped_state_bug():
    r = _search(["test:clean", "test:dropped"], examples=20)
    assert list(r.failures) == ["test:dropped"] and r.shrunk == ["test:dropped"]
    c = r.cases[r.failures["test:dropped"]].config
    assert (c.T, c.B, c.H, c.K, c.V) == (17, 1, 1, 16, 16)  # the first step after the drop
    assert r.first_failure["test:dropped"]["example"] >= 1


def test_search_shrinks_each_failing_mode_separately():
    """nan16 fails first and everywhere T > 16; chunk16 still gets its own minimal case."""
    r = _search(["test:clean", "test:nan16", "test:chunk16"], mask_fills=["-0.1max"], examples=15)
    assert set(r.failures) == {"test:nan16", "test:chunk16"} and set(r.shrunk) == set(r.failures)
    c = r.cases[r.failures["test:chunk16"]].config
    assert c.packing == "mask" and c.T == 3 and c.segments == ((1, 2),) and c.mask_fill == "-0.1max"
    assert r.cases[r.failures["test:nan16"]].config.T == 17
    assert r.summary("test:clean").verdict is Verdict.OK


def test_search_progress_and_interrupt():
    seen = []

    def progress(event):
        seen.append(event)
        if event.examples == 3:
            raise KeyboardInterrupt

    r = _search(["test:clean", "test:dropped"], examples=20, progress=progress)
    assert r.interrupted and len(r.cases) == 3 and seen[0].budget == 20 and seen[0].mode == "test:clean"


def test_search_result_json_round_trip():
    r = _search(["test:clean", "test:dropped"], examples=8)
    data = json.loads(json.dumps(r.to_json(), allow_nan=False))
    back = SearchResult.from_json(data)
    assert back.to_json() == data
    assert data["summary"]["test:dropped"]["verdict"] == "DIVERGED" and data["verdict"] == "FAIL"


def test_zero_examples_and_errors():
    assert _search(["test:clean"], examples=0).cases == []
    with pytest.raises(ValueError, match="no modes"):
        _search([])
    with pytest.raises(ops.UnknownNameError, match="valid modes"):
        _search(["nope"])



def test_judging_fetches_once_for_all_modes_and_once_for_the_pairs(monkeypatch):
    """Reference-side and kernel-side metrics, the baselines and the poison counts of every mode
    reach the host in one transfer; the pairwise agreement in one more (a GPU sync each)."""
    from host_spy import host_transfers

    ops.register_modes("gla", [ModeSpec("clean2", PROVIDER, make_clean(ops.get_op("gla").step))])
    cfg = _cfg(packing="varlen", segments=((25, 15),))
    check_case("gla", ["test:clean"], cfg, invariance="none")  # imports, lazy registries
    calls = host_transfers(monkeypatch)
    r = check_case("gla", ["test:clean", "test:clean2"], cfg, invariance="none")
    assert [m.verdict for m in r.modes.values()] == [Verdict.OK, Verdict.OK]
    assert calls.count("cpu") == 2
    # no metric read on its own; the rest are whole-tensor reads (cu_seqlens lists, varlen masks)
    assert not {"item", "__bool__", "__float__", "__int__"} & set(calls), calls


def _kda_gate_mode(bound_factor: float) -> ModeSpec:
    """A plain-torch kda mode that takes the in-kernel gate and its lower_bound and computes the gate
    in fp32 as fla does, with the bound scaled by `bound_factor` (1: exact)."""
    from fla_check.references import kda_step, run_recurrence
    from fla_check.references.options import kda_gate

    def fn(q, k, v, *, g=None, beta=None, scale=None, initial_state=None, output_final_state=False,
           cu_seqlens=None, use_gate_in_kernel=False, A_log=None, dt_bias=None, lower_bound=None):
        assert use_gate_in_kernel and cu_seqlens is None
        bound = None if lower_bound is None else lower_bound * bound_factor
        gate = kda_gate(g.float(), A_log.float(), dt_bias.float(), bound)
        o, ht = run_recurrence(kda_step, q.float(), k.float(), v.float(), gate, beta.float(), scale=scale,
                               initial_state=initial_state, output_final_state=True)
        return o.to(q.dtype), ht

    return ModeSpec(f"bound{bound_factor}", "test", fn, triton=False, options=frozenset({"gate_in_kernel",
                                                                                         "lower_bound"}))


@pytest.mark.parametrize("factor,verdict", [(1.0, Verdict.OK), (1.01, Verdict.DIVERGED), (0.98, Verdict.DIVERGED)])
def test_kda_lower_bound_used_exactly_passes_and_off_by_a_percent_is_caught(factor, verdict):
    config = CaseConfig(op="kda", dtype="float32", B=1, T=24, H=1, K=16, V=16, seed=3, initial_state=True,
                        gate_norm=0.05, gate_in_kernel=True, lower_bound=-5.0)
    r = check_case("kda", [_kda_gate_mode(factor)], config)
    assert r.modes[f"test:bound{factor}"].verdict is verdict, r.modes[f"test:bound{factor}"].reason


def test_kda_options_a_mode_does_not_declare_are_unsupported_with_the_reason():
    config = CaseConfig(op="kda", dtype="float32", B=1, T=8, H=1, K=16, V=16, gate_in_kernel=True,
                        lower_bound=-5.0, safe_gate=True)
    r = check_case("kda", [_kda_gate_mode(1.0)], config)
    mode = r.modes["test:bound1.0"]
    assert mode.verdict is Verdict.UNSUPPORTED and "safe_gate" in mode.reason


def test_kda_bound_case_result_json_round_trip_keeps_the_bound():
    config = CaseConfig(op="kda", dtype="float32", B=1, T=8, H=1, K=16, V=16, gate_in_kernel=True, lower_bound=-3.0)
    r = check_case("kda", [_kda_gate_mode(1.01)], config)
    back = CaseResult.from_json(json.loads(json.dumps(r.to_json(), allow_nan=False)))
    assert back.to_json() == r.to_json() and back.config == config and back.config.lower_bound == -3.0


# -- chunk size and state layout --------------------------------------------------------------
def test_v_first_state_read_as_kv_diverges_and_the_correct_one_passes():
    from _fake_modes import make_v_first

    step = ops.get_op("gla").step
    ops.register_modes("gla", [ModeSpec("vk", PROVIDER, make_v_first(step), state_v_first=True),
                               ModeSpec("vk_bug", PROVIDER, make_v_first(step, read_as_kv=True),
                                        state_v_first=True)])
    modes = ["test:vk", "test:vk_bug", "test:clean"]
    r = check_case("gla", modes, _cfg(K=16, V=32, initial_state=True, state_v_first=True))
    assert r.modes["test:vk"].verdict is Verdict.OK
    assert r.modes["test:vk_bug"].verdict is Verdict.DIVERGED
    assert r.modes["test:clean"].verdict is Verdict.UNSUPPORTED
    assert r.modes["test:clean"].reason == "test:clean does not support state_v_first ([V, K] states)"
    kv = check_case("gla", modes, _cfg(K=16, V=32, initial_state=True))  # [K, V] cases: all three pass
    assert {m.verdict for m in kv.modes.values()} == {Verdict.OK}


def test_v_first_gradients_come_back_in_kv_layout():
    from _fake_modes import make_v_first

    ops.register_modes("gla", [ModeSpec("vk", PROVIDER, make_v_first(ops.get_op("gla").step), state_v_first=True,
                                        backward=True)])
    r = check_case("gla", ["test:vk"], _cfg(T=6, K=16, V=32, initial_state=True, state_v_first=True), backward=True)
    assert r.modes["test:vk"].verdict is Verdict.OK
    assert "dh0" in [c.name for c in r.modes["test:vk"].outputs]


def test_chunk_size_is_passed_to_modes_that_take_it_and_recurrent_modes_run_unchanged():
    from _fake_modes import chunk_cumsum_gla, chunked_gla
    from fla_check.verdict.arithmetic import Arithmetic

    seen = []

    def spy(q, k, v, *, chunk_size=64, **kw):
        seen.append(chunk_size)
        return chunked_gla(q, k, v, chunk_size=chunk_size, **kw)

    chunk = Arithmetic("chunk", 64, store="fp32", dot="ieee")
    ops.register_modes("gla", [
        ModeSpec("chunked", PROVIDER, spy, arithmetic=chunk, chunk_sizes=frozenset({16, 32, 64})),
        # claims chunk_size but always runs 64-chunks: not distinguishable numerically (fine)
        ModeSpec("ignores", PROVIDER, lambda q, k, v, chunk_size=64, **kw: chunk_cumsum_gla(q, k, v, chunk=64, **kw),
                 arithmetic=chunk, chunk_sizes=frozenset({16, 32, 64})),
        ModeSpec("fixed", PROVIDER, chunk_cumsum_gla, arithmetic=chunk,
                 option_reasons=(("chunk_size", "fixed 16-token chunks"),)),
    ])
    r = check_case("gla", ["test:chunked", "test:ignores", "test:fixed", "test:clean"],
                   _cfg(T=40, chunk_size=16, initial_state=True))
    assert seen and set(seen) == {16}  # the main call and the layout check's
    assert r.modes["test:chunked"].verdict is Verdict.OK and r.modes["test:ignores"].verdict is Verdict.OK
    assert r.modes["test:clean"].verdict is Verdict.OK  # declared recurrent: no chunks, called without chunk_size
    assert r.modes["test:fixed"].verdict is Verdict.UNSUPPORTED
    assert r.modes["test:fixed"].reason == "test:fixed does not support chunk_size=16: fixed 16-token chunks"
