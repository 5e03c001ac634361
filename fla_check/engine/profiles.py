"""Run profiles: smoke / ci / nightly budgets and their hypothesis settings.

=======  ========  ===========  ========  =============  ========  ==============================
profile  examples  derandomize  database  extreme fills  covering  shrink budget (new cases/mode)
=======  ========  ===========  ========  =============  ========  ==============================
smoke    8         yes          none      no             no        15
ci       30        yes          none      no             yes       40  (default of ``fla-check run``)
nightly  500       no           reports/  yes            yes       400
=======  ========  ===========  ========  =============  ========  ==============================

``examples`` counts different configurations per mode run. The covering phase
(:func:`fla_check.engine.search.search`) draws one case per stratum of
:func:`fla_check.strategies.strata` (T beyond one, two and three 64-chunks for every dtype,
beyond one, two, three 16-sub-chunks) out of that budget: 12 of ci's 30 cases with three dtypes.

The shrink budget counts new cases (not seconds, so that a run stays deterministic) and
applies twice per failing mode: to hypothesis' shrinking and then to the localization-guided
simplification (:mod:`fla_check.engine.simplify`).
``deadline`` is always None (the first call of a kernel pays its compilation), health checks
about slow data generation are off. ``derandomize`` makes CI runs repeat the same cases; an
explicit ``--seed`` does the same for any profile (and turns the database off, so that the
run depends on the seed alone). The example database lives under ``reports/.hypothesis/``,
one directory per explored space, so failures found at night replay first the next time.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from fla_check.errors import UnknownNameError

REPORTS_DIR = Path("reports")


@dataclass(frozen=True)
class Profile:
    """A named budget for a run."""

    name: str
    examples: int
    derandomize: bool
    use_database: bool
    extreme_fills: bool
    shrink_cases: int  # new cases per failing mode, for hypothesis' shrinking and for simplify
    description: str
    cover: bool = False  # a covering phase: one case per length band and dtype (fla_check.engine.search)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", 8, True, False, False, 15, "a few cases, seconds on CPU"),
    "ci": Profile("ci", 30, True, False, False, 40, "deterministic cases for merge gates", cover=True),
    "nightly": Profile("nightly", 500, False, True, True, 400,
                       "wide random search incl. extreme mask fills, database under reports/", cover=True),
}
DEFAULT_PROFILE = "ci"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownNameError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}") from None


def database_dir(space_key: str, root: Path = REPORTS_DIR) -> Path:
    """The example database directory of one explored space (op, modes, dtypes, ...)."""
    digest = hashlib.sha1(space_key.encode()).hexdigest()[:12]
    return root / ".hypothesis" / digest


def hypothesis_settings(profile: Profile, *, examples: Optional[int] = None, seed: Optional[int] = None,
                        database: Optional[Path] = None) -> settings:
    """Hypothesis settings for `profile`; `examples` overrides its budget, a `seed` disables
    derandomize and the database (the seed alone decides the run)."""
    use_db = profile.use_database and seed is None and database is not None
    return settings(
        max_examples=profile.examples if examples is None else examples,
        deadline=None,
        derandomize=profile.derandomize and seed is None,
        database=DirectoryBasedExampleDatabase(str(database)) if use_db else None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
        report_multiple_bugs=False,  # one mode per run; stops generating at the first failure (deterministic)
        print_blob=False,
    )


def register_hypothesis_profiles(root: Path = REPORTS_DIR) -> None:
    """Register ``fla-check-<name>`` hypothesis profiles (for pytest's --hypothesis-profile): the
    same budgets, normal verbosity (users' own tests print their falsifying examples) and, for
    nightly, one example database under ``root/.hypothesis/pytest``."""
    for profile in PROFILES.values():
        base = hypothesis_settings(profile, database=root / ".hypothesis" / "pytest")
        settings.register_profile(f"fla-check-{profile.name}", base, verbosity=Verbosity.normal)
