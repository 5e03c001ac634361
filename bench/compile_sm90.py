"""Compile evidence without a GPU: the built-in delta / gated_delta chunk forward compiled for sm_90.

    python bench/compile_sm90.py --dtype bfloat16               # delta chunk forward
    python bench/compile_sm90.py --dtype bfloat16 --gated       # gated_delta chunk forward
    python bench/compile_sm90.py --dtype bfloat16 --kda         # KDA chunk forward
    KD=100 VD=60 python bench/compile_sm90.py --dtype float16   # other head dims
    python bench/compile_sm90.py --verdict                      # the emulation's fused float64 kernels

Compiles (never runs) every kernel of ``fla_check.kernels.delta.chunk.chunk_fwd`` (chunk 64, B=1
T=128 H=2, K = V = 128 unless ``KD`` / ``VD``) for an H100/H200 target (sm_90) on a CPU-only
machine: a fake driver reports the target, each ``JITFunction.run`` is turned into a warm-up
compile into an empty ``TRITON_CACHE_DIR``. Per kernel it prints the compile seconds, the
registers / stack / shared / local bytes of the cubin (``cuobjdump --dump-resource-usage``,
from Triton's bundled ptxas tools: STACK > 0 means spills; SHARED is only the static part),
the dynamic shared memory Triton allocates (``smem``), num_warps / num_stages, the programs an SM
holds at once by registers, shared memory and warps (``per-SM``), and how many ``wgmma.mma_async``
(Hopper tensor cores), ``mma.sync`` (Ampere-style tensor cores) and ``fma.rn.f32`` (scalar FMA
dots) instructions its PTX holds. Compile seconds are CPU-bound: compare runs on one machine.
``--verdict`` compiles the emulated baselines' kernels instead (fla_check/verdict/*_kernel.py) at their GPU
block sizes, over head dims 16 / 64 / 100 / 128 and chunks of 16 and 64 rows, each at two lengths and case
counts (a second launch of one key is a cache hit: its row reads ~0 s), and whether it fits an H200's
shared memory (227 KB).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile for real, not the interpreter
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="compile_sm90_cache_")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

torch.cuda.is_available = lambda: True  # fla_check's backend selection: take the GPU path
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver as _driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402


class FakeDriver:
    """Just enough of a CUDA driver for Triton to compile for sm_90."""

    def get_current_target(self) -> GPUTarget:
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def __getattr__(self, name: str):
        raise AttributeError(f"fake driver: {name}")


CUOBJDUMP = Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"
ROWS: list[tuple[str, float, str, dict[str, int]]] = []
_original_run = JITFunction.run


def per_sm(regs: int, warps: int, smem: int) -> int:
    """Resident programs per H100/H200 SM: 64K registers (allocated per warp in 256-register
    units), 228 KB shared memory (1 KB reserved per block), 64 warps."""
    reg_warp = -(-regs * 32 // 256) * 256
    by_regs = 65536 // (reg_warp * warps)
    by_smem = 233472 // (smem + 1024) if smem else 64
    return min(by_regs, by_smem, 64 // warps)


def _compile_only(self, *args, grid, warmup, **kwargs):
    """JITFunction.run as a warm-up compile, timed, with the cubin's resource usage recorded."""
    start = time.perf_counter()
    kernel = _original_run(self, *args, grid=grid, warmup=True, **kwargs)
    seconds = time.perf_counter() - start
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run([str(CUOBJDUMP), "--dump-resource-usage", f.name], capture_output=True,
                               text=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage)
    resources = "REG {} STACK {} SHARED {} LOCAL {}".format(*m.groups()) if m else "(no cuobjdump)"
    ptx = kernel.asm["ptx"]
    counts = {"wgmma": ptx.count("wgmma.mma_async"), "mma": len(re.findall(r"\bmma\.sync", ptx)),
              "fma.f32": ptx.count("fma.rn.f32")}
    md = kernel.metadata
    counts.update(smem=md.shared, warps=md.num_warps, stages=md.num_stages)
    if m:
        counts["per_sm"] = per_sm(int(m.group(1)), md.num_warps, md.shared)
    ROWS.append((self.__name__, seconds, resources, counts))
    return kernel


