"""pytest plugin: kernel-consistency checks as ordinary test results (entry point ``pytest11``).

Import-light: loading this module (every pytest run in an environment with fla-check) imports
pytest and the standard library only; torch, triton and the engine are imported when a check
is collected or run.

Three ways in, all sharing the options below::

    pytest --fla-check=gla:recurrent,chunk --fla-check-provider mykernels.fla:provider
        # one generated test per mode ("fla-check::gla[chunk]"); an op alone means all its modes

    def test_gla_modes(fla_check):                     # the fixture
        fla_check.check("gla", ["recurrent", "chunk"], dtypes="fp32")

    @pytest.mark.fla_check(op="gla", modes="recurrent,chunk")   # the marker: the body may be empty
    def test_gla(): ...

A failing mode fails the test with the shrunk case, its error table and a replay command;
every check records its numbers with ``record_property`` semantics (``item.user_properties``),
so ``--junitxml`` carries per mode ``fla_check.<mode>.{verdict,max_abs,rel_rms,ratio,cases,
unsupported,failed_cases,case,replay}`` (and ``config``, ``KERNEL:INDEX``, when one autotune config failed;
``invariance_failed``: the metamorphic checks it failed, ``--fla-check-invariance`` /
``--fla-check-invariance-scope``) plus ``fla_check.{op,profile,shard,cases,report,verdict}``.
Each check writes its run report under ``reports/pytest/`` (a gate baseline, replay input).
Mode calls run in a worker process (``--fla-check-isolation process``, the default; see
:mod:`fla_check.engine.isolation`): a kernel that aborts, segfaults or hangs past
``--fla-check-case-timeout`` fails its test as CRASHED / TIMEOUT instead of killing the session.

Parallel runs: ``--fla-check-shard i/n`` runs shard i of n of every check's example budget
(one CI job per shard); ``--fla-check-split K`` turns each generated test into K sub-shards
that pytest-xdist spreads over workers, and each xdist worker ``gwN`` sees one GPU
(``CUDA_VISIBLE_DEVICES``, set before CUDA starts; ``--fla-check-gpus``).
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import pytest

from fla_check.engine.sharding import Shard, ShardError, parse_shard, pin_worker_gpu

if TYPE_CHECKING:  # pragma: no cover
    from fla_check.engine.search import SearchResult

PROFILE_NAMES = ("smoke", "ci", "nightly")  # fla_check.engine.profiles.PROFILES (not imported: import-light)
DEFAULT_PROFILE = "ci"
_SPEC_RE = re.compile(r"^[A-Za-z_][\w]*$")


# -- options -------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fla-check", "fla-check: linear-attention kernel consistency")
    group.addoption("--fla-check", action="append", default=[], dest="fla_check_specs", metavar="OP[:MODES]",
                    help="Add consistency tests for OP's modes (comma list; OP alone = all its modes), "
                         "e.g. --fla-check=gla:recurrent,chunk. Repeatable.")
    group.addoption("--fla-check-profile", choices=PROFILE_NAMES, default=None,
                    help=f"Budget profile of every fla-check test (default {DEFAULT_PROFILE}).")
    group.addoption("--fla-check-provider", action="append", default=[], dest="fla_check_providers",
                    metavar="MODULE:OBJECT", help="Load a provider of modes (or an entry-point name). Repeatable.")
    group.addoption("--fla-check-examples", type=int, default=None, help="Override the profile's example budget.")
    group.addoption("--fla-check-seed", type=int, default=None, help="Make every check depend on this seed.")
    group.addoption("--fla-check-dtypes", default=None, help="Comma list, e.g. fp32,fp16 (default: all supported).")
    group.addoption("--fla-check-backward", action="store_true", default=False, dest="fla_check_backward",
                    help="Also check gradients (dq, dk, dv, dg/dbeta, dh0); forward-only modes are UNSUPPORTED.")
    group.addoption("--fla-check-invariance", default=None, metavar="CHECK,..",
                    help="Metamorphic checks: split, packing, batch, layout, all or none (default layout, "
                         "or FLA_CHECK_INVARIANCE).")
    group.addoption("--fla-check-invariance-scope", choices=("bucket", "all"), default=None,
                    help="Invariance checks on the first case of each compile bucket (default) or every case.")
    group.addoption("--fla-check-max-seq-len", type=int, default=None, help="Largest T drawn.")
    group.addoption("--fla-check-device", choices=("cpu", "cuda"), default=None,
                    help="cuda, or cpu (Triton interpreter). Default: cuda when present.")
    group.addoption("--fla-check-shard", default=None, metavar="I/N",
                    help="Run shard I of N (1-based) of every check's example budget (one per CI job).")
    group.addoption("--fla-check-split", type=int, default=1, metavar="K",
                    help="Split each generated test into K sub-shards (spread them with pytest -n).")
    group.addoption("--fla-check-report-dir", default=None, metavar="DIR",
                    help="Where checks write their JSON reports (default <rootdir>/reports/pytest).")
    group.addoption("--fla-check-isolation", choices=("process", "none"), default="process",
                    help="Run mode calls in a worker process, so a crash or hang is a verdict (CRASHED / "
                         "TIMEOUT), or in the test process (default: process).")
    group.addoption("--fla-check-case-timeout", type=float, default=None, metavar="SECONDS",
                    help="A mode call running longer is TIMEOUT (default 900 with process isolation).")
    group.addoption("--fla-check-gpus", default="auto", metavar="auto|off|IDS",
                    help="GPUs for pytest-xdist workers (one each): auto = CUDA_VISIBLE_DEVICES or nvidia-smi, "
                         "off, or a comma list.")


@dataclass(frozen=True)
class Options:
    """The command-line options of one session (what every check runs with)."""

    specs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    profile: str = DEFAULT_PROFILE
    providers: tuple[str, ...] = ()
    examples: Optional[int] = None
    seed: Optional[int] = None
    dtypes: Optional[str] = None
    max_seq_len: Optional[int] = None
    device: Optional[str] = None
    shard: Shard = field(default_factory=Shard)
    backward: bool = False
    invariance: Optional[str] = None  # None: FLA_CHECK_INVARIANCE or layout
    invariance_scope: Optional[str] = None
    split: int = 1
    report_dir: Path = Path("reports/pytest")
    database_root: Path = Path("reports")
    invocation_dir: Path = Path(".")
    isolation: str = "process"
    case_timeout: Optional[float] = None


_OPTIONS = pytest.StashKey[Options]()


def parse_spec(text: str) -> tuple[str, tuple[str, ...]]:
    """'gla:recurrent,chunk' -> ('gla', ('recurrent', 'chunk')); 'gla' -> ('gla', ()) = every mode.

    Provider modes keep their prefix: 'gla:fla:chunk,recurrent' -> ('gla', ('fla:chunk', 'recurrent')).
    """
    op, sep, modes = str(text).strip().partition(":")
    if not _SPEC_RE.match(op):
        raise pytest.UsageError(f"--fla-check={text!r}: expected OP[:MODE,MODE...], e.g. gla:recurrent,chunk")
    names = tuple(m.strip() for m in modes.split(",") if m.strip())
    if sep and not names:
        raise pytest.UsageError(f"--fla-check={text!r}: empty mode list after 'OP:'")
    return op, names


def options_from_config(config: pytest.Config) -> Options:
    """Parse and validate the plugin's options (pure: no torch import)."""
    get = config.getoption
    try:
        shard = parse_shard(get("fla_check_shard")) if get("fla_check_shard") else Shard()
    except ShardError as exc:
        raise pytest.UsageError(f"--fla-check-shard: {exc}") from None
    split = get("fla_check_split")
    if split < 1:
        raise pytest.UsageError(f"--fla-check-split must be >= 1, got {split}")
    examples = get("fla_check_examples")
    if examples is not None and examples < 0:
        raise pytest.UsageError(f"--fla-check-examples must be >= 0, got {examples}")
    isolation = _getoption(config, "fla_check_isolation") or "process"
    case_timeout = _getoption(config, "fla_check_case_timeout")
    if case_timeout is not None and (isolation == "none" or not case_timeout > 0):
        raise pytest.UsageError(f"--fla-check-case-timeout {case_timeout:g}: needs a value > 0 and "
                                "--fla-check-isolation process")
    root = Path(config.rootpath)
    report_dir = Path(get("fla_check_report_dir") or root / "reports" / "pytest")
    return Options(specs=tuple(parse_spec(s) for s in get("fla_check_specs")),
                   profile=get("fla_check_profile") or DEFAULT_PROFILE,
                   providers=tuple(get("fla_check_providers")), examples=examples, seed=get("fla_check_seed"),
                   dtypes=get("fla_check_dtypes"), max_seq_len=get("fla_check_max_seq_len"),
                   device=get("fla_check_device"), shard=shard, split=split, report_dir=report_dir,
                   backward=bool(_getoption(config, "fla_check_backward")),
                   invariance=_getoption(config, "fla_check_invariance"),
                   invariance_scope=_getoption(config, "fla_check_invariance_scope"),
                   database_root=root / "reports", invocation_dir=Path(config.invocation_params.dir),
                   isolation=isolation, case_timeout=case_timeout)


