"""Built-in kernels vs fla-core's kernels: forward and forward+backward time, and their ratio.

    python bench/kernel_speed.py --out bench_out                    # GPU: bf16, B8 T4096 H16 K=V=128 and B1 T512 H4 K=V=64
    python bench/kernel_speed.py --out /tmp/ks --smoke               # CPU: tiny fp32 shape under the interpreter

Each built-in mode is paired with fla's entry point (imported through
:func:`fla_check.providers.fla.fla_ops`, i.e. with ``FLA_DISABLE_BACKEND_DISPATCH=1``) and both
are called by keyword on the same inputs: ``chunk_gla(q,k,v,g=)``,
``fused_recurrent_gla(q,k,v,gk=)``, ``chunk_delta_rule(q,k,v,beta=)``,
``chunk_gated_delta_rule(q,k,v,g=,beta=)`` ... (fla's ``fused_chunk_gla`` is deprecated and
raises, so the built-in fused_chunk is compared with ``chunk_gla``). Times are
``triton.testing.do_bench`` medians in ms; ``first call`` is the wall time of the very first
call (Triton JIT, and fla's autotuning). ``ratio`` = built-in / fla (> 1: built-in slower).
``rel diff`` = rms(o_builtin - o_fla) / rms(o_fla), a check that both compute the same thing.
Units run in priority order (large shape forward first) and stop at the --budget.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from _common import Bench, Table, add_common_args, environment, fmt, log, sync


@dataclass(frozen=True)
class Pair:
    op: str
    mode: str  # built-in mode
    fla: str  # fla.ops entry point
    gate_kw: Optional[str]  # fla's keyword for the gate
    beta: bool
    fla_backward: bool = True


PAIRS = (
    Pair("gla", "chunk", "chunk_gla", "g", False),
    Pair("gated_delta", "chunk", "chunk_gated_delta_rule", "g", True),
    Pair("delta", "chunk", "chunk_delta_rule", None, True),
    Pair("gla", "recurrent", "fused_recurrent_gla", "gk", False),
    Pair("delta", "recurrent", "fused_recurrent_delta_rule", None, True),
    Pair("gated_delta", "recurrent", "fused_recurrent_gated_delta_rule", "g", True, fla_backward=False),
    Pair("gla", "fused_chunk", "chunk_gla", "g", False),
)
Shape = tuple[int, int, int, int, int]  # B, T, H, K, V


def make_inputs(op: str, shape: Shape, dtype, device: str, grad: bool) -> dict[str, Any]:
    """q, k, v ~ randn; GLA gate logsigmoid(randn) [B,T,H,K]; GDN gate [B,T,H]; beta ~ U(0,1),
    k L2-normalised for the delta ops; all in `dtype` (leaves with grad when `grad`)."""
    import torch
    import torch.nn.functional as F

    from fla_check.ops import get_op

    spec = get_op(op)
    B, T, H, K, V = shape
    gen = torch.Generator(device=device).manual_seed(0)
    rnd = lambda *s: torch.randn(*s, generator=gen, device=device)  # noqa: E731
    x = dict(q=rnd(B, T, H, K), k=rnd(B, T, H, K), v=rnd(B, T, H, V), g=None, beta=None)
    if spec.has_beta:
        x["k"] = F.normalize(x["k"], dim=-1)
        x["beta"] = torch.rand(B, T, H, generator=gen, device=device)
    if spec.gate == "key":
        x["g"] = F.logsigmoid(rnd(B, T, H, K))
    elif spec.gate == "head":
        x["g"] = F.logsigmoid(rnd(B, T, H))
    return {n: None if t is None else t.to(dtype).requires_grad_(grad) for n, t in x.items()}


def builtin_call(pair: Pair) -> Callable:
    from fla_check.ops import get_op

    fn = get_op(pair.op).modes[pair.mode].load()
    return lambda x: fn(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"])[0]


def fla_call(pair: Pair) -> Callable:
    from fla_check.providers.fla import fla_ops

    fn = getattr(fla_ops(), pair.fla)

    def call(x):
        kw = dict(q=x["q"], k=x["k"], v=x["v"])
        if pair.gate_kw:
            kw[pair.gate_kw] = x["g"]
        if pair.beta:
            kw["beta"] = x["beta"]
        return fn(**kw)[0]

    return call


def bench_ms(fn: Callable, device: str, grads: list, rep_ms: int) -> float:
    """Median ms: triton.testing.do_bench on a GPU; a perf_counter loop under the interpreter."""
    if device == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=max(5, rep_ms // 4), rep=rep_ms, grad_to_none=grads or None,
                              return_mode="median"))
    times = []
    for _ in range(2):
        for t in grads:
            t.grad = None
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def measure(impl: Callable, x: dict, device: str, backward: bool, rep_ms: int) -> dict[str, Any]:
    """First-call seconds, median ms, and the forward output (for the cross-check)."""
    import torch

    leaves = [t for t in x.values() if t is not None and t.requires_grad]
    do = None

    def fwd():
        return impl(x)

    def fwd_bwd():
        o = impl(x)
        o.backward(do)

    sync(device)
    t0 = time.perf_counter()
    o = fwd()
    if backward:
        do = torch.randn_like(o)
        o.backward(do)
        for t in leaves:
            t.grad = None
    sync(device)
    first = time.perf_counter() - t0
    ms = bench_ms(fwd_bwd if backward else fwd, device, leaves if backward else [], rep_ms)
    return {"first_call_s": round(first, 3), "ms": ms, "o": o.detach()}


def run_unit(pair: Pair, shape: Shape, backward: bool, dtype, device: str, rep_ms: int,
             fla_reason: str) -> dict[str, Any]:
    """Built-in and fla on one shape and pass; each side fail-soft."""
    import torch

    from fla_check.ops import get_op

    rec: dict[str, Any] = {"op": pair.op, "mode": pair.mode, "fla_fn": pair.fla, "shape": list(shape),
                           "pass": "fwd+bwd" if backward else "fwd"}
    x = make_inputs(pair.op, shape, dtype, device, grad=backward)
    outs = {}
    sides = [("builtin", builtin_call, get_op(pair.op).modes[pair.mode].backward or not backward,
              f"built-in {pair.mode} has no backward"),
             ("fla", fla_call, (pair.fla_backward or not backward) and not fla_reason,
              fla_reason or f"fla {pair.fla} has no backward")]
    for side, make, ok, why in sides:
        if not ok:
            rec[side] = {"skipped": why}
            continue
        try:
            with torch.enable_grad() if backward else torch.no_grad():
                m = measure(make(pair), x, device, backward, rep_ms)
            outs[side] = m.pop("o")
            rec[side] = m
        except Exception as exc:  # noqa: BLE001 - fail soft per side
            rec[side] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        log(f"  {pair.op}:{pair.mode} vs {pair.fla} {rec['pass']} {shape}: {side} {rec[side]}")
    b, f = rec.get("builtin", {}).get("ms"), rec.get("fla", {}).get("ms")
    rec["ratio"] = b / f if b and f else None
    if len(outs) == 2:
        d = (outs["builtin"].float() - outs["fla"].float()).pow(2).mean().sqrt()
        rec["rel_diff"] = float(d / outs["fla"].float().pow(2).mean().sqrt().clamp_min(1e-30))
    return rec


def units(args) -> list[tuple[Pair, Shape, bool]]:
    """Priority order: big shape fwd, big fwd+bwd, small fwd, small fwd+bwd (chunk pairs first);
    fwd+bwd only where both the built-in mode and fla have a backward."""
    from fla_check.ops import get_op

    out = []
    for shape in args.shapes:
        for backward in (False, True):
            out += [(p, shape, backward) for p in PAIRS if p.mode in args.modes and p.op in args.ops
                    and (not backward or (p.fla_backward and get_op(p.op).modes[p.mode].backward))]
    return out


def tables(bench: Bench) -> list[Table]:
    rows, reasons = [], []

    def cell(side: dict) -> str:
        if "ms" in side:
            return fmt(side["ms"])
        why = side.get("skipped") or side.get("error")
        if not why:
            return "-"
        if why not in reasons:
            reasons.append(why)
        return f"{'skipped' if 'skipped' in side else 'ERROR'} [{reasons.index(why) + 1}]"

    for key, r in bench.data["sections"].items():
        if "op" not in r:
            continue
        b, f = r.get("builtin", {}), r.get("fla", {})
        rows.append([f"{r['op']}:{r['mode']}", r["fla_fn"], "x".join(map(str, r["shape"])), r["pass"], cell(b), cell(f),
                     fmt(r.get("ratio")), fmt(b.get("first_call_s")), fmt(f.get("first_call_s")),
                     fmt(r.get("rel_diff"), 2)])
    return [Table(f"Built-in vs fla kernels ({bench.data['args']['dtype']}, shape BxTxHxKxV; ms median)",
                  bench.command,
                  ["built-in", "fla", "shape", "pass", "built-in ms", "fla ms", "ratio built-in/fla",
                   "built-in 1st call s", "fla 1st call s", "rel diff o"], rows,
                  note="1st call = first call in this process: Triton JIT (+ fla's autotuning), cold disk cache "
                       "if TRITON_CACHE_DIR is fresh." + "".join(f"\n\n[{i + 1}] {w}" for i, w in enumerate(reasons)))]


def parse_shape(text: str) -> Shape:
    vals = tuple(int(v) for v in text.lower().split("x"))
    if len(vals) != 5:
        raise argparse.ArgumentTypeError(f"shape {text!r}: give BxTxHxKxV")
    return vals  # type: ignore[return-value]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, budget=240)
    p.add_argument("--shapes", default="8x4096x16x128x128,1x512x4x64x64", help="BxTxHxKxV, comma-separated")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--ops", default="gla,delta,gated_delta")
    p.add_argument("--modes", default="chunk,recurrent,fused_chunk")
    p.add_argument("--rep-ms", type=int, default=100, help="do_bench rep (ms of timed runs per measurement)")
    p.add_argument("--min-unit-s", type=float, default=15.0, help="do not start a unit with less time left")
    p.add_argument("--smoke", action="store_true",
                   help="CPU interpreter: tiny fp32 shape, 2 timed runs (proves the script works)")
    args = p.parse_args()
    from fla_check.backend import get_backend

    device = get_backend(args.device).device
    if args.smoke:
        args.shapes, args.dtype = "1x32x1x16x16", "float32"
    args.shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    args.ops, args.modes = args.ops.split(","), args.modes.split(",")
    bench = Bench("kernel_speed", args.out, args.budget)
    bench.data["environment"] = environment(device)
    bench.data["args"] = dict(vars(args))
    bench.render = lambda: tables(bench)
    if device != "cuda" and not args.smoke:
        bench.data["skipped"]["all"] = "GPU required (run with --smoke for an interpreter smoke test)"
        bench.write()
        log("kernel_speed: GPU required; nothing measured (use --smoke on CPU to test the script)")
        sys.exit(0)
    import torch

    from fla_check.cases import DTYPES, dtype_name
    from fla_check.providers.fla import CHUNK_ON_INTERPRETER

    dtype = DTYPES[dtype_name(args.dtype)]
    try:
        for pair, shape, backward in units(args):
            key = f"{pair.op}.{pair.mode}.{'x'.join(map(str, shape))}.{'fwdbwd' if backward else 'fwd'}"
            if not bench.has_time(key, args.min_unit_s):
                continue
            fla_reason = CHUNK_ON_INTERPRETER if device == "cpu" and pair.fla.startswith("chunk") else ""
            with bench.section(key) as rec:
                rec.update(run_unit(pair, shape, backward, dtype, device, args.rep_ms, fla_reason))
            if device == "cuda":
                torch.cuda.empty_cache()
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    bench.write()
    log(f"wrote {bench.out}/kernel_speed.json and .md")


if __name__ == "__main__":
    main()
