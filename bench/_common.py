"""Shared plumbing of the bench scripts: a time budget, fail-soft sections, JSON + markdown output.

Every script writes ``<out>/<name>.json`` (all numbers, environment, per-section errors with
tracebacks) and ``<out>/<name>.md`` (its tables, each under the exact command that made it).
Both are rewritten atomically after every section, so a script killed by an outer ``timeout``
keeps what it finished. Progress goes to stdout with ``flush=True``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
PROCESS_START = time.perf_counter()  # budgets count from here: scripts import this module first


def log(*parts: Any) -> None:
    """A progress line on stdout, flushed (readable through pipes and PYTHONUNBUFFERED-less runs)."""
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


def sync(device: str) -> None:
    """Wait for queued GPU work (no-op on CPU), so wall times are attributed to the right step."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def cuda_median_us(fn: Callable[[], Any], reps: int) -> float:
    """Median microseconds of `reps` calls of `fn`, each timed by CUDA events around it (GPU only; the
    caller makes the first, compiling call)."""
    import torch

    samples = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(1e3 * start.elapsed_time(end))
    return statistics.median(samples)


ALLOCATOR_STATS = ("num_device_alloc", "num_device_free", "num_alloc_retries", "num_ooms")


def allocator_delta(before: dict, after: dict) -> str:
    """The CUDA caching allocator's device allocations, frees, out-of-memory retries (each frees the whole
    cache: docs/gpu/perf-h200-55) and raised out-of-memory errors between two ``torch.cuda.memory_stats()``."""
    return ", ".join(f"{k[4:]} {after.get(k, 0) - before.get(k, 0)}" for k in ALLOCATOR_STATS)


def variant_row(cells: Sequence[Any], call: Callable[[], Any], reps: int = 10) -> str:
    """A kernel-variant table row: `cells`, then the first call's seconds (it compiles) and the median ms of `reps`
    more (:func:`cuda_median_us`), or, where the launch asks for more than the GPU has, Triton's message."""
    import torch
    from triton.runtime.errors import OutOfResources

    head = "| " + " | ".join(str(c) for c in cells)
    t0 = time.perf_counter()
    try:
        call()
        torch.cuda.synchronize()
    except OutOfResources as e:
        return f"{head} | out of resources: {e} | - |"
    first = time.perf_counter() - t0
    return f"{head} | {first:.2f} | {cuda_median_us(call, reps) / 1e3:.3f} |"


