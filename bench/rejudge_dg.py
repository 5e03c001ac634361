"""Re-judge dg of stored backward reports under the current cancellation rule, offline on the CPU.

    python bench/rejudge_dg.py docs/gpu/features-h200-*/*.tar.gz docs/gpu/calibration-h200-*/*.tar.gz

Each argument is a report JSON or a tar.gz of them (the GPU folders' archives). For every backward
case with a dg output, the float64 reference and the terms' reach (:func:`fla_check.engine.gradients.
cancellation_scales`) are rebuilt on the CPU from the case's seed, and dg's bounds recomputed from
the stored baseline and kernel metrics with the verdict's constants (docs/verdict.md); the mode's
allowance is a quarter TF32 truncation for ``fla:chunk`` on fp32 inputs (fla's declared TF32 dots),
8 fp32 ulps otherwise. Prints the largest new scores, and how many judgments flip either way.
Cases above ~4e7 elements are skipped (CPU time).
"""
from __future__ import annotations

import argparse
import json
import math
import tarfile
from pathlib import Path
from typing import Iterator

import torch

from fla_check.cases import CaseConfig, build_case
from fla_check.engine import gradients
from fla_check.ops import get_op
from fla_check.references import reference
from fla_check.verdict.arithmetic import CANCEL_ULPS, EPS32, TF32_TRUNC
from fla_check.verdict.compare import A_BACKWARD, A_MAX_BACKWARD, RMS_EPS, SLACK_ULPS, TAU32

MAX_ELEMENTS = 4e7


def reports(paths: list[str]) -> Iterator[tuple[str, dict]]:
    """(name, report) for each report JSON given or inside each tar.gz given."""
    for path in paths:
        if path.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(".report.json"):
                        yield f"{Path(path).parent.name}/{Path(member.name).name}", json.load(tar.extractfile(member))
        else:
            yield path, json.loads(Path(path).read_text())


def rejudge(name: str, report: dict) -> Iterator[tuple[float, float, str]]:
    """(new score, stored score, label) for each dg judgment of a backward report."""
    if not report.get("options", {}).get("backward"):
        return
    for case in report.get("cases", []):
        modes = {m: v for m, v in case["modes"].items() if any(o["name"] == "dg" for o in v.get("outputs", []))}
        cfg = CaseConfig(**case["config"])
        if not modes or cfg.B * cfg.T * cfg.H * cfg.K * cfg.V > MAX_ELEMENTS:
            continue
        op = get_op(cfg.op)
        inputs, up = build_case(cfg, "cpu"), gradients.upstream(cfg, "cpu")
        ref = gradients.recurrence_outputs(op, inputs, up, reference, torch.float64)
        reach = gradients.cancellation_scales(inputs, ref, up, op.step)["dg"]
        r = ref["dg"].double()
        rms_r, amax_r = r.square().mean().sqrt().item(), r.abs().max().item()
        steps = cfg.max_segment_len() if cfg.varlen else cfg.T
        for mode, result in modes.items():
            out = next(o for o in result["outputs"] if o["name"] == "dg")
            tf32 = mode.startswith("fla:chunk") and cfg.torch_dtype == torch.float32
            allowance = TF32_TRUNC / 4 if tf32 else CANCEL_ULPS * EPS32
            bound_rms = A_BACKWARD * out["baseline"]["rel_rms"] + TAU32 + allowance * reach.walk_rms / (rms_r + RMS_EPS)
            bound_max = (A_MAX_BACKWARD * out["baseline"]["max_abs"] + SLACK_ULPS * EPS32 * amax_r * math.sqrt(max(1, steps))
                         + allowance * reach.walk_max)
            k = out["kernel"]
            new = max(k["max_abs"] / bound_max if bound_max else 0.0, k["rel_rms"] / bound_rms if bound_rms else 0.0)
            yield new, out["score"], f"{name} {mode} {cfg.dtype} B={cfg.B} T={cfg.T} K={cfg.K}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="report JSONs or tar.gz archives of them")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    rows = sorted((row for name, rep in reports(args.paths) for row in rejudge(name, rep)), reverse=True)
    print(f"{len(rows)} dg judgments")
    for new, old, label in rows[:args.top]:
        print(f"new {new:.3f}  stored {old:.3f}  {label}")
    clean = [row for row in rows if row[1] <= 1]
    if clean:
        print(f"largest new score of a judgment stored OK: {clean[0][0]:.3f} ({clean[0][2]})")
    print(f"OK -> DIVERGED: {sum(1 for n, o, _ in rows if n > 1 >= o)}; "
          f"DIVERGED -> OK: {sum(1 for n, o, _ in rows if o > 1 >= n)}")


if __name__ == "__main__":
    main()
