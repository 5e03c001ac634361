"""The determinism check: a mode run twice on the same inputs must give bitwise-equal results."""
import itertools

import pytest
import torch

from _fake_modes import PROVIDER, make_clean, registered
from fla_check import ops
from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Verdict
from fla_check.ops import ModeSpec
from fla_check.engine.runner import RepeatPolicyError, check_case, forget_repeated, repeat_wanted


def _flaky(step, scale=1e-6):
    """A correct recurrence whose every other call perturbs o by `scale` (relative): inside the
    verdict's tolerance in fp32, but not the same twice (an atomic-order or race bug)."""
    clean = make_clean(step)
    calls = itertools.count()

    def mode(q, k, v, **kw):
        o, ht = clean(q, k, v, **kw)
        if next(calls) % 2:
            o = (o.float() * (1 + scale)).to(o.dtype)
        return o, ht

    return mode


@pytest.fixture
def modes():
    step = ops.get_op("gla").step
    with registered():
        ops.register_modes("gla", [ModeSpec("flaky", PROVIDER, _flaky(step, 1e-6)),
                                   ModeSpec("steady", PROVIDER, make_clean(step))])
        yield f"{PROVIDER}:flaky", f"{PROVIDER}:steady"


def _cfg(**kw):
    return CaseConfig(**{**dict(op="gla", dtype="float32", B=1, T=24, H=1, K=16, V=16, seed=2), **kw})


def test_a_run_twice_difference_is_nondeterministic_even_inside_tolerance(modes):
    flaky, steady = modes
    once = check_case("gla", [flaky, steady], _cfg(), repeat="off")
    assert once.modes[flaky].verdict is Verdict.OK  # 1e-6 relative in fp32: inside the bound
    twice = check_case("gla", [flaky, steady], _cfg(), repeat="all")
    assert twice.modes[flaky].verdict is Verdict.NONDETERMINISTIC and twice.modes[flaky].verdict.failed
    assert "o differs by up to" in twice.modes[flaky].reason
    assert twice.modes[steady].verdict is Verdict.OK


def test_bucket_policy_repeats_the_first_case_of_each_bucket_only(modes):
    flaky, _ = modes
    spec = ops.get_mode(ops.get_op("gla"), flaky)
    first = _cfg(seed=11, K=32)
    assert repeat_wanted(spec, first, False, "bucket")
    assert not repeat_wanted(spec, _cfg(seed=12, K=32), False, "bucket")  # same bucket
    assert repeat_wanted(spec, _cfg(seed=12, K=32, dtype="float16"), False, "bucket")  # another dtype
    assert repeat_wanted(spec, first, True, "bucket")  # backward is its own bucket
    with pytest.raises(RepeatPolicyError):
        repeat_wanted(spec, first, False, "sometimes")


def test_forget_repeated_reopens_every_bucket(modes):
    flaky, _ = modes
    spec = ops.get_mode(ops.get_op("gla"), flaky)
    config = _cfg(seed=21, K=64)
    assert repeat_wanted(spec, config, False, "bucket") and not repeat_wanted(spec, config, False, "bucket")
    forget_repeated()
    assert repeat_wanted(spec, config, False, "bucket")


def test_default_is_off_until_calibrated_on_a_gpu(modes, monkeypatch):
    flaky, _ = modes
    monkeypatch.delenv("FLA_CHECK_REPEAT", raising=False)
    assert check_case("gla", [flaky], _cfg(seed=5)).modes[flaky].verdict is Verdict.OK
    monkeypatch.setenv("FLA_CHECK_REPEAT", "all")
    assert check_case("gla", [flaky], _cfg(seed=5)).modes[flaky].verdict is Verdict.NONDETERMINISTIC


def test_builtin_kernels_are_deterministic_on_this_backend():
    cfg = CaseConfig(op="gla", dtype="float32", B=1, T=40, H=1, K=16, V=16, seed=3, initial_state=True)
    r = check_case("gla", ["recurrent", "chunk"], cfg, repeat="all", backward=True)
    assert {m.verdict for m in r.modes.values()} == {Verdict.OK}, {k: m.reason for k, m in r.modes.items()}
