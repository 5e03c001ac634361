"""Optional parts of fla-check: tests of them skip, with the install hint, where they are absent.

The README's two commands install fla-check alone (no fla-core, einops, matplotlib or
pytest-xdist); the whole suite must pass there. Presence is checked with ``find_spec``, without
importing: fla must be imported after fla-check's own set-up (the interpreter's autotune pin), and
a test may not depend on what importing another package does to the process.
"""
from __future__ import annotations

import importlib.util

import pytest

FLA_HINT = ("pip install 'fla-check[fla]' (fla-core and einops; on a CPU-only machine "
            "python3 -m pip install --no-deps fla-core==0.6.0 einops keeps the CPU torch)")
PLOT_HINT = "pip install 'fla-check[plot]' (matplotlib)"
XDIST_HINT = "pip install pytest-xdist"


def missing(*modules: str) -> list[str]:
    """The modules of `modules` that cannot be found (not imported)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def reason(modules: list[str], hint: str) -> str:
    return f"needs {' and '.join(modules)}: {hint}"


def require(*modules: str, hint: str) -> None:
    """Skip the calling test, with the install hint, unless every module of `modules` is there."""
    __tracebackhide__ = True  # the skip is reported at the calling test's line
    absent = missing(*modules)
    if absent:
        pytest.skip(reason(absent, hint))


def require_installed() -> None:
    """Skip the calling test unless fla-check is pip-installed: its entry points (the ``fla``
    provider's name) exist only then, not on a tree put on PYTHONPATH."""
    __tracebackhide__ = True
    from importlib.metadata import entry_points

    if not any(ep.name == "fla" for ep in entry_points(group="fla_check.providers")):
        pytest.skip("needs fla-check installed (its entry points): pip install -e .")


HAVE_FLA = not missing("fla", "einops")
needs_fla = pytest.mark.skipif(not HAVE_FLA, reason=reason(missing("fla", "einops"), FLA_HINT))
needs_matplotlib = pytest.mark.skipif(bool(missing("matplotlib")), reason=reason(["matplotlib"], PLOT_HINT))
needs_xdist = pytest.mark.skipif(bool(missing("xdist")), reason=reason(["pytest-xdist"], XDIST_HINT))
