"""Shards of the example budget and the GPU of each pytest-xdist worker (pure functions)."""
from __future__ import annotations

import pytest

from fla_check.engine import sharding
from fla_check.engine.sharding import (Shard, ShardError, gpu_for_index, gpu_for_worker, parse_shard, pin_worker_gpu,
                                      run_budget)


def test_parse_shard_and_errors():
    assert parse_shard("2/4") == Shard(2, 4)
    assert parse_shard(" 1 / 1 ") == Shard(1, 1)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0", "-1/2", ""):
        with pytest.raises(ShardError):
            parse_shard(bad)


@pytest.mark.parametrize("total,n", [(30, 4), (3, 4), (0, 2), (7, 1), (500, 8)])
def test_budget_shares_add_up_and_differ_by_at_most_one(total, n):
    shares = [Shard(i, n).budget(total) for i in range(1, n + 1)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def test_seeds_distinct_per_shard_deterministic_and_random_stays_random():
    seeds = {Shard(i, 4).seed(None, derandomize=True) for i in range(1, 5)}
    assert len(seeds) == 4 and None not in seeds
    assert Shard(2, 4).seed(None, derandomize=True) == Shard(2, 4).seed(None, derandomize=True)
    assert Shard(2, 4).seed(7, derandomize=False) != Shard(2, 4).seed(8, derandomize=False)
    assert Shard(2, 4).seed(None, derandomize=False) is None  # nightly: random per shard
    assert Shard(1, 1).seed(5, derandomize=True) == 5  # a whole run is untouched


@pytest.mark.parametrize("size,n", [(10, 3), (2, 4), (0, 2), (7, 1), (64, 8)])
def test_pick_partitions_items_balanced_by_count_and_keeps_their_order(size, n):
    items = [f"e{(i * 7) % size:03d}" for i in range(size)]  # not in key order
    shards = [Shard(i, n).pick(items, key=str) for i in range(1, n + 1)]
    assert sorted(x for s in shards for x in s) == sorted(items)  # disjoint, union = all
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    for share in shards:
        assert share == [x for x in items if x in share]  # the given order


def test_pick_is_a_function_of_the_keys_not_of_their_order():
    items = ["b", "a", "d", "c", "e"]
    assert Shard(1, 2).pick(items, key=str) == ["a", "c", "e"] and Shard(2, 2).pick(items, key=str) == ["b", "d"]
    assert Shard(1, 2).pick(list(reversed(items)), key=str) == ["e", "c", "a"]


def test_gpu_for_index_round_robin_and_none_below_two_gpus():
    assert [gpu_for_index(w, ["0", "1", "3"]) for w in range(5)] == ["0", "1", "3", "0", "1"]
    assert gpu_for_index(4, ["0"]) is None and gpu_for_index(0, []) is None


def test_run_budget():
    assert run_budget(30, None, None, True, None) == (30, None)
    assert run_budget(30, 10, 3, True, Shard(1, 1)) == (10, 3)
    examples, seed = run_budget(30, None, None, True, Shard(2, 3))
    assert examples == 10 and seed == Shard(2, 3).seed(None, derandomize=True)


def test_split_composes_with_the_ci_shard():
    assert Shard(1, 1).split(2, 4) == Shard(2, 4)
    assert Shard(2, 3).split(1, 2) == Shard(3, 6)
    assert Shard(3, 3).split(2, 2) == Shard(6, 6)
    parts = {Shard(i, 3).split(j, 2) for i in range(1, 4) for j in range(1, 3)}
    assert parts == {Shard(k, 6) for k in range(1, 7)}


def test_gpu_for_worker():
    gpus = ["0", "1", "2", "3"]
    assert gpu_for_worker("gw0", gpus) == "0"
    assert gpu_for_worker("gw3", gpus) == "3"
    assert gpu_for_worker("gw5", gpus) == "1"  # more workers than GPUs: round-robin
    assert gpu_for_worker("master", gpus) is None
    assert gpu_for_worker(None, gpus) is None
    assert gpu_for_worker("gw1", ["0"]) is None  # one GPU: nothing to choose


def test_pin_worker_gpu_respects_visible_devices_and_off(monkeypatch):
    monkeypatch.setattr(sharding, "query_gpus", lambda timeout=20.0: ["0", "1"])
    env = {"PYTEST_XDIST_WORKER": "gw1", "CUDA_VISIBLE_DEVICES": "4,6,7"}
    assert pin_worker_gpu(env) == "6" and env["CUDA_VISIBLE_DEVICES"] == "6"
    env = {"PYTEST_XDIST_WORKER": "gw1"}
    assert pin_worker_gpu(env) == "1" and env["CUDA_VISIBLE_DEVICES"] == "1"  # from nvidia-smi
    env = {"PYTEST_XDIST_WORKER": "gw1"}
    assert pin_worker_gpu(env, "off") is None and "CUDA_VISIBLE_DEVICES" not in env
    env = {"PYTEST_XDIST_WORKER": "gw2"}
    assert pin_worker_gpu(env, "3, 5") == "3"
    env = {}
    assert pin_worker_gpu(env, "0,1") is None and env == {}  # not an xdist worker


def test_query_gpus_without_nvidia_smi(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert sharding.query_gpus() == []


def test_run_shard_option(tmp_path):
    """`fla-check run --shard i/n`: the shard's share of the budget, its own seed, recorded."""
    import json

    from _fake_modes import registered
    from click.testing import CliRunner
    from device import DEVICE

    from fla_check.cli import main

    args = ["run", "--op", "gla", "--modes", "test:clean", "--examples", "5", "--profile", "smoke",
            "--dtypes", "fp32", "--max-seq-len", "12", "--device", DEVICE, "--json"]
    runs = {}
    with registered("gla"):
        for shard in ("1/2", "2/2"):
            res = CliRunner().invoke(main, args + ["--shard", shard, "--report", str(tmp_path / "r.json")])
            assert res.exit_code == 0, res.output
            runs[shard] = json.loads(res.output)
        bad = CliRunner().invoke(main, args + ["--shard", "0/2"])
    assert bad.exit_code == 2 and "--shard" in bad.output
    assert [len(runs[s]["cases"]) for s in ("1/2", "2/2")] == [3, 2]
    assert {runs[s]["options"]["shard"] for s in runs} == {"1/2", "2/2"}
    assert runs["1/2"]["options"]["seed"] == Shard(1, 2).seed(None, derandomize=True)
    first = {json.dumps(c["config"], sort_keys=True) for c in runs["1/2"]["cases"]}
    second = {json.dumps(c["config"], sort_keys=True) for c in runs["2/2"]["cases"]}
    assert len(first & second) <= 1  # both start with hypothesis' simplest case
