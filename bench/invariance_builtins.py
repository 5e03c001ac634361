"""Every built-in op/mode/dtype on a few cases (unpacked+h0, mask-packed, varlen, GVA/options), all checks."""
import time
from fla_check.cases import CaseConfig, GATE_OPS
from fla_check.engine.runner import check_case
from fla_check.ops import OPS
bad, n, t0 = [], 0, time.time()
for op, spec in OPS.items():
    for dtype in ("float32", "float16", "bfloat16"):
        cfgs = [CaseConfig(op, dtype, 2, 70, 2, 16, 32, initial_state=True, seed=1, gate_norm=0.5),
                CaseConfig(op, dtype, 1, 40, 1, 20, 16, packing="varlen", segments=((16, 0, 1, 23),), seed=2,
                           initial_state=True)]
        if GATE_OPS[op]:
            cfgs.append(CaseConfig(op, dtype, 2, 33, 1, 16, 16, packing="mask", segments=((10, 23), (16, 17)),
                                   mask_fill=-20.0, seed=3))
        if op == "gated_delta":
            cfgs.append(CaseConfig(op, dtype, 1, 50, 1, 16, 16, value_ratio=3, qk_l2norm=True, seed=4, initial_state=True))
        for cfg in cfgs:
            r = check_case(op, list(spec.modes), cfg, invariance="all", invariance_scope="all")
            for m, mr in r.modes.items():
                n += 1
                worst = max((c.score for i in mr.invariance for c in i.outputs), default=0)
                line = f"{op:11s} {m:11s} {dtype:8s} {cfg.packing:6s} {mr.verdict.value:13s} checks={len(mr.invariance)} worst/allowed={worst:.3f} bitwise={sum(bool(i.bitwise) for i in mr.invariance)}/{len(mr.invariance)} {mr.reason[:150]}"
                print(line, flush=True)
                if mr.verdict.failed:
                    bad.append(line)
print(f"{n} mode-cases, {len(bad)} failing, {time.time()-t0:.0f} s")
for b in bad: print("BAD", b)
