"""Torch ops (kernel launches on a GPU) and host syncs per warm ``check_case``, split by phase.

    python bench/op_counts.py                      # the default cases, op counts + syncs
    python bench/op_counts.py --top 12             # and each phase's most frequent aten ops
    python bench/op_counts.py --time 3             # and wall ms per phase, best of 3 (no counting)
    python bench/op_counts.py --report R.json --cases 10   # the first cases of a run report, as drawn
    python bench/op_counts.py --batch 16           # one case's share of 16 run by check_cases

The harness is launch-bound on a GPU: the cost of a warm case is the number of torch ops and
host syncs, not their size, and both are the same on the CPU. Each case runs once to warm up
(Triton JIT, per-bucket invariance checks), then a case of another seed is measured. Phases are
set by wrapping module globals of :mod:`fla_check.engine.runner` (restored afterwards; the
library is untouched), innermost wins:

- ``build``: :func:`~fla_check.cases.build_case`; ``reference``: the float64 recurrence;
- ``baseline``: the emulation of each declared arithmetic and its reduction (PendingScales);
- ``kernels``: the mode calls (:func:`runner._invoke`: guarded copies, poisoned allocations) --
  without the Triton interpreter's own torch ops (``GridExecutor.__call__``: CPU only, excluded);
- ``judge``: the rest of each mode's judging (metrics, verdict, localization) and the pairwise
  agreement; ``invariance``: the metamorphic checks (none in a warm case, scope bucket);
  ``other``: the rest of check_case.

Ops: every aten op that reaches the backend (a ``TorchDispatchMode``), and those that are not
views (``launch``: roughly a kernel launch each). Host syncs: calls of ``Tensor.item``,
``tolist``, ``cpu``, ``numpy`` and ``bool/float/int(tensor)`` (each a device -> host transfer
on a GPU; ``.to('cpu')`` is not counted, nor ``tolist()`` of what ``cpu()`` returned).
"""
from __future__ import annotations

import argparse
import time
import weakref
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

PHASES = ("build", "reference", "baseline", "kernels", "judge", "invariance", "other")
SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
EXCLUDED = "interpreter"  # the Triton interpreter's own torch ops (a GPU runs the kernel instead)


@dataclass
class PhaseStats:
    """Per phase: aten ops, non-view ops, host syncs, wall seconds (exclusive of nested phases)."""

    ops: Counter = field(default_factory=Counter)  # aten op name -> calls
    launches: int = 0
    syncs: Counter = field(default_factory=Counter)  # method -> calls
    seconds: float = 0.0


class Phases:
    """A stack of phase names; the innermost one gets the ops, syncs and time."""

    def __init__(self, sync: bool = False) -> None:
        self.sync = sync  # wait for the device at each phase boundary (a GPU's async work charged where it ran)
        self.stack = ["other"]
        self.stats: dict[str, PhaseStats] = {p: PhaseStats() for p in PHASES + (EXCLUDED,)}
        self._since = time.perf_counter()
        self.fetched: dict[int, weakref.ref] = {}  # tensors returned by a counted cpu() (see _spy)

    def _charge(self) -> None:
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.stats[self.stack[-1]].seconds += now - self._since
        self._since = now

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._charge()
        self.stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self.stack.pop()

    def wrap(self, name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)

        return wrapper

    @property
    def current(self) -> PhaseStats:
        return self.stats[self.stack[-1]]


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched, in the current phase of `phases`."""

    def __init__(self, phases: Phases):
        super().__init__()
        self.phases = phases

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        stats = self.phases.current
        stats.ops[func.name()] += 1
        if not func.is_view:
            stats.launches += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def installed(phases: Phases, count_syncs: bool) -> Iterator[None]:
    """Phase wrappers around the runner's steps (and sync spies); restored on exit."""
    import triton.runtime.interpreter as interpreter

    import fla_check.engine.batched as batched
    import fla_check.engine.runner as runner

    patches = [(runner, "build_case", phases.wrap("build", runner.build_case)),
               (batched, "build_case", phases.wrap("build", batched.build_case)),
               (batched, "reference_batch", phases.wrap("reference", batched.reference_batch)),
               (batched, "batched_deviations", phases.wrap("baseline", batched.batched_deviations)),
               (runner, "reference", phases.wrap("reference", runner.reference)),
               (runner, "PendingScales", phases.wrap("baseline", runner.PendingScales)),
               (runner, "_invoke", phases.wrap("kernels", runner._invoke)),
               (runner, "_call", phases.wrap("judge", runner._call)),
               (runner, "judged_together", phases.wrap("judge", runner.judged_together)),
               (runner, "_followed_up", phases.wrap("judge", runner._followed_up)),
               (runner, "_pairs", phases.wrap("judge", runner._pairs)),
               (runner, "_check_invariance", phases.wrap("invariance", runner._check_invariance)),
               (interpreter.GridExecutor, "__call__", phases.wrap(EXCLUDED, interpreter.GridExecutor.__call__))]
    if count_syncs:
        for name in SYNC_METHODS:
            patches.append((torch.Tensor, name, _spy(phases, name, getattr(torch.Tensor, name))))
    saved = [(owner, name, owner.__dict__.get(name, getattr(owner, name))) for owner, name, _ in patches]
    for owner, name, fn in patches:
        setattr(owner, name, fn)
    try:
        yield
    finally:
        for owner, name, fn in reversed(saved):
            setattr(owner, name, fn)