# -- start-up: GPU per xdist worker, hypothesis profiles -------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Pin this xdist worker to one GPU before any conftest can import torch and start CUDA."""
    setting = getattr(early_config.known_args_namespace, "fla_check_gpus", "auto") or "auto"
    pin_worker_gpu(os.environ, setting)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fla_check(op, modes=None, **options): run fla-check's consistency "
                                       "check of op's modes as this test (options as FlaCheck.check)")
    config.stash[_OPTIONS] = options_from_config(config)
    profile = _getoption(config, "hypothesis_profile")
    if isinstance(profile, str) and profile.startswith("fla-check-"):
        from fla_check.engine.profiles import register_hypothesis_profiles  # before hypothesis loads it

        register_hypothesis_profiles()


def _getoption(config: pytest.Config, name: str) -> Any:
    try:
        return config.getoption(name)
    except (ValueError, KeyError):  # not registered (e.g. a hand-built config)
        return None


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    opts = config.stash.get(_OPTIONS, None)
    if opts is None or not opts.specs:
        return None
    specs = " ".join(f"{op}:{','.join(m) or '*'}" for op, m in opts.specs)
    return f"fla-check: {specs}; profile {opts.profile}; shard {opts.shard}; split {opts.split}"


# -- generated tests -------------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """With --fla-check, the session also collects a FlaCheckCollector (after the test files)."""
    outcome = yield
    if isinstance(collector, pytest.Session):
        opts = collector.config.stash.get(_OPTIONS, None)
        report = outcome.get_result()
        if opts is not None and opts.specs and report.passed:
            report.result.append(FlaCheckCollector.from_parent(collector, name="fla_check", nodeid="fla_check"))


