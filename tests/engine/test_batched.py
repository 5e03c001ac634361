"""fla_check.engine.batched.check_cases: the same verdicts and numbers as check_case case by case
(references batched per state shape), a subtly wrong mode caught the same way, backward cases and
foreign cases handled."""
import math

import pytest
import torch
from _fake_modes import PROVIDER, make_clean, registered

from fla_check import ops
from fla_check.engine.batched import check_cases
from fla_check.engine.runner import check_case
from fla_check.errors import CaseError
from fla_check.ops import ModeSpec
from fla_check.strategies import SpaceOptions, covering_configs
from fla_check.verdict.compare import Verdict


def _off_by(step, factor):
    clean = make_clean(step)

    def scaled(q, k, v, **kw):
        o, ht = clean(q, k, v, **kw)
        return o * factor, ht

    return scaled


@pytest.fixture(autouse=True)
def fake_modes():
    with registered():
        for name in ("gla", "gated_delta", "kda"):
            ops.register_modes(name, [ModeSpec("off2pct", PROVIDER, _off_by(ops.get_op(name).step, 1.015))])
        yield


def _numbers(result):
    """Verdict and metrics of every mode's outputs, without the timings."""
    out = {}
    for label, r in result.modes.items():
        out[label] = (r.verdict, [(o.name, o.kernel.max_abs, o.kernel.rel_rms) for o in r.outputs])
    return out


def _assert_same(alone, got):
    """`got` judged every mode it ran as `alone` did: verdicts, and metrics to float64 rounding."""
    a, b = _numbers(alone), _numbers(got)
    assert b and b.keys() <= a.keys()
    for label in b:
        assert a[label][0] is b[label][0], (got.config.short(), label)
        for (name, ma, ra), (_, mb, rb) in zip(a[label][1], b[label][1]):
            assert math.isclose(ma, mb, rel_tol=1e-9, abs_tol=1e-15), (got.config.short(), label, name)
            assert math.isclose(ra, rb, rel_tol=1e-9, abs_tol=1e-15), (got.config.short(), label, name)


@pytest.mark.parametrize("op", ["gla", "gated_delta", "kda"])
def test_check_cases_judges_each_case_as_check_case_does(op):
    space = SpaceOptions(op=op, dtypes=("float32", "bfloat16"), max_seq_len=40, value_ratios=(1,), kernel_options=())
    configs = covering_configs(space, seed=5)[:8]  # what the fake modes run: no GVA, no in-kernel options
    modes = ["test:clean", "test:dropped", "test:off2pct"]
    batched = check_cases(op, modes, configs, isolation="none", invariance="none")
    assert [r.config for r in batched] == list(configs)
    verdicts = set()
    for config, got in zip(configs, batched):
        _assert_same(check_case(op, modes, config, isolation="none", invariance="none"), got)
        verdicts.add((got.modes["test:clean"].verdict, got.modes["test:off2pct"].verdict))
    # clean passes and 1.5 % off is caught in every case the modes run (not bf16 under the interpreter)
    assert verdicts - {(Verdict.UNSUPPORTED, Verdict.UNSUPPORTED)} == {(Verdict.OK, Verdict.DIVERGED)}


def test_backward_cases_run_one_by_one():
    configs = sorted(covering_configs(SpaceOptions(op="gla", max_seq_len=40, dtypes=("float32",)), seed=0),
                     key=lambda c: c.B * c.T)[:2]
    results = check_cases("gla", ["recurrent"], configs, backward=True, isolation="none", invariance="none")
    assert [r.backward for r in results] == [True, True]
    assert all(r.modes["recurrent"].verdict is Verdict.OK for r in results)
    assert all(any(o.name == "dq" for o in r.modes["recurrent"].outputs) for r in results)  # gradients judged


def test_a_case_of_another_op_is_refused_before_anything_runs():
    configs = covering_configs(SpaceOptions(op="delta", max_seq_len=40), seed=0)[:1]
    with pytest.raises(CaseError, match="another op"):
        check_cases("gla", ["test:clean"], configs)


def test_a_built_case_has_no_gradients():
    from fla_check.cases import build_case
    from fla_check.engine.runner import BuiltCase

    config = covering_configs(SpaceOptions(op="gla", max_seq_len=40), seed=0)[0]
    built = BuiltCase(build_case(config), {"o": torch.zeros(1), "ht": torch.zeros(1)})
    with pytest.raises(ValueError, match="no reference gradients"):
        check_case("gla", ["test:clean"], config, backward=True, built=built)


def test_a_search_covers_with_one_batched_reference_and_the_same_results(monkeypatch):
    """The covering phase of a ci search builds its cases ahead: one reference loop for all of them,
    each case judged as check_case judges it alone."""
    from fla_check.engine import batched
    from fla_check.engine.search import search

    sizes = []
    real = batched.reference_batch

    def counting(step, cases):
        sizes.append(len(cases))
        return real(step, cases)

    monkeypatch.setattr(batched, "reference_batch", counting)
    modes = ["test:clean", "test:off2pct"]
    result = search("gla", modes, dtypes=["fp32"], profile="ci", seed=0, device="cpu")
    covering = result.options["covering"]
    assert covering > 1 and sizes == [covering]
    for case in result.cases[-covering:]:  # the modes that had not failed yet
        _assert_same(check_case("gla", modes, case.config), case)


def test_a_long_group_is_cut_into_batches_within_the_memory_cap(monkeypatch):
    from fla_check.engine import batched

    sizes = []
    real = batched.reference_batch
    monkeypatch.setattr(batched, "reference_batch", lambda step, cases: sizes.append(len(cases)) or real(step, cases))
    monkeypatch.setattr(batched, "BATCH_ELEMENTS", 40_000)  # a few small cases per batch
    configs = [c for seed in (2, 3, 4) for c in covering_configs(SpaceOptions(op="gla", max_seq_len=40), seed=seed)]
    results = check_cases("gla", ["test:clean"], configs, isolation="none", invariance="none")
    assert len(sizes) > 1 and sum(sizes) == len(configs) and max(sizes) < len(configs)
    for config, got in zip(configs, results):
        _assert_same(check_case("gla", ["test:clean"], config, isolation="none", invariance="none"), got)
