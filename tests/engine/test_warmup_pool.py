"""The warm-up's processes: prestarted and adopted once, discarded when not adopted, the compile
processes below the search's CPU priority and the planner not."""
import os

from fla_check.engine import warmup_pool


def test_a_prestarted_warmup_pool_is_taken_once_and_a_discarded_one_ends():
    # a pool another test's CLI run left pending in this worker (a usage error after the CLI prestarted it for
    # a GPU run: it waits for the next run or the exit) is not this test's; pytest-h200-15 met one on the H200
    warmup_pool.discard_prestarted_warmup()
    warmup_pool.prestart_warmup("cpu")
    pool = warmup_pool.take_prestarted_warmup("cpu")
    assert pool is not None and pool.device == "cpu" and warmup_pool.take_prestarted_warmup("cpu") is None
    pool.terminate()
    warmup_pool.prestart_warmup("cpu")
    processes = list(warmup_pool._WARMUP.pool._pool) + list(warmup_pool._WARMUP.planner._pool)
    warmup_pool.discard_prestarted_warmup()
    assert warmup_pool._WARMUP is None
    for p in processes:
        p.join(timeout=30)
    assert not any(p.is_alive() for p in processes)


def test_warmup_compile_processes_run_below_the_searchs_priority_and_the_planner_does_not():
    pool = warmup_pool.start_warmup_pool("cpu", 1)
    try:
        mine = os.nice(0)
        assert pool.pool.apply(os.nice, (0,)) == min(19, mine + warmup_pool.WARMUP_NICE)
        assert pool.planner.apply(os.nice, (0,)) == mine
    finally:
        pool.terminate()


def test_a_prestarted_pool_nobody_adopts_is_ended_at_exit(monkeypatch):
    """prestart_warmup registers its discard with atexit: a pool left pending is terminated by us
    at exit, not by multiprocessing's finalizer during interpreter shutdown."""
    import fla_check.engine.warmup_pool as wp

    class FakePool:
        device, ended = "cuda", 0

        def terminate(self):
            FakePool.ended += 1

    at_exit = []
    monkeypatch.setattr(wp, "_WARMUP", None)
    monkeypatch.setattr(wp, "start_warmup_pool", lambda device: FakePool())
    monkeypatch.setattr(wp.atexit, "register", at_exit.append)
    wp.prestart_warmup("cuda")
    assert at_exit == [wp.discard_prestarted_warmup] and FakePool.ended == 0
    at_exit[0]()
    assert FakePool.ended == 1 and wp._WARMUP is None
    at_exit[0]()  # adopted or discarded already: nothing left to end
    assert FakePool.ended == 1
