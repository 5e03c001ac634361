"""Rendering and storage of results: rich tables for people, JSON files for machines.

- :func:`render_run` prints a run: one row per mode (worst max-abs, rel-RMSE, ratio to the
  baseline, NaN/Inf count, verdict), the pairwise mode-vs-mode table and, for every failing
  mode, its shrunk case with the segment layout, where it goes wrong and a replay command.
- :func:`render_case` prints one case (``fla-check replay``).
- :func:`write_report` writes JSON atomically (temporary file + ``os.replace``) under
  ``reports/``. Colour follows ``NO_COLOR`` / ``--no-color``; tables fit 80 columns.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from fla_check.cases import GATE_OPS, CaseConfig, resolve_fill
from fla_check.compare import Verdict, worst
from fla_check.profiles import REPORTS_DIR
from fla_check.runner import CaseResult, ModeResult
from fla_check.search import SearchResult

if TYPE_CHECKING:
    from fla_check.ut_check import UTResult

VERDICT_STYLE = {Verdict.OK: "green", Verdict.DIVERGED: "bold red", Verdict.NONFINITE: "bold magenta",
                 Verdict.ERROR: "bold red", Verdict.UNSUPPORTED: "yellow", Verdict.NONDETERMINISTIC: "bold yellow",
                 Verdict.TIMEOUT: "bold red", Verdict.CRASHED: "bold red"}


STDERR_SHOWN = 6  # lines of a CRASHED / TIMEOUT worker's stderr printed under its failure


def make_console(*, no_color: bool = False, stderr: bool = False, width: Optional[int] = None) -> Console:
    """A rich console honouring --no-color and NO_COLOR (any non-empty value)."""
    no_color = no_color or bool(os.environ.get("NO_COLOR"))
    return Console(stderr=stderr, no_color=no_color, highlight=False, width=width,
                   color_system=None if no_color else "auto")


def make_progress(text: str = "{task.description}", *, no_color: bool = False,
                  quiet: bool = False) -> Progress:
    """A transient rich progress bar on stderr: label `text`, bar, done/total, elapsed time."""
    return Progress(TextColumn(text), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=make_console(no_color=no_color, stderr=True), transient=True, disable=quiet)


class ProgressFeed:
    """Context manager around a started/stopped progress bar; entering yields ``self.update``."""

    def __init__(self, bar: Progress):
        self.bar = bar
        self.task: Optional[TaskID] = None

    def __enter__(self) -> Callable[..., None]:
        self.bar.start()
        return self.update

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def update(self, *args: Any) -> None:
        raise NotImplementedError


class SearchProgress(ProgressFeed):
    """A rich progress bar on stderr fed by search's ProgressEvents (``fla-check run``)."""

    def __init__(self, no_color: bool):
        super().__init__(make_progress(no_color=no_color))

    def update(self, event: Any) -> None:
        if self.task is None:
            self.task = self.bar.add_task("searching", total=event.budget)
        verb = {"shrink": "shrinking", "cover": "covering"}.get(event.phase, "searching")
        failing = f"; failing: {','.join(event.failing)}" if event.failing else ""
        desc = f"{event.mode} {verb} ({event.examples} cases{failing})".lstrip()
        self.bar.update(self.task, completed=min(event.calls, event.budget), total=event.budget,
                        description=desc)


class ChunkProgress(ProgressFeed):
    """A transient rich progress bar on stderr, fed with (done, total) chunks (``ut-transform``)."""

    def __init__(self, quiet: bool):
        super().__init__(make_progress("chunks", no_color=quiet, quiet=quiet))

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task("chunks", total=total)
        self.bar.update(self.task, completed=done, total=total)


def fmt(x: Optional[float]) -> str:
    """Compact number: 2 significant digits in e-notation, 'inf'/'nan', '-' for None."""
    if x is None:
        return "-"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    return f"{x:.2g}" if 1e-2 <= abs(x) < 1e4 else f"{x:.1e}"


def _verdict(v: Verdict) -> str:
    return f"[{VERDICT_STYLE[v]}]{v.value}[/]"


