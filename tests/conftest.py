"""Suite-wide settings.

- Runs under test never skip a warm-up because an earlier run (of this suite, on this machine's Triton
  cache) recorded its plan as compiled (fla_check.engine.warm_ledger); the ledger's own tests turn it
  back on.
- The whole suite (``python3 -m pytest``, no test paths named) runs on every core the process may use
  when pytest-xdist is installed; a named selection, ``-n``, ``-p no:xdist`` or
  ``FLA_CHECK_TEST_WORKERS=1`` keep one process (tests/suite_workers.py).
"""
from __future__ import annotations

import os

import pytest
from suite_workers import suite_workers

os.environ.setdefault("FLA_CHECK_WARM_LEDGER", "off")


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config):
    """Set ``-n`` before xdist turns it into its distribution options."""
    workers = suite_workers(config)
    if workers:
        config.option.numprocesses = workers
    return (yield)
