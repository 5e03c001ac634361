"""The search's shrink budget: `shrink_cases` replaces the profile's (0: the first failing case is kept)."""
from _fake_modes import registered
from device import DEVICE

from fla_check.engine.search import search


def test_shrink_cases_bounds_how_far_a_failure_is_shrunk():
    with registered("gla"):
        def run(shrink_cases):
            return search("gla", ["test:dropped"], dtypes=["fp32"], examples=12, seed=3, device=DEVICE,
                          shrink_cases=shrink_cases)

        kept, shrunk = run(0), run(None)
    first = kept.first_failure["test:dropped"]["example"]
    assert kept.failures and len(kept.cases) <= first + 1  # nothing drawn past the first failure but a re-check
    assert kept.cases[kept.failures["test:dropped"]].config.T > 16
    assert len(shrunk.cases) > len(kept.cases)
    assert shrunk.cases[shrunk.failures["test:dropped"]].config.T <= kept.cases[kept.failures["test:dropped"]].config.T