class FlaCheckCollector(pytest.Collector):
    """Generates one FlaCheckItem per (op, mode, sub-shard) of the --fla-check options."""

    def collect(self) -> list[pytest.Item]:
        from fla_check.errors import FlaCheckError
        from fla_check.ops import get_mode, get_op

        opts = self.config.stash[_OPTIONS]
        items = []
        try:
            _prepare(opts.device, opts.providers)
            for op_name, modes in opts.specs:
                op = get_op(op_name)
                names = modes or tuple(_label(m) for m in op.modes.values())
                for mode in dict.fromkeys(_label(get_mode(op, m)) for m in names):
                    for j in range(1, opts.split + 1):
                        items.append(FlaCheckItem.create(self, op_name, mode, j, opts.split))
        except FlaCheckError as exc:  # unknown op or mode, provider, backend
            if not exc.usage:
                raise
            raise self.CollectError(f"--fla-check: {exc}") from None
        return items


def _label(mode: Any) -> str:
    from fla_check.engine.runner import mode_label

    return mode_label(mode)


class FlaCheckItem(pytest.Item):
    """One generated test: one mode of one op (one sub-shard of the budget with --fla-check-split)."""

    def __init__(self, *, op: str, mode: str, part: int = 1, parts: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.op, self.mode, self.part, self.parts = op, mode, part, parts

    @classmethod
    def create(cls, parent: pytest.Collector, op: str, mode: str, part: int, parts: int) -> "FlaCheckItem":
        name = f"{op}[{mode}]" if parts == 1 else f"{op}[{mode}-part{part}of{parts}]"
        return cls.from_parent(parent, name=name, op=op, mode=mode, part=part, parts=parts)

    def runtest(self) -> None:
        checker = FlaCheck(self, self.config.stash[_OPTIONS])
        checker.check(self.op, [self.mode], split=(self.part, self.parts))

    def reportinfo(self) -> tuple[Any, Optional[int], str]:
        return self.path, None, f"fla-check {self.name}"


# -- fixture and marker ----------------------------------------------------------------------
@pytest.fixture
def fla_check(request: pytest.FixtureRequest) -> "FlaCheck":
    """``fla_check.check(op, modes, ...)`` runs a consistency check inside this test."""
    return FlaCheck(request.node, request.config.stash[_OPTIONS])


def pytest_runtest_call(item: pytest.Item) -> None:
    marker = item.get_closest_marker("fla_check")
    if marker is not None:
        FlaCheck(item, item.config.stash[_OPTIONS]).check(*marker.args, **marker.kwargs)


class FlaCheck:
    """Runs fla-check searches for one test node and turns them into a test outcome."""

    def __init__(self, node: pytest.Item, options: Options):
        self.node, self.options = node, options
        self.results: list["SearchResult"] = []

    def check(self, op: str, modes: Union[str, Sequence[str], None] = None, *,
              dtypes: Union[str, Sequence[str], None] = None, examples: Optional[int] = None,
              seed: Optional[int] = None, max_seq_len: Optional[int] = None,
              mask_fills: Optional[Sequence[Any]] = None, profile: Optional[str] = None,
              providers: Sequence[str] = (), device: Optional[str] = None,
              split: tuple[int, int] = (1, 1), backward: Optional[bool] = None,
              configs: Optional[str] = None) -> "SearchResult":
        """Search `op`'s modes (all of them when None); fail the test when one fails
        (`backward`: gradients too; None follows --fla-check-backward; `configs`: the autotune
        configs, ``first|picked|all|sample:N`` as ``fla-check run --configs``).

        Keyword arguments override the command-line options for this check. Returns the
        SearchResult; records its numbers as test properties; skips when no mode could run.
        """
        from fla_check.engine.configs import parse_policy
        from fla_check.engine.isolation import Isolation
        from fla_check.engine.profiles import get_profile
        from fla_check.engine.search import dtype_list, search
        from fla_check.engine.sharding import run_budget

        opts = self.options
        dev = _prepare(device or opts.device, tuple(opts.providers) + tuple(providers))
        labels = _resolve_modes(op, modes)
        prof = get_profile(profile or opts.profile)
        shard = opts.shard.split(*split)
        budget, run_seed = run_budget(prof.examples, opts.examples if examples is None else examples,
                                      opts.seed if seed is None else seed, prof.derandomize, shard)
        isolation = Isolation.from_options(opts.isolation, opts.case_timeout)
        dtypes = dtypes if dtypes is not None else opts.dtypes
        if isinstance(dtypes, str):
            dtypes = dtype_list(dtypes)
        result = search(op, labels, dtypes=dtypes, examples=budget, seed=run_seed,
                        max_seq_len=max_seq_len or opts.max_seq_len, mask_fills=mask_fills, profile=prof.name,
                        device=dev, database_root=opts.database_root,
                        backward=opts.backward if backward is None else backward,
                        configs=parse_policy(configs) if configs else None, isolation=isolation,
                        invariance=opts.invariance, invariance_scope=opts.invariance_scope)
        result.options.update(shard=str(shard), isolation=isolation.to_json())
        self.results.append(result)
        path = self._write(result)
        self._record(result, path)
        if result.interrupted:
            raise KeyboardInterrupt
        if result.failed:
            pytest.fail(failure_text(result, self._display(path)), pytrace=False)
        ran = [m for m in result.modes if result.summary(m).cases]
        if not ran:
            reasons = {result.summary(m).reason for m in result.modes} - {""}
            why = "; ".join(sorted(reasons)) or f"no examples in shard {shard}"
            pytest.skip(f"fla-check {op}: nothing ran: {why}")
        return result

    def _write(self, result: "SearchResult") -> Path:
        from fla_check.commands.gate.engine import git_commit
        from fla_check.report.storage import write_report

        result.options.setdefault("commit", git_commit(self.options.invocation_dir))
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.node.nodeid).strip("_") or "check"
        suffix = f"-{len(self.results)}" if len(self.results) > 1 else ""
        return write_report(result.to_json(), self.options.report_dir / f"{stem}{suffix}.json")

    def _display(self, path: Path) -> Path:
        try:
            return path.resolve().relative_to(self.options.invocation_dir.resolve())
        except ValueError:
            return path

    def _record(self, result: "SearchResult", path: Path) -> None:
        from fla_check.commands.run.render import replay_command

        props = self.node.user_properties
        shown = self._display(path)
        props += [("fla_check.op", result.op), ("fla_check.profile", result.options.get("profile")),
                  ("fla_check.shard", result.options.get("shard")), ("fla_check.cases", len(result.cases)),
                  ("fla_check.verdict", "FAIL" if result.failed else "OK"), ("fla_check.report", str(shown))]
        for mode in result.modes:
            s = result.summary(mode)
            p = f"fla_check.{mode}."
            props.append((p + "verdict", s.verdict.value))
            failed_checks = sorted({inv.check for c in result.cases if mode in c.modes
                                    for inv in c.modes[mode].invariance if inv.verdict.failed})
            if failed_checks:
                props.append((p + "invariance_failed", ",".join(failed_checks)))
            props += [(p + k, repr(float(v))) for k, v in
                      (("max_abs", s.max_abs), ("rel_rms", s.rel_rms), ("ratio", s.ratio)) if v is not None]
            props += [(p + "cases", s.cases), (p + "failed_cases", s.failed), (p + "unsupported", s.unsupported)]
            if mode in result.failures:
                index = result.failures[mode]
                failed = result.cases[index].modes.get(mode)
                config = failed.config if failed else ""
                props += [(p + "case", result.cases[index].config.short()),
                          (p + "replay", replay_command(shown, index, config))]
                if config:
                    props.append((p + "config", config))


