"""Compile cost: seconds before the first result per mode in a fresh process, and what a new shape costs.

    python bench/compile_cost.py --out bench_out                       # every built-in mode, cold Triton cache each
    python bench/compile_cost.py --out bench_out --fla chunk_gla       # also fla (GPU: includes its autotuning)

Each mode runs in its own fresh Python process (``--child``) with an empty ``TRITON_CACHE_DIR``
(a cold start, as on a new machine), which times, in order:

- ``import``: torch + ``fla_check.kernels`` (backend selection, triton import, bf16-dot probe);
- ``first``: the first call at shape A (Triton JIT of every kernel of the mode + the run);
  ``to_first_result`` = from the parent's spawn to the end of that call;
- ``warm``: shape A again (compiled);
- ``same_bucket``: other B and T, T still a multiple of 16 (same constexprs, same integer
  specialisation: no recompilation expected);
- ``t_residue``: T not a multiple of 16 (Triton specialises integer arguments on ``% 16 == 0``
  and ``== 1``: one more compile per kernel unless the argument is ``do_not_specialize``);
- ``new_head_dim``: other K = V (K, V, BK, BV are constexprs: a new compile bucket);
- ``new_heads``: other H (H is a constexpr in the built-in kernels: also a new bucket).

``--warm-cache N`` re-runs the first N modes in a new process on the now-filled cache dir (what a
second ``fla-check run`` on the same machine pays).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

T_START = time.perf_counter()

from _common import Bench, Table, add_common_args, environment, fmt, log  # noqa: E402

BUILTIN_ORDER = ("gla:chunk", "gated_delta:chunk", "delta:chunk", "gla:recurrent", "gated_delta:recurrent",
                 "delta:recurrent", "gla:fused_chunk")
STEPS = ("first", "warm", "same_bucket", "t_residue", "new_head_dim", "new_heads")
GPU_SHAPES = {"first": (2, 256, 4, 64, 64), "warm": (2, 256, 4, 64, 64), "same_bucket": (1, 1024, 4, 64, 64),
              "t_residue": (2, 1000, 4, 64, 64), "new_head_dim": (2, 256, 4, 128, 128),
              "new_heads": (2, 256, 8, 64, 64)}
CPU_SHAPES = {"first": (1, 32, 1, 16, 16), "warm": (1, 32, 1, 16, 16), "same_bucket": (2, 64, 1, 16, 16),
              "t_residue": (1, 40, 1, 16, 16), "new_head_dim": (1, 32, 1, 32, 32), "new_heads": (1, 32, 2, 16, 16)}


def child(spec: str, dtype_text: str, spawned_at: float) -> None:
    """Time one mode in this (fresh) process; print one JSON line."""
    out: dict = {"spec": spec}
    t0 = time.perf_counter()
    import torch

    import fla_check.kernels  # noqa: F401  (backend selection, then triton)
    from fla_check.backend import get_backend

    device = get_backend().device
    out["import_s"] = time.perf_counter() - t0
    out["startup_s"] = t0 - T_START  # interpreter start to this function: module imports of this script
    from kernel_speed import PAIRS, builtin_call, fla_call, make_inputs

    from fla_check.cases import DTYPES, dtype_name

    parts = spec.split(":")
    provider, op, mode = (parts if len(parts) == 3 else ["builtin", *parts])
    pair = next(p for p in PAIRS if p.op == op and (p.mode == mode if provider == "builtin" else p.fla == mode))
    call = builtin_call(pair) if provider == "builtin" else fla_call(pair)
    dtype = DTYPES[dtype_name(dtype_text)]
    shapes = GPU_SHAPES if device == "cuda" else CPU_SHAPES
    for step in STEPS:
        x = make_inputs(op, shapes[step], dtype, device, grad=False)
        try:
            with torch.no_grad():
                if device == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                call(x)
                if device == "cuda":
                    torch.cuda.synchronize()
            out[f"{step}_s"] = time.perf_counter() - t
        except Exception as exc:  # noqa: BLE001
            out[f"{step}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        if step == "first":
            out["to_first_result_s"] = time.time() - spawned_at
    out["shapes"] = {k: list(v) for k, v in shapes.items()}
    print("RESULT " + json.dumps(out), flush=True)


def spawn(spec: str, dtype: str, cache_dir: str, timeout: float) -> dict:
    """Run `child` in a fresh interpreter with TRITON_CACHE_DIR=cache_dir."""
    env = dict(os.environ, TRITON_CACHE_DIR=cache_dir, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, __file__, "--child", spec, "--dtype", dtype, "--spawned-at", repr(time.time())]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"child {spec} exited {proc.returncode} without a result: {proc.stderr[-1500:]}")
    res = json.loads(line[len("RESULT "):])
    res["process_wall_s"] = wall
    return res


def tables(bench: Bench) -> list[Table]:
    rows = []
    for key, r in bench.data["sections"].items():
        if "spec" not in r:
            continue
        cells = [fmt(r.get(f"{s}_s")) if f"{s}_s" in r else ("ERR" if f"{s}_error" in r else "-") for s in STEPS]
        rows.append([r["spec"], r.get("cache", "cold"), fmt(r.get("import_s")), fmt(r.get("to_first_result_s")), *cells,
                     fmt(r.get("process_wall_s"))])
    shapes = next((r["shapes"] for r in bench.data["sections"].values() if "shapes" in r), {})
    note = "Shapes (B,T,H,K,V): " + ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items()) if shapes else ""
    return [Table("Seconds before the first result, fresh process per mode", bench.command,
                  ["mode", "triton cache", "import s", "spawn to 1st result s", "1st call s", "warm s",
                   "same bucket s", "T % 16 != 0 s", "new K=V s", "new H s", "process s"], rows, note=note)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, budget=120)
    p.add_argument("--modes", default=",".join(BUILTIN_ORDER), help="op:mode list, in priority order")
    p.add_argument("--fla", default="", help="fla entry points to time too, e.g. chunk_gla,chunk_gated_delta_rule")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--warm-cache", type=int, default=1, help="re-run the first N modes on their filled cache dir")
    p.add_argument("--child-timeout", type=float, default=240.0)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--spawned-at", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.dtype, args.spawned_at or time.time())
    import torch

    gpu = torch.cuda.is_available() and args.device != "cpu"
    if not gpu:
        os.environ["FLA_CHECK_DEVICE"] = "cpu"
    args.dtype = args.dtype or ("bfloat16" if gpu else "float32")
    specs = [s for s in args.modes.split(",") if s]
    from kernel_speed import PAIRS

    specs += [f"fla:{p.op}:{p.fla}" for name in args.fla.split(",") if name
              for p in [next(q for q in PAIRS if q.fla == name)]]
    bench = Bench("compile_cost", args.out, args.budget)
    bench.data["environment"] = environment("cuda" if gpu else "cpu")
    bench.data["args"] = dict(vars(args))
    bench.render = lambda: tables(bench)
    dirs: dict[str, str] = {}
    runs = [(s, "cold") for s in specs[:args.warm_cache]] + [(s, "warm") for s in specs[:args.warm_cache]]
    runs += [(s, "cold") for s in specs[args.warm_cache:]]  # warm-cache re-runs right after their cold run
    try:
        for spec, cache in runs:
            key = f"{spec}.{cache}"
            if not bench.has_time(key, 5.0):
                continue
            with bench.section(key) as rec:
                if cache == "cold":
                    dirs[spec] = tempfile.mkdtemp(prefix="fla_check_triton_cache_")
                elif spec not in dirs:
                    raise RuntimeError("no cold run to reuse the cache of")
                rec.update(spawn(spec, args.dtype, dirs[spec], min(args.child_timeout, max(5.0, bench.remaining()))))
                rec["cache"] = cache
                log(f"  {spec} ({cache} cache): " + ", ".join(f"{k} {rec[k]:.2f}" for k in rec if k.endswith("_s")))
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
    bench.write()
    log(f"wrote {bench.out}/compile_cost.json and .md")


if __name__ == "__main__":
    main()