# -- run ------------------------------------------------------------------------------------
def render_run(console: Console, result: SearchResult, report_path: Optional[Path] = None) -> None:
    """The human view of a run."""
    opts = result.options
    console.print(f"[bold]fla-check run[/]: {result.op} " + escape(f"[{', '.join(result.modes)}]"))
    stopped = " [yellow](interrupted: partial results)[/]" if result.interrupted else ""
    console.print(f"dtypes {','.join(opts.get('dtypes', []))}; device {opts.get('device')}; "
                  f"profile {opts.get('profile')}; {len(result.cases)} cases in {result.seconds:.1f} s{stopped}")
    console.print(mode_table(result))
    if result.options.get("backward"):
        console.print(output_summary_table(result))
        console.print("  /allowed: fraction of the verdict's bound used (> 1 fails); dg is exactly 0 where the gate "
                      "cannot matter (T=1 without states): its rel-RMSE and x base are not meaningful there, its "
                      "bound is absolute at the scale of q*dq, k*dk", soft_wrap=True, markup=False)
    _print_unsupported(console, result)
    if len(result.modes) > 1 and result.cases:
        console.print(pair_table(result))
    for mode, ff in result.first_failure.items():
        console.print(f"{mode} first failed at case {ff['example']} after {ff['seconds']:.1f} s", markup=False)
    for mode, index in result.failures.items():
        how = "shrunk by hypothesis" if mode in result.shrunk else "smallest failing case seen"
        if mode in result.simplified:
            how += ", then simplified"
        render_failure(console, result.cases[index], mode, index, how, report_path)
    if result.failed:
        verdict = "[bold red]FAIL[/]"
    elif unchecked_reason(result):
        verdict = "[bold yellow]NOTHING CHECKED[/]"
    else:
        verdict = "[green]OK[/]"
    console.print(f"verdict: {verdict}" + (f"   report: {report_path}" if report_path else ""))


def unchecked_reason(result: SearchResult) -> Optional[str]:
    """Why no mode of `result` checked a single case (no case drawn, or every mode UNSUPPORTED on
    every case), or None when one did. Such a run proves nothing, so it is never reported OK."""
    if any(result.summary(m).cases for m in result.modes):
        return None
    if not result.cases:
        return "no case was drawn"
    why = "; ".join(f"{m}: {result.summary(m).reason}" for m in result.modes if result.summary(m).reason)
    return "every mode was UNSUPPORTED on every case" + (f" ({why})" if why else "")


