"""The isolation worker spawned before the parent imports torch: adopted on first use, and
spawned by the CLI only for an isolated GPU run."""

def test_a_prestarted_worker_is_adopted_on_first_use_and_serves():
    from fla_check.engine import isolation, prestart

    prestart.prestart("cpu")
    proc = prestart._PRESTARTED["cpu"][0]
    w = isolation.Worker("cpu")
    try:
        w.start()
        assert w.proc is proc and w.alive and w.starts == 1
        assert prestart.take_prestarted("cpu") is None  # adopted once
    finally:
        w.stop()
    assert not proc.is_alive()


def test_the_cli_prestarts_a_cuda_worker_only_for_an_isolated_gpu_run(monkeypatch, tmp_path):
    from fla_check import cli
    from fla_check.engine import prestart

    started = []
    monkeypatch.setattr(prestart, "prestart", started.append)
    monkeypatch.setattr(prestart, "prestart_warmup", lambda device: None)
    monkeypatch.delenv("FLA_CHECK_DEVICE", raising=False)
    cli._prestart("process", "cuda", "off")
    cli._prestart("none", "cuda", "off")
    cli._prestart("process", "cpu", "off")
    monkeypatch.setenv("FLA_CHECK_DEVICE", "cpu")
    cli._prestart("process", None, "off")
    assert started == ["cuda"]


def test_the_cli_prestarts_the_warmup_for_a_background_gpu_run_without_a_ledger(monkeypatch, tmp_path):
    from fla_check import cli
    from fla_check.engine import prestart, warm_ledger

    started = []
    monkeypatch.setattr(prestart, "prestart", lambda device: None)
    monkeypatch.setattr(prestart, "prestart_warmup", started.append)
    monkeypatch.delenv("FLA_CHECK_DEVICE", raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(warm_ledger.LEDGER_ENV, "on")
    for warmup in ("auto", "background", "on", "off"):
        cli._prestart("none", "cuda", warmup)
    cli._prestart("process", "cpu", "auto")
    assert started == ["cuda", "cuda"]
    (tmp_path / warm_ledger.LEDGER_NAME).write_text("{}")  # the run may skip its warm-up: it decides
    cli._prestart("process", "cuda", "auto")
    assert started == ["cuda", "cuda"]


def test_a_prestarted_warmup_pool_is_taken_once_and_a_discarded_one_ends():
    from fla_check.engine import prestart

    prestart.prestart_warmup("cpu")
    pool = prestart.take_prestarted_warmup("cpu")
    assert pool is not None and pool.device == "cpu" and prestart.take_prestarted_warmup("cpu") is None
    pool.terminate()
    prestart.prestart_warmup("cpu")
    processes = list(prestart._WARMUP.pool._pool) + list(prestart._WARMUP.planner._pool)
    prestart.discard_prestarted_warmup()
    assert prestart._WARMUP is None
    for p in processes:
        p.join(timeout=30)
    assert not any(p.is_alive() for p in processes)


def test_warmup_compile_processes_run_below_the_searchs_priority_and_the_planner_does_not():
    import os

    from fla_check.engine import prestart

    pool = prestart.start_warmup_pool("cpu", 1)
    try:
        mine = os.nice(0)
        assert pool.pool.apply(os.nice, (0,)) == min(19, mine + prestart.WARMUP_NICE)
        assert pool.planner.apply(os.nice, (0,)) == mine
    finally:
        pool.terminate()
