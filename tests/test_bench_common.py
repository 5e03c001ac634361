"""bench/_common.py's record of which code ran: the commit (flagged when the tree differs) and a digest of
fla_check's sources."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import _common  # noqa: E402  (bench/ is a scripts folder, not a package)


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "sub" / "mod.py").write_text("def f():\n    return 2\n")
    (pkg / "data.json").write_text("{}")
    return pkg


def test_the_digest_follows_the_sources_and_nothing_else(tmp_path):
    pkg = _package(tmp_path)
    first = _common.source_digest(pkg)
    assert len(first) == 12 and first == _common.source_digest(shutil.copytree(pkg, tmp_path / "copy"))
    (pkg / "data.json").write_text('{"a": 1}')  # not a source
    assert _common.source_digest(pkg) == first
    (pkg / "sub" / "mod.py").write_text("def f():\n    return 3\n")  # one character of one source
    assert _common.source_digest(pkg) != first
    (pkg / "sub" / "mod.py").write_text("def f():\n    return 2\n")
    (pkg / "sub" / "mod.py").rename(pkg / "mod.py")  # the same bytes elsewhere
    assert _common.source_digest(pkg) != first


def test_the_environment_records_the_imported_fla_check():
    import fla_check

    env = _common.environment()
    assert env["fla_check"] == _common.source_digest(Path(fla_check.__file__).parent)


def test_the_command_line_prints_the_digest_and_refuses_other_arguments(tmp_path):
    pkg = _package(tmp_path)
    script = str(ROOT / "bench" / "_common.py")
    res = subprocess.run([sys.executable, script, "--digest", str(pkg)], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == _common.source_digest(pkg)
    res = subprocess.run([sys.executable, script, "--digets"], capture_output=True, text=True)
    assert res.returncode == 2 and "usage" in res.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_commit_is_flagged_when_tracked_files_differ_from_it(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    assert _common.git_commit(tmp_path) is None  # not a repository
    git("init", "-q")
    (tmp_path / "a.py").write_text("1\n")
    git("add", "a.py")
    git("commit", "-qm", "one")
    head = git("rev-parse", "--short", "HEAD")
    assert _common.git_commit(tmp_path) == head
    (tmp_path / "untracked.py").write_text("")  # untracked files do not count
    assert _common.git_commit(tmp_path) == head
    (tmp_path / "a.py").write_text("2\n")
    assert _common.git_commit(tmp_path) == head + "+changes"


def test_a_table_without_rows_says_so_instead_of_printing_a_bare_header():
    empty = _common.Table("T", "cmd", ["a", "b"]).markdown()
    assert "No rows" in empty and "| a | b |" not in empty
    full = _common.Table("T", "cmd", ["a", "b"], rows=[[1, 2]]).markdown()
    assert "| a | b |" in full and "| 1 | 2 |" in full and "No rows" not in full
