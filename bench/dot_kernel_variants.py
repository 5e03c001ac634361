"""The emulation's noisy float64 dot (fla_check/verdict/dot_kernel.py) under launch settings: per (tile, BK, warps,
stages), its first call (compiling, an empty Triton cache) and its median time, at the shape of a batch of 16 gla
cases' baselines at T = 1024 (16 samples x 16 cases, 64-token chunks, 4 heads, 64 x 64 x 64 products), with the
left operand contiguous and as the transposed view the state's k^T v reads.
    python3 bench/dot_kernel_variants.py [--block 32,64] [--bk 16,32] [--warps 4,8] [--stages 1,2,3]
"""
from __future__ import annotations

import argparse
import itertools
import os
import tempfile

os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="dot_variants_"))  # every first call compiles

import torch  # noqa: E402
from _common import int_list, variant_row  # noqa: E402  (bench/ is on sys.path when run as a script)

from fla_check.verdict import dot_kernel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int_list, default=[32, 64])
    ap.add_argument("--bk", type=int_list, default=[16, 32])
    ap.add_argument("--warps", type=int_list, default=[4, 8])
    ap.add_argument("--stages", type=int_list, default=[1, 2, 3])
    ap.add_argument("--rows", type=int, default=256, help="samples x cases")
    ap.add_argument("--chunks", type=int, default=16)
    args = ap.parse_args()
    dev = torch.device("cuda")
    print("torch", torch.__version__, torch.cuda.get_device_name(0))
    print(f"the tree's launch: BLOCK {dot_kernel.BLOCK}, BLOCK_K {dot_kernel.BLOCK_K}, warps {dot_kernel.WARPS}, "
          f"stages {dot_kernel.STAGES}")
    gen = torch.Generator(device=dev).manual_seed(0)
    shape = (args.rows, args.chunks, 4, 64, 64)
    a, b = (torch.randn(shape, dtype=torch.float64, device=dev, generator=gen) for _ in range(2))
    seeds = torch.arange(16, dtype=torch.int64, device=dev)
    operands = {"a": a, "a^T view": a.transpose(-1, -2)}
    print("\n| left operand | tile | BK | warps | stages | first call s | median ms |\n|---|---|---|---|---|---|---|")
    for (name, left), block, bk, warps, stages in itertools.product(operands.items(), args.block, args.bk,
                                                                    args.warps, args.stages):
        dot_kernel.BLOCK, dot_kernel.BLOCK_K, dot_kernel.WARPS, dot_kernel.STAGES = block, bk, warps, stages
        call = lambda: dot_kernel.noisy_dot(left, b, seeds, 7, 0, 2.0**-21)  # noqa: E731
        print(variant_row([name, block, bk, warps, stages], call), flush=True)


if __name__ == "__main__":
    main()