def _spy(phases: Phases, name: str, original: Callable) -> Callable:
    """`original` counting its calls as syncs, but for ``tolist``/``numpy`` of what ``cpu``
    returned (on a GPU the ``cpu()`` was the transfer; this one reads host memory)."""
    def spy(self, *args, **kwargs):
        fetched = phases.fetched.get(id(self))
        if not (name in ("tolist", "numpy") and fetched is not None and fetched() is self):
            phases.current.syncs[name] += 1
        out = original(self, *args, **kwargs)
        if name == "cpu":
            phases.fetched[id(out)] = weakref.ref(out)
        return out

    return spy


def parse_cases(args) -> list[dict]:
    return [dict(op=op, dtype=dtype, T=T) for op in args.ops.split(",") for dtype in args.dtypes.split(",")
            for T in (int(t) for t in args.T.split(","))]


def make_config(case: dict, args, seed: int):
    from fla_check.cases import CaseConfig

    return CaseConfig(op=case["op"], dtype=case["dtype"], B=1, T=case["T"], H=args.H, K=args.K, V=args.K,
                      seed=seed)


def counted(call: Callable, count_syncs: bool) -> tuple[dict[str, PhaseStats], object]:
    """Ops (and host syncs) per phase of one `call()`, and what it returned."""
    phases = Phases()
    with installed(phases, count_syncs=count_syncs), OpCounter(phases):
        result = call()
    return phases.stats, result


def measure(case: dict, args) -> dict[str, PhaseStats]:
    """Ops and syncs of one warm case per phase (counted once), and with --time the best of
    `args.time` uncounted runs' wall seconds per phase."""
    from fla_check.engine.batched import check_cases
    from fla_check.engine.runner import check_case

    modes = args.modes.split(",")
    if args.batch > 1:
        overlap = {"default": None, "on": True, "off": False}[args.overlap]
        run = lambda seed: check_cases(  # noqa: E731
            case["op"], modes, [make_config(case, args, seed + i) for i in range(args.batch)], overlap=overlap)
    else:
        run = lambda seed: [check_case(case["op"], modes, make_config(case, args, seed))]  # noqa: E731
    run(args.seed + 1000)  # warm: JIT, the bucket's invariance checks
    stats, results = counted(lambda: run(args.seed), count_syncs=True)
    verdict = ",".join(sorted({r.verdict.value for r in results}))
    times = []
    for _ in range(args.time):
        timed = Phases(sync=args.sync and torch.cuda.is_available())
        with installed(timed, count_syncs=False):
            run(args.seed)
        times.append({p: s.seconds for p, s in timed.stats.items()})
    for p in stats:
        stats[p].seconds = min((t[p] for t in times), default=float("nan"))
        per_case(stats[p], args.batch)
    case["verdict"] = verdict
    return stats


def per_case(stats: PhaseStats, cases: int) -> None:
    """`stats` of `cases` cases run together, divided into one case's share (rounded)."""
    stats.ops = Counter({name: round(n / cases) for name, n in stats.ops.items()})
    stats.launches = round(stats.launches / cases)
    stats.syncs = Counter({name: round(n / cases) for name, n in stats.syncs.items()})
    stats.seconds /= cases


def report(case: dict, stats: dict[str, PhaseStats], args) -> None:
    timed = args.time > 0
    batch = f", per case of {args.batch} run by check_cases" if args.batch > 1 else ""
    print(f"\n#### {case['op']} {case['dtype']} T={case['T']} H={args.H} K=V={args.K} modes {args.modes} "
          f"(verdict {case['verdict']}{batch})\n")
    head = ["phase", "aten ops", "launch ops", "host syncs"] + (["ms (best of %d)" % args.time] if timed else [])
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    total = [0, 0, 0, 0.0]
    for p in PHASES:
        s = stats[p]
        row = [sum(s.ops.values()), s.launches, sum(s.syncs.values()), 1e3 * s.seconds]
        total = [a + b for a, b in zip(total, row)]
        print("| " + " | ".join([p] + [str(x) for x in row[:3]] + ([f"{row[3]:.1f}"] if timed else [])) + " |")
    print("| " + " | ".join(["**total**"] + [f"**{x}**" for x in total[:3]]
                            + ([f"**{total[3]:.1f}**"] if timed else [])) + " |")
    if args.top:
        for p in PHASES:
            s = stats[p]
            if s.ops:
                top = ", ".join(f"{name.removeprefix('aten::')} {n}" for name, n in s.ops.most_common(args.top))
                print(f"\n- {p}: {top}" + (f"; syncs {dict(s.syncs)}" if s.syncs else ""))


def report_cases(path: str, count: int) -> None:
    """Launch ops per phase of each of the first `count` cases of a ``fla-check run`` report
    (the cases as the search drew them: packing, rows, options), each warm, and their sum."""
    import json

    from fla_check.cases import CaseConfig
    from fla_check.engine.runner import check_case

    data = json.loads(open(path).read())
    modes = list(data["modes"])
    configs = [CaseConfig.from_json(c["config"]) for c in data["cases"][:count]]
    print(f"\n#### launch ops per warm case: first {len(configs)} cases of {path} (modes {','.join(modes)})\n")
    print("| case | " + " | ".join(PHASES) + " | total |\n|" + "---|" * (len(PHASES) + 2))
    total = dict.fromkeys(PHASES, 0)
    for config in configs:
        check_case(config.op, modes, config)  # warm: JIT, the bucket's invariance checks
        stats, _ = counted(lambda: check_case(config.op, modes, config), count_syncs=False)
        row = {p: stats[p].launches for p in PHASES}
        total = {p: total[p] + row[p] for p in PHASES}
        label = f"B={config.B} T={config.T} {config.packing} {'+'.join(config.options) or '-'}"
        print(f"| {label} | " + " | ".join(str(row[p]) for p in PHASES) + f" | {sum(row.values())} |")
    print("| **sum** | " + " | ".join(f"**{total[p]}**" for p in PHASES) + f" | **{sum(total.values())}** |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default="gla,gated_delta")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--T", default="64,256", help="sequence lengths (comma-separated)")
    p.add_argument("--H", type=int, default=2)
    p.add_argument("--K", type=int, default=32, help="K = V")
    p.add_argument("--modes", default="recurrent,chunk")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--top", type=int, default=0, help="list each phase's N most frequent aten ops")
    p.add_argument("--time", type=int, default=0, help="also time each phase: best of this many runs")
    p.add_argument("--sync", action="store_true",
                   help="with --time on a GPU: synchronize at each phase boundary (device time charged to its phase)")
    p.add_argument("--batch", type=int, default=1,
                   help="run this many seeded cases at once (engine.batched.check_cases: their float64 references "
                        "in one batch, the baselines of each dtype in one emulation) and report one case's share")
    p.add_argument("--overlap", choices=("default", "on", "off"), default="default",
                   help="with --batch: check_cases' overlap (the baselines in a thread while the modes run); "
                        "off charges the baselines' time to their phase")
    p.add_argument("--report", default=None, help="count the cases of this run report instead (--cases of them)")
    p.add_argument("--cases", type=int, default=10, help="with --report: its first N cases")
    args = p.parse_args()
    if args.report:
        report_cases(args.report, args.cases)
        return
    for case in parse_cases(args):
        report(case, measure(case, args), args)


if __name__ == "__main__":
    main()
