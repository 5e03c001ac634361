"""Pinning triton.autotune to its first config so autotuned kernels run in the interpreter."""
import pytest
import torch

import fla_check.kernels  # noqa: F401 - selects the backend (TRITON_INTERPRET=1 without CUDA)
from fla_check.backend import get_backend
from fla_check.providers import interpreter_shims as shims

import triton  # noqa: E402 - after the backend selection
import triton.language as tl  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402

DEVICE = get_backend().device


def _prune_16(configs, named_args, **kwargs):
    return [c for c in configs if c.kwargs["BLOCK"] != 16]


def _make_kernel(prune=None):
    """A fresh autotuned copy kernel (fresh autotuner cache per test)."""
    configs = [triton.Config({"BLOCK": b}) for b in (16, 32, 64)]
    prune_by = {"early_config_prune": prune} if prune else None

    @triton.autotune(configs=configs, key=["n"], prune_configs_by=prune_by)
    @triton.jit
    def copy(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)

    return copy


def _launch(kernel):
    x = torch.arange(40, dtype=torch.float32, device=DEVICE)
    y = torch.zeros_like(x)
    kernel[lambda meta: (triton.cdiv(40, meta["BLOCK"]),)](x, y, 40)
    return x, y


@pytest.fixture(autouse=True)
def _restore():
    was = shims.is_pinned()
    yield
    shims.pin_autotune() if was else shims.unpin_autotune()  # leave the process as found


def test_pin_runs_the_first_config_and_unpin_restores():
    shims.unpin_autotune()
    original = Autotuner.prune_configs
    assert shims.pin_autotune() is True and shims.pin_autotune() is False
    kernel = _make_kernel()
    x, y = _launch(kernel)
    assert torch.equal(x, y) and kernel.best_config.kwargs == {"BLOCK": 16}
    shims.unpin_autotune()
    assert Autotuner.prune_configs is original and not shims.is_pinned()


def test_a_config_cached_before_the_pin_is_not_used_under_it():
    """A config picked while unpinned (here: planted in the autotuner's cache) stays cached; the
    pinned call must still run the first config (it leaked into later checks before)."""
    shims.unpin_autotune()
    kernel = _make_kernel()
    kernel.cache[(40, "torch.float32", "torch.float32")] = kernel.configs[2]
    with shims.pinned_autotune():
        x, y = _launch(kernel)
    assert torch.equal(x, y) and kernel.best_config.kwargs == {"BLOCK": 16}


def test_pin_keeps_the_kernels_own_pruning():
    shims.unpin_autotune()
    with shims.pinned_autotune():
        kernel = _make_kernel(_prune_16)
        x, y = _launch(kernel)
    assert torch.equal(x, y) and kernel.best_config.kwargs == {"BLOCK": 32}
    assert not shims.is_pinned()


def test_scoped_pin_leaves_an_outer_pin():
    shims.pin_autotune()
    with shims.pinned_autotune():
        pass
    assert shims.is_pinned()


def test_a_process_wide_pin_made_inside_a_scope_outlives_it():
    """The fla provider pins once per process; if its first call happens inside a runner's scoped
    pin, the scope's exit must not take the pin away (fla's later calls ran unpinned before)."""
    shims.unpin_autotune()
    with shims.pinned_autotune():
        assert shims.pin_autotune(process_wide=True) is False
    assert shims.is_pinned()
    with shims.unpinned_autotune():
        assert not shims.is_pinned()
    with shims.pinned_autotune():
        pass
    assert shims.is_pinned()
    shims.unpin_autotune()
    with shims.pinned_autotune():
        pass
    assert not shims.is_pinned()


@pytest.mark.skipif(not get_backend().interpreter, reason="only the interpreter lacks a benchmarker")
def test_unpinned_autotune_fails_in_the_interpreter():
    shims.unpin_autotune()
    with pytest.raises(RuntimeError, match="active drivers"):
        _launch(_make_kernel())


def _too_large_at(kernel, block, monkeypatch):
    """Make `kernel`'s config BLOCK=`block` fail as a config too large for the GPU does."""
    from triton.runtime.errors import OutOfResources

    real = kernel.fn.run

    def run(*args, **kwargs):
        if kwargs.get("BLOCK") == block:
            raise OutOfResources(255500, 232448, "shared memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel.fn, "run", run)


def test_a_pinned_config_too_large_for_the_gpu_is_passed_over(monkeypatch):
    """fla's first config of a kernel may not fit a smaller GPU's shared memory; the autotuner
    would skip it, so the pin takes the next surviving config instead of failing the mode."""
    from triton.runtime.errors import OutOfResources

    shims.unpin_autotune()
    kernel = _make_kernel()
    _too_large_at(kernel, 16, monkeypatch)
    with shims.pinned_autotune():
        x, y = _launch(kernel)
        assert torch.equal(x, y) and kernel.best_config.kwargs == {"BLOCK": 32}
        x, y = _launch(kernel)  # remembered: no second failure needed
        assert torch.equal(x, y) and kernel.best_config.kwargs == {"BLOCK": 32}
    kernel.configs = [kernel.configs[0]]  # one config left (a forced --config): its failure is the answer
    with shims.pinned_autotune(), pytest.raises(OutOfResources):
        _launch(kernel)
