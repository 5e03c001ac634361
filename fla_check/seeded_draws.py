"""Keep a seeded search's draws a function of its seed and options only.

Recent hypothesis releases (6.155 here) draw about one number in twenty from the integer and float
constants of the *local* modules in ``sys.modules``: every module outside site-packages and the
standard library, tests excepted. For fla-check that is fla-check itself in an editable install, and
a kernel repository's own provider and kernels. A seeded search then draws different cases when:
- an unrelated module is imported;
- a kernel author edits a constant;
- the same command runs from a wheel instead of a checkout.

Measured: importing a module of eleven integers changed 16 of the 30 planned ci cases of gla, seed 0,
from the 4th on; ``tests/test_seeded_draws.py`` checks the same with a module of its own. A gate
whose PR run draws other cases than main's, because the PR touched a kernel, could miss the failing
case without a word.

:func:`only_seeded_draws` switches the local constants off around every seeded draw of fla-check
(the search, its covering phase, the UT check's cases). Hypothesis still draws its own built-in
constants (0, 1, powers of two, ...). On a hypothesis without the mechanism it does nothing.
"""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def only_seeded_draws() -> Iterator[None]:
    """Within: hypothesis draws no constants from local modules (restored after)."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # a hypothesis before local constants
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    if original is None:
        yield
        return
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", {})  # allowed constants per draw kind
    providers._get_local_constants = Constants  # an empty pool
    cache.clear()  # computed with the local pool before
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.clear()  # computed with the empty pool
