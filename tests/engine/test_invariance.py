"""The metamorphic checks (split, packing, batch, layout): quiet on the honest built-ins in every
dtype, and each firing on its planted mutant on a case the reference check passes."""
import pytest
import torch
from click.testing import CliRunner
from device import DEVICE

from fla_check.cases import CaseConfig, build_case
from fla_check.cli import main
from fla_check.commands.selftest.mutants import select
from fla_check.engine import invariance
from fla_check.engine.runner import check_case
from fla_check.errors import InvarianceSpecError
from fla_check.verdict.compare import Verdict
from fla_check.verdict.results import ModeResult


def _cfg(**kw):
    return CaseConfig(**{**dict(op="gla", dtype="float32", B=2, T=20, H=2, K=16, V=16, seed=3), **kw})


def _checks(result: ModeResult) -> dict[str, list]:
    out: dict[str, list] = {}
    for inv in result.invariance:
        out.setdefault(inv.check, []).append(inv)
    return out


# -- parsing, drawing, layouts (no kernel) -------------------------------------------------------
def test_parse_checks_and_scope():
    assert invariance.parse_checks("layout,split") == ("split", "layout")
    assert invariance.parse_checks("all") == invariance.CHECKS
    assert invariance.parse_checks("none") == ()
    assert invariance.parse_scope("all") == "all"
    with pytest.raises(InvarianceSpecError, match="unknown invariance check"):
        invariance.parse_checks("split,shuffle")
    with pytest.raises(InvarianceSpecError):
        invariance.parse_scope("some")


def test_split_points_fall_on_chunk_boundaries_and_inside_chunks():
    points = [invariance.split_point(_cfg(T=150, seed=s)) for s in range(60)]
    assert all(1 <= p < 150 for p in points)
    assert any(p % 16 == 0 for p in points) and any(p % 16 for p in points)
    assert any(p % 64 == 0 for p in points)
    assert invariance.split_point(_cfg(T=150, seed=7)) == invariance.split_point(_cfg(T=150, seed=7))


@pytest.mark.parametrize("shape", [(1, 5, 1, 16), (2, 5, 3)])
def test_layouts_are_non_contiguous_views_of_the_same_values(shape):
    x = torch.randn(shape)
    for view in (invariance.transposed(x), invariance.sliced(x)):
        assert not view.is_contiguous() and torch.equal(view, x)
    wide = invariance.sliced(x)
    assert wide._base.shape[-1] == x.shape[-1] + invariance.WIDER
    assert torch.isnan(wide._base[..., x.shape[-1]:]).all()  # a kernel ignoring strides reads NaN


def test_unknown_check_is_a_usage_error():
    out = CliRunner().invoke(main, ["run", "--op", "gla", "--modes", "recurrent", "--invariance", "split,shuffle",
                                    "--device", DEVICE])
    assert out.exit_code == 2 and "unknown invariance check" in out.stderr


def test_mode_result_round_trips_its_checks():
    r = check_case("gla", ["recurrent"], _cfg(B=1, T=3, H=1), device=DEVICE, invariance="split",
                   invariance_scope="all").modes["recurrent"]
    assert [i.check for i in r.invariance] == ["split"]
    back = ModeResult.from_json(r.to_json())
    assert back.invariance == r.invariance


# -- honest built-ins: quiet ----------------------------------------------------------------------
HONEST = [("gla", "recurrent", "float32"), ("gla", "chunk", "float16"), ("simple_gla", "chunk", "bfloat16"),
          ("gated_delta", "chunk", "float32"), ("delta", "recurrent", "bfloat16")]


@pytest.mark.parametrize("op,mode,dtype", HONEST)
def test_honest_builtins_pass_every_check(op, mode, dtype):
    for config in (_cfg(op=op, dtype=dtype, initial_state=True),
                   _cfg(op=op, dtype=dtype, B=1, T=20, packing="varlen", segments=((7, 0, 13),), seed=5)):
        r = check_case(op, [mode], config, device=DEVICE, invariance="all", invariance_scope="all").modes[mode]
        if r.verdict is Verdict.UNSUPPORTED:
            pytest.skip(r.reason)
        assert r.verdict is Verdict.OK, r.reason
        want = {"packing", "batch", "layout"} | ({"split"} if not config.varlen else set())
        assert set(_checks(r)) == want
        assert all(inv.verdict is Verdict.OK and inv.outputs for inv in r.invariance)


# -- planted mutants: each fires on its check, on a case the reference check passes --------------
MUTANTS = [
    ("gla.recurrent.non-contiguous", "layout", _cfg(B=1)),  # contiguous inputs: reference check blind
    ("gla.recurrent.split-state", "split", _cfg(B=1)),  # no initial state: reference check blind
    ("gla.recurrent.row-mixing", "batch", _cfg(B=1)),  # one row: reference check blind
    ("gla.recurrent.cu-seqlens", "packing", _cfg()),  # unpacked rows: reference check blind
]


