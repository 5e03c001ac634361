"""Peak memory of a case's baseline (emulation + noise scales), ungrouped vs grouped, on CPU.

    python bench/baseline_memory.py [--cases NAME,..] [--budget-mib N]

Each measurement runs in a fresh process: the case, its float64 reference (and gradients) are
built first, then the peak RSS is reset (``/proc/self/clear_refs``) and
:class:`~fla_check.verdict.baselines.PendingScales` consumes
:func:`~fla_check.verdict.baselines.sample_groups` under a budget; the peak RSS (``VmHWM``)
past the RSS before it is the baseline's peak (torch's CPU allocator hands large blocks back to
the OS, so RSS follows what is held). Linux only. ``ungrouped`` is all SAMPLES at once (fla-check
before the grouping), ``1`` one sample per group (the floor: what one sample costs, which
:func:`~fla_check.verdict.baselines.sample_bytes` estimates, shown as ``estimate``).
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
}

CHILD = r"""
import json, re, sys, torch
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
budget = 2**62 if budget is None else (per if budget == 1 else budget)
def status(key):
    return int(re.search(rf"{key}:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
before = status("VmRSS")
bl.PendingScales(bl.sample_groups(op, arith, inputs, torch.bfloat16, 5, up=up, exact=exact, budget=budget), exact)
peak = status("VmHWM")
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
    parser.add_argument("--budget-mib", type=int, default=None, help="grouped run's budget (default: the CPU budget)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from fla_check.verdict.baselines import CPU_BUDGET

    budget = CPU_BUDGET if args.budget_mib is None else args.budget_mib * 2**20
    print(f"| case | ungrouped MiB | grouped (budget {budget / 2**20:.0f} MiB) MiB [group] | one sample MiB "
          "| estimate MiB |")
    print("|---|---|---|---|---|")
    for case in args.cases.split(","):
        whole, grouped, one = (measure(case, b) for b in (None, budget, 1))
        print(f"| {case} | {whole['peak_mib']:.0f} | {grouped['peak_mib']:.0f} [{grouped['group']}] | "
              f"{one['peak_mib']:.0f} | {one['estimate_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
