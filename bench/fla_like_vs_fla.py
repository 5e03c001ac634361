"""Check the honest-control proxies (tests/controls/fla_like.py) against fla's real chunk kernels.

On a GPU with fla-core installed: for each case, fla's chunk kernel (``fla_check.providers.fla``,
autotune pinned to the first config with ``FLA_CHECK_PIN_AUTOTUNE=1`` unless ``--autotune``),
the torch proxies (run on the same device, IEEE fp32 matmuls: the proxies truncate to TF32
themselves) and the float64 reference. Prints per case and output ``rel(x) = rms(x - ref) /
rms(ref)`` for fla and each proxy, and ``d = rms(fla - proxy) / rms(ref)``: a proxy that rounds
where fla rounds has ``d`` well below ``rel(fla)`` (only accumulation order and rounding ties
differ), one that misses a rounding has ``d`` about as large as ``rel(fla)``.

    python bench/fla_like_vs_fla.py --out OUT [--backward] [--budget 420]

Without fla (``--no-fla``) it runs the proxies against the reference only (a CPU smoke test).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("FLA_DISABLE_BACKEND_DISPATCH", "1")

import torch  # noqa: E402

from controls import fla_like  # noqa: E402
from fla_check import ops  # noqa: E402
from fla_check.engine import gradients  # noqa: E402
from fla_check.cases import CaseConfig, build_case  # noqa: E402
from fla_check.references import reference  # noqa: E402


def cases(quick: bool, op_names: tuple[str, ...]) -> list[CaseConfig]:
    out = []
    seed = 0
    for op in ("gla", "delta", "gated_delta"):
        beta = 1.0 if op == "gla" else 2.0
        dtypes = ("bfloat16", "float16") + (() if op == "delta" else ("float32",))  # fla's delta asserts no fp32
        for dtype in dtypes:
            for T, K, extra in ((35, 16, {}), (176, 64, dict(initial_state=True)), (320, 100, {}),
                                (200, 64, dict(packing="varlen", segments=((0, 70, 1, 0, 129),), initial_state=True)),
                                (176, 64, dict(gate_norm=0.01)), (176, 64, dict(zero_gate_frac=1.0))):
                if quick and T == 320:
                    continue
                if op == "delta" and ("gate_norm" in extra or "zero_gate_frac" in extra):
                    continue
                seed += 1
                if op not in op_names:
                    continue
                B = 1
                out.append(CaseConfig(op=op, dtype=dtype, B=B, T=T, H=2, K=K, V=K, beta_max=beta, seed=seed, **extra))
    return out


def rel(x: torch.Tensor, ref: torch.Tensor, scale: torch.Tensor | None = None) -> float:
    """rms(x - ref) / rms(scale) (scale: ref by default)."""
    x, ref = x.double(), ref.double()
    scale = ref if scale is None else scale.double()
    return ((x - ref).square().mean().sqrt() / (scale.square().mean().sqrt() + 1e-30)).item()


def run_outputs(fn, inputs, up):
    if up is None:
        o, ht = fn(*inputs.mode_args(), **inputs.mode_kwargs())
        return {"o": o, "ht": ht}
    (o, ht), grads = gradients.mode_outputs(fn, inputs, up)
    return {"o": o, "ht": ht, **{k: v for k, v in grads.items() if v is not None}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--budget", type=float, default=420.0)
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--autotune", action="store_true", help="let fla autotune (slow first calls)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ops", default="gla,delta,gated_delta")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False  # the proxies emulate TF32 themselves
    fla_modes = {}
    if not args.no_fla:
        if not args.autotune:
            os.environ["FLA_CHECK_PIN_AUTOTUNE"] = "1"
        from fla_check.providers import fla as fla_provider

        fla_modes = {"gla": fla_provider.gla_chunk, "delta": fla_provider.delta_chunk,
                     "gated_delta": fla_provider.gated_delta_chunk}
    rows = []
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for cfg in cases(args.quick, tuple(args.ops.split(","))):
        if time.perf_counter() - start > args.budget:
            print("budget spent; stopping", flush=True)
            break
        op = ops.get_op(cfg.op)
        inputs = build_case(cfg, args.device)
        up = gradients.upstream(cfg, args.device) if args.backward else None
        if up is None:
            ro, rh = reference(op.step, *inputs.tensors(), initial_state=inputs.initial_state,
                               output_final_state=True, cu_seqlens=inputs.cu_seqlens)
            ref = {"o": ro, "ht": rh}
        else:
            ref = gradients.recurrence_outputs(op, inputs, up, reference, torch.float64)
        got, errors = {}, {}
        candidates = {"fla": fla_modes.get(cfg.op)} if fla_modes else {}
        candidates.update({m.name: m.load() for m in fla_like.modes(cfg.op)})
        for name, fn in candidates.items():
            t = time.perf_counter()
            try:
                got[name] = run_outputs(fn, inputs, up)
            except Exception as exc:  # noqa: BLE001
                errors[name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            if args.device == "cuda":
                torch.cuda.synchronize()
            print(f"  {name} {time.perf_counter() - t:.1f}s", flush=True)
        row = {"case": cfg.short(), "config": cfg.to_json(), "errors": errors, "outputs": {}}
        for out in ref:
            entry = {f"rel_{n}": rel(r[out], ref[out]) for n, r in got.items() if out in r}
            if "fla" in got and out in got["fla"]:
                for n, r in got.items():
                    if n != "fla" and out in r:
                        entry[f"d_{n}"] = rel(r[out], got["fla"][out], scale=ref[out])
                        entry[f"same_{n}"] = (r[out] == got["fla"][out]).double().mean().item()
            row["outputs"][out] = entry
        rows.append(row)
        print(cfg.short(), flush=True)
        for out, entry in row["outputs"].items():
            print(f"  {out:6s} " + " ".join(f"{k}={v:.2e}" if not k.startswith("same") else f"{k}={v:.2f}"
                                              for k, v in entry.items()), flush=True)
        if errors:
            print("  errors:", errors, flush=True)
        if args.out:
            (args.out / "fla_like_vs_fla.json").write_text(json.dumps(
                {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                 "torch": torch.__version__, "backward": args.backward, "rows": rows}, indent=1,
                default=lambda x: None if isinstance(x, float) and not math.isfinite(x) else str(x)))
    print(f"done: {len(rows)} cases in {time.perf_counter() - start:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
