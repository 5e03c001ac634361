"""Peak memory of a case's baseline (emulation + noise scales), ungrouped vs grouped, on CPU.

    python bench/baseline_memory.py [--cases NAME,..] [--budget-mib N]

Each measurement runs in a fresh process: the case, its float64 reference (and gradients) are
built first, then :class:`~fla_check.verdict.baselines.PendingScales` consumes
:func:`~fla_check.verdict.baselines.sample_groups` with groups of a given size while a thread
polls the RSS every millisecond (``/proc/self/statm``; torch's CPU allocator hands large blocks
back to the OS, so RSS follows what is held): the largest RSS past the one before is the
baseline's peak. Linux only. ``ungrouped`` is all SAMPLES at once (fla-check
before the grouping), then groups of ``--group`` samples and of one (what one sample costs,
which :func:`~fla_check.verdict.baselines.sample_bytes` estimates, shown as ``estimate``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# name: (op, arithmetic, backward, config keywords)
CASES = {
    "chunk-fwd": ("gated_delta", ("chunk", 64), False, dict(B=2, T=512, H=4, value_ratio=2, K=64, V=64)),
    "chunk-bwd": ("gated_delta", ("chunk", 64), True, dict(B=1, T=512, H=2, value_ratio=2, K=64, V=64)),
    "recurrent-fwd": ("gated_delta", ("recurrent",), False, dict(B=2, T=512, H=4, value_ratio=2, K=64, V=64)),
    "recurrent-bwd": ("gated_delta", ("recurrent",), True, dict(B=1, T=128, H=2, value_ratio=2, K=64, V=64)),
    "gla-chunk-fwd": ("gla", ("chunk", 64), False, dict(B=2, T=512, H=4, K=64, V=64)),  # a per-key gate's scores
}

CHILD = r"""
import json, os, sys, threading, time, torch
from fla_check.cases import CaseConfig, build_case
from fla_check.engine import gradients
from fla_check.ops import get_op
from fla_check.references import reference
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict import baselines as bl
op_name, arith_args, backward, kw, budget = json.loads(sys.argv[1])
cfg = CaseConfig(op=op_name, dtype="bfloat16", seed=1, **kw)
op, inputs = get_op(op_name), build_case(cfg)
arith = Arithmetic(*arith_args)
up = gradients.upstream(cfg) if backward else None
if backward:
    exact = gradients.recurrence_outputs(op, inputs, up, reference, torch.float64)
else:
    o, ht = reference(op.step, *inputs.tensors(), initial_state=None, output_final_state=True)
    exact = {"o": o, "ht": ht}
shortcut = bl._shortcut(arith, inputs, up, exact)
per = bl.sample_bytes(inputs, arith, backward, shortcut)
budget = 2**62 if budget is None else budget * per  # all at once, or groups of `budget` samples
page = os.sysconf("SC_PAGE_SIZE") / 1024
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page  # noqa: E731 - kB
before, peak, done = rss(), [0.0], threading.Event()
def poll():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.001)
watcher = threading.Thread(target=poll)
watcher.start()
bl.PendingScales(bl.sample_groups(op, arith, inputs, torch.bfloat16, 5, up=up, exact=exact, budget=budget), exact)
done.set()
watcher.join()
peak = peak[0]
group = bl.group_size(per, budget)
print(json.dumps({"peak_mib": (peak - before) / 1024, "estimate_mib": per / 2**20, "group": group}))
"""


def measure(case: str, budget) -> dict:
    op, arith, backward, kw = CASES[case]
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps([op, arith, backward, kw, budget])],
                         capture_output=True, text=True, check=True, cwd=REPO, env=None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--group", type=int, default=4, help="samples per group of the grouped column")
    args = parser.parse_args()
    print(f"| case | ungrouped MiB | groups of {args.group} MiB | groups of 1 MiB | estimate of 1 MiB |")
    print("|---|---|---|---|---|")
    for case in args.cases.split(","):
        whole, grouped, one = (measure(case, b) for b in (None, args.group, 1))
        print(f"| {case} | {whole['peak_mib']:.0f} | {grouped['peak_mib']:.0f} | {one['peak_mib']:.0f} | "
              f"{one['estimate_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
