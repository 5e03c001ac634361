"""Host-side helpers of the built-in kernels (fla_check.kernels.utils)."""
import pytest
import torch

from fla_check.kernels.utils import HEAD_BLOCK, store_dtype, whole_dim_block


@pytest.mark.parametrize("dtypes,expected", [
    ((torch.bfloat16,) * 3, torch.bfloat16),
    ((torch.float16,) * 3, torch.float16),
    ((torch.float32,) * 3, torch.float32),
    ((torch.bfloat16, torch.bfloat16, torch.float32), torch.float32),  # mixed: fp32
    ((torch.float16, torch.bfloat16, torch.bfloat16), torch.float32),  # two half dtypes: fp32
])
def test_store_dtype_is_the_common_half_dtype_else_fp32(dtypes, expected):
    assert store_dtype(*(torch.zeros(1, dtype=d) for d in dtypes)) == expected


@pytest.mark.parametrize("dim, block", [(16, 64), (32, 64), (60, 64), (64, 64), (100, 128), (128, 128), (200, 256)])
def test_whole_dim_blocks_put_the_small_head_dims_in_one_compile_class(dim, block):
    assert whole_dim_block(dim) == block
    assert whole_dim_block(dim) >= max(dim, HEAD_BLOCK)
