"""Score the honest controls (tests/controls/fla_like.py) under the current verdict.

Draws N case configurations per op from ``fla_check.strategies`` (the space ``fla-check run``
explores: default mask fills -5 .. -1e4, beta in {1, 2}, head dims 16-100, T up to
--max-seq-len, varlen with empty sequences, h0), seeded, and runs each through
``fla_check.engine.runner.check_case`` for the fla-like proxies (forward; with --backward also the
gradients). Prints per op / dtype / mode / part (fwd = o and ht, bwd = gradients) the number of
outputs judged, the max and median score (the fraction of the allowed error used: > 1 is
DIVERGED; the issue's target for an honest kernel is < 1/a = 0.5 forward, 0.33 backward) and
every non-OK verdict with its case.

    python bench/honest_controls.py --n 20 --seed 0 [--backward] [--modes fla64,fla16] [--json OUT]

One torch thread by default (tiny tensors: see tests/verdict/test_honest_controls.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings  # noqa: E402

from controls import fla_like  # noqa: E402
from fla_check.cases import CaseConfig  # noqa: E402
from fla_check.verdict.compare import A_BACKWARD, A_FORWARD  # noqa: E402
from fla_check.engine.gradients import GRADIENTS  # noqa: E402
from fla_check.engine.runner import check_case  # noqa: E402
from fla_check.strategies import SpaceOptions, case_configs  # noqa: E402


def draw_configs(options: SpaceOptions, n: int, seed: int) -> list[CaseConfig]:
    """n configurations of `options`' space, the same for the same seed."""
    out: list[CaseConfig] = []

    @hypothesis_seed(seed)
    @settings(max_examples=n, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case_configs(options))
    def collect(config: CaseConfig) -> None:
        out.append(config)

    collect()
    return out[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="configurations per op")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", default="gla,delta,gated_delta")
    ap.add_argument("--dtypes", default="float32,float16,bfloat16")
    ap.add_argument("--modes", default="fla64", help="comma list of fla_like mode names, or 'all'")
    ap.add_argument("--max-seq-len", type=int, default=320)
    ap.add_argument("--backward", action="store_true", help="also run check_case(backward=True)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write every score here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    scores: dict[tuple, list[float]] = defaultdict(list)
    bad: list[str] = []
    rows = []
    for op in args.ops.split(","):
        names = tuple(fla_like.MODES[op]) if args.modes == "all" else tuple(
            m for m in args.modes.split(",") if m in fla_like.MODES[op])
        modes = fla_like.modes(op, names)
        options = SpaceOptions(op=op, dtypes=tuple(args.dtypes.split(",")), max_seq_len=args.max_seq_len)
        configs = draw_configs(options, args.n, args.seed)
        for config in configs:
            for backward in (False, True) if args.backward else (False,):
                result = check_case(op, modes, config, backward=backward)
                for label, mode in result.modes.items():
                    for c in mode.outputs:
                        part = "bwd" if c.name in GRADIENTS else "fwd"
                        if backward and part == "fwd":
                            continue  # o/ht counted from the forward run
                        scores[(op, config.dtype, label, part)].append(c.score)
                    if mode.verdict.value != "OK":
                        worst = max(mode.outputs, key=lambda c: c.score, default=None)
                        bad.append(f"{mode.verdict.value} {label} {'bwd' if backward else 'fwd'} "
                                   f"{config.short()}: " + (f"{worst.name} score {worst.score:.3f}" if worst else "")
                                   + (f" {mode.reason}" if mode.reason else ""))
                    rows.append({"config": config.to_json(), "backward": backward, "mode": label,
                                 "verdict": mode.verdict.value,
                                 "scores": {c.name: c.score for c in mode.outputs}})
        print(f"[{time.perf_counter() - start:.0f}s] {op}: {len(configs)} configs", file=sys.stderr, flush=True)

    print(f"{'op':12s} {'dtype':9s} {'mode':16s} part {'n':>4s} {'max':>7s} {'median':>7s} {'>=1/a':>6s}")
    for (op, dtype, label, part), vals in sorted(scores.items()):
        a = A_BACKWARD if part == "bwd" else A_FORWARD
        over = sum(v >= 1 / a for v in vals)
        print(f"{op:12s} {dtype:9s} {label:16s} {part:4s} {len(vals):4d} {max(vals):7.3f} "
              f"{statistics.median(vals):7.3f} {over:6d}")
    print(f"non-OK verdicts: {len(bad)}")
    for line in bad:
        print("  " + line)
    print(f"{time.perf_counter() - start:.0f}s; command: python bench/honest_controls.py " + " ".join(sys.argv[1:]))
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
