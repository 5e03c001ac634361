"""Seconds and torch ops of one batch of emulated baselines (``engine.batched.baselines_ahead``).

    python bench/baseline_batch.py --op gla --T 256,1024 --modes chunk,fused_chunk
    python bench/baseline_batch.py --op gated_delta --T 1024 --modes chunk --cases 4 --calls 3
    python bench/baseline_batch.py --op gla --T 1024 --cases 16 --sections   # where a batch's time goes

`--cases` seeded bf16 cases of one shape (B=1, H=4, K=V=64 by default) are built with their float64
references, then each mode's declared arithmetic is sampled and reduced for all of them in one
batch (the memory budget lifted, so the batch is never split): the aten ops of one batch (a
``TorchDispatchMode`` count, views included: on a GPU roughly the launches) and the wall seconds
of `--calls` calls. The ops are the GPU's launch cost, the seconds this device's (on the CPU,
memory traffic and caches). `--sections`: one more call with the emulation's functions timed
(:data:`SECTIONS`, the device synchronized on entry and exit: inclusive and self ms per case; the
synchronizations cost a little, so the sections add up to a bit more than a plain call; they also
cost many small launches their overlap: perf-h200-41's 1.7 ms for the state passing was 0.27 ms of
device time, perf-h200-45). `--device-sections`: one more call under torch.profiler with the same
functions as profiler ranges, nothing synchronized: each one's inclusive device time (the kernels
launched inside it) and host time.

    python bench/baseline_batch.py --op gla --T 1024 --cases 16 --device-sections
"""
from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OpCount(TorchDispatchMode):
    """Counts the aten ops that reach the backend."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


SECTIONS = {  # module -> its functions (Class.method) timed by --sections
    "fla_check.verdict.emulation": (
        "emulate", "_gla_sequence", "_simple_gla_sequence", "_delta_sequence", "_gla_scores", "_diagonal_scores",
        "_passed", "_ut_transform", "Rounding.gate_cumsum", "Rounding.dot", "Rounding.accumulated",
        "Rounding.operand", "Rounding.store", "Rounding.output", "Rounding.relative", "Rounding._fused",
        "Rounding.fused_passing", "Rounding.fused_scores"),
    "fla_check.verdict.baselines": ("_emulated_stack", "_reduced", "_rounded_cases"),
}


class Patched:
    """The :data:`SECTIONS` functions replaced by ``self._wrap(name, fn)`` while inside the block."""

    def __init__(self) -> None:
        self.undo: list[tuple[object, str, object]] = []

    def __enter__(self):
        import importlib

        for module_name, names in SECTIONS.items():
            module = importlib.import_module(module_name)
            for name in names:
                owner, attr = (module, name) if "." not in name else (getattr(module, name.split(".")[0]),
                                                                      name.split(".")[1])
                original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
                if original is None:
                    continue
                setattr(owner, attr, self._wrap(name, original))
                self.undo.append((owner, attr, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, original in reversed(self.undo):
            setattr(owner, attr, original)

    def _wrap(self, name: str, fn):
        raise NotImplementedError


class Sections(Patched):
    """Inclusive and self seconds of the :data:`SECTIONS` functions, the device synchronized around each."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.inclusive: dict[str, float] = defaultdict(float)
        self.own: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[float] = []  # per open section: the seconds of its children so far

    def _wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.sync()
            self.stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                took = time.perf_counter() - t0
                children = self.stack.pop()
                self.inclusive[name] += took
                self.own[name] += took - children
                self.calls[name] += 1
                if self.stack:
                    self.stack[-1] += took
        return timed

    def rows(self, cases: int) -> list[str]:
        order = sorted(self.inclusive, key=lambda n: -self.own[n])
        return [f"| {n} | {self.calls[n] / cases:.1f} | {1e3 * self.inclusive[n] / cases:.2f} | "
                f"{1e3 * self.own[n] / cases:.2f} |" for n in order]


