"""Host-side helpers of the built-in kernels (fla_check.kernels.utils)."""
import pytest
import torch

from fla_check.kernels.utils import store_dtype


@pytest.mark.parametrize("dtypes,expected", [
    ((torch.bfloat16,) * 3, torch.bfloat16),
    ((torch.float16,) * 3, torch.float16),
    ((torch.float32,) * 3, torch.float32),
    ((torch.bfloat16, torch.bfloat16, torch.float32), torch.float32),  # mixed: fp32
    ((torch.float16, torch.bfloat16, torch.bfloat16), torch.float32),  # two half dtypes: fp32
])
def test_store_dtype_is_the_common_half_dtype_else_fp32(dtypes, expected):
    assert store_dtype(*(torch.zeros(1, dtype=d) for d in dtypes)) == expected
