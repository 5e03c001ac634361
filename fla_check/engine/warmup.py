"""Compile warm-up: compile the kernels a run will launch in other processes, before or while
its search runs.

On a GPU a cold ``run`` spends 96-99 % of its time compiling Triton kernels, one compile bucket
at a time as hypothesis draws them (docs/gpu/harness_throughput.md). :func:`warm` compiles them
first, :class:`BackgroundWarmup` ahead of the search while it runs, in parallel ``spawn``
processes: each runs tiny cases of its buckets through the same
call path as the run (:func:`fla_check.engine.runner.check_case`, memory checks included) and
throws the results away. What it leaves behind is Triton's on-disk cache, which every process
of the machine shares (``TRITON_CACHE_DIR``, default ``~/.triton/cache``; docs/PERFORMANCE.md,
"Compile cache"), so the run's own process and its isolation worker load those kernels in
milliseconds instead of compiling them. Nothing else crosses back: the run's results cannot
depend on it.

A bucket is one (mode, dtype, H, K, V, value ratio, in-kernel options, chunk size, state
layout, ``cu_seqlens`` or not, initial state or not): what decides which binaries a mode's kernels
compile (the built-in kernels compile per block size of K and V and per flag, not per H or T:
docs/compile_buckets.md; a provider's may differ). The run's buckets are those of the cases its
search will draw (:func:`run_buckets`: the search replayed with every case passing), in the
order drawn, so the first buckets warmed are the first the search needs. Each is warmed with one
small case of its kind (:func:`warm_case`: T = 64, or two segments of 20 and 17 tokens), forward
and, for a backward run, backward, with the run's invariance checks (their variants are binaries
of their own, which the search would otherwise compile on its first case of the bucket): counted on the CPU (bench/compile_buckets.py keys), that
compiles exactly the binaries the ci profile's planned cases need (gla 112, delta 87), where a
fixed pair of shapes per (mode, dtype, H, K, V) compiled 186 / 164 and missed 22 / 21
(``python bench/compile_buckets.py --op gla --warmup-coverage``). What the
real search draws beyond that plan (where its targeting or shrinking departs from it) compiles
during it.
"""
from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from fla_check.cases import CaseConfig, option_values
from fla_check.engine.prestart import triton_cache_dir
from fla_check.engine.warmup_pool import (JOBS_ENV, MAX_JOBS, WarmupPool, default_jobs,  # noqa: F401 (re-exported)
                                          planned_bucket_queue, start_warmup_pool)
from fla_check.errors import UsageError

WARMUP_POLICIES = ("auto", "on", "off", "background")
WARM_SEGMENTS = (20, 17)  # the cu_seqlens case of a varlen bucket: T = 37
WARM_T = 64  # the case of any other bucket
POLL_S = 0.02  # how often the background warm-up looks for newly planned buckets


@dataclass(frozen=True)
class Bucket:
    """One compile bucket of a run: a mode (as the run names it: 'chunk', 'fla:chunk') at one
    dtype, head count and head dims."""

    op: str
    mode: str
    dtype: str
    H: int
    K: int
    V: int
    value_ratio: int = 1
    options: tuple[str, ...] = ()  # in-kernel options (names of fla_check.cases.KERNEL_OPTIONS), all on
    chunk_size: Optional[int] = None  # chunk_size= (a compile-time chunk length); None: the default
    state_v_first: bool = False  # [V, K] states (another state indexing)
    varlen: bool = False  # cu_seqlens given
    initial_state: bool = False  # h0 given

    def describe(self) -> str:
        extra = (f" HV={self.H * self.value_ratio}" if self.value_ratio > 1 else "") + "".join(
            f" {o}" for o in self.options) + (f" chunk_size={self.chunk_size}" if self.chunk_size else "") + (
            " state_v_first" if self.state_v_first else "") + (" varlen" if self.varlen else "") + (
            " h0" if self.initial_state else "")
        return f"{self.mode} {self.dtype} H={self.H} K={self.K} V={self.V}{extra}"


