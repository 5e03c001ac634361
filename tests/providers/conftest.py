"""Shared by the fla provider's tests: its modes loaded for one test, then removed."""
import pytest

from fla_check.providers import load_provider, unload_provider

FLA_SPEC = "fla_check.providers.fla:provider"


@pytest.fixture
def fla_modes():
    load_provider(FLA_SPEC)
    yield
    unload_provider("fla")
