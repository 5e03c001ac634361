"""tests/suite_workers.py, the conftest's xdist worker count: the whole suite spreads over the usable
cores; a named selection, an explicit ``-n``, a worker process or a missing xdist keep one process."""
from types import SimpleNamespace

import pytest
from suite_workers import WORKERS_ENV, suite_workers


class _Config:
    def __init__(self, *, xdist=True, numprocesses=None, source=pytest.Config.ArgsSource.TESTPATHS,
                 collectonly=False):
        self.pluginmanager = SimpleNamespace(has_plugin=lambda name: xdist and name == "xdist")
        self.args_source = source
        self._options = {"numprocesses": numprocesses, "collectonly": collectonly, "usepdb": False}

    def getoption(self, name, default=None):
        return self._options.get(name, default)


@pytest.fixture(autouse=True)
def _no_worker_env(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})


def test_the_whole_suite_gets_one_worker_per_usable_core():
    assert suite_workers(_Config()) == 3


@pytest.mark.parametrize("config", [
    _Config(xdist=False), _Config(numprocesses=0), _Config(numprocesses=4),
    _Config(source=pytest.Config.ArgsSource.ARGS), _Config(collectonly=True)])
def test_a_selection_an_explicit_n_or_no_xdist_keep_one_process(config):
    assert suite_workers(config) == 0


def test_the_environment_sets_the_count_and_one_means_no_workers(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "5")
    assert suite_workers(_Config()) == 5
    monkeypatch.setenv(WORKERS_ENV, "1")
    assert suite_workers(_Config()) == 0
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv(WORKERS_ENV, "5")
    assert suite_workers(_Config()) == 0


def test_a_bad_count_is_a_usage_error(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "two")
    with pytest.raises(pytest.UsageError, match="whole number"):
        suite_workers(_Config())