@dataclass(frozen=True)
class WarmupResult:
    """What a warm-up did: buckets warmed (cases run without raising) and those that failed."""

    buckets: int
    warmed: int
    failed: tuple[str, ...]  # 'bucket: why' (a raising mode still warms what it compiled)
    jobs: int
    seconds: float
    cache_dir: str
    stopped: str = ""  # why it stopped before every bucket was done ('' when it did them all)
    background: bool = False  # warmed while the search ran (its processes ended with the search)

    def to_json(self) -> dict:
        return {"buckets": self.buckets, "warmed": self.warmed, "failed": list(self.failed), "jobs": self.jobs,
                "seconds": round(self.seconds, 3), "cache_dir": self.cache_dir, "stopped": self.stopped,
                **({"background": True} if self.background else {})}


def resolve(policy: str, interpreter: bool) -> str:
    """What `policy` does here: ``off``, ``on`` (warm, then search) or ``background`` (warm while
    the search runs). ``auto``: background on a GPU, off in the interpreter."""
    if policy not in WARMUP_POLICIES:
        raise UsageError(f"--warmup {policy!r}; valid: {', '.join(WARMUP_POLICIES)}")
    if policy == "auto":
        return "off" if interpreter else "background"
    return policy


def buckets_of(configs: Sequence[CaseConfig], modes: Sequence[str]) -> list[Bucket]:
    """The distinct buckets of `configs` for each of `modes`, in the order first drawn."""
    found = [Bucket(c.op, mode, c.dtype, c.H, c.K, c.V, c.value_ratio, c.options, c.chunk_size, c.state_v_first,
                    c.packing == "varlen", c.initial_state) for c in configs for mode in modes]
    return list(dict.fromkeys(found))


def run_buckets(op: str, modes: Sequence[str], *, limit: Optional[int] = None,
                on_bucket: Optional[Callable[[Bucket], None]] = None, **search_args: Any) -> list[Bucket]:
    """The buckets of the cases a run with `search_args` (those of
    :func:`fla_check.engine.search.planned_cases`: dtypes, examples, seed, max_seq_len,
    mask_fills, profile, device, backward, preset) draws, in draw order: its search replayed
    with every case passing, no kernel run (a real run differs only where hypothesis'
    targeting follows the scores, and in what shrinking draws). The first `limit` when given;
    `on_bucket(bucket)` for each as soon as its case is drawn."""
    from fla_check.engine.search import planned_cases

    found: dict[Bucket, None] = {}

    def drawn(config: CaseConfig) -> None:
        for bucket in buckets_of([config], modes):
            if bucket not in found and (limit is None or len(found) < limit):
                found[bucket] = None
                if on_bucket is not None:
                    on_bucket(bucket)

    planned_cases(op, modes=modes, on_case=drawn, **search_args)
    return list(found)


def fixed_plan(buckets: Sequence[Bucket], on_bucket: Callable[[Bucket], None]) -> list[Bucket]:
    """A plan of given buckets (as :func:`run_buckets` streams its own)."""
    for bucket in buckets:
        on_bucket(bucket)
    return list(buckets)


def cache_dir() -> str:
    """Where Triton keeps compiled kernels for this process and its children."""
    return triton_cache_dir()


