"""Splitting a run across CI jobs (``--shard i/n``) and pinning one GPU per pytest-xdist worker.

Import-light on purpose (the pytest plugin uses it at start-up): standard library only.

Shards are numbered 1..n. A shard runs its share of the example budget (the shares add up to
the budget) and, when the run is deterministic (a derandomized profile or an explicit seed), a
seed of its own derived from (seed, i, n), so the shards draw different cases and every shard
repeats its cases on every run. A random profile (nightly) stays random per shard.

A shard of a list of items (``fla-check selftest --shard i/n``: catalog entries) is every n-th
item in the order of a stable key (:meth:`Shard.pick`): disjoint, their union is the list, sizes
differ by at most one, and the same key always lands in the same shard of the same list.

GPU pinning: worker ``gwN`` of pytest-xdist gets ``CUDA_VISIBLE_DEVICES = gpus[N % len(gpus)]``,
set before anything initialises CUDA; nothing changes on a host with fewer than two GPUs. Other
process pools (``selftest --jobs``) pin their worker w the same way (:func:`gpu_for_index`).
"""
from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, TypeVar

from fla_check.errors import ShardError  # noqa: F401 (re-exported)

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_WORKER_RE = re.compile(r"^gw(\d+)$")
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ShardError(f"shard {self.index}/{self.count}: need 1 <= i <= n (shards are numbered 1..n)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1

    def budget(self, total: int) -> int:
        """This shard's share of `total` examples (shares differ by at most one, sum to total)."""
        base, extra = divmod(total, self.count)
        return base + (1 if self.index <= extra else 0)

    def seed(self, seed: Optional[int], *, derandomize: bool) -> Optional[int]:
        """The seed this shard runs with: unchanged for a whole run; derived from (seed, i, n)
        for a deterministic one (explicit seed or derandomized profile); None stays random."""
        if self.whole or (seed is None and not derandomize):
            return seed
        digest = hashlib.sha256(f"fla-check-shard:{seed or 0}:{self.index}/{self.count}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def pick(self, items: Sequence[T], key: Callable[[T], str]) -> list[T]:
        """This shard's items, in their given order: rank r of `items` sorted by `key` (ties in
        the given order) belongs to shard ``r % count + 1``."""
        ranked = sorted(range(len(items)), key=lambda i: key(items[i]))
        mine = {i for rank, i in enumerate(ranked) if rank % self.count == self.index - 1}
        return [item for i, item in enumerate(items) if i in mine]

    def split(self, index: int, count: int) -> "Shard":
        """Sub-shard `index` of `count` of this shard (a shard of the n*count global split)."""
        sub = Shard(index, count)
        return Shard((self.index - 1) * count + sub.index, self.count * count)


def parse_shard(text: str) -> Shard:
    """'2/4' -> Shard(2, 4); raises ShardError with the expected form."""
    match = _SHARD_RE.match(str(text))
    if not match:
        raise ShardError(f"shard {text!r} is not of the form i/n (e.g. 2/4; shards are numbered 1..n)")
    return Shard(int(match.group(1)), int(match.group(2)))


def run_budget(profile_examples: int, examples: Optional[int], seed: Optional[int], derandomize: bool,
               shard: Optional[Shard]) -> tuple[int, Optional[int]]:
    """(examples, seed) to pass to :func:`fla_check.engine.search.search` for `shard` of a run."""
    total = profile_examples if examples is None else examples
    if shard is None or shard.whole:
        return total, seed
    return shard.budget(total), shard.seed(seed, derandomize=derandomize)


# -- one GPU per xdist worker ----------------------------------------------------------------
def worker_index(worker_id: Optional[str]) -> Optional[int]:
    """N of an xdist worker id 'gwN'; None for the controller or a run without xdist."""
    match = _WORKER_RE.match(worker_id or "")
    return int(match.group(1)) if match else None


def parse_gpu_list(text: str) -> list[str]:
    """'0,1, 3' -> ['0', '1', '3'] (ids or UUIDs as CUDA_VISIBLE_DEVICES takes them)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def gpu_for_worker(worker_id: Optional[str], gpus: Sequence[str]) -> Optional[str]:
    """The CUDA_VISIBLE_DEVICES value of `worker_id`, or None (leave it alone).

    None without xdist, on the controller, or with fewer than two GPUs; else worker gwN gets
    ``gpus[N % len(gpus)]`` (more workers than GPUs share them round-robin).
    """
    n = worker_index(worker_id)
    return None if n is None else gpu_for_index(n, gpus)


def gpu_for_index(n: int, gpus: Sequence[str]) -> Optional[str]:
    """The CUDA_VISIBLE_DEVICES value of worker `n` (0-based) of a pool: ``gpus[n % len(gpus)]``;
    None (leave it alone) with fewer than two GPUs."""
    return gpus[n % len(gpus)] if len(gpus) >= 2 else None


def query_gpus(timeout: float = 20.0) -> list[str]:
    """GPU indices from ``nvidia-smi`` (no CUDA initialisation); [] when it is absent or fails."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_gpu_list(",".join(out.split()))


def visible_gpus(env: Mapping[str, str], setting: str = "auto") -> list[str]:
    """The GPUs workers may be pinned to.

    `setting`: 'off' (none: never pin), a comma list of ids, or 'auto': the current
    CUDA_VISIBLE_DEVICES when set (pinning stays inside it), else what nvidia-smi lists.
    """
    setting = setting.strip().lower()
    if setting == "off":
        return []
    if setting != "auto":
        return parse_gpu_list(setting)
    if "CUDA_VISIBLE_DEVICES" in env:
        return parse_gpu_list(env["CUDA_VISIBLE_DEVICES"])
    return query_gpus()


def pin_worker_gpu(env: dict, setting: str = "auto") -> Optional[str]:
    """Set CUDA_VISIBLE_DEVICES in `env` (os.environ) for this xdist worker; returns the value set."""
    worker = env.get("PYTEST_XDIST_WORKER")
    if worker_index(worker) is None or setting.strip().lower() == "off":
        return None
    gpu = gpu_for_worker(worker, visible_gpus(env, setting))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu
