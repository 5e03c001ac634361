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