class Ranges(Patched):
    """The :data:`SECTIONS` functions as profiler ranges (``torch.profiler.record_function``), no
    synchronization: under torch.profiler each range's device time is that of the kernels launched
    inside it, measured as a plain call runs (:meth:`rows`)."""

    def _wrap(self, name: str, fn):
        @functools.wraps(fn)
        def ranged(*args, **kwargs):
            with torch.profiler.record_function(f"section:{name}"):
                return fn(*args, **kwargs)
        return ranged

    @staticmethod
    def rows(prof, cases: int) -> list[str]:
        """Per section: calls per case, the device ms of the kernels launched inside it, the device span of its
        range on the GPU's timeline (idle gaps included) and its host ms, per case, largest kernel time first.
        The profiler lists a range twice: the host's event (kernel time, host time) and the GPU annotation (span)."""
        device = lambda e: getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0.0))  # noqa: E731
        host, span = {}, {}
        for e in prof.key_averages():
            if e.key.startswith("section:"):
                (host if e.cpu_time_total > 0 else span)[e.key[len("section:"):]] = e
        ms = lambda us: f"{us / 1e3 / cases:.3f}"  # noqa: E731
        return [f"| {name} | {e.count / cases:.1f} | {ms(device(e))} | "
                f"{ms(device(span[name])) if name in span else '-'} | {ms(e.cpu_time_total)} |"
                for name, e in sorted(host.items(), key=lambda kv: -device(kv[1]))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--op", default="gla")
    p.add_argument("--T", default="256,1024", help="sequence lengths (comma-separated)")
    p.add_argument("--modes", default="chunk,fused_chunk", help="one batch per mode's declaration")
    p.add_argument("--cases", type=int, default=2)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--K", type=int, default=64, help="K = V")
    p.add_argument("--device", default=None)
    p.add_argument("--sections", action="store_true", help="then one call with the emulation's functions timed")
    p.add_argument("--device-sections", action="store_true",
                   help="then one call under torch.profiler, the emulation's functions as ranges: each one's device "
                        "time without synchronizing (the kernels launched inside it)")
    args = p.parse_args()
    from fla_check.backend import get_backend
    from fla_check.cases import CaseConfig
    from fla_check.engine import batched

    device = get_backend(args.device).device
    print(f"{args.op} bf16 B=1 H={args.H} K=V={args.K}, {args.cases} cases in one batch on {device}\n\n"
          "| T | mode | aten ops per batch | seconds per call | ms per case (median call) |\n|---|---|---|---|---|")
    for T in (int(t) for t in args.T.split(",")):
        configs = [CaseConfig(op=args.op, dtype="bfloat16", B=1, T=T, H=args.H, K=args.K, V=args.K, seed=s)
                   for s in range(1, args.cases + 1)]
        built = batched.build_ahead(args.op, configs, device, readout=True)
        for mode in args.modes.split(","):
            run = lambda: batched.baselines_ahead(args.op, [mode], configs, built, device, budget=2**50)  # noqa: E731
            with OpCount() as count:
                run()
            seconds = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                run()
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - t0)
            print(f"| {T} | {mode} | {count.ops} | {' / '.join(f'{s:.3f}' for s in seconds)} | "
                  f"{1e3 * sorted(seconds)[len(seconds) // 2] / args.cases:.2f} |", flush=True)
            if args.sections:
                with Sections(device) as timed:
                    run()
                print(f"\n{mode} at T = {T}, ms per case (of {args.cases}):\n\n| function | calls per case | "
                      "inclusive ms | self ms |\n|---|---|---|---|\n" + "\n".join(timed.rows(args.cases)) + "\n",
                      flush=True)
            if args.device_sections:
                activities = [torch.profiler.ProfilerActivity.CPU] + (
                    [torch.profiler.ProfilerActivity.CUDA] if device == "cuda" else [])
                with Ranges(), torch.profiler.profile(activities=activities) as prof:
                    run()
                    if device == "cuda":
                        torch.cuda.synchronize()
                print(f"\n{mode} at T = {T}, one call profiled, ms per case (of {args.cases}), inclusive:\n\n"
                      "| function | calls per case | kernels' device ms | device span ms | host ms |\n"
                      "|---|---|---|---|---|\n"
                      + "\n".join(Ranges.rows(prof, args.cases)) + "\n", flush=True)


if __name__ == "__main__":
    main()
