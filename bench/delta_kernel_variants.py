"""The emulation's delta-rule state-passing kernel (fla_check/verdict/delta_kernel.py) under launch settings: per
(warps, stages, value block), its first call (compiling, an empty Triton cache) and its median time, at the shapes
a batch of 16 cases' baselines runs (16 samples x 16 cases, T = 1024 at 64-token chunks, 4 heads) per K.
    python3 bench/delta_kernel_variants.py [--K 64,128] [--warps 4,8] [--stages 1,2,3] [--bv 16,32,64]
"""
from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="delta_variants_"))  # every first call compiles

import torch  # noqa: E402
from _common import int_list, variant_row  # noqa: E402  (bench/ is on sys.path when run as a script)

from fla_check.verdict import delta_kernel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--K", type=int_list, default=[64, 128])
    ap.add_argument("--warps", type=int_list, default=[4, 8])
    ap.add_argument("--stages", type=int_list, default=[1, 3])
    ap.add_argument("--bv", type=int_list, default=[32, 64])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=16)
    args = ap.parse_args()
    dev = torch.device("cuda")
    print("torch", torch.__version__, torch.cuda.get_device_name(0))
    R, NT, H, C, V = args.rows, args.chunks, 4, 64, 64
    print("\n| K | warps | stages | BV | first call s | median ms |\n|---|---|---|---|---|---|")
    for K in args.K:
        delta_kernel.MAX_TILE = max(delta_kernel.MAX_TILE, C * K)  # past the tree's limit: what would it take?
        gen = torch.Generator(device=dev).manual_seed(0)
        w, kg = (torch.randn(R, NT, H, C, K, dtype=torch.float64, device=dev, generator=gen) / 8 for _ in range(2))
        u = torch.randn(R, NT, H, C, V, dtype=torch.float64, device=dev, generator=gen)
        decay = torch.rand(R, NT, H, 1, 1, dtype=torch.float64, device=dev, generator=gen)
        seeds = torch.arange(16, dtype=torch.int64, device=dev)
        points = delta_kernel.Points(2.0**-11, 2.0**-24, -2.0**-11, 2.0**-10, 2.0**-24)
        for warps in args.warps:
            for stages in args.stages:
                for bv in args.bv:
                    delta_kernel.WARPS, delta_kernel.STAGES = warps, stages
                    call = lambda: delta_kernel.passed(None, w, u, kg, decay, None, seeds, 7, (0, 0), points,  # noqa
                                                       block_v=bv)
                    print(variant_row([K, warps, stages, bv], call), flush=True)


if __name__ == "__main__":
    main()