def warm(buckets: Sequence[Bucket], device: str, *, backward: bool = False, jobs: Optional[int] = None,
         providers: Sequence[str] = (), seconds: Optional[float] = None, invariance: str = "none",
         progress: Optional[Callable[[int, int, Bucket], None]] = None) -> WarmupResult:
    """Run every bucket's warm-up cases in `jobs` spawned processes (they share Triton's disk
    cache with this one), with the run's `invariance` checks (their variants compile binaries of
    their own); `progress(done, total, bucket)` after each bucket. A bucket that
    raises is counted in ``failed`` (the search will judge that mode); a process that dies
    ends the warm-up early (the buckets left compile during the search, as without one).
    `seconds`: return after that long; buckets not started are dropped, the ones being
    compiled finish in the background (their processes exit after them)."""
    start = time.perf_counter()
    jobs = jobs or default_jobs(len(buckets))
    failed: list[str] = []
    warmed, stopped = 0, ""
    if not buckets:
        return WarmupResult(0, 0, (), jobs, 0.0, cache_dir())
    if progress:
        progress(0, len(buckets), buckets[0])
    pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:  # spawn: never fork a process that may hold CUDA
        futures = {pool.submit(warm_bucket, b, device, backward, tuple(providers), tuple(sys.path), invariance): b
                   for b in buckets}
        done = 0
        for future in concurrent.futures.as_completed(futures, timeout=seconds):
            done += 1
            bucket = futures[future]
            try:
                why = future.result()
            except concurrent.futures.process.BrokenProcessPool as exc:
                failed.append(f"{bucket.describe()}: warm-up process died ({exc})")
                break
            if why:
                failed.append(f"{bucket.describe()}: {why}")
            else:
                warmed += 1
            if progress:
                progress(done, len(buckets), bucket)
    except concurrent.futures.TimeoutError:
        stopped = f"after {seconds:g} s: {len(buckets) - done} bucket(s) left to the search"
    finally:
        pool.shutdown(wait=not stopped, cancel_futures=True)
    return WarmupResult(len(buckets), warmed, tuple(failed), jobs, time.perf_counter() - start, cache_dir(), stopped)


class BackgroundWarmup:
    """Warm-up processes that compile a run's buckets while its search runs (``--warmup background``).

    A planner process works out the buckets (`plan`, e.g. :func:`run_buckets` as a partial,
    called with ``on_bucket=``: replaying the search's draws takes seconds the search should not
    wait for) and streams each as it is drawn; the compile processes (at a lower CPU priority:
    :mod:`fla_check.engine.warmup_pool`) compile them in draw order as they come, skipping the
    first `skip` (the search compiles those itself), and exit once every planned bucket is done.
    `pool`: processes the CLI started before its imports
    (:func:`fla_check.engine.warmup_pool.prestart_warmup`); else started here. The search finds a
    bucket compiled, or half-compiled, when it gets there, and its first failure is not held
    back as by a warm-up before it. Nothing crosses back but Triton's disk cache. :meth:`stop`
    ends the processes; a bucket being compiled then is abandoned (Triton writes a cache entry
    whole or not at all)."""

    def __init__(self, plan: Callable[..., Sequence[Bucket]], device: str, *, backward: bool = False,
                 providers: Sequence[str] = (), jobs: Optional[int] = None, skip: int = 1,
                 invariance: str = "none", pool: Optional[WarmupPool] = None) -> None:
        self.started = time.perf_counter()
        self.warmup = pool or start_warmup_pool(device, jobs)
        self.pool, self.jobs = self.warmup.pool, self.warmup.jobs
        self.buckets: list[Bucket] = []
        self.planned = False
        self.warmed = 0
        self.failed: list[str] = []
        self.finished = 0
        self.lock = threading.Lock()
        self.args = (device, backward, tuple(providers), tuple(sys.path), invariance)
        self.skip = skip
        self.stopping = threading.Event()
        self.warmup.planner.apply_async(_planned, (plan, tuple(sys.path), tuple(providers)),
                                        error_callback=self._failed_plan)
        self.reader = threading.Thread(target=self._submit_planned, name="fla-check-warmup-plan", daemon=True)
        self.reader.start()

    def _submit_planned(self) -> None:
        """Submit each bucket the plan streams (the first `skip` left to the search) until the
        plan's end (None) or :meth:`stop`."""
        seen: set[Bucket] = set()
        while not self.stopping.is_set():
            if self.warmup.buckets.empty():  # polled: a blocking get could outlive stop()
                self.stopping.wait(POLL_S)
                continue
            bucket = self.warmup.buckets.get()  # whole: a bucket's message is one atomic pipe write
            if bucket is None:  # the plan's end
                self.warmup.planner.close()
                with self.lock:
                    self.planned = True
                    self._close_when_done()
                return
            if bucket in seen:
                continue
            seen.add(bucket)
            if len(seen) <= self.skip:
                continue
            with self.lock:
                self.buckets.append(bucket)
            try:
                self.pool.apply_async(warm_bucket, (bucket,) + self.args,
                                      callback=functools.partial(self._done, bucket),
                                      error_callback=lambda exc, b=bucket: self._done(b, f"{type(exc).__name__}: {exc}"))
            except ValueError:  # stopped meanwhile: the pool no longer takes work
                return

    def _failed_plan(self, exc: BaseException) -> None:
        with self.lock:
            self.failed.append(f"planning the buckets: {type(exc).__name__}: {exc}")

    def _done(self, bucket: Bucket, why: str) -> None:
        with self.lock:
            self.finished += 1
            if why:
                self.failed.append(f"{bucket.describe()}: {why}")
            else:
                self.warmed += 1
            self._close_when_done()

    def _close_when_done(self) -> None:
        """With the lock held: once every planned bucket is done, let the processes exit now
        (their CUDA contexts and cores go back while the search runs; :meth:`stop` is then quick)."""
        if self.planned and self.finished == len(self.buckets) and not self.stopping.is_set():
            self.pool.close()

    def stop(self) -> WarmupResult:
        """End the processes (the search is over); what they warmed by then."""
        self.stopping.set()
        self.reader.join()
        self.warmup.terminate()
        self.warmup.join()
        with self.lock:
            return WarmupResult(len(self.buckets), self.warmed, tuple(self.failed), self.jobs,
                                time.perf_counter() - self.started, cache_dir(), self._stopped_early(),
                                background=True)

    def _stopped_early(self) -> str:
        """With the lock held: why the warm-up ended before every bucket was warmed ('' if it did not)."""
        left = len(self.buckets) - self.finished
        if not self.planned and not self.failed:
            if not self.buckets:
                return "the search ended before the buckets were planned"
            return f"the search ended while the buckets were planned: {left} of {len(self.buckets)} not warmed"
        return f"the search ended first: {left} bucket(s) not warmed" if left else ""


