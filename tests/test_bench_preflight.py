"""bench/_preflight.sh: a device call stops before any GPU work when the selftest mutant catalog is stale."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = "fla_check/kernels/gla/recurrent.py"  # holds gla.recurrent.nondeterministic's launch (perf-h200-61)


def _preflight(tree: Path, **env: str) -> subprocess.CompletedProcess:
    """`preflight` sourced from bench/ with `tree`'s fla_check first on the path; then a marker of "went on"."""
    script = f". {ROOT / 'bench' / '_preflight.sh'} && preflight && echo WENT-ON"
    environ = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-c", script], cwd=tree, env=environ, capture_output=True, text=True, timeout=120)


def _tree(tmp_path: Path, edit: bool) -> Path:
    shutil.copytree(ROOT / "fla_check", tmp_path / "fla_check", ignore=shutil.ignore_patterns("__pycache__"))
    if edit:  # what perf-h200-61's goals3 tree did: one more keyword at the forward kernel's launch
        path = tmp_path / TARGET
        text = path.read_text()
        old = "STATE_V_FIRST=state_v_first,\n        )\n    return o, ht"
        assert text.count(old) == 1
        path.write_text(text.replace(old, "STATE_V_FIRST=state_v_first,\n            num_warps=4,\n        )\n"
                                          "    return o, ht"))
    return tmp_path


def test_a_reviewed_catalog_goes_on(tmp_path):
    res = _preflight(_tree(tmp_path, edit=False))
    assert res.returncode == 0 and "WENT-ON" in res.stdout, res.stdout + res.stderr


def test_an_edited_mutant_target_stops_the_call_and_names_the_mutant(tmp_path):
    res = _preflight(_tree(tmp_path, edit=True))
    assert res.returncode == 2 and "WENT-ON" not in res.stdout, res.stdout + res.stderr
    assert "gla_recurrent_fwd: " in res.stdout and "gla.recurrent.nondeterministic" in res.stdout
    assert "preflight: stopped before any GPU work" in res.stdout


def test_preflight_0_runs_an_edited_tree_anyway(tmp_path):
    res = _preflight(_tree(tmp_path, edit=True), PREFLIGHT="0")
    assert res.returncode == 0 and "WENT-ON" in res.stdout, res.stdout + res.stderr
