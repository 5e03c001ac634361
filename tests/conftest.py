"""Suite-wide settings.

- Runs under test never skip a warm-up because an earlier run (of this suite, on this machine's Triton
  cache) recorded its plan as compiled (fla_check.engine.warm_ledger); the ledger's own tests turn it
  back on.
- The whole suite (``python3 -m pytest``, no test paths named) runs on every core the process may use
  when pytest-xdist is installed; a named selection, ``-n``, ``-p no:xdist`` or
  ``FLA_CHECK_TEST_WORKERS=1`` keep one process.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("FLA_CHECK_WARM_LEDGER", "off")

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


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config):
    """Set ``-n`` before xdist turns it into its distribution options."""
    workers = suite_workers(config)
    if workers:
        config.option.numprocesses = workers
    return (yield)
