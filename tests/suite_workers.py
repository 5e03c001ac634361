"""How many pytest-xdist workers a run of fla-check's own suite gets (tests/conftest.py)."""
from __future__ import annotations

import os

import pytest

WORKERS_ENV = "FLA_CHECK_TEST_WORKERS"


def suite_workers(config: pytest.Config) -> int:
    """How many xdist workers a run of this suite gets: 0 (no xdist) unless the whole suite runs
    with xdist loaded and ``-n`` unset; then ``FLA_CHECK_TEST_WORKERS`` or the usable cores."""
    if not config.pluginmanager.has_plugin("xdist") or config.getoption("numprocesses", None) is not None:
        return 0
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS or os.environ.get("PYTEST_XDIST_WORKER"):
        return 0
    if config.getoption("collectonly") or config.getoption("usepdb", False):
        return 0
    requested = os.environ.get(WORKERS_ENV, "").strip()
    if requested:
        try:
            workers = int(requested)
        except ValueError:
            raise pytest.UsageError(f"{WORKERS_ENV}={requested!r}: expected a whole number of workers") from None
    else:
        workers = len(os.sched_getaffinity(0))
    return workers if workers > 1 else 0
