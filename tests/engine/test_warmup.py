"""The compile warm-up: which buckets a run warms, in which order, and that warming runs the
mode's kernels in other processes (a mode that raises is reported, not fatal)."""
import functools
import time

import pytest

from device import DEVICE
from fla_check.engine import warmup
from fla_check.errors import UsageError
from fla_check.engine.search import planned_cases


def _wait_until(done, seconds: float = 120.0) -> None:
    """Poll `done()` until it holds or `seconds` pass (the assertions after it say which)."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_auto_warms_in_the_background_on_a_gpu_only():
    assert warmup.resolve("auto", interpreter=False) == "background"
    assert warmup.resolve("auto", interpreter=True) == "off"
    assert warmup.resolve("on", interpreter=True) == "on" and warmup.resolve("off", interpreter=False) == "off"
    assert warmup.resolve("background", interpreter=True) == "background"
    with pytest.raises(UsageError):
        warmup.resolve("sometimes", interpreter=False)


def test_the_plan_is_the_buckets_the_search_draws_in_draw_order():
    args = dict(dtypes=["fp32", "fp16"], examples=6, seed=3, profile="ci", device=DEVICE, max_seq_len=64)
    drawn = planned_cases("gla", modes=["recurrent", "chunk"], **args)
    buckets = warmup.run_buckets("gla", ["recurrent", "chunk"], **args)
    def kind(c):
        return (c.dtype, c.H, c.K, c.V, c.packing == "varlen", c.initial_state)

    first = drawn[0]
    assert buckets[:2] == [warmup.Bucket("gla", m, first.dtype, first.H, first.K, first.V, varlen=kind(first)[4],
                                         initial_state=first.initial_state) for m in ("recurrent", "chunk")]
    assert set(buckets) == {warmup.Bucket("gla", m, *kind(c)[:4], varlen=kind(c)[4], initial_state=c.initial_state)
                            for c in drawn for m in ("recurrent", "chunk")}
    assert len(buckets) == len(set(buckets)) < 2 * len(drawn) + 1
    assert {b.varlen for b in buckets} == {True, False} and {b.initial_state for b in buckets} == {True, False}
    order = [(b.dtype, b.H, b.K, b.V, b.varlen, b.initial_state) for b in buckets[::2]]
    assert order == list(dict.fromkeys(kind(c) for c in drawn))  # first drawn, first warmed
    assert warmup.run_buckets("gla", ["recurrent", "chunk"], limit=3, **args) == buckets[:3]
    streamed = []
    assert warmup.run_buckets("gla", ["recurrent", "chunk"], on_bucket=streamed.append, **args) == buckets
    assert streamed == buckets  # as drawn: a background warm-up compiles before the plan is done


def test_a_bucket_is_warmed_with_a_small_case_of_its_kind():
    plain = warmup.warm_case(warmup.Bucket("gla", "chunk", "bfloat16", 2, 60, 100))
    assert (plain.T, plain.packing, plain.initial_state, plain.H, plain.K, plain.V) == (64, "none", False, 2, 60, 100)
    packed = warmup.warm_case(warmup.Bucket("gla", "chunk", "float32", 1, 16, 16, varlen=True, initial_state=True))
    assert (packed.T, packed.packing, packed.segments, packed.initial_state) == (37, "varlen", ((20, 17),), True)


def test_a_preset_plan_stays_in_the_preset():
    from fla_check.presets import get_preset

    p = get_preset("qwen3-next")
    buckets = warmup.run_buckets("gated_delta", ["chunk"], dtypes=["bf16"], examples=4, seed=0, device=DEVICE,
                                 preset="qwen3-next")
    assert buckets and {(b.K, b.V, b.value_ratio, b.options) for b in buckets} == {
        (p.K, p.V, p.value_ratio, p.kernel_options)}
    assert {b.H for b in buckets} <= {h for _, h in p.heads()}


def test_warming_runs_each_bucket_in_another_process_and_reports_failures(monkeypatch):
    monkeypatch.setenv(warmup.JOBS_ENV, "2")
    seen = []
    good = warmup.Bucket("gla", "recurrent", "float32", 1, 16, 16)
    bad = warmup.Bucket("gla", "nosuchmode", "float32", 1, 16, 16)
    result = warmup.warm([good, bad], DEVICE, progress=lambda done, total, b: seen.append((done, total)))
    assert (result.buckets, result.warmed, result.jobs) == (2, 1, 2)
    assert len(result.failed) == 1 and result.failed[0].startswith("nosuchmode float32 H=1 K=16 V=16: ")
    assert seen[0] == (0, 2) and sorted(seen[1:]) == [(1, 2), (2, 2)]
    assert result.to_json()["cache_dir"] == warmup.cache_dir()


def test_the_jobs_setting_is_checked(monkeypatch):
    monkeypatch.setenv(warmup.JOBS_ENV, "0")
    with pytest.raises(UsageError):
        warmup.default_jobs(4)
    monkeypatch.setenv(warmup.JOBS_ENV, "8")
    assert warmup.default_jobs(3) == 3


def test_a_time_limit_stops_the_warmup_and_says_so():
    buckets = [warmup.Bucket("gla", "recurrent", "float32", 1, k, 16) for k in (16, 32, 64)]
    result = warmup.warm(buckets, DEVICE, jobs=1, seconds=0.2)
    assert result.warmed == 0 and result.seconds < 2.0
    assert result.stopped == "after 0.2 s: 3 bucket(s) left to the search"


def test_background_warming_skips_the_searchs_first_bucket_and_reports_failures(monkeypatch):
    first = warmup.Bucket("gla", "recurrent", "float32", 1, 32, 16)
    good = warmup.Bucket("gla", "recurrent", "float32", 1, 16, 16)
    bad = warmup.Bucket("gla", "nosuchmode", "float32", 1, 16, 16)
    background = warmup.BackgroundWarmup(functools.partial(warmup.fixed_plan, [first, good, bad]), DEVICE, jobs=1)
    _wait_until(lambda: background.finished >= 2)
    result = background.stop()
    assert (result.buckets, result.warmed, result.jobs, result.stopped) == (2, 1, 1, "")
    assert len(result.failed) == 1 and result.failed[0].startswith("nosuchmode float32 H=1 K=16 V=16: ")
    assert result.to_json()["background"] is True


def _plan_then_hang(buckets, on_bucket):
    """A plan that streams `buckets` and then never ends (a search ending mid-plan)."""
    for bucket in buckets:
        on_bucket(bucket)
    time.sleep(600)


def test_a_search_ending_while_the_plan_streams_stops_the_planner_and_counts_what_was_warmed():
    buckets = [warmup.Bucket("gla", "recurrent", "float32", 1, k, 16) for k in (16, 32, 64)]
    background = warmup.BackgroundWarmup(functools.partial(_plan_then_hang, buckets), DEVICE, jobs=1)
    _wait_until(lambda: background.finished >= 2)
    processes = list(background.pool._pool) + list(background.warmup.planner._pool)
    result = background.stop()
    assert (result.buckets, result.warmed, result.failed) == (2, 2, ())
    assert result.stopped == "the search ended while the buckets were planned: 0 of 2 not warmed"
    assert not any(p.is_alive() for p in processes)


def test_the_background_warmup_adopts_a_prestarted_pool():
    from fla_check.engine import warmup_pool

    pool = warmup_pool.start_warmup_pool(DEVICE, 1)
    buckets = [warmup.Bucket("gla", "recurrent", "float32", 1, k, 16) for k in (16, 32)]
    background = warmup.BackgroundWarmup(functools.partial(warmup.fixed_plan, buckets), DEVICE, pool=pool)
    assert background.pool is pool.pool and background.jobs == 1
    processes = list(pool.pool._pool) + list(pool.planner._pool)
    _wait_until(lambda: background.finished >= 1)
    for p in processes:  # every planned bucket done: the processes exit before the search ends
        p.join(timeout=60)
    assert not any(p.is_alive() for p in processes)
    result = background.stop()
    assert (result.buckets, result.warmed, result.stopped) == (1, 1, "")


def test_stopping_the_background_ends_its_processes_at_once():
    buckets = [warmup.Bucket("gla", "recurrent", "float32", 1, k, 16) for k in (16, 32, 64)]
    background = warmup.BackgroundWarmup(functools.partial(warmup.fixed_plan, buckets), DEVICE, jobs=1)
    processes = list(background.pool._pool) + list(background.warmup.planner._pool)
    result = background.stop()
    assert result.warmed == 0 and result.seconds < 10.0
    assert result.stopped == "the search ended before the buckets were planned"
    assert not any(p.is_alive() for p in processes)


def test_a_plan_that_raises_is_reported():
    background = warmup.BackgroundWarmup(functools.partial(warmup.run_buckets, "nosuchop", ("chunk",)), DEVICE, jobs=1)
    _wait_until(lambda: background.failed)
    result = background.stop()
    assert result.buckets == 0 and len(result.failed) == 1 and result.failed[0].startswith("planning the buckets: ")


def test_the_plan_resolves_the_runs_provider_modes(monkeypatch):
    """A run with ``--provider`` plans its buckets in a spawned process, which must load the
    provider to know its modes (on the H200 every ``--provider fla...`` run's plan failed with
    UnknownNameError and nothing was warmed: docs/gpu/verify-h200-1)."""
    from pathlib import Path

    providers = str(Path(__file__).resolve().parents[1] / "providers")
    monkeypatch.syspath_prepend(providers)
    plan = functools.partial(warmup.run_buckets, "gla", ("thirdparty:ref",), dtypes=("float32",), examples=3,
                             seed=1, max_seq_len=16)
    background = warmup.BackgroundWarmup(plan, DEVICE, jobs=1, skip=0, providers=("thirdparty_provider:provider",))
    _wait_until(lambda: background.planned or background.failed)
    result = background.stop()
    assert not [f for f in result.failed if f.startswith("planning")], result.failed
    assert result.buckets >= 1 and {b.mode for b in background.buckets} == {"thirdparty:ref"}


@pytest.mark.parametrize("checks, expected", [("layout", ["layout"]), ("none", [])])
def test_a_bucket_is_warmed_with_the_runs_invariance_checks(monkeypatch, checks, expected):
    """The search runs its invariance checks on a bucket's first case, and their variants (a
    transposed state layout) are binaries of their own: the warm-up compiles them too."""
    from fla_check.engine import invariance

    ran = []
    real = invariance.run_check
    monkeypatch.setattr(invariance, "run_check", lambda check, *a, **k: ran.append(check) or real(check, *a, **k))
    invariance.forget_seen()
    bucket = warmup.Bucket("gla", "recurrent", "float32", 1, 16, 16)
    assert warmup.warm_bucket(bucket, DEVICE, False, invariance=checks) == ""
    assert ran == expected