def compile_verdict_kernels() -> None:
    """Every fused kernel of the emulation (verdict/*_kernel.py) at its GPU blocks, two lengths per shape."""
    torch.Tensor.is_cuda = property(lambda self: True)  # the wrappers' GPU block sizes; nothing runs
    from fla_check.verdict import deviation_kernel, delta_kernel, dot_kernel, noise_kernel, passing_kernel, scores_kernel

    seeds = torch.zeros(2, dtype=torch.int64)
    f64 = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
    points = delta_kernel.Points(2.0**-8, 2.0**-133, -2.0**-8, 2.0**-7, 2.0**-24)
    for K in (16, 64, 100, 128):
        for C in (16, 64):
            for NT in (1, 5):
                R, H, V = 32, 2, K
                noise_kernel.perturbed(f64(R, NT, H, C, K), None, -1e-3, 2e-3, "relative", seeds, 3 + NT, 0)
                noise_kernel.perturbed(f64(R, NT, C, H, K).transpose(2, 3), None, -1e-3, 2e-3, "relative", seeds,
                                       3 + NT, 0)  # a chunked view, read in place
                passing_kernel.passed(f64(R, H, K, V), f64(R, NT, H, K, 1), f64(R, NT, H, K, V), None, seeds, 3 + NT,
                                      0, 2.0**-8, 2.0**-133, 2.0**-24)
                scores_kernel.scores(f64(R, NT, H, C, K), f64(R, NT, H, C, K), f64(R, NT, H, C, K), seeds, 3 + NT, 0,
                                     300.0)
                dot_kernel.noisy_dot(f64(R, NT, H, C, K), f64(R, NT, H, C, K).transpose(-1, -2), seeds, 3 + NT, 0,
                                     2.0**-24)  # q k^T: [C, C]
                dot_kernel.noisy_dot(f64(R, NT, H, C, C), f64(R, NT, H, C, V), seeds, 3 + NT, 0, 2.0**-24)  # A v
                dot_kernel.noisy_dot(f64(R, NT, H, K, C), f64(R, NT, H, C, V), seeds, 3 + NT, 0, 2.0**-24)  # k^T v
                dot_kernel.noisy_dot(f64(R, NT, H, C, K), f64(R, NT, H, K, V), seeds, 3 + NT, 0, 2.0**-24, 0.125,
                                     f64(R, NT, H, C, V))  # gla's q h * scale + o_intra
                deviation_kernel.deviations(f64(2, 16, NT * C, H, K), f64(2, 1, NT * C, H, K), torch.ones(2))
                if delta_kernel.fits(C, K):
                    delta_kernel.passed(f64(R, H, K, V), f64(R, NT, H, C, K), f64(R, NT, H, C, V),
                                        f64(R, NT, H, C, K), f64(R, NT, H, 1, 1), None, seeds, 3 + NT, (0, 0), points)
                print(f"K={K} C={C} NT={NT}: {len(ROWS)} launches so far", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--gated", action="store_true", help="gated_delta (a log gate g) instead of delta")
    parser.add_argument("--kda", action="store_true", help="KDA's chunk forward (a per-channel log gate)")
    parser.add_argument("--verdict", action="store_true", help="the emulation's fused float64 kernels instead")
    args = parser.parse_args()
    _driver.set_active(FakeDriver())
    JITFunction.run = _compile_only
    if args.verdict:
        start = time.perf_counter()
        compile_verdict_kernels()
        print(f"verdict kernels: total compile {time.perf_counter() - start:.1f} s")
        _print_rows()
        return
    from fla_check.kernels.delta.chunk import chunk_fwd
    from fla_check.kernels.kda.chunk import kda_chunk_fwd

    dtype = getattr(torch, args.dtype)
    B, T, H = 1, 128, 2
    K, V = int(os.environ.get("KD", 128)), int(os.environ.get("VD", 128))
    q, k = torch.randn(B, T, H, K, dtype=dtype), torch.randn(B, T, H, K, dtype=dtype)
    v = torch.randn(B, T, H, V, dtype=dtype)
    beta = torch.rand(B, T, H, dtype=dtype)
    start = time.perf_counter()
    if args.kda:
        kda_chunk_fwd(q, k, v, -torch.rand(B, T, H, K, dtype=torch.float32), beta, K ** -0.5, None, True, None, 64)
    else:
        g = -torch.rand(B, T, H, dtype=torch.float32) if args.gated else None
        chunk_fwd(q, k, v, beta, g, K ** -0.5, None, True, None, 64)
    print(f"{args.dtype} {'kda' if args.kda else 'gated_delta' if args.gated else 'delta'} K={K} V={V}: "
          f"total compile {time.perf_counter() - start:.1f} s")
    _print_rows()


def _print_rows() -> None:
    for name, seconds, resources, counts in ROWS:
        print(f"  {name:28s} {seconds:6.1f} s  {resources}  smem {counts['smem']} warps {counts['warps']} "
              f"stages {counts['stages']} per-SM {counts.get('per_sm', '?')}  wgmma {counts['wgmma']} "
              f"mma {counts['mma']} fma.f32 {counts['fma.f32']}")


if __name__ == "__main__":
    main()
