"""Report files: atomic writes, reads, and the report schema version.

Every report fla-check writes (run, gate re-run, sweep, ut-transform, selftest, the pytest
plugin's) carries ``"schema_version": SCHEMA_VERSION``. A reader (``replay``, ``gate``,
``compare``) refuses a report of another version with a usage error naming both versions.
Reports written before the field existed have no ``schema_version``; their layout is version 1,
so an absent field reads as 1.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from fla_check import __version__
from fla_check.engine.profiles import REPORTS_DIR
from fla_check.errors import ReportError

SCHEMA_VERSION = 1
SCHEMA_KEY = "schema_version"
UNVERSIONED = 1  # the schema of reports that predate the field

if TYPE_CHECKING:
    from fla_check.verdict.results import SearchResult


def default_report_path(op: str, kind: str = "run", root: Path = REPORTS_DIR) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return root / f"{kind}-{op}-{stamp}-{os.getpid()}.json"


def atomic_write(path: Path, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Call write(tmp) on a temporary file in path's folder, then os.replace it onto `path`.

    The folder is created; on any error the temporary file is removed and the error re-raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def stamped(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with the schema version as its first key (what every report file and --json print carry)."""
    return {SCHEMA_KEY: SCHEMA_VERSION, **{k: v for k, v in data.items() if k != SCHEMA_KEY}}


def dumps(data: dict[str, Any]) -> str:
    """One-line JSON of a stamped report (``--json`` on stdout)."""
    return json.dumps(stamped(data), allow_nan=False)


def write_report(data: dict[str, Any], path: Path) -> Path:
    """Write `data`, stamped with the schema version, as JSON atomically (a temporary file in the
    same folder, then os.replace)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(stamped(data), f, indent=1, allow_nan=False)
            f.write("\n")

    return atomic_write(path, write)


class Checkpoints:
    """Writes a run's partial report (``search(checkpoint=...)``) to `path` as the run goes, at
    most every `every` seconds, with `extra` options merged in; each write is atomic, so the
    file is always a complete report of the cases finished so far."""

    def __init__(self, path: Path, extra: Optional[dict[str, Any]] = None, every: float = 2.0):
        self.path, self.extra, self.every = Path(path), dict(extra or {}), every
        self.last = -math.inf
        self.written = 0  # cases in the last checkpoint

    def __call__(self, partial: "SearchResult") -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        partial.options.update(self.extra)
        write_report(partial.to_json(), self.path)
        self.last, self.written = now, len(partial.cases)


def read_report(path: Path) -> dict[str, Any]:
    """A report file as a dict; raises :class:`ReportError` when it cannot be read, is not a JSON
    object, or has a schema version other than :data:`SCHEMA_VERSION` (absent reads as 1)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read report {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} is not a fla-check report (not a JSON object)")
    version = data.get(SCHEMA_KEY, UNVERSIONED)
    if version != SCHEMA_VERSION:
        raise ReportError(f"{path} has report schema version {version!r}; this fla-check ({__version__}) reads "
                          f"schema version {SCHEMA_VERSION} only (re-create the report with this version)")
    return data


def read_run_report(path: Path) -> dict[str, Any]:
    """:func:`read_report` of a run report (``fla-check run``, a gate re-run, the pytest plugin's)."""
    data = read_report(path)
    if "op" not in data or "cases" not in data:
        raise ReportError(f"{path} is not a fla-check run report")
    return data