def int_list(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3] (an argparse type)."""
    return [int(x) for x in text.split(",")]


def fmt(x: Optional[float], digits: int = 3) -> str:
    """A number for a table cell: '-' for None/NaN, else `digits` significant digits."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def environment(device: Optional[str] = None) -> dict[str, Any]:
    """Versions, device name, backend and commit (each lookup fail-soft)."""
    env: dict[str, Any] = {"python": platform.python_version(), "host_cpus": os.cpu_count()}
    try:
        import torch

        env["torch"] = torch.__version__
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001
        env["torch"] = f"unavailable: {exc}"
    for mod in ("triton", "fla"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            env[mod] = None
    if device is not None:
        env["device"] = device
        env["triton_interpret"] = os.environ.get("TRITON_INTERPRET") == "1"
    env["commit"] = git_commit(REPO)
    try:
        import fla_check

        env["fla_check"] = source_digest(Path(fla_check.__file__).parent)
    except Exception:  # noqa: BLE001
        env["fla_check"] = None
    return env


def git_commit(repo: Path) -> Optional[str]:
    """HEAD's short hash, with "+changes" where tracked files differ from it (a device's copy of a working tree
    keeps an older .git: perf-h200-61's headers named 48cd2bb for a tree that was 52cde1b); None without git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except Exception:  # noqa: BLE001
        return None


def source_digest(package_dir: Path) -> str:
    """12 hex digits of SHA-256 over a package's .py files (each relative path and its bytes, in sorted order):
    which code ran, git or not (`python3 bench/_common.py --digest DIR` for a checkout of any commit)."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@dataclass
class Table:
    """One markdown table: title, the command that produced it, header and rows."""

    title: str
    command: str
    header: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        lines = [f"#### {self.title}", "", f"`{self.command}`", ""]
        if not self.rows:  # a header alone reads as "ran, found nothing" (perf-h200-61's summaries)
            lines.append("No rows: nothing in this run measured this table (its options left it out, or see "
                         "Skipped and Errors below).")
        else:
            lines.append("| " + " | ".join(self.header) + " |")
            lines.append("|" + "---|" * len(self.header))
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"


class Bench:
    """Results of one bench script: sections, tables, errors, a wall-clock budget."""

    def __init__(self, name: str, out: Path, budget_s: float, argv: Optional[Sequence[str]] = None):
        self.name, self.out, self.budget_s = name, Path(out), budget_s
        self.start = PROCESS_START
        args = list(sys.argv[1:] if argv is None else argv)
        self.command = "python " + shlex.join([f"bench/{name}.py", *args])
        self.data: dict[str, Any] = {"bench": name, "command": self.command, "budget_s": budget_s,
                                     "sections": {}, "errors": {}, "skipped": {}}
        self.render: Optional[Callable[[], list[Table]]] = None  # tables from self.data, on every write
        self.out.mkdir(parents=True, exist_ok=True)

    # -- budget --------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    def has_time(self, key: str, need_s: float = 0.0) -> bool:
        """False (and the section recorded as skipped) when less than `need_s` seconds are left."""
        if self.remaining() > need_s:
            return True
        self.data["skipped"][key] = f"time budget: {self.remaining():.0f} s left of {self.budget_s:.0f} s"
        log(f"skip {key}: {self.data['skipped'][key]}")
        return False

    # -- sections ------------------------------------------------------------------------
    @contextmanager
    def section(self, key: str) -> Iterator[dict[str, Any]]:
        """A fail-soft unit: its dict goes under data['sections'][key]; an exception is recorded
        (type, message, traceback) and swallowed; outputs are rewritten afterwards."""
        record: dict[str, Any] = {}
        self.data["sections"][key] = record
        t0 = time.perf_counter()
        log(f"{self.name}: {key} ...")
        try:
            yield record
        except KeyboardInterrupt:
            record["interrupted"] = True
            self.data["errors"][key] = "KeyboardInterrupt (outer timeout or Ctrl-C)"
            self.write()
            raise
        except Exception as exc:  # noqa: BLE001 - fail soft: keep the other sections
            self.data["errors"][key] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            log(f"{self.name}: {key} FAILED: {type(exc).__name__}: {exc}")
        record["section_seconds"] = round(time.perf_counter() - t0, 3)
        log(f"{self.name}: {key} done in {record['section_seconds']:.1f} s")
        self.write()

    # -- output --------------------------------------------------------------------------
    def markdown(self) -> str:
        env = self.data.get("environment", {})
        where = env.get("gpu") or f"CPU ({env.get('host_cpus')} cores, Triton interpreter)"
        head = [f"### {self.name} ({where}; torch {env.get('torch')}, triton {env.get('triton')}, "
                f"fla {env.get('fla')}, commit {env.get('commit')}, fla_check {env.get('fla_check')})", ""]
        try:
            body = [t.markdown() for t in (self.render() if self.render else [])]
        except Exception as exc:  # noqa: BLE001 - a rendering bug must not lose the JSON
            body = [f"(tables could not be rendered: {type(exc).__name__}: {exc})\n"]
        if self.data["errors"]:
            body.append("Errors: " + "; ".join(f"{k}: {v if isinstance(v, str) else v['error']}"
                                                for k, v in self.data["errors"].items()) + "\n")
        if self.data["skipped"]:
            body.append("Skipped: " + "; ".join(f"{k} ({v})" for k, v in self.data["skipped"].items()) + "\n")
        return "\n".join(head + body)

    def write(self) -> None:
        self.data["seconds"] = round(self.elapsed(), 3)
        from fla_check.report.storage import atomic_write  # lazy: budgets count from this module's import

        for suffix, text in ((".json", json.dumps(self.data, indent=1, default=str)), (".md", self.markdown())):
            atomic_write(self.out / f"{self.name}{suffix}", lambda tmp, text=text: Path(tmp).write_text(text))


def add_common_args(parser, *, budget: float, out: str = "bench_out") -> None:
    """--out DIR, --budget SECONDS, --device."""
    parser.add_argument("--out", default=out, help=f"output directory (default {out})")
    parser.add_argument("--budget", type=float, default=budget,
                        help=f"wall-clock budget in seconds; sections that would start later are skipped (default {budget:g})")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")


if __name__ == "__main__":  # python3 bench/_common.py --digest [PACKAGE_DIR]: the digest benches record as fla_check
    if sys.argv[1:2] != ["--digest"] or len(sys.argv) > 3:
        print("usage: python3 bench/_common.py --digest [PACKAGE_DIR (default: this checkout's fla_check)]",
              file=sys.stderr)
        sys.exit(2)
    print(source_digest(Path(sys.argv[2]) if len(sys.argv) == 3 else REPO / "fla_check"))
