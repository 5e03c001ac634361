"""Run one case through a mode several times in one fresh process and say how each call fared.

    python3 bench/autotune_first_call.py --case '{"op": "delta", "dtype": "bf16", ...}' \
        --mode fla:chunk --calls 3 [--backward] [--provider fla_check.providers.fla:provider]

Written for a GPU finding (docs/gpu/calibration-h200-3): with fla's autotuners left to pick
(FLA_CHECK_PIN_AUTOTUNE=0) fla:chunk diverged where the first-config runs did not. If only the
first call of a fresh shape fails, the autotuner's benchmark runs corrupt the result it returns
(a kernel writing in place without restore_value/reset_to_zero); if every call fails, the picked
config computes wrong. Prints one JSON line per call (verdict, score per output), then the config every Triton autotuner in the process settled on.
"""
from __future__ import annotations

import argparse
import gc
import json
import time
import warnings

import torch


def _autotuner_choices() -> list[dict]:
    from triton.runtime.autotuner import Autotuner

    found = []
    warnings.simplefilter("ignore")  # gc.get_objects touches deprecated torch attributes
    for obj in gc.get_objects():
        if isinstance(obj, Autotuner) and getattr(obj, "cache", None):
            name = getattr(getattr(obj, "base_fn", None), "__name__", repr(obj.fn))
            for key, config in obj.cache.items():
                found.append({"kernel": name, "key": str(key)[:160], "config": str(config),
                              "restore_value": list(getattr(obj, "restore_value", []) or []),
                              "reset_to_zero": list(getattr(obj, "reset_to_zero", []) or [])})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True, help="CaseConfig fields as JSON")
    parser.add_argument("--mode", default="fla:chunk")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--backward", action="store_true")
    parser.add_argument("--provider", default="fla_check.providers.fla:provider")
    args = parser.parse_args()

    from fla_check.cases import CaseConfig
    from fla_check.providers import load_provider
    from fla_check import check_case

    load_provider(args.provider)
    fields = json.loads(args.case)
    fields["segments"] = [tuple(row) for row in fields.get("segments", [])]
    config = CaseConfig(**fields)
    for call in range(args.calls):
        start = time.perf_counter()
        result = check_case(config.op, [args.mode], config, backward=args.backward)
        mode = next(iter(result.modes.values()))
        print(json.dumps({"call": call, "seconds": round(time.perf_counter() - start, 1),
                          "verdict": mode.verdict.name, "reason": mode.reason[:200],
                          "scores": {c.name: round(c.score, 3) for c in mode.outputs},
                          "traceback": mode.traceback[-2500:]}), flush=True)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    for choice in _autotuner_choices():
        print(json.dumps(choice), flush=True)


if __name__ == "__main__":
    main()
