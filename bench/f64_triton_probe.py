"""Whether float64 `tl.exp` and float64 `tl.dot` compile and run accurately on this GPU (issue 17: a fused
float64 kernel of gla's intra-chunk scores needs both). Prints, per probe, the largest relative error
against torch's float64 and the kernel's time.
    python3 bench/f64_triton_probe.py
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from _common import cuda_median_us  # bench/ is on sys.path when run as a script


@triton.jit
def _exp_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr + offs, tl.exp(x), mask=offs < n)


@triton.jit
def _dot_kernel(a_ptr, b_ptr, out_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    i = tl.program_id(0)
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
    a = tl.load(a_ptr + i * M * K + rm[:, None] * K + rk[None, :])
    b = tl.load(b_ptr + i * K * N + rk[:, None] * N + rn[None, :])
    tl.store(out_ptr + i * M * N + rm[:, None] * N + rn[None, :], tl.dot(a, b))


def _timed(fn) -> float:
    """Median ms of 10 calls after a first, compiling one."""
    fn()
    return cuda_median_us(fn, 10) / 1e3


def main() -> None:
    dev = torch.device("cuda")
    print("torch", torch.__version__, "triton", triton.__version__, torch.cuda.get_device_name(0))
    x = torch.linspace(-700.0, 700.0, 1 << 20, dtype=torch.float64, device=dev)
    out = torch.empty_like(x)
    run = lambda: _exp_kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)  # noqa: E731
    try:
        ms = _timed(run)
        rel = ((out - x.exp()).abs() / x.exp()).max().item()
        print(f"f64 tl.exp: max rel err {rel:.3e} ({rel / 2**-53:.1f} ulp), {ms:.3f} ms per 2^20")
    except Exception as exc:  # noqa: BLE001 - a probe: report what fails
        print("f64 tl.exp FAILED:", type(exc).__name__, str(exc)[:400])
    for M, N, K in ((16, 16, 16), (16, 64, 64), (64, 64, 64), (16, 16, 128)):
        batch = 4096
        a = torch.randn(batch, M, K, dtype=torch.float64, device=dev)
        b = torch.randn(batch, K, N, dtype=torch.float64, device=dev)
        c = torch.empty(batch, M, N, dtype=torch.float64, device=dev)
        run = lambda: _dot_kernel[(batch,)](a, b, c, M=M, N=N, K=K)  # noqa: E731
        try:
            ms = _timed(run)
            rel = ((c - a @ b).abs().max() / (a.abs() @ b.abs()).max()).item()
            t_torch = _timed(lambda: a @ b)
            print(f"f64 tl.dot {M}x{N}x{K}: max err / bound {rel:.3e}, {ms:.3f} ms per {batch} "
                  f"(torch bmm {t_torch:.3f} ms)")
        except Exception as exc:  # noqa: BLE001
            print(f"f64 tl.dot {M}x{N}x{K} FAILED:", type(exc).__name__, str(exc)[:400])


if __name__ == "__main__":
    main()
