"""The `fla-check` command line: parse, call the engine, render. Nothing else lives here.

Exit codes: 0 every mode consistent, 1 a mode diverged / was non-finite / raised / crashed / timed out,
2 usage error (one line on stderr; also a run that checked no case: `--examples 0`, an empty
shard, every mode UNSUPPORTED), 3 internal error of fla-check itself,
130 interrupted before anything failed (the partial report is still written).
"""
from __future__ import annotations

import json
import sys
import traceback
from functools import wraps
from pathlib import Path
from typing import Callable, Optional

import click

from fla_check import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageFail(click.ClickException):
    """A one-line usage error (exit code 2)."""

    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:
        click.echo(f"fla-check: error: {self.format_message()}", err=True)


def _guard(fn: Callable) -> Callable:
    """Usage errors -> exit 2, any other exception -> 'internal error' and exit 3."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001
            click.echo(f"fla-check: internal error: {type(exc).__name__}: {exc}", err=True)
            click.echo(traceback.format_exc(), err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fla-check")
def main() -> None:
    """Numerical-consistency checks for linear-attention Triton kernels."""


# -- parsing helpers (each raises UsageFail with one clear line) -----------------------------
def _select_device(device: Optional[str]) -> str:
    """Select the backend BEFORE anything imports triton or a kernel module."""
    from fla_check.backend import BackendError, select_backend

    try:
        return select_backend(device)
    except BackendError as exc:
        raise UsageFail(str(exc)) from None


def _parse_op(name: str):
    from fla_check.ops import UnknownNameError, get_op

    try:
        return get_op(name)
    except UnknownNameError as exc:
        raise UsageFail(str(exc)) from None


def _load_providers(specs) -> None:
    """--provider SPEC...: load and register each provider (one-line usage error on failure).
    'module:object' specs are also looked up in the current directory (as `python -m` would)."""
    import os

    from fla_check.providers import ProviderError, load_provider

    if specs and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for spec in specs:
        try:
            load_provider(spec)
        except ProviderError as exc:
            raise UsageFail(f"--provider: {exc}") from None


def _parse_modes(op, text: str) -> list[str]:
    from fla_check.ops import UnknownNameError, get_mode
    from fla_check.providers import ProviderError, load_missing_providers
    from fla_check.runner import mode_label

    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        valid = ", ".join(op.modes)
        raise UsageFail(f"empty mode list; give --modes with some of: {valid}")
    try:
        load_missing_providers(names)  # 'fla:chunk' loads the entry point 'fla' when not loaded
    except ProviderError as exc:
        raise UsageFail(f"--modes {text}: {exc}") from None
    try:
        return [mode_label(get_mode(op, n)) for n in names]
    except UnknownNameError as exc:
        raise UsageFail(str(exc)) from None


def _parse_dtypes(text: Optional[str], device: Optional[str]) -> Optional[tuple[str, ...]]:
    from fla_check.backend import get_backend
    from fla_check.cases import DTYPES, CaseError, dtype_name

    if text is None:
        return None
    try:
        dtypes = tuple(dict.fromkeys(dtype_name(t) for t in text.split(",") if t.strip()))
    except CaseError as exc:
        raise UsageFail(str(exc)) from None
    if not dtypes:
        raise UsageFail("empty dtype list; use e.g. --dtypes fp32,fp16")
    backend = get_backend(device)
    for d in dtypes:
        reason = backend.dtype_unsupported_reason(DTYPES[d])
        if reason:
            raise UsageFail(f"{d} cannot be checked on {backend.describe()}: {reason}; "
                            "use --dtypes fp32,fp16 here, bf16 on a GPU")
    return dtypes


def _parse_fills(text: Optional[str], op) -> Optional[tuple]:
    from fla_check.cases import CaseError, canonical_fill

    if text is None:
        return None
    if not op.supports_mask_packing:
        raise UsageFail(f"--mask-fill: {_op_title(op.name)} has no gate; pack with cu_seqlens "
                        "(varlen cases are drawn by default)")
    try:
        fills = tuple(canonical_fill(f) for f in text.split(",") if f.strip())
    except CaseError as exc:
        raise UsageFail(str(exc)) from None
    if not fills:
        raise UsageFail("empty --mask-fill list; use e.g. --mask-fill=-0.1max,-inf,-20")
    return fills


def _op_title(name: str) -> str:
    return {"delta": "DeltaNet", "gla": "GLA", "gated_delta": "Gated DeltaNet"}.get(name, name)


def _parse_shard(text: Optional[str]):
    from fla_check.sharding import ShardError, parse_shard

    if text is None:
        return None
    try:
        return parse_shard(text)
    except ShardError as exc:
        raise UsageFail(f"--shard: {exc}") from None


def _isolation_options(fn: Callable) -> Callable:
    for option in reversed([
        click.option("--isolation", "isolation_kind", type=click.Choice(["process", "none"]), default="process",
                     show_default=True, help="Run mode calls in a worker process (a crash or hang is a verdict, "
                                             "CRASHED / TIMEOUT) or in this process."),
        click.option("--case-timeout", type=float, default=None, metavar="SECONDS",
                     help="A mode call running longer is TIMEOUT (worker killed and restarted); "
                          "default 900 with --isolation process."),
    ]):
        fn = option(fn)
    return fn


def _parse_isolation(kind: str, case_timeout: Optional[float]):
    from fla_check.engine.isolation import Isolation

    try:
        return Isolation.from_options(kind, case_timeout)
    except ValueError as exc:
        raise UsageFail(str(exc)) from None


def _in_process(isolation, modes) -> dict[str, str]:
    """The modes of `modes` that the worker could not load (they ran unisolated), with why."""
    from fla_check.engine.isolation import in_process_modes

    return in_process_modes(modes) if isolation.isolated else {}


def _warn_in_process(in_process: dict[str, str]) -> None:
    for mode, why in in_process.items():
        click.echo(f"fla-check: warning: {mode} ran in this process, not isolated: {why}", err=True)


# -- run ------------------------------------------------------------------------------------
@main.command()
@click.option("--op", "op_name", required=True, help="Op to check: gla, delta, gated_delta.")
@click.option("--modes", required=True, help="Comma list of modes, e.g. recurrent,chunk (fla:chunk for providers).")
@click.option("--dtypes", default=None, help="Comma list: fp32,fp16,bf16 (default: all the backend supports).")
@click.option("--examples", type=int, default=None, help="Number of cases, >= 1 (default: the profile's).")
@click.option("--seed", type=int, default=None, help="Make the run depend on this seed alone.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="cuda, or cpu (Triton interpreter). Default: cuda when present.")
@click.option("--max-seq-len", type=int, default=None,
              help="Largest T drawn (default 256 on CPU, 80 with --backward, 512 on GPU).")
@click.option("--mask-fill", "mask_fill", default=None,
              help="Only mask-packed cases, with these log-gate fills (<= 0): -0.1max, -max, -inf or floats "
                   "(comma list).")
@click.option("--backward", is_flag=True,
              help="Also check the gradients dq, dk, dv, dg/dbeta, dh0 (forward-only modes: UNSUPPORTED).")
@click.option("--provider", "providers", multiple=True, metavar="SPEC",
              help="Load a provider of modes: 'module:object' or an entry-point name, e.g. fla (repeatable).")
@click.option("--profile", type=click.Choice(["smoke", "ci", "nightly"]), default="ci", show_default=True)
@click.option("--shard", "shard_text", default=None, metavar="I/N",
              help="Run shard I of N (1-based) of the example budget, with a seed of its own (CI jobs).")
@click.option("--report", "report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Report file (default reports/run-<op>-<time>.json); written as the run goes.")
@_isolation_options
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of tables.")
@_guard
def run(op_name, modes, dtypes, examples, seed, device, max_seq_len, mask_fill, backward, providers, profile,
        shard_text, report, isolation_kind, case_timeout, no_color, as_json) -> None:
    """Search for cases where kernel modes disagree with the float64 reference."""
    isolation = _parse_isolation(isolation_kind, case_timeout)
    device = _select_device(device)
    _load_providers(providers)
    op = _parse_op(op_name)
    mode_names = _parse_modes(op, modes)
    if examples is not None and examples < 1:
        raise UsageFail(f"--examples must be >= 1, got {examples} (a run that checks no case proves nothing)")
    if max_seq_len is not None and max_seq_len < 1:
        raise UsageFail(f"--max-seq-len must be >= 1, got {max_seq_len}")
    fills = _parse_fills(mask_fill, op)
    dtype_list = _parse_dtypes(dtypes, device)
    shard = _parse_shard(shard_text)
    from fla_check.engine.isolation import sigterm_as_interrupt
    from fla_check.gate import git_commit
    from fla_check.profiles import get_profile
    from fla_check.report import (Checkpoints, SearchProgress, default_report_path, make_console, render_run,
                                  unchecked_reason, write_report)
    from fla_check.search import search
    from fla_check.sharding import run_budget

    prof = get_profile(profile)
    total = prof.examples if examples is None else examples
    examples, seed = run_budget(prof.examples, examples, seed, prof.derandomize, shard)
    if examples < 1:
        raise UsageFail(f"--shard {shard}: this shard has no example ({total} example(s) over {shard.count} "
                        "shards); use fewer shards or more --examples")
    path = report or default_report_path(op.name)
    extra = dict(shard=str(shard) if shard else None, commit=git_commit(), isolation=isolation.to_json())
    checkpoints = Checkpoints(path, extra)
    try:
        with sigterm_as_interrupt(), SearchProgress(no_color) as on_progress:
            result = search(op, mode_names, dtypes=dtype_list, examples=examples, seed=seed,
                            max_seq_len=max_seq_len, mask_fills=fills, profile=profile, device=device,
                            progress=on_progress, backward=backward, isolation=isolation, checkpoint=checkpoints)
    except KeyboardInterrupt:  # outside the search's own handling (e.g. while it was setting up)
        saved = f"partial report with {checkpoints.written} case(s): {path}" if checkpoints.written else "no report"
        click.echo(f"fla-check: interrupted; {saved}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    result.options.update(extra)
    in_process = _in_process(isolation, result.modes)
    if in_process:
        result.options["isolation"] = {**isolation.to_json(), "in_process": in_process}
    write_report(result.to_json(), path)
    if not as_json:  # --json: the report's options.isolation.in_process says it
        _warn_in_process(in_process)
    if result.interrupted:
        click.echo(f"fla-check: interrupted after {len(result.cases)} case(s); partial report: {path}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), allow_nan=False))
    else:
        render_run(make_console(no_color=no_color), result, path)
    if result.failed:
        sys.exit(EXIT_FAIL)
    if result.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    unchecked = unchecked_reason(result)
    if unchecked:
        raise UsageFail(f"nothing was checked: {unchecked}; report: {path}")
    sys.exit(EXIT_OK)


# -- replay ---------------------------------------------------------------------------------
@main.command()
@click.argument("report_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--case", "case_index", type=int, default=None,
              help="Case index in the report (default: the first failing case, else 0).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--provider", "providers", multiple=True, metavar="SPEC",
              help="Load a provider of modes: 'module:object' or an entry-point name, e.g. fla (repeatable).")
@_isolation_options
@click.option("--no-color", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the case result as JSON.")
@_guard
def replay(report_file, case_index, device, providers, isolation_kind, case_timeout, no_color, as_json) -> None:
    """Rebuild one case of a report exactly (gradients too for --backward runs) and re-run its modes."""
    _parse_isolation(isolation_kind, case_timeout)  # usage errors first
    device = _select_device(device)
    _load_providers(providers)
    data = _load_report(report_file)
    if case_timeout is None and isolation_kind == "process":  # the run's own timeout, when it recorded one
        case_timeout = ((data.get("options") or {}).get("isolation") or {}).get("case_timeout")
    isolation = _parse_isolation(isolation_kind, case_timeout)
    cases = data.get("cases", [])
    if case_index is None:
        case_index = min(data.get("failures", {}).values(), default=0)
    if not 0 <= case_index < len(cases):
        raise UsageFail(f"--case {case_index} out of range: the report has {len(cases)} case(s)")
    from fla_check.cases import CaseConfig
    from fla_check.compare import Verdict
    from fla_check.report import make_console, render_case
    from fla_check.runner import check_case

    op = _parse_op(data["op"])
    modes = _parse_modes(op, ",".join(data["modes"]))
    backward = bool(cases[case_index].get("backward", data.get("options", {}).get("backward", False)))
    result = check_case(op, modes, CaseConfig.from_json(cases[case_index]["config"]), device=device,
                        backward=backward, isolation=isolation)
    if not as_json:
        _warn_in_process(_in_process(isolation, result.modes))
    if as_json:
        click.echo(json.dumps(result.to_json(), allow_nan=False))
    else:
        render_case(make_console(no_color=no_color), result, f"replay of case #{case_index} from {report_file}")
    if result.verdict is Verdict.UNSUPPORTED:  # no mode could run the case here: nothing was replayed
        reasons = "; ".join(f"{m}: {r.reason}" for m, r in result.modes.items())
        raise UsageFail(f"nothing was checked: every mode is UNSUPPORTED here ({reasons})")
    sys.exit(EXIT_FAIL if result.verdict.failed else EXIT_OK)


def _load_report(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageFail(f"cannot read report {path}: {exc}") from None
    if not isinstance(data, dict) or "op" not in data or "cases" not in data:
        raise UsageFail(f"{path} is not a fla-check run report")
    return data


# -- gate / compare -------------------------------------------------------------------------
def _gate_options(fn: Callable) -> Callable:
    for option in reversed([
        click.option("--factor", type=float, default=2.0, show_default=True,
                     help="Fail when a mode's error on a case grows by more than this factor."),
        click.option("--min-score", type=float, default=0.05, show_default=True,
                     help="Ignore growth of errors using less than this fraction of the allowed error."),
        click.option("--all", "show_all", is_flag=True, help="Print every paired output, not only regressions."),
        click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too)."),
        click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON on stdout instead of tables."),
    ]):
        fn = option(fn)
    return fn


@main.command()
@click.option("--baseline", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Run report of the reference commit, e.g. reports/main.json.")
@click.option("--provider", "providers", multiple=True, metavar="MODULE:OBJECT",
              help="Load a provider whose modes the baseline checked (repeatable).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the re-run is saved (default reports/gate-<op>-<time>.json); it can be the next baseline.")
@_isolation_options
@_gate_options
@_guard
def gate(baseline, providers, device, report, isolation_kind, case_timeout, factor, min_score, show_all, no_color,
         as_json) -> None:
    """Re-run the cases of a baseline report; exit 1 when an error grew by more than --factor."""
    isolation = _parse_isolation(isolation_kind, case_timeout)
    device = _select_device(device)
    data = _load_report(baseline)
    from fla_check.gate import GateError, check_thresholds, diff_reports, report_label, rerun
    from fla_check.gate_report import case_progress
    from fla_check.report import default_report_path, write_report

    try:
        check_thresholds(factor, min_score)
        with case_progress(no_color or as_json) as on_progress:
            result = rerun(data, device=device, providers=providers, progress=on_progress, source=str(baseline),
                           isolation=isolation)
        result.options["isolation"] = isolation.to_json()
        path = write_report(result.to_json(), report or default_report_path(data["op"], "gate"))
        diff = diff_reports(data, result.to_json(), factor=factor, min_score=min_score,
                            base_label=report_label(baseline, data), new_label=f"re-run {path}")
    except GateError as exc:
        raise UsageFail(str(exc)) from None
    _finish_diff(diff, "fla-check gate", show_all, no_color, as_json, interrupted=result.interrupted)


@main.command("compare")
@click.argument("report_a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("report_b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_gate_options
@_guard
def compare_reports(report_a, report_b, factor, min_score, show_all, no_color, as_json) -> None:
    """Diff two saved run reports case by case (paired by configuration); exit 1 when B regressed."""
    a, b = _load_report(report_a), _load_report(report_b)
    from fla_check.gate import GateError, diff_reports, report_label

    try:
        diff = diff_reports(a, b, factor=factor, min_score=min_score, base_label=report_label(report_a, a),
                            new_label=report_label(report_b, b))
    except GateError as exc:
        raise UsageFail(str(exc)) from None
    _finish_diff(diff, "fla-check compare", show_all, no_color, as_json)


def _finish_diff(diff, title: str, show_all: bool, no_color: bool, as_json: bool,
                 interrupted: bool = False) -> None:
    from fla_check.gate_report import render_gate
    from fla_check.report import make_console

    if as_json:
        click.echo(json.dumps(diff.to_json(), allow_nan=False))
    else:
        render_gate(make_console(no_color=no_color), diff, title=title, show_all=show_all)
    if not any(r.status != "not compared" for r in diff.rows):
        raise UsageFail(f"nothing to compare: {diff.matched} paired case(s), no mode ran on both sides")
    if diff.failed:
        sys.exit(EXIT_FAIL)
    sys.exit(EXIT_INTERRUPTED if interrupted else EXIT_OK)


# -- list -----------------------------------------------------------------------------------
@main.command("list")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--provider", "providers", multiple=True, metavar="SPEC",
              help="Load a provider of modes: 'module:object' or an entry-point name, e.g. fla (repeatable).")
@click.option("--no-color", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@_guard
def list_(device, providers, no_color, as_json) -> None:
    """Ops, modes, providers, backend and its capabilities."""
    device = _select_device(device)
    _load_providers(providers)
    from fla_check.listing import inventory, render_inventory
    from fla_check.report import make_console

    info = inventory(device)
    if as_json:
        click.echo(json.dumps(info))
    else:
        render_inventory(make_console(no_color=no_color), info)


# -- ut-transform ---------------------------------------------------------------------------
@main.command("ut-transform")
@click.option("--chunk-size", "chunk_sizes", default="16,32,64", show_default=True,
              help="Comma list of chunk sizes (16, 32, 64).")
@click.option("--gated/--no-gated", default=False, show_default=True,
              help="Gated DeltaNet (decay exp(g_i - g_j) inside the chunk) instead of DeltaNet.")
@click.option("--dtypes", default=None, help="Comma list: fp32,fp16,bf16 (default: all the backend supports).")
@click.option("--examples", type=int, default=12, show_default=True,
              help="Chunks per chunk size and dtype (at least one per regime).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the drawn chunks.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result on stdout instead of tables.")
@_guard
def ut_transform(chunk_sizes, gated, dtypes, examples, seed, device, no_color, as_json) -> None:
    """Check the UT/WY transform (sign convention, in-kernel inverse) against float64."""
    device = _select_device(device)
    sizes = _parse_chunk_sizes(chunk_sizes)
    if examples < 1:
        raise UsageFail(f"--examples must be >= 1, got {examples}")
    dtype_list = _parse_dtypes(dtypes, device)
    from fla_check.report import ChunkProgress, make_console, render_ut
    from fla_check.ut_check import check_ut

    with ChunkProgress(no_color or as_json) as on_progress:
        result = check_ut(sizes, gated=gated, dtypes=dtype_list, examples=examples, seed=seed, device=device,
                          progress=on_progress)
    if as_json:
        click.echo(json.dumps(result.to_json(), allow_nan=False))
    else:
        render_ut(make_console(no_color=no_color), result)
    if result.failed:
        sys.exit(EXIT_FAIL)
    sys.exit(EXIT_INTERRUPTED if result.interrupted else EXIT_OK)


def _parse_chunk_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(dict.fromkeys(int(t) for t in text.split(",") if t.strip()))
    except ValueError:
        raise UsageFail(f"--chunk-size: not a comma list of integers: {text!r}") from None
    bad = [c for c in sizes if c not in (16, 32, 64)]
    if bad or not sizes:
        raise UsageFail(f"--chunk-size must be a comma list of 16, 32, 64; got {text!r}")
    return sizes


# -- sweep-mask-values ----------------------------------------------------------------------
@main.command("sweep-mask-values")
@click.option("--op", "op_name", default="gla", show_default=True,
              help="gla or gated_delta (DeltaNet has no gate: pack it with cu_seqlens).")
@click.option("--modes", default=None, help="Comma list of modes (default: the op's built-in modes).")
@click.option("--dtypes", default=None, help="Comma list: fp32,fp16,bf16 (default: all the backend supports).")
@click.option("--values", default=None,
              help="Comma list of fills: floats, -0.1max, -max, -inf, e.g. --values=-1,-20,-inf (default: "
                   "-1 ... -1e6, -0.1max, -max, -inf). A cu_seqlens control row is always added.")
@click.option("--cases", type=int, default=3, show_default=True, help="Packed cases per cell (fixed layouts).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first case (case i: seed + i).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--provider", "providers", multiple=True, metavar="SPEC",
              help="Load a provider of modes: 'module:object' or an entry-point name, e.g. fla (repeatable).")
@click.option("--report", "report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Report file (default reports/sweep-<op>-<time>.json).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a PNG heatmap here (needs matplotlib: pip install 'fla-check[plot]').")
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result on stdout instead of tables.")
@_guard
def sweep_mask_values(op_name, modes, dtypes, values, cases, seed, device, providers, report, plot, no_color,
                      as_json) -> None:
    """Which reset-mask gate fills are safe, per mode and dtype (exit 1: a mode raised or
    failed the cu_seqlens control)."""
    device = _select_device(device)
    _load_providers(providers)
    op = _parse_op(op_name)
    if not op.supports_mask_packing:
        raise UsageFail(f"--op {op.name}: {_op_title(op.name)} has no gate to fill at sequence starts; "
                        "pack its sequences with cu_seqlens instead (fla-check run draws varlen cases)")
    mode_names = _parse_modes(op, modes) if modes is not None else None
    dtype_list = _parse_dtypes(dtypes, device)
    if cases < 1:
        raise UsageFail(f"--cases must be >= 1, got {cases}")
    from fla_check.cases import CaseError
    from fla_check.report import default_report_path, make_console, write_report
    from fla_check.sweep import SweepError, parse_value_list, sweep
    from fla_check.sweep_report import PlotUnavailable, SweepProgress, render_sweep, write_plot

    try:
        fills = parse_value_list(values) if values is not None else None
    except (CaseError, SweepError) as exc:
        raise UsageFail(f"--values: {exc}") from None
    with SweepProgress(quiet=as_json, no_color=no_color) as on_progress:
        result = sweep(op, mode_names, dtypes=dtype_list, values=fills, cases=cases, seed=seed, device=device,
                       progress=on_progress)
    path = write_report(result.to_json(), report or default_report_path(op.name, "sweep"))
    if as_json:
        click.echo(json.dumps(result.to_json(), allow_nan=False))
    else:
        render_sweep(make_console(no_color=no_color), result, path)
    if plot is not None:
        try:
            click.echo(f"plot: {write_plot(result, plot)}", err=True)
        except PlotUnavailable as exc:
            click.echo(f"fla-check: --plot: {exc}; no plot written", err=True)
    if result.failed:
        sys.exit(EXIT_FAIL)
    sys.exit(EXIT_INTERRUPTED if result.interrupted else EXIT_OK)


# -- selftest -------------------------------------------------------------------------------
@main.command()
@click.option("--op", "ops", multiple=True, help="Only this op's mutants (repeat or comma list: gla,delta).")
@click.option("--mutants", default=None,
              help="Comma list of mutant ids, id prefixes (gla.chunk) or bug classes (no-carry); see --list.")
@click.option("--profile", type=click.Choice(["smoke", "ci", "nightly"]), default="ci", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--list", "list_only", is_flag=True, help="Print the mutant catalog and exit.")
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result on stdout instead of tables.")
@_guard
def selftest(ops, mutants, profile, device, list_only, no_color, as_json) -> None:
    """Plant known kernel bugs and check that the normal search catches each (exit 1: one escaped or broken)."""
    device = _select_device(device)
    op_names = [_parse_op(o.strip()).name for text in ops for o in text.split(",") if o.strip()]
    ids = [m.strip() for m in mutants.split(",") if m.strip()] if mutants is not None else None
    from fla_check.mutants import select
    from fla_check.report import make_console
    from fla_check.selftest import run_selftest
    from fla_check.selftest_report import catalog_table, render_selftest

    try:
        entries = select(op_names, ids)
    except ValueError as exc:
        raise UsageFail(str(exc)) from None
    if not entries:
        raise UsageFail("no mutant selected")
    if list_only:
        make_console(no_color=no_color).print(catalog_table(entries))
        return

    def on_result(r) -> None:
        if not as_json:
            how = f"after {r.examples} example(s), {r.seconds:.1f} s" if r.caught else r.note
            what = "caught" if r.caught else "BROKEN" if r.status == "broken" else "MISSED"
            mode = f"{r.mode} bwd" if r.backward else r.mode
            click.echo(f"{what} {r.id} ({r.op}/{mode}): {how}", err=True)

    result = run_selftest(op_names, ids, profile=profile, device=device, on_result=on_result)
    if as_json:
        click.echo(json.dumps(result.to_json(), allow_nan=False))
    else:
        render_selftest(make_console(no_color=no_color), result)
    sys.exit(EXIT_OK if result.all_caught else EXIT_FAIL)


if __name__ == "__main__":  # pragma: no cover
    main()
