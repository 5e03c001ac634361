"""Where a warm ``check_case`` spends its time on a GPU: host (dispatch, launches, syncs) or device.

    python bench/cuda_profile.py                          # gla + gated_delta fp32, T=64,1024
    python bench/cuda_profile.py --calls 5 --top 20       # more profiled calls, longer op lists
    python bench/cuda_profile.py --batch 64 --dtypes bfloat16 --T 1024 --H 4 --K 64 \
        --modes recurrent,chunk,fused_chunk               # one case's share of 64 run by check_cases

Each case runs once to warm (Triton JIT, the bucket's invariance checks), `--calls` times timed
(best wall ms), then `--calls` times under torch.profiler with CPU and CUDA activity. Per case:
wall ms, device-busy ms (the union of the GPU kernels' and copies' intervals: what the GPU did),
kernel launches (aten launches and Triton's), the host time blocked in device syncs, and the
aten ops with the most self CPU time (dispatch + launch cost on the host) and the GPU kernels with
the most device time. Wall much larger than busy means the case is host-bound: fewer ops (batching,
graphs), not faster kernels, would help; busy near wall means the GPU's work itself is the cost.
With ``--batch N`` each call is check_cases on N seeded cases (``--overlap``: its keyword) and
every figure is one case's share.
"""
from __future__ import annotations

import argparse
import time

from _common import allocator_delta  # noqa: E402 (bench/ is on sys.path when run as a script)
from op_counts import make_config  # noqa: E402 (bench/ is on sys.path when run as a script)

SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "cudaMemcpy",
               "cudaEventSynchronize")
LAUNCH_EVENTS = ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC")


def busy_ms(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (us in, ms out)."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total / 1e3


def print_stacks(events, names: list[str], top: int) -> None:
    """The Python stacks (innermost fla_check / bench frames) under which the runtime calls `names`
    (e.g. cudaFree) ran: each event's nearest enclosing op that recorded a stack."""
    from collections import Counter

    stacks: Counter = Counter()
    for e in events:
        if e.name not in names:
            continue
        chain, parent = [], e.cpu_parent
        while parent is not None and not parent.stack:
            chain.append(parent.name)
            parent = parent.cpu_parent
        if parent is not None:
            chain.append(parent.name)
        frames = [f for f in (parent.stack if parent is not None else []) if "fla_check" in f or "bench" in f]
        stacks[(e.name, " < ".join(chain[:4]) or "?", " <- ".join(frames[:4]))] += 1
    print(f"Python stacks of {', '.join(names)} (most frequent first):\n")
    for (name, op, frames), n in stacks.most_common(top):
        print(f"- {n} x {name} in {op}: {frames or '(no fla_check frame)'}")
    print()


def profile_case(case: dict, args) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from fla_check.engine.batched import check_cases

    modes = args.modes.split(",")
    overlap = {"default": None, "on": True, "off": False}[args.overlap]
    run = lambda seed: check_cases(case["op"], modes, [make_config(case, args, seed + i)  # noqa: E731
                                                       for i in range(args.batch)], overlap=overlap)
    verdict = ",".join(sorted({r.verdict.value for r in run(args.seed + 1000)}))  # warm
    torch.cuda.synchronize()
    best = float("inf")
    before = torch.cuda.memory_stats()
    for i in range(args.calls):
        t0 = time.perf_counter()
        run(args.seed + i)
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / args.batch)
    allocator = allocator_delta(before, torch.cuda.memory_stats())
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=bool(args.stacks)) as prof:
        for i in range(args.calls):
            run(args.seed + i)
        torch.cuda.synchronize()
    events = prof.events()
    n = args.calls * args.batch  # figures per case
    device = [(e.time_range.start, e.time_range.end) for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    launches = sum(1 for e in events if e.name in LAUNCH_EVENTS) / n
    sync_ms = sum(e.cpu_time_total for e in events if e.name in SYNC_EVENTS) / 1e3 / n
    aten_ms = sum(e.self_cpu_time_total for e in events if e.name.startswith("aten::")) / 1e3 / n
    batch = f", one case's share of {args.batch} (check_cases, overlap {args.overlap})" if args.batch > 1 else ""
    print(f"\n#### {case['op']} {case['dtype']} T={case['T']} H={args.H} K=V={args.K} modes {args.modes}{batch} "
          f"(verdict {verdict})\n\n| wall ms (best of {args.calls}) | device busy ms | launches | sync/copy ms "
          f"| aten self CPU ms |\n"
          f"|---|---|---|---|---|\n| {1e3 * best:.1f} | {busy_ms(device) / n:.1f} | {launches:.0f} | {sync_ms:.1f} | "
          f"{aten_ms:.1f} |\n")
    print(f"CUDA caching allocator over the {args.calls} timed calls (not profiled): {allocator}\n")
    if args.stacks:
        print_stacks(events, args.stacks.split(","), args.top)
    averages = prof.key_averages()
    for key in ("self_cpu_time_total", "self_device_time_total"):
        print(f"{key} ({n} cases):\n```\n" + averages.table(sort_by=key, row_limit=args.top, max_name_column_width=50)
              + "\n```")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default="gla,gated_delta")
    p.add_argument("--dtypes", default="float32")
    p.add_argument("--T", default="64,1024", help="sequence lengths (comma-separated)")
    p.add_argument("--H", type=int, default=2)
    p.add_argument("--K", type=int, default=32, help="K = V")
    p.add_argument("--modes", default="recurrent,chunk")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--batch", type=int, default=1, help="cases per check_cases call (figures per case)")
    p.add_argument("--overlap", choices=("default", "on", "off"), default="default", help="check_cases' overlap")
    p.add_argument("--stacks", default="", help="runtime calls (e.g. cudaFree,cudaMalloc) whose Python stacks to list")
    args = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("cuda_profile.py needs a GPU (bench/host_profile.py profiles the CPU)")
    for op in args.ops.split(","):
        for dtype in args.dtypes.split(","):
            for T in (int(t) for t in args.T.split(",")):
                profile_case(dict(op=op, dtype=dtype, T=T), args)


if __name__ == "__main__":
    main()
