"""``fla-check run --sanitizer``: re-run cases' replay command under ``compute-sanitizer --tool
memcheck`` (a CUDA GPU with the CUDA toolkit's compute-sanitizer on PATH) and attach its summary
to the run report.

Which cases: ``failing`` (each failing mode's minimal case; the default) or ``sample:N`` (N cases
drawn with a fixed seed, plus the failing ones). On the CPU (Triton interpreter) or without the
tool the whole check is UNSUPPORTED with the reason; memory errors are then caught only by the
poison and guard checks of :mod:`fla_check.engine.memory`.
"""
from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from fla_check.errors import UsageError
from fla_check.verdict.results import SearchResult

TOOL = "compute-sanitizer"
TIMEOUT_S = 600.0
_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors?")
_ERROR_LINE = re.compile(r"^=+ (Invalid __\w+__ \w+.*|Program hit .*|Out-of-range .*|Misaligned .*)$", re.M)


@dataclass(frozen=True)
class SanitizerPolicy:
    """``failing`` or ``sample:N``."""

    sample: int = 0  # 0: the failing cases only

    @classmethod
    def parse(cls, text: str) -> "SanitizerPolicy":
        text = (text or "failing").strip().lower()
        if text == "failing":
            return cls()
        if text.startswith("sample:") and text[7:].isdigit() and int(text[7:]) >= 1:
            return cls(int(text[7:]))
        raise UsageError(f"--sanitizer {text!r}: use 'failing' or 'sample:N' with N >= 1")


@dataclass
class SanitizedCase:
    """compute-sanitizer's verdict on one case's replay."""

    case: int
    errors: Optional[int]  # None: no ERROR SUMMARY line (the replay did not finish under the tool)
    summary: str  # the ERROR SUMMARY line and the first distinct error kinds, or why it did not run
    command: str


def unsupported_reason(device: str, which: Optional[Callable[[str], Optional[str]]] = None) -> Optional[str]:
    """Why memcheck cannot run here, or None (`which`: how the tool is looked up, shutil.which)."""
    if device != "cuda":
        return (f"{TOOL} needs a CUDA GPU; this run is on the {device} (Triton interpreter): out-of-bounds "
                "accesses are caught here only by the poisoned outputs and guarded inputs")
    if (which or shutil.which)(TOOL) is None:
        return f"{TOOL} is not on PATH (it ships with the CUDA toolkit, e.g. /usr/local/cuda/bin)"
    return None


def pick_cases(result: SearchResult, policy: SanitizerPolicy, seed: int = 0) -> list[int]:
    """The failing modes' minimal cases, plus `policy.sample` others drawn with `seed`."""
    picked = sorted(set(result.failures.values()))
    rest = [i for i in range(len(result.cases)) if i not in picked]
    picked += sorted(random.Random(seed).sample(rest, min(policy.sample, len(rest))))
    return picked


def replay_command(report: Path, case: int, providers: tuple[str, ...] = ()) -> list[str]:
    """The memcheck command line of one case's replay (in-process, ``--isolation none``: the
    kernels run in the process memcheck instruments, not in an isolation worker)."""
    cmd = [TOOL, "--tool", "memcheck", sys.executable, "-m", "fla_check.cli", "replay",
           str(report), "--case", str(case), "--device", "cuda", "--isolation", "none", "--no-color"]
    for spec in providers:
        cmd += ["--provider", spec]
    return cmd


def summarize(output: str) -> tuple[Optional[int], str]:
    """(error count, summary) from compute-sanitizer's output."""
    match = None
    for match in _SUMMARY.finditer(output):
        pass
    kinds = list(dict.fromkeys(m.group(1).strip() for m in _ERROR_LINE.finditer(output)))[:3]
    if match is None:
        tail = output.strip().splitlines()[-1:] or ["no output"]
        return None, f"no ERROR SUMMARY from {TOOL} (last line: {tail[0][:200]})"
    return int(match.group(1)), "; ".join([match.group(0)] + kinds)


def sanitize(result: SearchResult, report: Path, policy: SanitizerPolicy, device: str,
             providers: tuple[str, ...] = (),
             run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> dict:
    """Run memcheck over the picked cases; the record attached to the report (``options.sanitizer``)."""
    reason = unsupported_reason(device)
    if reason:
        return {"status": "UNSUPPORTED", "reason": reason, "cases": []}
    cases = []
    for index in pick_cases(result, policy):
        cmd = replay_command(report, index, providers)
        try:
            proc = run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
            errors, summary = summarize((proc.stdout or "") + (proc.stderr or ""))
        except subprocess.TimeoutExpired:
            errors, summary = None, f"{TOOL} did not finish in {TIMEOUT_S:.0f} s"
        cases.append(asdict(SanitizedCase(index, errors, summary, " ".join(cmd))))
    found = any(c["errors"] for c in cases)
    return {"status": "ERRORS" if found else "CLEAN", "reason": "", "cases": cases}


def sanitizer_failed(record: Optional[dict]) -> bool:
    """Whether memcheck found an error in any case."""
    return bool(record) and record.get("status") == "ERRORS"
