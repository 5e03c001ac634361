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


def test_the_cli_prestarts_a_cuda_worker_only_for_an_isolated_gpu_run(monkeypatch):
    from fla_check import cli
    from fla_check.engine import prestart

    started = []
    monkeypatch.setattr(prestart, "prestart", started.append)
    monkeypatch.delenv("FLA_CHECK_DEVICE", raising=False)
    cli._prestart_worker("process", "cuda")
    cli._prestart_worker("none", "cuda")
    cli._prestart_worker("process", "cpu")
    monkeypatch.setenv("FLA_CHECK_DEVICE", "cpu")
    cli._prestart_worker("process", None)
    assert started == ["cuda"]