def _prepare(device: Optional[str], providers: Sequence[str]) -> str:
    """Select the backend (before triton is imported), then load providers; returns the device."""
    from fla_check.backend import select_backend
    from fla_check.providers import load_provider

    dev = select_backend(device)
    for spec in providers:
        load_provider(spec)
    return dev


def _resolve_modes(op: str, modes: Union[str, Sequence[str], None]) -> list[str]:
    from fla_check.ops import get_mode, get_op

    op_spec = get_op(op)
    if isinstance(modes, str):
        modes = [m.strip() for m in modes.split(",") if m.strip()]
    if not modes:
        return [_label(m) for m in op_spec.modes.values()]
    return [_label(get_mode(op_spec, m)) for m in modes]


def failure_text(result: "SearchResult", report_path: Path) -> str:
    """What a failing check prints: the mode table and each failing mode's shrunk case."""
    from fla_check.commands.run.render import mode_table, render_failure
    from fla_check.report.console import make_console

    console = make_console(no_color=True, width=110)
    console.file = io.StringIO()
    failing = ", ".join(result.failures)
    console.print(f"fla-check {result.op}: {failing} failed ({len(result.cases)} cases, "
                  f"profile {result.options.get('profile')}, shard {result.options.get('shard')})")
    console.print(mode_table(result))
    for mode, index in result.failures.items():
        how = "shrunk by hypothesis" if mode in result.shrunk else "smallest failing case seen"
        render_failure(console, result.cases[index], mode, index, how, report_path)
    return console.file.getvalue().rstrip()
