"""The compile warm-up: which buckets a run warms, in which order, and that warming runs the
mode's kernels in other processes (a mode that raises is reported, not fatal)."""
import pytest

from fla_check.engine import warmup
from fla_check.errors import UsageError
from fla_check.strategies import HEAD_DIMS


def test_auto_warms_on_a_gpu_only():
    assert warmup.wanted("auto", interpreter=False) and not warmup.wanted("auto", interpreter=True)
    assert warmup.wanted("on", interpreter=True) and not warmup.wanted("off", interpreter=False)
    with pytest.raises(UsageError):
        warmup.wanted("sometimes", interpreter=False)


def test_the_plan_covers_the_space_simplest_first():
    buckets = warmup.run_buckets("gla", ["recurrent", "chunk"], ["float16", "float32"], small=False)
    assert len(buckets) == 2 * 2 * 4 * len(HEAD_DIMS) ** 2 == len(set(buckets))  # H = 1..4 on a GPU
    assert buckets[0] == warmup.Bucket("gla", "recurrent", "float16", 1, 16, 16)
    assert buckets[1] == warmup.Bucket("gla", "chunk", "float16", 1, 16, 16)
    assert {(b.K, b.V) for b in buckets} == {(k, v) for k in HEAD_DIMS for v in HEAD_DIMS}
    assert [b.dtype for b in buckets[:200]] == ["float16"] * 200  # the first dtype's buckets first
    assert [b.H for b in buckets[:50]] == [1] * 50  # then the fewest heads
    areas = [b.K * b.V for b in buckets[:50]]
    assert areas == sorted(areas)
    assert {b.H for b in warmup.run_buckets("gla", ["chunk"], ["float32"], small=True)} == {1, 2}
    assert warmup.run_buckets("gla", ["chunk"], ["float16"], small=False, limit=3) == buckets[1:6:2]


def test_a_preset_warms_its_head_dims_only():
    from fla_check.presets import get_preset

    p = get_preset("qwen3-next")
    buckets = warmup.run_buckets("gated_delta", ["chunk"], ["bfloat16"], small=False, preset="qwen3-next")
    assert {(b.K, b.V, b.value_ratio, b.options) for b in buckets} == {(p.K, p.V, p.value_ratio, p.kernel_options)}
    assert sorted(b.H for b in buckets) == sorted(h for _, h in p.heads())


def test_warming_runs_each_bucket_in_another_process_and_reports_failures(monkeypatch):
    monkeypatch.setenv(warmup.JOBS_ENV, "2")
    seen = []
    good = warmup.Bucket("gla", "recurrent", "float32", 1, 16, 16)
    bad = warmup.Bucket("gla", "nosuchmode", "float32", 1, 16, 16)
    result = warmup.warm([good, bad], "cpu", progress=lambda done, total, b: seen.append((done, total)))
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
    result = warmup.warm(buckets, "cpu", jobs=1, seconds=0.2)
    assert result.warmed == 0 and result.seconds < 2.0
    assert result.stopped == "after 0.2 s: 3 bucket(s) left to the search"