def _planned(plan: Callable[..., Sequence[Bucket]], path: tuple[str, ...], providers: tuple[str, ...] = ()) -> int:
    """In a warm-up process: stream the buckets of `plan` into the pool's queue, then None. The
    run's `providers` are loaded first: the plan resolves their modes (``fla:chunk``)."""
    sys.path.extend(p for p in path if p not in sys.path)
    queue = planned_bucket_queue()
    try:
        from fla_check.providers import load_provider

        for spec in providers:
            load_provider(spec)
        return len(plan(on_bucket=queue.put))
    finally:
        queue.put(None)


def warm_case(bucket: Bucket) -> CaseConfig:
    """The small case that compiles `bucket`'s binaries (see the module doc)."""
    return CaseConfig(op=bucket.op, dtype=bucket.dtype, B=1, T=sum(WARM_SEGMENTS) if bucket.varlen else WARM_T,
                      H=bucket.H, K=bucket.K, V=bucket.V, packing="varlen" if bucket.varlen else "none",
                      segments=(WARM_SEGMENTS,) if bucket.varlen else (), initial_state=bucket.initial_state,
                      value_ratio=bucket.value_ratio, chunk_size=bucket.chunk_size,
                      state_v_first=bucket.state_v_first, **option_values(bucket.options))


def warm_bucket(bucket: Bucket, device: str, backward: bool, providers: tuple[str, ...] = (),
                path: tuple[str, ...] = (), invariance: str = "none") -> str:
    """In a warm-up process: run `bucket`'s :func:`warm_case` through the mode, with the run's
    `invariance` checks (scope bucket: the search runs them on its first case of the bucket, and
    a layout variant is a binary of its own); '' or why it failed."""
    sys.path.extend(p for p in path if p not in sys.path)
    try:
        from fla_check.engine.runner import check_case
        from fla_check.providers import load_provider

        for spec in providers:
            load_provider(spec)
        result = check_case(bucket.op, [bucket.mode], warm_case(bucket), device=device, backward=backward,
                            invariance=invariance, invariance_scope="bucket")
        mode = next(iter(result.modes.values()))
        if mode.verdict.value in ("ERROR", "CRASHED", "TIMEOUT"):
            return f"{mode.verdict.value}: {mode.reason}"
    except Exception as exc:  # noqa: BLE001 - a warm-up never fails the run; the search judges the mode
        return f"{type(exc).__name__}: {exc}"
    return ""
