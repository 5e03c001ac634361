"""The consistency tests of the example kernel repository: a few lines per op.

`test_good_modes` passes; `test_buggy_mode` fails on purpose (its mode has a planted bug).
"""
import pytest


def test_good_modes(fla_check):
    fla_check.check("gla", ["example:recurrent", "example:fused"])


@pytest.mark.fla_check(op="gla", modes="example:buggy")
def test_buggy_mode():
    """The marker runs the check; the body can stay empty."""
