"""Suite-wide settings.

- Runs under test never skip a warm-up because an earlier run (of this suite, on this machine's Triton
  cache) recorded its plan as compiled (fla_check.engine.warm_ledger); the ledger's own tests turn it
  back on.
- BLAS runs its AVX2 kernels on any x86 CPU that has AVX2 (numpy's OpenBLAS: ``OPENBLAS_CORETYPE``; torch's
  MKL: ``MKL_CBWR``): the interpreter's fp32 ``tl.dot`` is a numpy matmul and the example provider's fp32
  loop a torch einsum, and AVX-512 kernels sum in another order. That moves an fp32 output by an ulp, its
  recorded error numbers by up to 90 % (tests/goldens/judge_cases.json) and the example kernel's error
  below the gate's floor (tests/commands/test_gate.py): a Sapphire Rapids machine failed both with its own
  kernels and passed them with these. Set before either library initialises; xdist workers and CLI
  subprocesses inherit it.
- The whole suite (``python3 -m pytest``, no test paths named) runs on every core the process may use
  when pytest-xdist is installed; a named selection, ``-n``, ``-p no:xdist`` or
  ``FLA_CHECK_TEST_WORKERS=1`` keep one process (tests/suite_workers.py).
"""
from __future__ import annotations

import os
import sys

import pytest
from suite_workers import suite_workers

os.environ.setdefault("FLA_CHECK_WARM_LEDGER", "off")


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2" in f.read()
    except OSError:
        return False


if _has_avx2():
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
    os.environ.setdefault("MKL_CBWR", "AVX2")
    if "numpy" in sys.modules:  # loaded before this file (by a plugin): OpenBLAS has picked its kernels already
        import warnings

        warnings.warn("numpy was imported before tests/conftest.py: OPENBLAS_CORETYPE did not apply", stacklevel=1)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config):
    """Set ``-n`` before xdist turns it into its distribution options."""
    workers = suite_workers(config)
    if workers:
        config.option.numprocesses = workers
    return (yield)
