"""fla_check.engine.host_threads: one CPU thread for torch in fla-check's GPU processes, inherited by the
processes they start; a user's own OMP_NUM_THREADS wins. The CLI sets it once the device is CUDA."""
import os
import subprocess
import sys

import pytest
import torch

from fla_check import cli
from fla_check.engine.host_threads import ENV, one_host_thread


@pytest.fixture
def threads_back(monkeypatch):
    monkeypatch.setenv(ENV, "-")  # recorded as it was (set or not) and put back after the test
    monkeypatch.delenv(ENV)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_one_thread_for_this_process_and_the_processes_it_starts(threads_back):
    assert one_host_thread() == 1
    assert os.environ[ENV] == "1" and torch.get_num_threads() == 1
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "1"


@pytest.mark.parametrize("value, threads", [("3", 3), ("zero", 1)])
def test_a_users_count_is_kept(threads_back, monkeypatch, value, threads):
    monkeypatch.setenv(ENV, value)
    assert one_host_thread() == threads
    assert os.environ[ENV] == value and torch.get_num_threads() == threads


@pytest.mark.parametrize("selected, pinned", [("cuda", True), ("cpu", False)])
def test_the_cli_pins_the_threads_on_a_gpu_only(threads_back, monkeypatch, selected, pinned):
    monkeypatch.setattr("fla_check.backend.select_backend", lambda device: selected)
    torch.set_num_threads(2)
    assert cli._select_device(None) == selected
    assert (os.environ.get(ENV) == "1") is pinned
    assert torch.get_num_threads() == (1 if pinned else 2)
