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
    from fla_check.engine import prestart, warmup_pool

    started = []
    monkeypatch.setattr(prestart, "prestart", started.append)
    monkeypatch.setattr(warmup_pool, "prestart_warmup", lambda device: None)
    monkeypatch.delenv("FLA_CHECK_DEVICE", raising=False)
    cli._prestart("process", "cuda", "off")
    cli._prestart("none", "cuda", "off")
    cli._prestart("process", "cpu", "off")
    monkeypatch.setenv("FLA_CHECK_DEVICE", "cpu")
    cli._prestart("process", None, "off")
    assert started == ["cuda"]


def test_the_cli_prestarts_the_warmup_for_a_background_gpu_run_without_a_ledger(monkeypatch, tmp_path):
    from fla_check import cli
    from fla_check.engine import prestart, warm_ledger, warmup_pool

    started = []
    monkeypatch.setattr(prestart, "prestart", lambda device: None)
    monkeypatch.setattr(warmup_pool, "prestart_warmup", started.append)
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
