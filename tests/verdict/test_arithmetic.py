"""Arithmetic declarations: validation, TF32 per input kind, and the cancelling terms' rounding unit."""
import pytest
import torch

from fla_check.errors import DeclarationError
from fla_check.verdict.arithmetic import CANCEL_ULPS, EPS32, TF32_TRUNC, Arithmetic


def test_invalid_fields_are_declaration_errors():
    with pytest.raises(DeclarationError, match="dot='fast'"):
        Arithmetic(dot="fast")
    with pytest.raises(DeclarationError, match="chunk=48"):
        Arithmetic("chunk", 48)


FP32_SUM = CANCEL_ULPS * EPS32


@pytest.mark.parametrize("dot, half, tf32, allowance", [
    ("tf32", False, True, TF32_TRUNC / 4),  # fla on fp32 inputs: every dot operand truncated, inputs included
    ("tf32", True, True, FP32_SUM),  # half inputs are exact in TF32: only fp32 intermediates truncate
    ("fp32-ieee", False, False, FP32_SUM),  # the built-ins on fp32 inputs: IEEE dots
    ("fp32-ieee", True, True, FP32_SUM),
    ("ieee", False, False, FP32_SUM),
])
def test_cancellation_allowance_is_tf32_only_for_fp32_inputs_through_tf32_dots(dot, half, tf32, allowance):
    arith = Arithmetic("chunk", 64, dot=dot)
    assert arith.tf32(half) is tf32
    assert arith.cancellation_allowance(half) == allowance
    assert EPS32 == torch.finfo(torch.float32).eps and TF32_TRUNC == 2.0**-10 and CANCEL_ULPS == 8
