"""fla-check: numerical-consistency harness for linear-attention Triton kernels.

The public API, loaded lazily (``import fla_check`` imports neither torch nor triton, so the
pytest plugin stays import-light)::

    from fla_check import CaseConfig, Verdict, check_case
    result = check_case("gla", ["recurrent", "chunk"], CaseConfig(op="gla", dtype="bf16", B=1, T=130,
                                                                  H=2, K=64, V=64, seed=0))

- :func:`check_cases` many cases, each judged as :func:`check_case` judges it, their references and
  baselines batched;
- :func:`check_case` one case through modes, judged against the float64 reference (the
  hypothesis search ``fla-check run`` drives is ``fla_check.engine.search.search``: the name ``search``
  stays the submodule's);
- :class:`CaseConfig`, :class:`CaseResult`, :class:`SearchResult`, :class:`Verdict`;
- :class:`ModeSpec` (a kernel mode, with its declared :class:`Arithmetic`), :class:`Provider`,
  :func:`get_op`, :func:`register_modes`: plug in your own kernels.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "check_case": "fla_check.engine.runner",
    "check_cases": "fla_check.engine.batched",
    "CaseResult": "fla_check.verdict.results",
    "SearchResult": "fla_check.verdict.results",
    "CaseConfig": "fla_check.cases",
    "Verdict": "fla_check.verdict.compare",
    "ModeSpec": "fla_check.ops",
    "get_op": "fla_check.ops",
    "register_modes": "fla_check.ops",
    "Provider": "fla_check.providers",
    "Arithmetic": "fla_check.verdict.arithmetic",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fla_check' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