@pytest.mark.parametrize("mutant_id,check,config", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_each_check_catches_its_mutant(mutant_id, check, config):
    spec = select(ids=[mutant_id])[0].mode_specs()[0]
    blind = check_case("gla", [spec], config, device=DEVICE, invariance="none").modes[spec.qualified]
    assert blind.verdict is Verdict.OK  # the whole run alone does not see it
    r = check_case("gla", [spec], config, device=DEVICE, invariance=check,
                   invariance_scope="all").modes[spec.qualified]
    assert r.verdict is Verdict.NOT_INVARIANT
    assert r.reason.startswith(check) and any(inv.verdict.failed for inv in _checks(r)[check])
    assert all(c.verdict is Verdict.OK for c in r.outputs)  # the whole-run comparison itself stays OK


def test_bucket_scope_checks_the_first_case_of_a_bucket_and_length_class_only():
    def layout(**kw):
        return check_case("gla", ["recurrent"], _cfg(B=1, H=1, dtype="float16", **kw), device=DEVICE,
                          invariance="layout").modes["recurrent"].invariance
    assert layout(T=1, seed=10) == []  # one step: nothing to vary, the bucket stays open
    assert [i.check for i in layout(T=5, seed=11)] == ["layout"]
    assert layout(T=6, seed=12) == []
    assert [i.check for i in layout(T=17, seed=13)] == ["layout"]  # another length class


def test_forget_seen_reopens_every_bucket():
    config = _cfg(T=9, K=64, seed=31)
    assert invariance.wanted("m", "layout", config, "bucket") and not invariance.wanted("m", "layout", config, "bucket")
    invariance.forget_seen()
    assert invariance.wanted("m", "layout", config, "bucket")


def test_search_keeps_a_bucket_scope_failure_in_the_report():
    from fla_check.engine.search import search

    spec = select(ids=["gla.recurrent.non-contiguous"])[0].mode_specs()[0]
    result = search("gla", ["recurrent", spec], dtypes=["fp32"], examples=4, seed=5, max_seq_len=20,
                    profile="smoke", device=DEVICE, database_root=None, invariance="layout")
    assert spec.qualified in result.failures and "recurrent" not in result.failures
    case = result.cases[result.failures[spec.qualified]]
    assert case.modes[spec.qualified].verdict is Verdict.NOT_INVARIANT
    assert result.options["invariance"] == "layout" and result.options["invariance_scope"] == "bucket"


def test_varlen_batch_variant_keeps_the_cases_sequences():
    config = _cfg(B=1, T=20, packing="varlen", segments=((7, 0, 13),), seed=5, initial_state=True)
    inputs = build_case(config)
    assert invariance.variants("split", config, inputs, varlen_ok=True, h0_ok=True).startswith("split:")
    [var] = invariance.variants("batch", config, inputs, varlen_ok=True, h0_ok=True)
    seen = {}

    def call(q, k, v, g, beta, h0, cu):
        seen.update(T=q.shape[1], cu=cu.tolist(), N=h0.shape[0])
        return torch.zeros(1, q.shape[1], 2, 16), torch.zeros(h0.shape[0], 2, 16, 16)
    o, ht = var.run(call)
    assert seen == {"T": 20 + 2 * 17, "cu": [0, 17, 24, 24, 37, 54], "N": 5}
    assert o.shape == (1, 20, 2, 16) and ht.shape == (3, 2, 16, 16)


def test_run_reports_the_check_and_replay_reproduces_it(tmp_path):
    from fla_check import ops

    spec = select(ids=["gla.recurrent.non-contiguous"])[0].mode_specs()[0]
    ops.register_modes("gla", [spec])
    try:
        report = tmp_path / "run.json"
        out = CliRunner().invoke(main, ["run", "--op", "gla", "--modes", spec.qualified, "--dtypes", "fp32",
                                        "--examples", "2", "--max-seq-len", "20", "--profile", "smoke", "--seed", "1",
                                        "--invariance", "layout", "--invariance-scope", "all", "--device", DEVICE,
                                        "--report", str(report), "--no-color"])
        assert out.exit_code == 1, out.output
        assert "NOT_INVARIANT" in out.output and "invariance check layout failed" in out.output
        again = CliRunner().invoke(main, ["replay", str(report), "--device", DEVICE, "--json"])
        assert again.exit_code == 1, again.output
        mode = __import__("json").loads(again.stdout)["modes"][spec.qualified]
        assert mode["verdict"] == "NOT_INVARIANT" and mode["invariance"][0]["check"] == "layout"
    finally:
        ops.remove_modes("mutant")


def test_isolated_variants_run_in_the_worker_and_still_catch_the_mutant(monkeypatch):
    """Under --isolation process the split variants' calls take the main call's isolated path
    (call_isolated; a mutant the worker cannot load then runs in-process, as its main call does),
    and the split check still fires on its mutant; layout's calls run in this process, which only
    happens for modes whose calls run here anyway (like this one: the worker cannot load it)."""
    from fla_check.engine import runner
    from fla_check.engine.isolation import Isolation

    sent = []
    real = runner.call_isolated

    def spy(spec, op, inputs, *args, **kw):
        sent.append(inputs.q.shape[1])
        return real(spec, op, inputs, *args, **kw)

    monkeypatch.setattr(runner, "call_isolated", spy)
    spec = select(ids=["gla.recurrent.split-state"])[0].mode_specs()[0]
    config = _cfg(B=1)
    r = check_case("gla", [spec], config, device=DEVICE, invariance="split,layout", invariance_scope="all",
                   isolation=Isolation("process")).modes[spec.qualified]
    assert r.verdict is Verdict.NOT_INVARIANT and r.reason.startswith("split")
    assert sent[0] == config.T and len(sent) > 1  # the main call, then the split parts (shorter T)
    assert all(t < config.T for t in sent[1:])
    # the mutant cannot be loaded by the worker, so all its calls run here: layout runs too
    assert {inv.check for inv in r.invariance} == {"split", "layout"}
