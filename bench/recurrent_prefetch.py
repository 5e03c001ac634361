"""Does gla's recurrent forward kernel gain from loading step t + 1 before step t computes? (GPU only)

    python bench/recurrent_prefetch.py [--T 256,1024] [--H 4] [--K 64] [--BV 64,16] [--warps 4]

The built-in kernel (``fla_check.kernels.gla.recurrent.gla_recurrent_fwd_kernel``) against two
variants, here only: ``stages`` runs the loop as it was before the built-in loaded ahead (a step's
loads after the previous step's store) as ``tl.range(..., num_stages=2)`` (Triton's software
pipelining of the loop's loads, where it applies); ``prefetch`` runs seq_len + 1 iterations and in
iteration t loads step t while it computes step t - 1 from the previous iteration's loads (step -1
is neutral: k = v = g = 0 leave the state as it is; its output store is masked off), what the
built-in does since perf-h200-31 (where "built-in" was still the old loop). Each variant's output
must equal the built-in's bit for bit; the table gives microseconds per call (median of
`--reps`, CUDA events), bf16 inputs, B = 1, no initial state, for each V-block width `--BV`.
"""
from __future__ import annotations

import argparse

import torch
import triton
import triton.language as tl
from _common import cuda_median_us  # bench/ is on sys.path when run as a script


@triton.jit
def _stages_kernel(q, k, v, g, o, scale, T, H, K, V, BK: tl.constexpr, BV: tl.constexpr):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos = tl.cast(i_n, tl.int64) * T
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    p_q = q + (bos * H + i_h) * K + o_k
    p_k = k + (bos * H + i_h) * K + o_k
    p_g = g + (bos * H + i_h) * K + o_k
    p_v = v + (bos * H + i_h) * V + o_v
    p_o = o + (bos * H + i_h) * V + o_v
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    for _ in tl.range(0, T, num_stages=2):
        b_q = tl.load(p_q, mask=m_k, other=0.0).to(tl.float32) * scale
        b_k = tl.load(p_k, mask=m_k, other=0.0).to(tl.float32)
        b_g = tl.load(p_g, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(p_v, mask=m_v, other=0.0).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0)
        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v)
        p_q += H * K
        p_k += H * K
        p_g += H * K
        p_v += H * V
        p_o += H * V


@triton.jit
def _prefetch_kernel(q, k, v, g, o, scale, T, H, K, V, BK: tl.constexpr, BV: tl.constexpr):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    bos = tl.cast(i_n, tl.int64) * T
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    p_q = q + (bos * H + i_h) * K + o_k
    p_k = k + (bos * H + i_h) * K + o_k
    p_g = g + (bos * H + i_h) * K + o_k
    p_v = v + (bos * H + i_h) * V + o_v
    p_o = o + (bos * H + i_h) * V + o_v - H * V  # step -1's (never written)
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    b_q = tl.zeros([BK], dtype=tl.float32)
    b_k = tl.zeros([BK], dtype=tl.float32)
    b_g = tl.zeros([BK], dtype=tl.float32)
    b_v = tl.zeros([BV], dtype=tl.float32)
    for t in range(0, T + 1):
        n_mk = m_k & (o_k * 0 + t < T)  # blocks, not a scalar: the CPU interpreter's masks are arrays
        n_mv = m_v & (o_v * 0 + t < T)
        n_q = tl.load(p_q, mask=n_mk, other=0.0).to(tl.float32) * scale
        n_k = tl.load(p_k, mask=n_mk, other=0.0).to(tl.float32)
        n_g = tl.load(p_g, mask=n_mk, other=0.0).to(tl.float32)
        n_v = tl.load(p_v, mask=n_mv, other=0.0).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0)
        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v & (o_v * 0 + t > 0))
        b_q, b_k, b_g, b_v = n_q, n_k, n_g, n_v
        p_q += H * K
        p_k += H * K
        p_g += H * K
        p_v += H * V
        p_o += H * V


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", default="256,1024")
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--K", type=int, default=64, help="K = V")
    p.add_argument("--BV", default="64,16")
    p.add_argument("--warps", default="4",
                   help="warps per program, comma-separated (the built-in launches with Triton's default, 4)")
    p.add_argument("--reps", type=int, default=50)
    args = p.parse_args()
    from fla_check.kernels.gla.recurrent import gla_recurrent_fwd_kernel

    H, K = args.H, args.K
    print(f"gla recurrent forward, bf16, B=1 H={H} K=V={K}; us per call (median of {args.reps})\n\n"
          "| T | BV | warps | built-in | stages=2 | prefetch | same bits |\n|---|---|---|---|---|---|---|")
    for T in (int(t) for t in args.T.split(",")):
        gen = torch.Generator().manual_seed(T)
        q, k, v = (torch.randn(1, T, H, K, generator=gen).to("cuda", torch.bfloat16) for _ in range(3))
        g = torch.nn.functional.logsigmoid(torch.randn(1, T, H, K, generator=gen)).to("cuda", torch.bfloat16)
        scale = K ** -0.5
        for BV, warps in ((int(b), int(w)) for b in args.BV.split(",") for w in args.warps.split(",")):
            grid = (triton.cdiv(K, BV), H)
            outs, times = {}, {}

            def builtin(o):
                gla_recurrent_fwd_kernel[grid](q, k, v, g, o, None, None, None, scale, T, H=H, K=K, V=K, BK=K, BV=BV,
                                               USE_H0=False, STORE_HT=False, IS_VARLEN=False, STATE_V_FIRST=False,
                                               num_warps=warps)

            variants = {"built-in": builtin,
                        "stages=2": lambda o: _stages_kernel[grid](q, k, v, g, o, scale, T, H, K, K, BK=K, BV=BV,
                                                                        num_warps=warps),
                        "prefetch": lambda o: _prefetch_kernel[grid](q, k, v, g, o, scale, T, H, K, K, BK=K, BV=BV,
                                                                          num_warps=warps)}
            for name, run in variants.items():
                o = torch.empty_like(v)
                run(o)
                torch.cuda.synchronize()
                outs[name] = o.clone()
                times[name] = cuda_median_us(lambda: run(o), args.reps)
            same = all(torch.equal(outs[n].view(torch.int16), outs["built-in"].view(torch.int16)) for n in outs)
            print(f"| {T} | {BV} | {warps} | {times['built-in']:.0f} | {times['stages=2']:.0f} | "
                  f"{times['prefetch']:.0f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
