"""Re-create the report JSON the golden tests render (run from the repository root, CPU, minutes).

    PYTHONPATH=. python3 tests/goldens/make_sources.py

run.json: a search over the test modes of tests/_fake_modes.py (clean, dropped, raises);
gate-rerun.json: the gate's re-run of run.json (same cases); the others come from the CLI.
Then regenerate the goldens: FLA_CHECK_UPDATE_GOLDENS=1 python3 -m pytest tests/commands/test_goldens.py
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CLI = [sys.executable, "-m", "fla_check.cli"]
COMMANDS = {
    "list.json": ["list", "--json"],
    "sweep.json": ["sweep-mask-values", "--op", "gla", "--modes", "recurrent,chunk", "--values=-20,-0.1max",
                   "--cases", "1", "--dtypes", "fp32", "--json"],
    "ut-transform.json": ["ut-transform", "--chunk-size", "16", "--examples", "2", "--dtypes", "fp32", "--json"],
    "selftest.json": ["selftest", "--mutants",
                      "gla.recurrent.gate-after-write,gla.recurrent.nondeterministic,gla.recurrent.int32-offset",
                      "--profile", "smoke", "--json"],
}


def main() -> None:
    from _fake_modes import registered

    from fla_check.commands.gate.engine import rerun
    from fla_check.engine.search import search
    from fla_check.report.storage import read_report, write_report

    with registered("gla"):
        run = search("gla", ["test:clean", "test:dropped", "test:raises"], examples=4, seed=2, max_seq_len=40,
                     dtypes=["fp32"], database_root=None)
        write_report(run.to_json(), HERE / "run.json")
        again = rerun(read_report(HERE / "run.json"), device="cpu", source="run.json")
        write_report(again.to_json(), HERE / "gate-rerun.json")
    for name, args in COMMANDS.items():
        out = subprocess.run(CLI + args + ["--device", "cpu"], capture_output=True, text=True)
        if out.returncode not in (0, 1):
            raise SystemExit(f"{name}: exit {out.returncode}: {out.stderr}")
        (HERE / name).write_text(out.stdout)


if __name__ == "__main__":
    main()
