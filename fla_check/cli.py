"""The `fla-check` command line: parse, call the engine, render. Nothing else lives here.

Exit codes: 0 every mode consistent, 1 a mode diverged / was non-finite / raised / crashed / timed out,
2 usage error (one line on stderr; also a run that checked no case: `--examples 0`, an empty
shard, every mode UNSUPPORTED), 3 internal error of fla-check itself, or a run stopped before
anything failed because fla-check's own work on a case ran out of memory (the message names the
case and what ran out; the partial report is written; ``replay --stopped`` re-runs the case),
130 interrupted before anything failed (the partial report is still written).

Errors: every error fla-check raises derives from :class:`fla_check.errors.FlaCheckError`;
:func:`_guard` maps them, here and nowhere else: ``usage`` ones to exit 2, the rest to exit 3.
"""
from __future__ import annotations

import os
import re
import sys
import traceback
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import click

from fla_check import __version__
from fla_check.errors import FlaCheckError, HarnessOutOfMemory, RunInterrupted, UsageError
from fla_check.engine.host_threads import one_host_thread

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _guard(fn: Callable) -> Callable:
    """The one place errors become exit codes: a usage :class:`FlaCheckError` -> one line and
    exit 2; :class:`RunInterrupted` -> one line and exit 130; :class:`HarnessOutOfMemory` (e.g.
    in a replay) -> one line and exit 3; any other exception (fla-check's own failures
    included) -> 'internal error', exit 3."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except RunInterrupted as exc:  # stopped by Ctrl-C / SIGTERM: what was saved, exit 130
            click.echo(f"fla-check: {exc}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except HarnessOutOfMemory as exc:  # fla-check's own work on a case did not fit: no traceback needed
            click.echo(f"fla-check: {exc}", err=True)
            sys.exit(EXIT_INTERNAL)
        except FlaCheckError as exc:
            if not exc.usage:
                _internal(exc)
            click.echo(f"fla-check: error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except Exception as exc:  # noqa: BLE001
            _internal(exc)

    return wrapper


def _internal(exc: BaseException) -> None:
    click.echo(f"fla-check: internal error: {type(exc).__name__}: {exc}", err=True)
    click.echo(traceback.format_exc(), err=True)
    sys.exit(EXIT_INTERNAL)


@contextmanager
def _about(what: str) -> Iterator[None]:
    """Prefix the message of a FlaCheckError raised inside with `what` (e.g. the option), keeping its type."""
    try:
        yield
    except FlaCheckError as exc:
        exc.args = (f"{what}: {exc}",)
        raise


def _echo_json(data: dict) -> None:
    from fla_check.report.storage import dumps

    click.echo(dumps(data))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fla-check")
def main() -> None:
    """Numerical-consistency checks for linear-attention Triton kernels."""


# -- parsing helpers (each raises a FlaCheckError with one clear line) ----------------------
def _prestart(isolation_kind: str, device: Optional[str], warmup: str) -> None:
    """Spawn, before this process imports torch (their start-ups overlap:
    :mod:`fla_check.engine.prestart`, :mod:`fla_check.engine.warmup_pool`), what a GPU run
    (--device cuda, or no --device on a machine with an NVIDIA driver) will want: the CUDA
    isolation worker (process isolation) and the background warm-up's processes (--warmup auto
    or background, unless the compile cache has a warm-up ledger: then the run decides, and may
    skip the warm-up). First torch's CPU ops get one thread, for them and this process
    (:mod:`fla_check.engine.host_threads`)."""
    from fla_check.engine import prestart, warm_ledger, warmup_pool

    device = device or os.environ.get("FLA_CHECK_DEVICE")
    if not (device == "cuda" or (device is None and os.path.exists("/dev/nvidiactl"))):
        return
    one_host_thread()
    if isolation_kind == "process":
        prestart.prestart("cuda")
    if warmup in ("auto", "background") and not warm_ledger.present():
        warmup_pool.prestart_warmup("cuda")


def _select_device(device: Optional[str]) -> str:
    """Select the backend BEFORE anything imports triton or a kernel module; on a GPU, torch's CPU
    ops get one thread (:mod:`fla_check.engine.host_threads`)."""
    from fla_check.backend import select_backend

    selected = select_backend(device)
    if selected == "cuda":
        one_host_thread()
    return selected


def _parse_op(name: str):
    from fla_check.ops import get_op

    return get_op(name)


def _load_providers(specs) -> None:
    """--provider SPEC...: load and register each provider (one-line usage error on failure).
    'module:object' specs are also looked up in the current directory (as `python -m` would)."""
    import os

    from fla_check.providers import load_provider

    if specs and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for spec in specs:
        with _about("--provider"):
            load_provider(spec)


def _parse_modes(op, text: str) -> list[str]:
    from fla_check.ops import get_mode
    from fla_check.providers import load_missing_providers
    from fla_check.engine.runner import mode_label

    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        valid = ", ".join(op.modes)
        raise UsageError(f"empty mode list; give --modes with some of: {valid}")
    with _about(f"--modes {text}"):
        load_missing_providers(names)  # 'fla:chunk' loads the entry point 'fla' when not loaded
    return [mode_label(get_mode(op, n)) for n in names]


def _parse_dtypes(text: Optional[str], device: Optional[str]) -> Optional[tuple[str, ...]]:
    from fla_check.backend import get_backend
    from fla_check.cases import DTYPES, dtype_name

    if text is None:
        return None
    dtypes = tuple(dict.fromkeys(dtype_name(t) for t in text.split(",") if t.strip()))
    if not dtypes:
        raise UsageError("empty dtype list; use e.g. --dtypes fp32,fp16")
    backend = get_backend(device)
    for d in dtypes:
        reason = backend.dtype_unsupported_reason(DTYPES[d])
        if reason:
            raise UsageError(f"{d} cannot be checked on {backend.describe()}: {reason}; "
                            "use --dtypes fp32,fp16 here, bf16 on a GPU")
    return dtypes


def _parse_fills(text: Optional[str], op) -> Optional[tuple]:
    from fla_check.cases import canonical_fill

    if text is None:
        return None
    if not op.supports_mask_packing:
        raise UsageError(f"--mask-fill: {_op_title(op.name)} has no gate; pack with cu_seqlens "
                        "(varlen cases are drawn by default)")
    fills = tuple(canonical_fill(f) for f in text.split(",") if f.strip())
    if not fills:
        raise UsageError("empty --mask-fill list; use e.g. --mask-fill=-0.1max,-inf,-20")
    return fills


def _parse_value_ratios(text: Optional[str], op) -> Optional[tuple[int, ...]]:
    from fla_check.cases import GVA_OPS, GVA_RATIOS

    if text is None:
        return None
    try:
        ratios = tuple(int(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise UsageError(f"--value-ratios {text!r}: a comma list of integers, e.g. 1,3") from None
    allowed = GVA_RATIOS if op.name in GVA_OPS else (1,)
    bad = [r for r in ratios if r not in allowed]
    if bad or not ratios:
        raise UsageError(f"--value-ratios {text!r}: {_op_title(op.name)} takes {','.join(map(str, allowed))}")
    return ratios


def _parse_kernel_options(text: Optional[str], op) -> Optional[tuple[str, ...]]:
    from fla_check.cases import OPTION_REQUIRES, op_options

    if text is None:
        return None
    names = tuple(o.strip() for o in text.split(",") if o.strip() and o.strip() != "none")
    allowed = op_options(op.name)
    bad = [o for o in names if o not in allowed]
    if bad:
        raise UsageError(f"--kernel-options: {', '.join(bad)} not taken by {_op_title(op.name)}; "
                        f"valid: {', '.join(allowed) or 'none'}")
    for name in names:
        missing = [r for r in OPTION_REQUIRES.get(name, ()) if r not in names]
        if missing:
            raise UsageError(f"--kernel-options: {name} needs {', '.join(missing)} too (fla uses it only with them)")
    return names


def _parse_drawn_chunk_sizes(text: Optional[str]) -> Optional[tuple[Optional[int], ...]]:
    """run --chunk-sizes: 'default' (the kernel's own, not passed), 16, 32, 64 or 'all'; None when not given."""
    from fla_check.cases import CHUNK_SIZES

    if text is None:
        return None
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return (None, *CHUNK_SIZES)
    valid = {"default": None, **{str(c): c for c in CHUNK_SIZES}}
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise UsageError(f"--chunk-sizes {text!r}: a comma list of default, {', '.join(map(str, CHUNK_SIZES))} "
                        "(or all)")
    return tuple(dict.fromkeys(valid[n] for n in names))


def _parse_state_layouts(text: Optional[str]) -> Optional[tuple[str, ...]]:
    """--state-layouts: kv ([K, V], the default), vk ([V, K]: state_v_first) or all; None when not given."""
    from fla_check.cases import STATE_LAYOUTS

    if text is None:
        return None
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return STATE_LAYOUTS
    if not names or any(n not in STATE_LAYOUTS for n in names):
        raise UsageError(f"--state-layouts {text!r}: a comma list of kv ([K, V] states) and vk ([V, K], "
                        "state_v_first), or all")
    return tuple(dict.fromkeys(names))


def _parse_configs(text: Optional[str], refs: Sequence[str], device: str):
    """--configs / --config -> a ConfigPolicy (picked needs a GPU: the interpreter cannot time configs)."""
    from fla_check.engine.configs import parse_policy

    policy = parse_policy(text, refs)
    if policy.kind == "picked" and device != "cuda":
        raise UsageError("--configs picked needs a GPU: the Triton interpreter cannot time configs")
    return policy


def _preset_op(preset: Optional[str], op: Optional[str], *fixed: Optional[str]) -> str:
    """The op of a run: --op, or --preset's (which --op must match; the preset fixes the value
    ratios, kernel options and mask fills, given here as the raw option texts)."""
    if preset is None:
        if op is None:
            raise UsageError("give --op (gla, simple_gla, delta, gated_delta, kda) or --preset (see fla-check list)")
        return op
    from fla_check.presets import preset_op

    with _about("--preset"):
        name = preset_op(preset, op)
    given = [flag for flag, value in zip(("--value-ratios", "--kernel-options", "--mask-fill"), fixed) if value]
    if given:
        raise UsageError(f"--preset {preset} fixes what {', '.join(given)} would set; leave them out")
    return name


def _op_title(name: str) -> str:
    return {"delta": "DeltaNet", "gla": "GLA", "gated_delta": "Gated DeltaNet", "simple_gla": "simple GLA",
            "kda": "KDA"}.get(name, name)


def _parse_shard(text: Optional[str]):
    from fla_check.engine.sharding import parse_shard

    if text is None:
        return None
    with _about("--shard"):
        return parse_shard(text)


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
    """--isolation / --case-timeout -> an Isolation (IsolationOptionError, a usage error, when invalid)."""
    from fla_check.engine.isolation import Isolation

    return Isolation.from_options(kind, case_timeout)


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        click.echo(f"fla-check: warning: {line}", err=True)


# -- run ------------------------------------------------------------------------------------
@main.command()
@click.option("--op", "op_name", default=None,
              help="Op to check: gla, simple_gla, delta, gated_delta, kda (optional with --preset).")
@click.option("--modes", required=True, help="Comma list of modes, e.g. recurrent,chunk (fla:chunk for providers).")
@click.option("--preset", "preset_name", default=None, metavar="NAME",
              help="Draw shapes, dtypes and options as a model calls the op, e.g. qwen3-next, qwen3.5-27b, "
                   "kimi-linear (fla-check list shows them).")
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
@click.option("--value-ratios", default=None, metavar="R,..",
              help="Grouped value heads HV/H to draw (gated_delta: 1,2,3,4,8, the default).")
@click.option("--kernel-options", default=None, metavar="NAME,..",
              help="In-kernel options to draw (gated_delta: qk_l2norm, gate_in_kernel, beta_sigmoid; kda also "
                   "lower_bound (-5, -1, -3, -0.1; needs gate_in_kernel) and safe_gate (needs both); or none; "
                   "default: those the modes declare).")
@click.option("--chunk-sizes", default=None, metavar="C,..",
              help="chunk_size values to draw: default (the kernel's, not passed), 16, 32, 64 or all (default: "
                   "not drawn). Modes without that chunk size: UNSUPPORTED; recurrent modes run unchanged.")
@click.option("--state-layouts", default=None, metavar="kv,vk",
              help="State layouts to draw: kv ([K, V]), vk ([V, K], state_v_first=True: h0 handed over and ht read "
                   "back transposed) or all (default: kv). Modes without state_v_first: UNSUPPORTED.")
@click.option("--invariance", default=None, metavar="CHECK,..",
              help="Metamorphic checks of passing modes: split, packing, batch, layout, all or none "
                   "(default: layout, or FLA_CHECK_INVARIANCE).")
@click.option("--invariance-scope", type=click.Choice(["bucket", "all"]), default=None,
              help="Run them on the first case of each compile bucket (default) or on every case.")
@click.option("--provider", "providers", multiple=True, metavar="SPEC",
              help="Load a provider of modes: 'module:object' or an entry-point name, e.g. fla (repeatable).")
@click.option("--configs", "configs_text", default=None, metavar="first|picked|all|sample:N",
              help="Autotune configs of triton.autotune kernels: first (default), picked (the autotuner "
                   "chooses; GPU only), all (each config of each kernel), sample:N (N seeded per kernel).")
@click.option("--config", "config_refs", multiple=True, metavar="KERNEL:INDEX",
              help="Run every call with config INDEX of autotuned kernel KERNEL (repeatable; replays one config).")
@click.option("--profile", type=click.Choice(["smoke", "ci", "nightly"]), default="ci", show_default=True)
@click.option("--large-index", "large_index", is_flag=True,
              help="Add per dtype a cu_seqlens pack past 2^31 elements (int32 offsets, >= 1024-block grids; "
                   "GPU; on by default with --profile nightly on a GPU), judged on sampled sequences.")
@click.option("--large-index-budget", type=float, default=None, metavar="GIB",
              help="Device memory the large-index check may use (default: 80% of the GPU's); a case needing "
                   "more is refused (exit 2, the need named).")
@click.option("--shard", "shard_text", default=None, metavar="I/N",
              help="Run shard I of N (1-based) of the example budget, with a seed of its own (CI jobs).")
@click.option("--report", "report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Report file (default reports/run-<op>-<time>.json); written as the run goes.")
@_isolation_options
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of tables.")
@click.option("--warmup", type=click.Choice(["auto", "on", "off", "background"]), default="auto", show_default=True,
              help="Compile the run's kernels in parallel processes sharing TRITON_CACHE_DIR: background (while the "
                   "search runs, ahead of it), on (before the search starts: delays the first failure), off. "
                   "auto: background on a GPU, off in the interpreter (it compiles nothing). A run whose plan an "
                   "earlier run compiled into the same cache skips it (FLA_CHECK_WARM_LEDGER=off: never).")
@click.option("--warmup-buckets", type=int, default=None, metavar="N",
              help="Warm only the first N compile buckets (mode, dtype, head dims, options, cu_seqlens, initial "
                   "state), the ones drawn first.")
@click.option("--warmup-seconds", type=float, default=None, metavar="S",
              help="With --warmup on: stop warming after S seconds (the buckets left compile during the search).")
@click.option("--sanitizer", "sanitizer_text", is_flag=False, flag_value="failing", default=None,
              metavar="[failing|sample:N]",
              help="Re-run the failing (or N sampled) cases' replay under compute-sanitizer memcheck (CUDA only).")
@_guard
def run(op_name, modes, preset_name, dtypes, examples, seed, device, max_seq_len, mask_fill, backward, value_ratios,
        kernel_options, chunk_sizes, state_layouts, invariance, invariance_scope, providers, configs_text, config_refs,
        profile, large_index, large_index_budget, shard_text, report, isolation_kind, case_timeout, no_color, as_json,
        warmup, warmup_buckets, warmup_seconds, sanitizer_text) -> None:
    """Search for cases where kernel modes disagree with the float64 reference."""
    _prestart(isolation_kind, device, warmup)
    isolation = _parse_isolation(isolation_kind, case_timeout)
    device = _select_device(device)
    _load_providers(providers)
    op = _parse_op(_preset_op(preset_name, op_name, value_ratios, kernel_options, mask_fill))
    mode_names = _parse_modes(op, modes)
    if examples is not None and examples < 1:
        raise UsageError(f"--examples must be >= 1, got {examples} (a run that checks no case proves nothing)")
    if max_seq_len is not None and max_seq_len < 1:
        raise UsageError(f"--max-seq-len must be >= 1, got {max_seq_len}")
    if warmup_buckets is not None and warmup_buckets < 1:
        raise UsageError(f"--warmup-buckets must be >= 1, got {warmup_buckets}")
    if warmup_seconds is not None and warmup_seconds <= 0:
        raise UsageError(f"--warmup-seconds must be > 0, got {warmup_seconds}")
    if warmup_seconds is not None and warmup != "on":
        raise UsageError(f"--warmup-seconds limits --warmup on (the warm-up before the search); got --warmup {warmup}")
    fills = _parse_fills(mask_fill, op)
    ratios = _parse_value_ratios(value_ratios, op)
    options = _parse_kernel_options(kernel_options, op)
    chunks, layouts = _parse_drawn_chunk_sizes(chunk_sizes), _parse_state_layouts(state_layouts)
    dtype_list = _parse_dtypes(dtypes, device)
    shard = _parse_shard(shard_text)
    policy = _parse_configs(configs_text, config_refs, device)
    budget = _parse_budget(large_index_budget, device)
    from fla_check.commands.run.sanitizer import SanitizerPolicy, sanitizer_failed
    from fla_check.engine.invariance import parse_checks

    sanitizer = None if sanitizer_text is None else SanitizerPolicy.parse(sanitizer_text)
    checks = ",".join(parse_checks(invariance)) or "none"
    from fla_check.commands.run.engine import run as run_command
    from fla_check.commands.run.engine import unchecked_reason
    from fla_check.commands.run.render import SearchProgress, in_process_warnings, render_run
    from fla_check.report.console import make_console

    feed = SearchProgress(no_color)
    with feed as on_progress:
        result, path = run_command(op, mode_names, dtypes=dtype_list, examples=examples, seed=seed,
                                   max_seq_len=max_seq_len, mask_fills=fills, backward=backward, profile=profile,
                                   shard=shard, device=device, report=report, progress=on_progress,
                                   value_ratios=ratios, kernel_options=options, chunk_sizes=chunks,
                                   state_layouts=layouts, configs=policy, isolation=isolation,
                                   sanitizer=sanitizer, providers=providers, preset=preset_name, invariance=checks,
                                   invariance_scope=invariance_scope, large_index=large_index,
                                   large_index_budget=budget, warmup=warmup, warmup_buckets=warmup_buckets,
                                   warmup_seconds=warmup_seconds, warmup_progress=feed.warming)
    if not as_json:  # --json: the report's options.isolation.in_process says it
        _warn(in_process_warnings(result.options["isolation"].get("in_process", {})))
    if result.stopped:
        from fla_check.commands.run.render import stopped_message

        click.echo(f"fla-check: {stopped_message(result, path)}", err=True)
    elif result.interrupted:
        click.echo(f"fla-check: interrupted after {len(result.cases)} case(s); partial report: {path}", err=True)
    if as_json:
        _echo_json(result.to_json())
    else:
        render_run(make_console(no_color=no_color), result, path)
    if result.failed or sanitizer_failed(result.options.get("sanitizer")):
        sys.exit(EXIT_FAIL)
    if result.stopped:  # the harness ran out of memory: not a kernel's failure, not a clean run
        sys.exit(EXIT_INTERNAL)
    if result.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    unchecked = unchecked_reason(result)
    if unchecked:
        raise UsageError(f"nothing was checked: {unchecked}; report: {path}")
    sys.exit(EXIT_OK)


def _parse_budget(gib: Optional[float], device: str) -> float:
    from fla_check.engine.large_index import default_budget

    if gib is None:
        return default_budget(device)
    if not gib > 0:
        raise UsageError(f"--large-index-budget must be > 0 GiB, got {gib:g}")
    return gib


# -- replay ---------------------------------------------------------------------------------
@main.command()
@click.argument("report_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--case", "case_index", type=int, default=None,
              help="Case index in the report (default: the first failing case, else 0).")
@click.option("--stopped", "stopped", is_flag=True,
              help="Replay the case a run stopped on (fla-check itself ran out of memory on it).")
@click.option("--large-index", "large_index", type=int, default=None, metavar="I",
              help="Replay the report's large-index case I instead (a pack past 2^31 elements: GPU).")
@click.option("--large-index-budget", type=float, default=None, metavar="GIB",
              help="Device memory the large-index replay may use (default: 80% of the GPU's).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--provider", "providers", multiple=True, metavar="SPEC",
              help="Load a provider of modes: 'module:object' or an entry-point name, e.g. fla (repeatable).")
@_isolation_options
@click.option("--no-color", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the case result as JSON.")
@click.option("--configs", "configs_text", default=None, metavar="first|picked|all|sample:N",
              help="Autotune configs of triton.autotune kernels: default: the report's, picked (the autotuner "
                   "chooses; GPU only), all (each config of each kernel), sample:N (N seeded per kernel).")
@click.option("--config", "config_refs", multiple=True, metavar="KERNEL:INDEX",
              help="Run every call with config INDEX of autotuned kernel KERNEL (repeatable; replays one config).")
@_guard
def replay(report_file, case_index, stopped, large_index, large_index_budget, device, providers, isolation_kind,
           case_timeout, no_color, as_json, configs_text, config_refs) -> None:
    """Rebuild one case of a report exactly (gradients too for --backward runs) and re-run its modes."""
    _parse_isolation(isolation_kind, case_timeout)  # usage errors first
    device = _select_device(device)
    budget = _parse_budget(large_index_budget, device)
    _load_providers(providers)
    data = _load_report(report_file)
    if large_index is not None:
        _replay_large(data, report_file, large_index, budget, device, no_color, as_json)
    if case_timeout is None and isolation_kind == "process":  # the run's own timeout, when it recorded one
        case_timeout = ((data.get("options") or {}).get("isolation") or {}).get("case_timeout")
    isolation = _parse_isolation(isolation_kind, case_timeout)
    cases = data["cases"]
    if stopped:
        if case_index is not None or not data.get("stopped"):
            raise UsageError("--stopped: " + ("give --case or --stopped, not both" if case_index is not None
                                              else "this report's run was not stopped on a case"))
        cases, case_index = cases + [{"config": data["stopped"]["config"]}], len(cases)
    if case_index is None:
        case_index = min(data.get("failures", {}).values(), default=0)
    if not 0 <= case_index < len(cases):
        raise UsageError(f"--case {case_index} out of range: the report has {len(cases)} case(s)")
    from fla_check.cases import CaseConfig
    from fla_check.verdict.compare import Verdict
    from fla_check.commands.run.render import render_case
    from fla_check.report.console import make_console
    from fla_check.engine.runner import check_case

    op = _parse_op(data["op"])
    modes = _parse_modes(op, ",".join(data["modes"]))
    backward = bool(cases[case_index].get("backward", data.get("options", {}).get("backward", False)))
    opts = data.get("options", {})
    policy = _parse_configs(configs_text or opts.get("configs"), config_refs or tuple(opts.get("config") or ()),
                            device)
    result = check_case(op, modes, CaseConfig.from_json(cases[case_index]["config"]), device=device,
                        backward=backward, configs=policy, isolation=isolation,
                        invariance=opts.get("invariance"), invariance_scope=opts.get("invariance_scope"))
    if not as_json:
        from fla_check.commands.run.render import in_process_warnings
        from fla_check.engine.isolation import in_process_modes

        _warn(in_process_warnings(in_process_modes(result.modes) if isolation.isolated else {}))
    if as_json:
        _echo_json(result.to_json())
    else:
        title = "the case the run stopped on" if stopped else f"case #{case_index}"
        render_case(make_console(no_color=no_color), result, f"replay of {title} from {report_file}")
    if result.verdict is Verdict.UNSUPPORTED:  # no mode could run the case here: nothing was replayed
        reasons = "; ".join(f"{m}: {r.reason}" for m, r in result.modes.items())
        raise UsageError(f"nothing was checked: every mode is UNSUPPORTED here ({reasons})")
    sys.exit(EXIT_FAIL if result.verdict.failed else EXIT_OK)


def _replay_large(data: dict, report_file: Path, index: int, budget: float, device: str, no_color: bool,
                  as_json: bool) -> None:
    """replay --large-index I: re-run the report's large-index case I with its modes."""
    cases = data.get("large_index") or []
    if not 0 <= index < len(cases):
        raise UsageError(f"--large-index {index} out of range: the report has {len(cases)} large-index case(s)")
    from fla_check.commands.run.engine import replay_large_index
    from fla_check.commands.run.render import SearchProgress, render_large_replay
    from fla_check.report.console import make_console

    op = _parse_op(data["op"])
    modes = _parse_modes(op, ",".join(data["modes"]))
    with SearchProgress(no_color) as on_progress:
        result = replay_large_index(op, modes, cases[index]["case"], device, budget,
                                    None if as_json else on_progress)
    if as_json:
        _echo_json(result.to_json())
    else:
        render_large_replay(make_console(no_color=no_color), result,
                            f"replay of large-index case #{index} from {report_file}")
    sys.exit(EXIT_FAIL if result.failed_modes else EXIT_OK)


def _load_report(path: Path) -> dict:
    from fla_check.report.storage import read_run_report

    return read_run_report(path)


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
    from fla_check.commands.gate.engine import check_thresholds, diff_reports, report_label, rerun
    from fla_check.commands.gate.render import case_progress
    from fla_check.report.storage import default_report_path, write_report

    check_thresholds(factor, min_score)
    _load_providers(providers)  # the current directory is searched too, as for run / replay
    with case_progress(no_color or as_json) as on_progress:
        result = rerun(data, device=device, providers=providers, progress=on_progress, source=str(baseline),
                       isolation=isolation)
    path = write_report(result.to_json(), report or default_report_path(data["op"], "gate"))
    diff = diff_reports(data, result.to_json(), factor=factor, min_score=min_score,
                        base_label=report_label(baseline, data), new_label=f"re-run {path}")
    _finish_diff(diff, "fla-check gate", show_all, no_color, as_json, interrupted=result.interrupted)


@main.command("compare")
@click.argument("report_a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("report_b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_gate_options
@_guard
def compare_reports(report_a, report_b, factor, min_score, show_all, no_color, as_json) -> None:
    """Diff two saved run reports case by case (paired by configuration); exit 1 when B regressed."""
    a, b = _load_report(report_a), _load_report(report_b)
    from fla_check.commands.gate.engine import diff_reports, report_label

    diff = diff_reports(a, b, factor=factor, min_score=min_score, base_label=report_label(report_a, a),
                        new_label=report_label(report_b, b))
    _finish_diff(diff, "fla-check compare", show_all, no_color, as_json)


def _finish_diff(diff, title: str, show_all: bool, no_color: bool, as_json: bool,
                 interrupted: bool = False) -> None:
    from fla_check.commands.gate.render import render_gate
    from fla_check.report.console import make_console

    if as_json:
        _echo_json(diff.to_json())
    else:
        render_gate(make_console(no_color=no_color), diff, title=title, show_all=show_all)
    if not any(r.status != "not compared" for r in diff.rows):
        raise UsageError(f"nothing to compare: {diff.matched} paired case(s), no mode ran on both sides")
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
    from fla_check.commands.listing.engine import inventory
    from fla_check.commands.listing.render import render_inventory
    from fla_check.report.console import make_console

    info = inventory(device)
    if as_json:
        _echo_json(info)
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
        raise UsageError(f"--examples must be >= 1, got {examples}")
    dtype_list = _parse_dtypes(dtypes, device)
    from fla_check.commands.ut_transform.render import ChunkProgress, render_ut
    from fla_check.report.console import make_console
    from fla_check.commands.ut_transform.engine import check_ut

    with ChunkProgress(no_color or as_json) as on_progress:
        result = check_ut(sizes, gated=gated, dtypes=dtype_list, examples=examples, seed=seed, device=device,
                          progress=on_progress)
    if as_json:
        _echo_json(result.to_json())
    else:
        render_ut(make_console(no_color=no_color), result)
    if result.failed:
        sys.exit(EXIT_FAIL)
    sys.exit(EXIT_INTERRUPTED if result.interrupted else EXIT_OK)


def _parse_chunk_sizes(text: str) -> tuple[int, ...]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not all(re.fullmatch(r"[+-]?\d+", t) for t in items):
        raise UsageError(f"--chunk-size: not a comma list of integers: {text!r}")
    sizes = tuple(dict.fromkeys(int(t) for t in items))
    bad = [c for c in sizes if c not in (16, 32, 64)]
    if bad or not sizes:
        raise UsageError(f"--chunk-size must be a comma list of 16, 32, 64; got {text!r}")
    return sizes


# -- sweep-mask-values ----------------------------------------------------------------------
@main.command("sweep-mask-values")
@click.option("--op", "op_name", default="gla", show_default=True,
              help="gla, simple_gla, gated_delta or kda (DeltaNet has no gate: pack it with cu_seqlens).")
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
        raise UsageError(f"--op {op.name}: {_op_title(op.name)} has no gate to fill at sequence starts; "
                        "pack its sequences with cu_seqlens instead (fla-check run draws varlen cases)")
    mode_names = _parse_modes(op, modes) if modes is not None else None
    dtype_list = _parse_dtypes(dtypes, device)
    if cases < 1:
        raise UsageError(f"--cases must be >= 1, got {cases}")
    from fla_check.commands.sweep.engine import parse_value_list, sweep
    from fla_check.commands.sweep.render import SweepProgress, render_sweep, write_plot
    from fla_check.errors import PlotUnavailable
    from fla_check.report.console import make_console
    from fla_check.report.storage import default_report_path, write_report

    with _about("--values"):
        fills = parse_value_list(values) if values is not None else None
    with SweepProgress(quiet=as_json, no_color=no_color) as on_progress:
        result = sweep(op, mode_names, dtypes=dtype_list, values=fills, cases=cases, seed=seed, device=device,
                       progress=on_progress)
    path = write_report(result.to_json(), report or default_report_path(op.name, "sweep"))
    if as_json:
        _echo_json(result.to_json())
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
@click.option("--field", "field_only", is_flag=True,
              help="Only the field catalog: mutants planting a bug users reported (a public thread, see --list).")
@click.option("--list", "list_only", is_flag=True, help="Print the mutant catalog and exit.")
@click.option("--jobs", "jobs_text", default="1", show_default=True, metavar="N|auto",
              help="Run the entries in N worker processes (auto: one per CPU core); results in catalog order.")
@click.option("--shard", "shard_text", default=None, metavar="I/N",
              help="Run shard I of N (1-based) of the selected entries: every N-th by id (CI jobs).")
@click.option("--costs", "costs_path", default=None, type=click.Path(dir_okay=False),
              help="A previous `selftest --json` result: hand the slowest entries out first (with --jobs; "
                   "default: the shipped H200 seconds, new entries first).")
@click.option("--shrink-cases", type=click.IntRange(min=0), default=None, metavar="N",
              help="New cases per killing search for shrinking the killing case (default 10; `run --profile ci` "
                   "shrinks with 40). On a GPU each new shape compiles the mutant's kernels again: fewer is "
                   "faster, the shrunk case less minimal; 0 reports the killing case itself.")
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result on stdout instead of tables.")
@_guard
def selftest(ops, mutants, profile, device, field_only, list_only, jobs_text, shard_text, costs_path, shrink_cases,
             no_color, as_json) -> None:
    """Plant known kernel bugs and check that the normal search catches each (exit 1: one escaped or broken)."""
    device = _select_device(device)
    op_names = [_parse_op(o.strip()).name for text in ops for o in text.split(",") if o.strip()]
    ids = [m.strip() for m in mutants.split(",") if m.strip()] if mutants is not None else None
    from fla_check.commands.selftest.jobs import parse_jobs
    from fla_check.commands.selftest.mutants import select
    from fla_check.report.console import make_console
    from fla_check.commands.selftest.suite import run_selftest
    from fla_check.commands.selftest.render import catalog_table, render_selftest

    with _about("--jobs"):
        jobs = parse_jobs(jobs_text)
    shard = _parse_shard(shard_text)
    costs = _load_costs(costs_path)
    entries = select(op_names, ids, field_only)
    if not entries:
        raise UsageError("no mutant selected" + (" (--field: none of them has a field thread)" if field_only else ""))
    if list_only:
        make_console(no_color=no_color).print(catalog_table(entries))
        return

    def on_result(r, done: int, total: int) -> None:  # on stderr, also with --json (stdout holds the result)
        how = f"after {r.examples} example(s), {r.seconds:.1f} s" if r.caught else r.note
        what = ("caught" if r.caught else "BROKEN" if r.status == "broken"
                else "skipped" if r.status == "skipped" else "MISSED")
        mode = f"{r.mode} bwd" if r.backward else r.mode
        click.echo(f"[{done}/{total}] {what} {r.id} ({r.op}/{mode}): {how}", err=True)

    result = run_selftest(op_names, ids, profile=profile, device=device, field_only=field_only, shard=shard,
                          jobs=jobs, costs=costs, on_result=on_result, shrink_cases=shrink_cases)
    if shard is not None and not result.results:
        click.echo(f"fla-check: shard {shard}: no entry of the {len(entries)} selected", err=True)
    if as_json:
        _echo_json(result.to_json())
    else:
        render_selftest(make_console(no_color=no_color), result)
    if result.interrupted:
        click.echo(f"fla-check: interrupted; {result.interrupted} entr{'y' if result.interrupted == 1 else 'ies'} "
                   "not run", err=True)
        sys.exit(EXIT_INTERRUPTED if result.all_caught else EXIT_FAIL)
    sys.exit(EXIT_OK if result.all_caught else EXIT_FAIL)


def _load_costs(path: Optional[str]) -> Optional[dict[str, float]]:
    """--costs PATH: seconds per entry id of a previous selftest JSON result."""
    if path is None:
        return None
    import json

    from fla_check.commands.selftest.jobs import costs_from

    with _about(f"--costs {path}"):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read it: {exc}") from None
        return costs_from(data)


if __name__ == "__main__":  # pragma: no cover
    main()