def mode_table(result: SearchResult) -> Table:
    table = Table(title="modes vs float64 reference (worst over cases)", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for name, justify in (("mode", "left"), ("verdict", "left"), ("max-abs", "right"),
                          ("rel-RMSE", "right"), ("x base", "right"), ("NaN/Inf", "right"),
                          ("cases", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for mode in result.modes:
        s = result.summary(mode)
        cases = f"{s.failed}/{s.cases} bad" if s.failed else str(s.cases)
        table.add_row(escape(mode), _verdict(s.verdict), fmt(s.max_abs), fmt(s.rel_rms), fmt(s.ratio),
                      "-" if s.max_abs is None else str(s.nonfinite), cases)
    return table


def output_summary_table(result: SearchResult) -> Table:
    """One row per mode and output (o, ht and the gradients of --backward runs), worst over
    cases: verdict, max-abs, rel-RMSE, ratio to the baseline, fraction of the allowed error."""
    table = Table(title="outputs and gradients vs float64 reference (worst over cases)", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for name, justify in (("mode", "left"), ("out", "left"), ("verdict", "left"), ("max-abs", "right"),
                          ("rel-RMSE", "right"), ("x base", "right"), ("/allowed", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for mode in result.modes:
        rows: dict[str, list] = {}
        for case in result.cases:
            r = case.modes.get(mode)
            for c in r.outputs if r else ():
                rows.setdefault(c.name, []).append(c)
        for i, (out, comps) in enumerate(rows.items()):
            verdict = worst(c.verdict for c in comps)
            table.add_row(escape(mode) if i == 0 else "", out, _verdict(verdict),
                          fmt(max(c.kernel.max_abs for c in comps)), fmt(max(c.kernel.rel_rms for c in comps)),
                          fmt(max(c.ratio for c in comps)), fmt(max(c.score for c in comps)))
    return table


def pair_table(result: SearchResult) -> Table:
    table = Table(title="mode vs mode (worst over cases)",
                  box=box.SIMPLE_HEAD, title_justify="left")
    for name, justify in (("modes", "left"), ("max-abs", "right"), ("rel-RMSE", "right"),
                          ("agree", "left"), ("cases", "right")):
        table.add_column(name, justify=justify, no_wrap=name != "modes")
    for p in result.pair_summaries():
        agree = "[green]yes[/]" if p.agree else "[red]no[/]"
        table.add_row(escape(f"{p.a} / {p.b}"), fmt(p.max_abs), fmt(p.rel_rms), agree, str(p.cases))
    return table


def _print_unsupported(console: Console, result: SearchResult) -> None:
    for mode in result.modes:
        s = result.summary(mode)
        if s.unsupported and s.reason and s.verdict in (Verdict.UNSUPPORTED, Verdict.OK):
            console.print(f"  {mode}: unsupported on {s.unsupported} case(s): {s.reason}", markup=False)


def render_failure(console: Console, case: CaseResult, mode: str, index: int, how: str,
                   report_path: Optional[Path]) -> None:
    r = case.modes[mode]
    console.print()
    console.print(f"[bold]{escape(mode)}[/]: {_verdict(r.verdict)} on case #{index} ({how})")
    for line in describe_config(case.config):
        console.print(f"  {line}", soft_wrap=True, markup=False)
    _print_mode_detail(console, r)
    others = [m for m in case.failed_modes if m != mode]
    if others:
        console.print(f"  also failing on this case: {', '.join(others)}", markup=False)
    if report_path:
        console.print("  replay: " + replay_command(report_path, index), soft_wrap=True)


def _print_mode_detail(console: Console, r: ModeResult) -> None:
    if r.verdict in (Verdict.CRASHED, Verdict.TIMEOUT):
        console.print(f"  {r.verdict.value.lower()}: {r.reason}", soft_wrap=True, markup=False)
        for ln in r.stderr.strip().splitlines()[:STDERR_SHOWN]:
            console.print(f"    {ln.strip()}", soft_wrap=True, markup=False)
        return
    if r.verdict is Verdict.ERROR:
        console.print(f"  error: {r.reason}", soft_wrap=True, markup=False)
        lines = [ln for ln in r.traceback.strip().splitlines() if ln.strip().strip("^~")]
        tail = lines[-3:-1]  # the kernel's last frame (the exception line is in the reason)
        for ln in tail:
            console.print(f"    {ln.strip()}", soft_wrap=True, markup=False)
        return
    console.print(Padding(output_table(r), (0, 0, 0, 2)))
    if r.localization:
        console.print(f"  {r.localization.describe()}", soft_wrap=True, markup=False)


def output_table(*results: ModeResult, mode_column: bool = False) -> Table:
    """Per output: verdict, max-abs and rel-RMSE with their bounds, NaN/Inf count."""
    table = Table(box=box.SIMPLE, padding=(0, 1), show_edge=False)
    heads = (["mode"] if mode_column else []) + ["out", "verdict", "max-abs", "bound", "rel-RMSE", "bound",
                                                 "NaN/Inf"]
    for name in heads:
        table.add_column(name, justify="left" if name in ("mode", "out", "verdict") else "right",
                         no_wrap=True)
    for r in results:
        lead = [escape(r.mode)] if mode_column else []
        if not r.outputs:
            table.add_row(*lead, "-", _verdict(r.verdict), *["-"] * 5)
        for i, c in enumerate(r.outputs):
            lead = ([escape(r.mode) if i == 0 else ""]) if mode_column else []
            table.add_row(*lead, c.name, _verdict(c.verdict), fmt(c.kernel.max_abs), fmt(c.bound_max_abs),
                          fmt(c.kernel.rel_rms), fmt(c.bound_rel_rms), str(c.kernel.nonfinite))
    return table


def describe_config(c: CaseConfig) -> list[str]:
    """The configuration as a few readable lines (shape, gate, packing and segment layout, seed)."""
    lines = [f"op {c.op}  dtype {c.dtype}  B={c.B} T={c.T} H={c.H} K={c.K} V={c.V}  "
             f"initial state {'yes' if c.initial_state else 'no'}  seed {c.seed}"]
    gate = []
    if GATE_OPS[c.op]:
        gate.append(f"gate logsigmoid(x)/{c.gate_norm:g}, zero-gate fraction {c.zero_gate_frac:g}"
                    + (", near-zero decay" if c.near_zero_decay else ""))
    if c.op != "gla":
        gate.append(f"beta in [0, {c.beta_max:g}]")
    if gate:
        lines.append("; ".join(gate))
    packing = f"packing: {c.describe_segments()}"
    if c.packing == "mask":
        packing += f"; fill {c.mask_fill} (= {resolve_fill(c.mask_fill, c.torch_dtype):.3g})"
    lines.append(packing)
    return lines


# -- one case (replay) ----------------------------------------------------------------------
def render_case(console: Console, case: CaseResult, title: str = "") -> None:
    if title:
        console.print(f"[bold]{title}[/]", soft_wrap=True)
    for line in describe_config(case.config):
        console.print(f"  {line}", soft_wrap=True, markup=False)
    console.print(output_table(*case.modes.values(), mode_column=True))
    for r in case.modes.values():
        if r.verdict is not Verdict.OK and (r.reason or r.localization):
            console.print(f"{r.mode}: {r.reason or r.localization.describe()}", soft_wrap=True, markup=False)
    console.print(f"verdict: {_verdict(case.verdict)}")


# -- files ----------------------------------------------------------------------------------
def replay_command(report_path: Path, index: int) -> str:
    return f"fla-check replay {shlex.quote(str(report_path))} --case {index}"


def default_report_path(op: str, kind: str = "run", root: Path = REPORTS_DIR) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return root / f"{kind}-{op}-{stamp}-{os.getpid()}.json"


def atomic_write(path: Path, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Call write(tmp) on a temporary file in path's folder, then os.replace it onto `path`.

    The folder is created; on any error the temporary file is removed and the error re-raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_report(data: dict[str, Any], path: Path) -> Path:
    """Write `data` as JSON atomically: a temporary file in the same folder, then os.replace."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")

    return atomic_write(path, write)


class Checkpoints:
    """Writes a run's partial report (``search(checkpoint=...)``) to `path` as the run goes, at
    most every `every` seconds, with `extra` options merged in; each write is atomic, so the
    file is always a complete report of the cases finished so far."""

    def __init__(self, path: Path, extra: Optional[dict[str, Any]] = None, every: float = 2.0):
        self.path, self.extra, self.every = Path(path), dict(extra or {}), every
        self.last = -math.inf
        self.written = 0  # cases in the last checkpoint

    def __call__(self, partial: SearchResult) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        partial.options.update(self.extra)
        write_report(partial.to_json(), self.path)
        self.last, self.written = now, len(partial.cases)


def read_report(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


# -- ut-transform ---------------------------------------------------------------------------
def render_ut(console: Console, result: "UTResult") -> None:
    """The human view of ``fla-check ut-transform``: one row per variant and dtype, the
    reasons of unsupported variants, the worst chunk of failing ones, each variant's declared
    arithmetic (its baseline), the conclusion."""
    o = result.options
    kind = "Gated DeltaNet (decay in the chunk)" if o["gated"] else "DeltaNet (no gate)"
    console.print(f"[bold]fla-check ut-transform[/] {kind} chunk sizes={','.join(map(str, o['chunk_sizes']))} "
                  f"dtypes={','.join(o['dtypes'])} seed={o['seed']} on {o['backend']}")
    stopped = " [yellow](interrupted: partial results)[/]" if result.interrupted else ""
    console.print(f"{len(result.cases)} chunks in {result.seconds:.1f} s{stopped}")
    table = Table(title="A_inv, w, u vs the float64 per-row recursion, worst over chunks",
                  box=box.SIMPLE_HEAD, title_justify="left", show_edge=False, pad_edge=False, collapse_padding=True)
    for name, justify in (("variant", "left"), ("dtype", "left"), ("max-abs", "right"), ("rel", "right"),
                          ("rel-rms", "right"), ("score", "right"), ("cond", "right"), ("chunks", "right"),
                          ("verdict", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    short = {"float64": "fp64", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    rows = result.summaries()
    for s in rows:
        ran = s.cases > 0
        chunks = f"{s.failed}/{s.cases}" if s.failed else str(s.cases)
        table.add_row(s.variant, short.get(s.dtype, s.dtype), fmt(s.max_abs) if ran else "-",
                      fmt(s.max_rel) if ran else "-", fmt(s.rel_rms) if ran else "-", fmt(s.score) if ran else "-",
                      fmt(s.cond) if ran else "-", chunks, _verdict(s.verdict))
    console.print(table)
    console.print("rel = max-abs / max|ref|; score = error / bound (>1: DIVERGED); cond = cond(I+A)")
    for s in rows:
        if s.reason and not s.cases:
            console.print(f"  {s.variant} {s.dtype}: {s.reason}", soft_wrap=True, markup=False)
        elif s.verdict.failed and s.worst_case is not None:
            c = result.cases[s.worst_case]
            outs = ", ".join(f"{x.name} rel-rms {fmt(x.rel_rms)} (bound {fmt(x.comparison.bound_rel_rms)}) "
                             f"max-abs {fmt(x.max_abs)} (bound {fmt(x.comparison.bound_max_abs)})"
                             for x in c.variants[s.variant].outputs)
            console.print(f"  {s.variant} {s.dtype} worst chunk #{s.worst_case} {c.case.short()}: "
                          f"{outs or c.variants[s.variant].reason}", soft_wrap=True, markup=False)
    console.print("time: " + ", ".join(f"{s.variant} {short.get(s.dtype, s.dtype)} {s.seconds:.1f} s" for s in rows))
    console.print("baselines (declared arithmetic, emulated): " + "; ".join(
        f"{v.name}: {v.declaration()}" for v in result.variants), soft_wrap=True, markup=False)
    from fla_check.ut_check import TOLERANCE_RULE

    console.print(f"OK iff {TOLERANCE_RULE}", soft_wrap=True, markup=False)
    console.print(f"conclusion: {result.conclusion()}", soft_wrap=True, markup=False)
    console.print("verdict: " + ("[bold red]FAIL[/]" if result.failed else "[green]OK[/]"))
