"""Autotune configs as a dimension of a check: ``--configs first|picked|all|sample:N``.

A mode's autotuned kernels are discovered while it runs: :func:`autotune_scope` wraps
``triton.runtime.autotuner.Autotuner.run`` and records every Autotuner that launches (its
kernel name, its configs and which of them the kernel's own ``early_config_prune`` keeps for
this case). The same wrapper forces one config of a named kernel by setting the Autotuner's
``configs`` to ``[config]`` for that launch (Triton's single-config path), restoring it after.

Policies: ``first`` pins every kernel to its first surviving config that fits the GPU (the
default; one that raises ``OutOfResources`` is passed over, :func:`fla_check.kernels.common.
autotune.run_fitting`);
``picked`` lets the autotuner benchmark and choose, as users run it (GPU only: the interpreter
cannot time configs); ``all`` re-runs the case under each other surviving config of each kernel,
one kernel at a time with the others at their first config; ``sample:N`` does so for N seeded
configs per kernel. ``force`` (``--config KERNEL:INDEX``) runs every call with that config.
Under the interpreter num_warps and num_stages are ignored: a config that differs from one
already run only in those is skipped (:data:`INTERPRETER_NOTE`).
"""
from __future__ import annotations

import random
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence

from fla_check.errors import ConfigPolicyError
from fla_check.kernels.common.autotune import pinned_autotune, run_fitting, unpinned_autotune

KINDS = ("first", "picked", "all", "sample")
INTERPRETER_NOTE = ("Triton interpreter: num_warps and num_stages are ignored, only block-size "
                    "meta-parameters change the kernel")


@dataclass(frozen=True)
class ConfigPolicy:
    """Which autotune configs a case runs under (see the module docstring)."""

    kind: str = "first"
    n: int = 0  # sample:N
    force: tuple[tuple[str, int], ...] = ()  # (kernel, config index) pairs every call runs with

    @property
    def sweeps(self) -> bool:
        return self.kind in ("all", "sample")

    def label(self) -> str:
        return f"sample:{self.n}" if self.kind == "sample" else self.kind

    def forced(self) -> dict[str, int]:
        return dict(self.force)

    def to_json(self) -> dict[str, Any]:
        return {"configs": self.label(), "config": [f"{k}:{i}" for k, i in self.force]}


FIRST = ConfigPolicy()


def parse_policy(text: Optional[str] = None, force: Sequence[str] = ()) -> ConfigPolicy:
    """``first|picked|all|sample:N`` and ``KERNEL:INDEX`` strings -> a :class:`ConfigPolicy`."""
    text = (text or "first").strip()
    kind, _, arg = text.partition(":")
    if kind not in KINDS or (kind == "sample") != bool(arg):
        raise ConfigPolicyError(f"--configs {text!r}: expected first, picked, all or sample:N")
    n = 0
    if kind == "sample":
        if not arg.isdigit() or int(arg) < 1:
            raise ConfigPolicyError(f"--configs {text!r}: N must be an integer >= 1")
        n = int(arg)
    pairs = []
    for item in force:
        name, _, index = item.rpartition(":")
        if not name or not index.isdigit():
            raise ConfigPolicyError(f"--config {item!r}: expected KERNEL:INDEX, e.g. simple_gla_fwd_o_kernel:2")
        pairs.append((name, int(index)))
    if pairs and kind == "picked":
        raise ConfigPolicyError("--config forces a config; it cannot be combined with --configs picked")
    return ConfigPolicy(kind, n, tuple(pairs))


@dataclass
class TunedKernel:
    """One autotuned kernel seen during a call: its configs, those its pruning keeps for the case."""

    name: str
    configs: list
    valid: tuple[int, ...]

    def describe(self, index: int) -> str:
        return describe(self.configs[index])


@dataclass
class Seen:
    """The autotuned kernels launched inside an :func:`autotune_scope`, in launch order."""

    kernels: dict[str, TunedKernel] = field(default_factory=dict)


def describe(config: Any) -> str:
    """'BV=16, num_warps=4, num_stages=3' for a triton.Config."""
    meta = ", ".join(f"{k}={v}" for k, v in config.kwargs.items())
    parts = [meta] if meta else []
    parts += [f"num_warps={config.num_warps}", f"num_stages={config.num_stages}"]
    return ", ".join(parts)


def kernel_name(tuner: Any) -> str:
    fn = getattr(tuner, "base_fn", None) or tuner.fn
    while not hasattr(fn, "__name__") and hasattr(fn, "fn"):
        fn = fn.fn
    return fn.__name__


def _same(a: Any, b: Any) -> bool:
    return a is b or (a.kwargs == b.kwargs and a.num_warps == b.num_warps and a.num_stages == b.num_stages)


def _valid(tuner: Any, args: tuple, kwargs: dict) -> tuple[int, ...]:
    configs = tuner.configs
    if not tuner.early_config_prune:
        return tuple(range(len(configs)))
    kept = tuner.early_config_prune(configs, dict(zip(tuner.arg_names, args)), **kwargs) or configs
    return tuple(i for i, c in enumerate(configs) if any(_same(c, k) for k in kept))


@contextmanager
def autotune_scope(policy: ConfigPolicy, force: Optional[Mapping[str, int]] = None) -> Iterator[Seen]:
    """Run the body under `policy` (pinned to first configs, or free for ``picked``), recording
    the autotuned kernels that launch and forcing ``force[name]`` (a config index) where given."""
    from triton.runtime.autotuner import Autotuner

    force = dict(policy.force if force is None else force)
    seen = Seen()
    original = Autotuner.run

    def run(self, *args, **kwargs):
        name = kernel_name(self)
        if name not in seen.kernels:
            seen.kernels[name] = TunedKernel(name, list(self.configs), _valid(self, args, kwargs))
        if name not in force:
            return run_fitting(original, self, *args, **kwargs)
        index = force[name]
        if not 0 <= index < len(self.configs):
            raise ConfigPolicyError(f"--config {name}:{index}: {name} has {len(self.configs)} configs "
                                    f"(0..{len(self.configs) - 1})")
        saved = self.configs
        self.configs = [saved[index]]
        try:
            return original(self, *args, **kwargs)
        finally:
            self.configs = saved

    scope = unpinned_autotune() if policy.kind == "picked" else pinned_autotune()
    with scope:
        Autotuner.run = run
        try:
            yield seen
        finally:
            Autotuner.run = original


def sweep_plan(policy: ConfigPolicy, kernel: TunedKernel, seed: int, interpreter: bool
               ) -> list[tuple[int, Optional[int]]]:
    """The configs of `kernel` to run after the first one: (index, duplicate_of) pairs, where
    `duplicate_of` names an already-run config that is the same kernel under the interpreter
    (same meta-parameters; num_warps/num_stages ignored) and None for a config to run."""
    forced = policy.forced().get(kernel.name)
    first = forced if forced is not None else (kernel.valid[0] if kernel.valid else 0)
    rest = [i for i in kernel.valid if i != first]
    if policy.kind == "sample":
        rng = random.Random(seed * 1_000_003 + zlib.crc32(kernel.name.encode()))
        rest = sorted(rng.sample(rest, min(policy.n, len(rest))))
    plan: list[tuple[int, Optional[int]]] = []
    ran = [first]
    for i in rest:
        dup = next((j for j in ran if kernel.configs[j].kwargs == kernel.configs[i].kwargs), None) \
            if interpreter else None
        plan.append((i, dup))
        if dup is None:
            ran.append(i)
    return plan
