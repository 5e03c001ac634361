"""Harness throughput: cases per second of ``fla-check run`` per op, split into its steps.

    python bench/harness_throughput.py --out bench_out --ops gla,delta,gated_delta --examples 8

Per op, the built-in modes are searched exactly as ``fla-check run --op OP`` does
(:func:`fla_check.engine.search.search`, profile ``ci``, the backend's default dtypes and space,
``--seed`` fixed) with timing wrappers installed around the runner's steps (module globals of
:mod:`fla_check.engine.runner`, restored afterwards; runner.py itself is untouched):

- ``build``: :func:`~fla_check.cases.build_case` (seeded tensors, moved to the device);
- ``reference``: the float64 step-wise recurrence; ``baseline``: the emulation of each mode's
  declared arithmetic (16 Monte Carlo samples, :mod:`fla_check.verdict.baselines`);
- ``kernels``: the mode calls (``ModeResult.seconds``: NaN-guarded input copies + kernel, synced;
  on a GPU the first call of each compile key includes Triton's JIT);
- ``judge``: verdict rule, localization and pairwise agreement; ``invariance``: the metamorphic
  checks of passing modes (their kernel calls included; first case of each bucket by default);
- ``other``: the rest of ``check_case``; ``hypothesis``: search wall time outside ``check_case``.

"cold" is that search (fresh process: compilation included); "warm" replays the same
``check_case`` calls (same cases, same modes: shrink candidates run only the failing mode) with
everything compiled. The ``rate`` section runs fixed shapes (T from ``--rate-T``, up to 1024)
warm (a batch run first with ``--rate-batch``) through ``check_case`` with every built-in mode --
float64 reference, baselines, kernels, judge, under ``--rate-isolation`` (``fla-check run`` uses a
worker process) -- and reports cases/s and, on a GPU, the host syncs per case that torch's sync
debug mode reports;
``--rate-procs N`` runs that loop in N processes at once on one device (as N ``--shard`` jobs). The
``scaling`` section times one reference, baseline and warm kernel call per mode over T (and B)
at fixed head dims -- on a GPU also a CUDA-graph replay of the reference, the cheapest fix for
its per-step launch overhead.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional

from _common import Bench, Table, add_common_args, allocator_delta, environment, fmt, log, sync

OVERLAP_LABEL = {None: "default", True: "on", False: "off"}  # check_cases' overlap keyword in the tables
PROCS_TIMEOUT_S = 300  # longest wait for one result of --rate-procs' processes
PIECES = ("build", "reference", "baseline", "kernels", "judge", "invariance", "other")


@dataclass
class CaseTiming:
    """Seconds per step of one check_case call."""

    total: float = 0.0
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PIECES, 0.0))
    modes: dict[str, float] = field(default_factory=dict)
    call: tuple = ()  # (args, kwargs) of the check_case call, replayed by the warm pass


class Recorder:
    """Timing wrappers around fla_check.engine.runner's steps (installed by :meth:`installed`)."""

    def __init__(self, device: str):
        self.device = device
        self.cases: list[CaseTiming] = []
        self._now: CaseTiming | None = None

    def _timed(self, piece: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            if self._now is not None:
                self._now.parts[piece] += time.perf_counter() - t0
            return out

        return wrapper

    def _run_mode(self, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            inner = ("baseline", "invariance")  # timed on their own inside a mode's judging
            before = sum(self._now.parts[p] for p in inner) if self._now is not None else 0.0
            t0 = time.perf_counter()
            result, out = fn(*args, **kwargs)
            spent = time.perf_counter() - t0
            if self._now is not None:  # the judge computes the baseline lazily: counted there, not here
                self._now.parts["kernels"] += result.seconds
                nested = sum(self._now.parts[p] for p in inner) - before
                self._now.parts["judge"] += spent - result.seconds - nested
                self._now.modes[result.mode] = self._now.modes.get(result.mode, 0.0) + result.seconds
            return result, out

        return wrapper

    def _check_case(self, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            outer, self._now = self._now, CaseTiming(call=(args, kwargs))
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timing, self._now = self._now, outer
                timing.total = time.perf_counter() - t0
                timing.parts["other"] = max(0.0, timing.total - sum(timing.parts.values()))
                self.cases.append(timing)

        return wrapper

    @contextmanager
    def installed(self) -> Iterator["Recorder"]:
        """Patch runner/search globals with the wrappers; restore them on exit."""
        import fla_check.engine.runner as runner
        import fla_check.engine.search as search_mod

        patches = [(runner, "build_case", self._timed("build", runner.build_case)),
                   (runner, "reference", self._timed("reference", runner.reference)),
                   # the baseline's sample groups are computed as PendingScales consumes them
                   (runner, "PendingScales", self._timed("baseline", runner.PendingScales)),
                   (runner, "_pairs", self._timed("judge", runner._pairs)),
                   (runner, "_check_invariance", self._timed("invariance", runner._check_invariance)),
                   (runner, "_run_mode", self._run_mode(runner._run_mode)),
                   (search_mod, "check_case", self._check_case(search_mod.check_case))]
        saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
        for mod, name, fn in patches:
            setattr(mod, name, fn)
        try:
            yield self
        finally:
            for mod, name, fn in saved:
                setattr(mod, name, fn)


def summarize(cases: list[CaseTiming], wall: float) -> dict:
    """Totals per step, cases/s and the dominant step."""
    inside = sum(c.total for c in cases)
    parts = {p: sum(c.parts[p] for c in cases) for p in PIECES}
    parts["hypothesis"] = max(0.0, wall - inside)
    modes: dict[str, float] = {}
    for c in cases:
        for m, s in c.modes.items():
            modes[m] = modes.get(m, 0.0) + s
    return {"cases": len(cases), "wall_s": round(wall, 4), "case_s": [round(c.total, 4) for c in cases], "cases_per_s": len(cases) / wall if wall else None,
            "parts_s": {k: round(v, 4) for k, v in parts.items()},
            "parts_frac": {k: round(v / wall, 4) for k, v in parts.items()} if wall else {},
            "modes_s": {k: round(v, 4) for k, v in modes.items()},
            "dominant": max(parts, key=parts.get) if cases else None}


def throughput(bench: Bench, op: str, args, device: str, deadline: float) -> dict:
    """Cold search (as `fla-check run`) then a warm re-run of the same cases."""
    from fla_check.ops import get_op
    from fla_check.engine.runner import check_case
    from fla_check.engine.search import search

    modes = [m for m, s in get_op(op).modes.items() if s.provider == "builtin"]
    rec = Recorder(device)

    def stop_at_deadline(event) -> None:  # search returns what it has on KeyboardInterrupt
        if time.perf_counter() > deadline:
            raise KeyboardInterrupt

    with rec.installed():
        t0 = time.perf_counter()
        result = search(op, modes, examples=args.examples, seed=args.seed, profile="ci", device=device,
                        max_seq_len=args.max_seq_len, progress=stop_at_deadline, database_root=None)
        cold_wall = time.perf_counter() - t0
    cold = summarize(rec.cases, cold_wall)
    cold.update(interrupted=result.interrupted, options=result.options,
                failed_modes=sorted(result.failures), distinct_cases=len(result.cases))
    log(f"  {op} cold: {cold['cases']} check_case calls in {cold_wall:.1f} s, dominant {cold['dominant']}")
    warm_rec = Recorder(device)
    configs = [c.config for c in result.cases]
    with warm_rec.installed():  # the same check_case calls (shrink candidates run only the shrunk mode)
        import fla_check.engine.search as search_mod

        t0 = time.perf_counter()
        stop = t0 + max(1.2 * cold_wall, args.warm_grace)  # warm <= cold: normally every call runs
        for timing in rec.cases:
            if time.perf_counter() > stop:
                break
            call_args, call_kwargs = timing.call
            search_mod.check_case(*call_args, **call_kwargs)
        warm_wall = time.perf_counter() - t0
    warm = summarize(warm_rec.cases, warm_wall)
    warm["parts_s"].pop("hypothesis"), warm["parts_frac"].pop("hypothesis", None)  # a plain loop, no search
    log(f"  {op} warm: {warm['cases']} cases in {warm_wall:.1f} s, dominant {warm['dominant']}")
    shapes = [dict(T=c.T, B=c.B, H=c.H, K=c.K, V=c.V, dtype=c.dtype, packing=c.packing) for c in configs]
    return {"modes": modes, "cold": cold, "warm": warm, "shapes": shapes,
            "median_T": statistics.median([c.T for c in configs]) if configs else None,
            "max_T": max((c.T for c in configs), default=None), "check_case": check_case.__module__}


def _rate_cases(op: str, args, device: str, T: int, seed0: int = 0) -> tuple[Callable, list, list[str], list[str]]:
    """The rate loop's `args.rate_cases` seeded cases at length T (seeds from `seed0`), a check_case
    call on one with every built-in mode, already run on one case per dtype (compiled, the per-bucket
    checks done) and, with ``--rate-batch N``, on one batch of N other seeds (the batched path's caches
    and the CUDA allocator's pool grown to a batch, as in a long run): (run, configs, modes, dtypes)."""
    from fla_check.cases import CaseConfig
    from fla_check.engine.runner import check_case
    from fla_check.engine.search import default_dtypes
    from fla_check.ops import get_op

    modes = [m for m, s in get_op(op).modes.items() if s.provider == "builtin"]
    dtypes = list(default_dtypes(device))
    configs = [CaseConfig(op=op, dtype=dtypes[i % len(dtypes)], B=1, T=T, H=args.scale_H, K=args.scale_K,
                          V=args.scale_K, seed=seed0 + i) for i in range(args.rate_cases)]
    run = lambda c: check_case(op, modes, c, device=device, isolation=args.rate_isolation)  # noqa: E731
    for c in configs[:len(dtypes)]:  # compile; the per-bucket checks (invariance) run here
        run(c)
    if args.rate_batch > 1:
        spare = [replace(c, seed=c.seed + len(configs)) for c in configs[:args.rate_batch]]
        _run_all(op, modes, spare, args, device, run)
    sync(device)
    return run, configs, modes, dtypes


def _run_all(op: str, modes: list[str], configs: list, args, device: str, run: Callable,
             overlap: Optional[bool] = None) -> list:
    """The results of `configs`: one check_case each, or with ``--rate-batch N`` check_cases on N at a
    time (their float64 references in one batch; `overlap`: check_cases' keyword)."""
    if args.rate_batch <= 1:
        return [run(c) for c in configs]
    from fla_check.engine.batched import check_cases

    n = args.rate_batch
    return [r for i in range(0, len(configs), n)
            for r in check_cases(op, modes, configs[i:i + n], device=device, isolation=args.rate_isolation,
                                 overlap=overlap)]


def _behind_share() -> Optional[float]:
    try:
        from fla_check.engine.batched import BEHIND_SHARE
    except ImportError:  # a tree before it
        return None
    return BEHIND_SHARE


def _allocator_stats(device: str) -> dict:
    import torch

    return torch.cuda.memory_stats() if device == "cuda" else {}


def warm_rate(bench: Bench, op: str, args, device: str) -> list[dict]:
    """Warm cases/s of check_case (reference included) on `args.rate_cases` seeded cases per T."""
    rows = []
    for T, overlap in [(T, o) for T in args.rate_T for o in args.rate_overlap]:
        if not bench.has_time(f"rate.{op}.T{T}", 5.0):
            break
        run, configs, modes, dtypes = _rate_cases(op, args, device, T)
        before = _allocator_stats(device)
        t0 = time.perf_counter()
        verdicts = [r.verdict.value for r in _run_all(op, modes, configs, args, device, run, overlap)]
        sync(device)
        wall = time.perf_counter() - t0
        row = {"op": op, "T": T, "H": args.scale_H, "K": args.scale_K, "V": args.scale_K, "dtypes": dtypes,
               "batch": args.rate_batch, "overlap": overlap, "behind_share": _behind_share(),
               "cases": len(configs), "wall_s": wall, "cases_per_s": len(configs) / wall, "modes": modes,
               "isolation": args.rate_isolation, "verdicts": sorted(set(verdicts)),
               "allocator": allocator_delta(before, _allocator_stats(device)) if device == "cuda" else None,
               "syncs_per_case": _syncs(lambda: run(configs[0])) if device == "cuda" else None}
        rows.append(row)
        log(f"  rate {op} T={T}{'' if overlap is None else f' overlap {overlap}'}: {row['cases_per_s']:.1f} "
            f"cases/s, syncs/case {row['syncs_per_case']}, CUDA allocator {row['allocator']}")
    return rows


def _rate_worker(rank: int, op: str, args, device: str, barrier, results) -> None:
    """One of `args.rate_procs` processes of :func:`parallel_rate`: compile, wait for the others,
    run its own seeded cases per T (seeds offset by `rank`), report (T, cases, wall, verdicts) per T."""
    import torch  # noqa: F401  (imported before the barrier: no process times another's import)

    for T in args.rate_T:
        run, configs, modes, _ = _rate_cases(op, args, device, T, seed0=rank * 100_000)
        barrier.wait()
        t0 = time.perf_counter()
        verdicts = [r.verdict.value for r in _run_all(op, modes, configs, args, device, run)]
        sync(device)
        results.put((rank, T, len(configs), time.perf_counter() - t0, sorted(set(verdicts))))
        barrier.wait()  # the next T starts together


def parallel_rate(op: str, args, device: str) -> list[dict]:
    """Warm cases/s of `args.rate_procs` processes sharing one device, each running
    :func:`warm_rate`'s loop on its own seeds, timed between barriers: cases of all / the slowest
    process's wall (what `fla-check run --shard I/N` in N processes on one GPU adds up to)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # never fork CUDA
    barrier, results = ctx.Barrier(args.rate_procs), ctx.Queue()
    procs = [ctx.Process(target=_rate_worker, args=(r, op, args, device, barrier, results))
             for r in range(args.rate_procs)]
    for pr in procs:
        pr.start()
    try:  # a process that dies breaks the barrier for the rest: the section fails after the timeout
        got = [results.get(timeout=PROCS_TIMEOUT_S) for _ in range(args.rate_procs * len(args.rate_T))]
    finally:
        for pr in procs:
            pr.join(timeout=5)
            if pr.is_alive():
                pr.terminate()
    rows = []
    for T in args.rate_T:
        mine = [g for g in got if g[1] == T]
        cases, wall = sum(g[2] for g in mine), max(g[3] for g in mine)
        rows.append({"op": op, "T": T, "procs": args.rate_procs, "cases": cases, "wall_s": wall,
                     "cases_per_s": cases / wall, "per_process_cases_per_s": [g[2] / g[3] for g in mine],
                     "verdicts": sorted({v for g in mine for v in g[4]})})
        log(f"  rate {op} T={T}, {args.rate_procs} processes: {cases / wall:.1f} cases/s")
    return rows


def _syncs(fn: Callable) -> int:
    """Host syncs torch reports (sync debug mode 'warn') during `fn()`."""
    import warnings

    import torch

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def scaling(bench: Bench, op: str, args, device: str) -> list[dict]:
    """One reference / baseline / warm kernel call per mode for each T (and B) at fixed H, K, V."""
    from fla_check.cases import CaseConfig, build_case
    from fla_check.ops import get_op
    from fla_check.references import reference
    from fla_check.verdict.baselines import baseline_samples

    spec = get_op(op)
    modes = {m: s.load() for m, s in spec.modes.items() if s.provider == "builtin"}
    rows = []
    points = [(args.scale_B, T) for T in args.scale_T] + [(B, args.scale_T[0]) for B in args.scale_Bs if B != args.scale_B]
    for B, T in points:
        if not bench.has_time(f"scaling.{op}.B{B}T{T}", 5.0):
            break
        cfg = CaseConfig(op=op, dtype="float32", B=B, T=T, H=args.scale_H, K=args.scale_K, V=args.scale_K, seed=1)
        x = build_case(cfg, device)
        row = {"op": op, "B": B, "T": T, "H": cfg.H, "K": cfg.K, "V": cfg.V}
        kw = dict(initial_state=None, output_final_state=True)
        row["reference_s"] = _time_call(device, lambda: reference(spec.step, *x.tensors(), **kw))
        for m, mode in ((m, s) for m, s in spec.modes.items() if s.provider == "builtin"):
            row[f"baseline_{m}_s"] = _time_call(device, lambda a=mode.arithmetic: baseline_samples(
                spec, a, x, cfg.torch_dtype, 0))
        if device == "cuda":
            row["reference_graph_s"], row["graph_capture_s"] = _graph_reference(spec.step, x.tensors())
        for m, fn in modes.items():
            call = lambda fn=fn: fn(x.q, x.k, x.v, g=x.g, beta=x.beta, output_final_state=True)  # noqa: E731
            call()  # compile / warm
            row[f"{m}_s"] = _time_call(device, call, repeat=3 if device == "cuda" else 1)
        rows.append(row)
        log(f"  scaling {op} B={B} T={T}: ref {row['reference_s']:.4f} s, "
            + ", ".join(f"{m} {row[m + '_s']:.4f} s" for m in modes))
    return rows


def _time_call(device: str, fn: Callable, repeat: int = 3) -> float:
    """Median wall seconds of `repeat` synchronised calls."""
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _graph_reference(step, tensors) -> tuple[float, float]:
    """Capture the float64 reference on static inputs in a CUDA graph; (replay s, capture s)."""
    import torch

    from fla_check.references import reference

    static = [None if t is None else t.clone() for t in tensors]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as torch.cuda.graphs requires
        reference(step, *static, output_final_state=True)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    t0 = time.perf_counter()
    with torch.cuda.graph(graph):
        reference(step, *static, output_final_state=True)
    torch.cuda.synchronize()
    capture = time.perf_counter() - t0
    graph.replay()
    return _time_call("cuda", graph.replay), capture


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"


def tables(bench: Bench, args) -> list[Table]:
    secs = bench.data["sections"]
    hdr = ["op", "pass", "cases", "wall s", "cases/s", "build", "reference (f64)", "baseline", "kernels",
           "judge", "invariance", "other", "hypothesis", "dominant", "kernel s per mode", "failing modes (shrunk)"]
    rows = []
    for op in args.ops:
        rec = secs.get(f"throughput.{op}", {})
        for pas in ("cold", "warm"):
            s = rec.get(pas)
            if not s:
                continue
            frac = s["parts_frac"]
            rows.append([op, pas, s["cases"], fmt(s["wall_s"]), fmt(s["cases_per_s"])]
                        + [_pct(frac[p]) if p in frac else "-" for p in PIECES + ("hypothesis",)]
                        + [s["dominant"], ", ".join(f"{m} {fmt(v)}" for m, v in s["modes_s"].items()),
                           ", ".join(rec["cold"].get("failed_modes", [])) or "-"])
    out = [Table("Throughput of `run` per op (share of wall time per step)", bench.command, hdr, rows,
                      note="cold = the search as `fla-check run` runs it in a fresh process; warm = the same "
                           "check_case calls again (compiled). kernels = the built-in modes of the op that each "
                           "call ran (shrink candidates of a failing mode run that mode only).")]
    rrows = [[r["op"], r["T"], f"{r['H']}/{r['K']}/{r['V']}", ",".join(r["dtypes"]), ",".join(r["modes"]),
              r["isolation"], r.get("batch", 1), OVERLAP_LABEL[r.get("overlap")], r["cases"], fmt(r["cases_per_s"]), fmt(1e3 * r["wall_s"] / r["cases"]),
              "-" if r["syncs_per_case"] is None else r["syncs_per_case"], r.get("allocator") or "-",
              ",".join(r["verdicts"])]
             for op in args.ops for r in secs.get(f"rate.{op}", {}).get("rows", [])]
    out.append(Table("Warm cases/s with the float64 reference included (fixed shapes, B=1)", bench.command,
                     ["op", "T", "H/K/V", "dtypes", "modes", "isolation", "batch", "overlap", "cases", "cases/s",
                      "ms/case",
                      "host syncs/case", "CUDA allocator", "verdicts"], rrows,
                     note="check_case on seeded cases, every built-in mode: reference, baselines, kernels, judge; "
                          "compiled first. batch > 1: check_cases on that many at once (their float64 references "
                          "in one loop); overlap: its baselines computed while the modes run (default: on a GPU). "
                          "Host syncs: torch.cuda.set_sync_debug_mode('warn') over one case. CUDA allocator: its "
                          "device allocations, frees and out-of-memory retries over the timed cases."))
    srows = []
    for op in args.ops:
        for r in secs.get(f"scaling.{op}", {}).get("rows", []):
            mode_cols = [f"{k[:-2]} {fmt(v)}" for k, v in r.items()
                         if k.endswith("_s") and not k.startswith("baseline_")
                         and k not in ("reference_s", "reference_graph_s", "graph_capture_s")]
            base_cols = ", ".join(f"{k[9:-2]} {fmt(v)}" for k, v in r.items() if k.startswith("baseline_"))
            srows.append([op, r["B"], r["T"], f"{r['H']}/{r['K']}/{r['V']}", fmt(r["reference_s"]),
                          fmt(1e3 * r["reference_s"] / r["T"]),
                          base_cols, fmt(r.get("reference_graph_s")), ", ".join(mode_cols)])
    prows = [[r["op"], r["T"], r["procs"], r["cases"], fmt(r["wall_s"]), fmt(r["cases_per_s"]),
              fmt(min(r["per_process_cases_per_s"])) + "-" + fmt(max(r["per_process_cases_per_s"])),
              ",".join(r.get("verdicts", []))]
             for op in args.ops for r in secs.get(f"rate_procs.{op}", {}).get("rows", [])]
    if prows:
        out.append(Table("Warm cases/s of N processes on one device (as --shard I/N runs)", bench.command,
                         ["op", "T", "processes", "cases", "wall s", "cases/s", "per process", "verdicts"], prows,
                         note="the rate loop above in N spawned processes at once, own seeds each, timed "
                              "between barriers after each compiled its cases: all cases / the slowest wall."))
    out.append(Table("Reference vs kernels, one call each (seconds, fp32 inputs)", bench.command,
                     ["op", "B", "T", "H/K/V", "reference f64", "ref ms/step", "baselines (per mode)", "reference f64, CUDA graph",
                      "kernels (warm)"], srows))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, budget=300)
    p.add_argument("--ops", default="gla,delta,gated_delta")
    p.add_argument("--examples", type=int, default=None, help="examples per mode run (default: 6 on CPU, 30 on GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seq-len", type=int, default=None, help="default: the backend's (130 CPU, 512 GPU)")
    p.add_argument("--warm-grace", type=float, default=10.0,
                   help="the warm pass stops after max(1.2 x cold wall, this many seconds)")
    p.add_argument("--scale-T", default=None, help="T values of the scaling section (default CPU 32,64; GPU 64,256,1024)")
    p.add_argument("--scale-Bs", default=None, help="B values at the first T (default CPU 1; GPU 1,8,32)")
    p.add_argument("--scale-H", type=int, default=None)
    p.add_argument("--scale-K", type=int, default=None)
    p.add_argument("--no-scaling", action="store_true")
    p.add_argument("--rate-T", default=None,
                   help="T values of the warm-rate section (default CPU 16,32; GPU 64,256,1024)")
    p.add_argument("--rate-cases", type=int, default=None,
                   help="cases per T in the warm-rate section (CPU 4, GPU 32)")
    p.add_argument("--rate-isolation", choices=("none", "process"), default="none")
    p.add_argument("--rate-batch", type=int, default=1,
                   help="run the warm-rate cases N at a time through check_cases (float64 references batched, the "
                        "baselines of cases of one dtype emulated together)")
    p.add_argument("--rate-overlap", choices=("default", "on", "off", "both"), default="default",
                   help="check_cases' overlap with --rate-batch: the baselines computed while the modes run "
                        "(default: on a GPU); both: each T off, then on")
    p.add_argument("--rate-behind-share", type=float, default=None,
                   help="engine.batched.BEHIND_SHARE for this run: the share of the baselines' memory budget their "
                        "thread may hold (default: the library's; 0.5 before the twelfth session)")
    p.add_argument("--rate-procs", type=int, default=0,
                   help="also run the warm-rate loop in this many processes at once on the device (0: not)")
    p.add_argument("--no-search", action="store_true", help="skip the cold/warm search section")
    p.add_argument("--no-rate", action="store_true",
                   help="skip the one-process warm-rate loop (with --rate-procs: only the N-process rows)")
    args = p.parse_args()
    from fla_check.backend import get_backend

    device = get_backend(args.device).device
    gpu = device == "cuda"
    args.ops = [o for o in args.ops.split(",") if o]
    if args.rate_behind_share is not None:
        import fla_check.engine.batched as batched

        batched.BEHIND_SHARE = args.rate_behind_share
    args.rate_overlap = {"default": [None], "on": [True], "off": [False], "both": [False, True]}[args.rate_overlap]
    args.examples = args.examples if args.examples is not None else (30 if gpu else 6)
    args.scale_T = [int(t) for t in (args.scale_T or ("64,256,1024" if gpu else "32,64")).split(",")]
    args.scale_Bs = [int(b) for b in (args.scale_Bs or ("1,8,32" if gpu else "1")).split(",")]
    args.scale_B = args.scale_Bs[0]
    args.rate_T = [int(t) for t in (args.rate_T or ("64,256,1024" if gpu else "16,32")).split(",")]
    args.rate_cases = args.rate_cases or (32 if gpu else 4)
    args.scale_H = args.scale_H or (4 if gpu else 2)
    args.scale_K = args.scale_K or (64 if gpu else 32)
    bench = Bench("harness_throughput", args.out, args.budget)
    bench.data["environment"] = environment(device)
    bench.data["args"] = dict(vars(args))
    bench.render = lambda: tables(bench, args)
    share = 0.7 if not args.no_scaling else 1.0
    try:
        for i, op in enumerate([] if args.no_search else args.ops):
            if not bench.has_time(f"throughput.{op}", 10.0):
                continue
            deadline = time.perf_counter() + share * bench.remaining() / (len(args.ops) - i) / 2
            with bench.section(f"throughput.{op}") as rec:
                rec.update(throughput(bench, op, args, device, deadline))
        for op in [] if args.no_rate else args.ops:
            if bench.has_time(f"rate.{op}", 10.0):
                with bench.section(f"rate.{op}") as rec:
                    rec["rows"] = warm_rate(bench, op, args, device)
        for op in args.ops if args.rate_procs > 1 else []:
            if bench.has_time(f"rate_procs.{op}", 20.0):
                with bench.section(f"rate_procs.{op}") as rec:
                    rec["rows"] = parallel_rate(op, args, device)
        for op in [] if args.no_scaling else args.ops:
            if bench.has_time(f"scaling.{op}", 10.0):
                with bench.section(f"scaling.{op}") as rec:
                    rec["rows"] = scaling(bench, op, args, device)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    bench.write()
    log(f"wrote {bench.out}/harness_throughput.json and .md")


if __name__ == "__main__":
    main()
