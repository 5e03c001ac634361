"""Where the built-in chunk forward spends its time: per-launch GPU time next to fla's, by torch.profiler.

    python bench/kernel_profile.py --out /tmp/kp                         # GPU: delta, gated_delta chunk, bf16 B8 T4096 H16 K=V=128
    python bench/kernel_profile.py --out /tmp/kp --ops gla --shape 1x64x2x16x16 --dtype fp32   # CPU smoke

Each side (built-in mode, fla's entry point, from kernel_speed.PAIRS) is called once to compile,
then `--calls` times under ``torch.profiler``; the table lists every GPU kernel with its total
device time divided by `--calls` (ms per forward), its launch count per forward, and its share.
On a CPU host the profiler sees CPU ops only: the table then lists the top CPU ops (a smoke run).
Writes <out>/kernel_profile.json and .md (bench/_common.py).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from _common import Bench, Table, add_common_args, environment, log, sync
from kernel_speed import PAIRS, builtin_call, fla_call, make_inputs, parse_shape

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def kernel_times(fn, x: dict, device: str, calls: int) -> tuple[list[dict[str, Any]], float]:
    """Per-kernel ms per call (device time on a GPU, CPU op time otherwise), largest first, and the
    first call's wall seconds (compilation included)."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    fn(x)
    sync(device)
    first_call_s = time.perf_counter() - start
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn(x)
        sync(device)
    rows = []
    for ev in prof.key_averages():
        total_us = ev.self_cpu_time_total
        if device == "cuda":  # kernels only: the ranges that launched them (autograd Functions,
            # aten ops) also report the device time of their kernels, which would count twice
            if str(getattr(ev, "device_type", "")).split(".")[-1] != "CUDA":
                continue
            total_us = ev.self_device_time_total
        if total_us <= 0:
            continue
        rows.append({"kernel": ev.key, "ms": total_us / 1e3 / calls, "launches": ev.count / calls})
    rows.sort(key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["ms"] / total
    return rows, first_call_s


def render(bench: Bench) -> list[Table]:
    tables = []
    args = bench.data["args"]
    for key, rec in bench.data["sections"].items():
        rows = rec.get("kernels", [])
        total = sum(r["ms"] for r in rows)
        tables.append(Table(
            f"{key} chunk forward: {total:.3f} ms of kernels per call ({args['dtype']}, {args['shape']}; "
            f"first call {rec.get('first_call_s', float('nan')):.2f} s)",
            bench.command, ["kernel", "ms/call", "launches/call", "share"],
            [[r["kernel"][:70], f"{r['ms']:.4f}", f"{r['launches']:g}", f"{100 * r['share']:.1f} %"]
             for r in rows[:12]]))
    return tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, budget=240)
    ap.add_argument("--ops", default="delta,gated_delta")
    ap.add_argument("--shape", default="8x4096x16x128x128", help="BxTxHxKxV")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--no-fla", action="store_true", help="built-in kernels only")
    args = ap.parse_args()
    from fla_check.backend import get_backend

    device = get_backend(args.device).device
    bench = Bench("kernel_profile", args.out, args.budget)
    bench.data["environment"] = environment(device)
    bench.data["args"] = dict(vars(args))
    bench.render = lambda: render(bench)
    import torch

    dtype = getattr(torch, DTYPES[args.dtype])
    shape = parse_shape(args.shape)
    for op in args.ops.split(","):
        pair = next(p for p in PAIRS if p.op == op and p.mode == "chunk")
        sides = [("built-in", builtin_call)] + ([] if args.no_fla else [("fla", fla_call)])
        for side, make in sides:
            key = f"{op} {side}"
            if not bench.has_time(key, 10):
                continue
            with bench.section(key) as rec:
                x = make_inputs(op, shape, dtype, device, grad=False)
                rec["kernels"], rec["first_call_s"] = kernel_times(make(pair), x, device, args.calls)
                log(f"{key}: {sum(r['ms'] for r in rec['kernels']):.3f} ms per forward, "
                    f"first call {rec['first_call_s']:.2f} s")
            if device == "cuda":
                torch.cuda.empty_cache()
    bench.write()
    log(f"wrote {bench.out}/kernel_profile.json and .md")


if __name__ == "__main__":
    main()
