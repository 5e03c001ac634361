"""A worker's log: both streams land in the file, and truncation keeps only what follows."""
import subprocess
import sys
import textwrap


def test_redirect_then_truncate_keeps_only_the_current_task(tmp_path):
    log = tmp_path / "worker.log"
    code = textwrap.dedent(f"""
        import os, sys
        from fla_check.engine.worker_process import redirect_output, truncate_log
        redirect_output({str(log)!r})
        print("task 1 out"); print("task 1 err", file=sys.stderr)
        truncate_log()
        print("task 2 out"); os.write(2, b"task 2 raw err\\n")
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert sorted(log.read_text().splitlines()) == ["task 2 out", "task 2 raw err"]


def test_a_prestarted_worker_is_adopted_on_first_use_and_serves():
    from fla_check.engine import isolation, worker_process

    worker_process.prestart("cpu")
    proc = worker_process._PRESTARTED["cpu"][0]
    w = isolation.Worker("cpu")
    try:
        w.start()
        assert w.proc is proc and w.alive and w.starts == 1
        assert worker_process.take_prestarted("cpu") is None  # adopted once
    finally:
        w.stop()
    assert not proc.is_alive()


def test_the_cli_prestarts_a_cuda_worker_only_for_an_isolated_gpu_run(monkeypatch):
    from fla_check import cli
    from fla_check.engine import worker_process

    started = []
    monkeypatch.setattr(worker_process, "prestart", started.append)
    monkeypatch.delenv("FLA_CHECK_DEVICE", raising=False)
    cli._prestart_worker("process", "cuda")
    cli._prestart_worker("none", "cuda")
    cli._prestart_worker("process", "cpu")
    monkeypatch.setenv("FLA_CHECK_DEVICE", "cpu")
    cli._prestart_worker("process", None)
    assert started == ["cuda"]
