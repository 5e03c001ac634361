"""Shared fixtures of the verdict tests."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-tensor torch controls (a second intra-op thread costs
    several times the CPU on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def per_case():
    """Split samples of several cases, case-major on the leading dimension (baselines.emulated_batch),
    into each case's."""
    return lambda stacked, n: [dict(zip(stacked, part)) for part in zip(*(x.chunk(n) for x in stacked.values()))]
