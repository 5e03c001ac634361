"""Which runs' compile buckets Triton's disk cache already holds, so that their warm-up is skipped.

A warm-up costs a run with a warm cache seconds even when it compiles nothing: its processes
start, import torch and plan on the cores the search needs (the first failing gla case of a
warm-cache run came 3.6 s later with the background warm-up than without it, docs/gpu/perf-h200-6).
After a GPU run that compiled every bucket of its plan (it ran to the end and either found no
failure, so it drew exactly the plan, or its warm-up finished), its *fingerprint* goes into
``fla-check-warmed.json`` in the Triton cache directory; the next run with the same fingerprint
skips the warm-up and says so. The fingerprint covers what decides the plan and the binaries:
fla_check's own source, torch's and Triton's versions, the GPU, the op, modes, invariance checks
and every search argument. Runs with providers (modes whose source is not fla_check's) never
skip. The ledger lives and dies with the cache it describes; ``FLA_CHECK_WARM_LEDGER=off`` turns
it off. It only ever skips a warm-up: results never depend on it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from fla_check.engine.prestart import triton_cache_dir

LEDGER_NAME = "fla-check-warmed.json"
LEDGER_ENV = "FLA_CHECK_WARM_LEDGER"
MAX_ENTRIES = 256  # fingerprints kept (the newest)


def enabled() -> bool:
    return os.environ.get(LEDGER_ENV, "on").strip().lower() not in ("off", "0", "no")


def _source_digest() -> str:
    """sha256 over fla_check's Python files (kernels, strategies, search: what the plan and the
    binaries come from)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _platform() -> dict[str, Any]:
    import torch
    import triton

    gpu = None
    if torch.cuda.is_available():
        gpu = [torch.cuda.get_device_name(), list(torch.cuda.get_device_capability())]
    return {"torch": torch.__version__, "triton": triton.__version__, "gpu": gpu}


def fingerprint(op: str, modes: Sequence[str], checks: str, plan_args: dict[str, Any]) -> str:
    """The run's fingerprint: equal fingerprints plan the same buckets and compile the same binaries."""
    what = {"source": _source_digest(), **_platform(), "op": op, "modes": list(modes), "checks": checks,
            "plan": {k: repr(v) for k, v in sorted(plan_args.items())}}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _path(directory: Optional[str]) -> Path:
    return Path(directory or triton_cache_dir()) / LEDGER_NAME


def present(directory: Optional[str] = None) -> bool:
    """Whether the cache has a ledger at all (standard library only: the CLI asks before its
    imports; a cache without one cannot skip a warm-up)."""
    return enabled() and _path(directory).is_file()


def _entries(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def holds(signature: str, directory: Optional[str] = None) -> bool:
    """Whether a run with this fingerprint compiled its buckets into the cache before."""
    return enabled() and signature in _entries(_path(directory))


def add(signature: str, directory: Optional[str] = None) -> None:
    """Record the fingerprint (atomically; a ledger that cannot be written is left alone: it only
    saves time)."""
    if not enabled():
        return
    path = _path(directory)
    entries = _entries(path)
    entries[signature] = time.time()
    kept = dict(sorted(entries.items(), key=lambda kv: kv[1])[-MAX_ENTRIES:])
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fla-check-warmed.")
        with os.fdopen(fd, "w") as f:
            json.dump(kept, f)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
