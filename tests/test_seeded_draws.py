"""fla_check.seeded_draws: a seeded search draws the same cases whatever local modules
(a kernel repository's own code, with its constants) are loaded."""
import importlib
import sys

import pytest
from device import DEVICE
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from fla_check.engine.search import planned_cases
from fla_check.seeded_draws import only_seeded_draws
from fla_check.strategies import SpaceOptions, covering_configs

providers = pytest.importorskip("hypothesis.internal.conjecture.providers")
if not hasattr(providers, "_get_local_constants"):
    pytest.skip("this hypothesis draws no local constants", allow_module_level=True)

CONSTANTS = (48611, 77003, 90001, 123457, 654321, 987653)  # in no strategy's pool but a local module's


@pytest.fixture
def local_module(tmp_path, monkeypatch):
    """A local module full of unusual integers, imported the way a kernel provider is; hypothesis'
    collected constants are put back afterwards (they would leak into later tests' draws). The
    module count hypothesis last scanned at is reset: it rescans only when ``len(sys.modules)``
    changed, and modules that earlier tests dropped can leave the count equal after the import
    (a GPU run, test order dependent: docs/gpu/pytest-h200-12)."""
    from hypothesis.internal.constants_ast import Constants

    monkeypatch.setattr(providers, "_local_constants", Constants() | providers._local_constants)
    monkeypatch.setattr(providers, "_seen_modules", set(providers._seen_modules))
    monkeypatch.setattr(providers, "_sys_modules_len", -1)
    providers.CONSTANTS_CACHE.cache.clear()  # a cache of allowed constants per draw kind: rebuilt on demand
    (tmp_path / "kernel_consts.py").write_text(f"SHAPES = {list(CONSTANTS)}\nLIMIT = 16_000_003\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield lambda: importlib.import_module("kernel_consts")
    sys.modules.pop("kernel_consts", None)
    providers.CONSTANTS_CACHE.cache.clear()


def _integers_drawn() -> set:
    drawn = set()

    @seed(0)
    @settings(max_examples=300, database=None, deadline=None)
    @given(st.integers(0, 10**6))
    def draw(x):
        drawn.add(x)

    draw()
    return drawn


def test_hypothesis_draws_local_constants_and_the_guard_stops_it(local_module):
    local_module()
    assert set(CONSTANTS) & _integers_drawn()  # the mechanism the guard exists for
    with only_seeded_draws():
        assert not set(CONSTANTS) & _integers_drawn()
    assert set(CONSTANTS) & _integers_drawn()  # restored after


def test_a_seeded_search_draws_the_same_cases_with_a_local_module_loaded(local_module):
    def planned():
        return [c.short() for c in planned_cases("gla", modes=("recurrent", "chunk"), profile="ci", seed=0,
                                                 device=DEVICE)]

    before = planned()
    local_module()
    assert planned() == before


def test_covering_draws_are_the_same_with_a_local_module_loaded(local_module):
    space = SpaceOptions(op="gla", dtypes=("float32",), max_seq_len=70, small=True)
    before = covering_configs(space, seed=0)
    local_module()
    assert covering_configs(space, seed=0) == before
