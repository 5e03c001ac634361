"""The renderer of ``fla-check run`` and ``fla-check replay``.

- :func:`render_run` prints a run: one row per mode (worst max-abs, rel-RMSE, ratio to the
  baseline, NaN/Inf count, verdict), the pairwise mode-vs-mode table and, for every failing
  mode, its shrunk case with the segment layout, where it goes wrong and a replay command.
- :func:`render_case` prints one case (``fla-check replay``).
Colour follows ``NO_COLOR`` / ``--no-color``; tables fit 80 columns.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from fla_check.cases import BETA_OPS, GATE_OPS, CaseConfig, resolve_fill
from fla_check.commands.run.engine import unchecked_reason
from fla_check.engine.configs import INTERPRETER_NOTE
from fla_check.engine.runner import CaseResult, ModeResult
from fla_check.engine.search import SearchResult
from fla_check.presets import GPU_MAX_SEQ_LEN, get_preset
from fla_check.report.console import ProgressFeed, fmt, make_progress, verdict_text
from fla_check.verdict.compare import Verdict, worst
from fla_check.verdict.results import LargeIndexResult


class SearchProgress(ProgressFeed):
    """A rich progress bar on stderr fed by search's ProgressEvents (``fla-check run``)."""

    def __init__(self, no_color: bool):
        super().__init__(make_progress(no_color=no_color))
        self.warm_task: Optional[Any] = None

    def update(self, event: Any) -> None:
        if isinstance(event, str):  # a line of the large-index check (building its tensors, running a mode)
            self.bar.console.print(event, markup=False, highlight=False, soft_wrap=True)
            return
        if self.task is None:
            self.task = self.bar.add_task("searching", total=event.budget)
        verb = {"shrink": "shrinking", "cover": "covering"}.get(event.phase, "searching")
        failing = f"; failing: {','.join(event.failing)}" if event.failing else ""
        desc = f"{event.mode} {verb} ({event.examples} cases{failing})".lstrip()
        self.bar.update(self.task, completed=min(event.calls, event.budget), total=event.budget,
                        description=desc)

    def warming(self, done: int, total: int, bucket: Any) -> None:
        """The compile warm-up's progress (before the search): buckets done of `total`."""
        if self.warm_task is None:
            self.warm_task = self.bar.add_task("warming compile buckets", total=total)
        self.bar.update(self.warm_task, completed=done,
                        description=f"warming compile buckets ({bucket.describe()})")
        if done >= total:
            self.bar.remove_task(self.warm_task)



def render_sanitizer(console: Console, record: Optional[dict]) -> None:
    """The --sanitizer record: UNSUPPORTED with its reason, or one line per case memcheck ran."""
    if not record:
        return
    if record["status"] == "UNSUPPORTED":
        console.print(f"sanitizer: UNSUPPORTED: {record['reason']}", style="yellow", markup=False)
        return
    console.print(f"sanitizer (compute-sanitizer memcheck): {record['status']}", markup=False)
    for case in record["cases"]:
        console.print(f"  case #{case['case']}: {case['summary']}", markup=False, soft_wrap=True)
    if not record["cases"]:
        console.print("  no case to check (nothing failed; use --sanitizer sample:N)", markup=False)


def _print_drawn(console: Console, result: SearchResult) -> None:
    """How many cases drew each value of the run's space along the option / ratio / chunk size /
    layout dimensions; the ones no case drew in yellow (in the space, never checked)."""
    drawn = result.drawn()
    if not drawn or not result.cases:
        return
    console.print(f"drawn (of {len(result.cases)} cases): " + ", ".join(f"{v} {n}" for v, n in drawn),
                  soft_wrap=True, markup=False)
    never = [v for v, n in drawn if n == 0]
    if never:
        console.print(f"never drawn: {', '.join(never)}: in the space, not checked by this run (more --examples, "
                      "or narrow the space to them)", style="yellow", soft_wrap=True, markup=False)


def warmup_line(record: dict) -> str:
    """One line for ``options.warmup``: how many compile buckets the warm-up compiled, when, and
    why it stopped early (fla_check.engine.warmup)."""
    if record.get("skipped"):
        return f"compile warm-up skipped: {record['skipped']}"
    when = "beside the search" if record.get("background") else "before the search"
    line = (f"compile warm-up {when}: {record.get('warmed', 0)} of {record.get('buckets', 0)} buckets in "
            f"{record.get('seconds', 0):.1f} s on {record.get('jobs')} processes")
    failed = record.get("failed") or []
    if failed:
        line += f"; {len(failed)} failed (first: {failed[0]})"
    return line + (f"; {record['stopped']}" if record.get("stopped") else "")


def render_run(console: Console, result: SearchResult, report_path: Optional[Path] = None) -> None:
    """The human view of a run."""
    opts = result.options
    console.print(f"[bold]fla-check run[/]: {result.op} " + escape(f"[{', '.join(result.modes)}]"))
    stopped = " [yellow](interrupted: partial results)[/]" if result.interrupted else ""
    console.print(f"dtypes {','.join(opts.get('dtypes', []))}; device {opts.get('device')}; "
                  f"profile {opts.get('profile')}; {len(result.cases)} cases in {result.seconds:.1f} s{stopped}")
    if opts.get("configs"):
        forced = f" with {', '.join(opts['config'])}" if opts.get("config") else ""
        note = f" ({INTERPRETER_NOTE})" if opts.get("device") == "cpu" else ""
        console.print(f"autotune configs: {opts['configs']}{forced}{note}", soft_wrap=True, markup=False)
    if opts.get("preset"):
        console.print(preset_line(opts["preset"], opts), soft_wrap=True, markup=False)
    if opts.get("warmup"):
        console.print(warmup_line(opts["warmup"]), soft_wrap=True, markup=False)
    for mode, caveat in opts.get("caveats", {}).items():
        console.print(f"caveat {mode}: {caveat}", style="yellow", soft_wrap=True, markup=False)
    _print_drawn(console, result)
    console.print(mode_table(result))
    if result.options.get("backward"):
        console.print(output_summary_table(result))
        console.print("  /allowed: fraction of the verdict's bound used (> 1 fails); dg is exactly 0 where the gate "
                      "cannot matter (T=1 without states): its rel-RMSE and x base are not meaningful there, its "
                      "bound is absolute at the scale of q*dq, k*dk", soft_wrap=True, markup=False)
    _print_unsupported(console, result)
    if opts.get("configs"):
        _print_config_summary(console, result)
    if any(r.invariance for c in result.cases for r in c.modes.values()):
        console.print(invariance_table(result))
    if len(result.modes) > 1 and result.cases:
        console.print(pair_table(result))
    render_large_index(console, result.large_index, report_path)
    for mode, ff in result.first_failure.items():
        console.print(f"{mode} first failed at case {ff['example']} after {ff['seconds']:.1f} s", markup=False)
    for mode, index in result.failures.items():
        how = "shrunk by hypothesis" if mode in result.shrunk else "smallest failing case seen"
        if mode in result.simplified:
            how += ", then simplified"
        render_failure(console, result.cases[index], mode, index, how, report_path)
    render_sanitizer(console, opts.get("sanitizer"))
    if result.failed:
        verdict = "[bold red]FAIL[/]"
    elif unchecked_reason(result):
        verdict = "[bold yellow]NOTHING CHECKED[/]"
    else:
        verdict = "[green]OK[/]"
    console.print(f"verdict: {verdict}" + (f"   report: {report_path}" if report_path else ""))


def large_index_table(results: list[LargeIndexResult]) -> Table:
    """One row per large-index case (#, dtype) and mode: the verdict over its sampled sequences, the
    worst max-abs, rel-RMSE and ratio to the baseline, and how many sampled sequences failed."""
    table = Table(title="large-index: cu_seqlens packs past 2^31 elements, sampled sequences vs float64",
                  box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("case", "mode", "verdict", "max-abs", "rel-RMSE", "x base", "sequences"):
        table.add_column(name, justify="left" if name in ("case", "mode", "verdict") else "right",
                         no_wrap=name != "mode", overflow="fold")
    for i, r in enumerate(results):
        for mode, m in r.modes.items():
            seqs = r.sequences.get(mode, [])
            bad = sum(s.verdict.failed for s in seqs)
            nums = [fmt(m.metric(n)) if m.outputs else "-" for n in ("max_abs", "rel_rms", "ratio")]
            table.add_row(f"#{i} {r.case['dtype']}", escape(mode), verdict_text(m.verdict), *nums,
                          (f"{bad}/{len(seqs)} bad" if bad else str(len(seqs))) if seqs else "-")
    return table


def render_large_index(console: Console, results: list[LargeIndexResult],
                       report_path: Optional[Path] = None) -> None:
    """The large-index table, each case's shape and launch axes, and every failing or unsupported
    mode's reason (with the replay command of a failure)."""
    if not results:
        return
    console.print(large_index_table(results))
    for i, r in enumerate(results):
        c = r.case
        grid = ", ".join(f"{v} {k}" for k, v in c["grid"].items())
        console.print(f"  {r.label} #{i} {c['op']} {c['dtype']}: {c['num_seqs']} sequences x {c['seq_len']} tokens, "
                      f"H={c['H']} K={c['K']} V={c['V']}: {c['elements']} elements (> {c['min_elements']}); "
                      f"grid {grid}; sampled sequences {c['sampled']}; {r.seconds:.1f} s", soft_wrap=True,
                      markup=False)
        for mode, m in r.modes.items():
            if m.reason:
                console.print(f"  {mode}: {m.verdict.value}: {m.reason}", soft_wrap=True, markup=False)
            if m.verdict.failed and report_path is not None:
                console.print(f"  replay: fla-check replay {shlex.quote(str(report_path))} --large-index {i}",
                              soft_wrap=True, markup=False)


def render_large_replay(console: Console, result: LargeIndexResult, title: str) -> None:
    """``fla-check replay --large-index I``: the case, every mode's verdict and its sampled sequences."""
    console.print(f"[bold]{escape(title)}[/]", soft_wrap=True)
    render_large_index(console, [result])
    for mode, seqs in result.sequences.items():
        for s in seqs:
            worst_out = max(s.outputs, key=lambda c: c.score)
            console.print(f"  {mode} sequence {s.index} (offset {s.offset}): {s.verdict.value}, worst {worst_out.name} "
                          f"max-abs {fmt(worst_out.kernel.max_abs)} (bound {fmt(worst_out.bound_max_abs)})",
                          soft_wrap=True, markup=False)
    console.print(f"verdict: {verdict_text(result.verdict)}")


def preset_line(name: str, opts: dict) -> str:
    """What a preset run drew: the model's shapes and, where the run was capped (CPU), by how much."""
    p = get_preset(name)
    heads = ", ".join(f"TP{tp}: H={h} HV={h * p.value_ratio}" for tp, h in p.heads(opts.get("device") == "cpu"))
    line = f"preset {name}: {p.describe()}; drawn here: {heads}; T <= {opts.get('max_seq_len')}"
    if opts.get("device") == "cpu":
        line += (f" (CPU interpreter caps: T <= {opts.get('max_seq_len')} instead of {GPU_MAX_SEQ_LEN}, "
                 f"TP {max(p.tensor_parallel)} only: the fewest heads per GPU)")
    return line + (f"; not modelled: {p.gaps}" if p.gaps else "")


def mode_table(result: SearchResult) -> Table:
    table = Table(title="modes vs float64 reference (worst over cases)", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for name, justify in (("mode", "left"), ("verdict", "left"), ("max-abs", "right"),
                          ("rel-RMSE", "right"), ("x base", "right"), ("NaN/Inf", "right"),
                          ("cases", "right")):  # a long mode name wraps; numbers are never cut
        table.add_column(name, justify=justify, no_wrap=name != "mode", overflow="fold")
    for mode in result.modes:
        s = result.summary(mode)
        cases = f"{s.failed}/{s.cases} bad" if s.failed else str(s.cases)
        table.add_row(escape(mode), verdict_text(s.verdict), fmt(s.max_abs), fmt(s.rel_rms), fmt(s.ratio),
                      "-" if s.max_abs is None else str(s.nonfinite), cases)
    return table


def output_summary_table(result: SearchResult) -> Table:
    """One row per mode and output (o, ht and the gradients of --backward runs), worst over
    cases: verdict, max-abs, rel-RMSE, ratio to the baseline, fraction of the allowed error."""
    table = Table(title="outputs and gradients vs float64 reference (worst over cases)", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for name, justify in (("mode", "left"), ("out", "left"), ("verdict", "left"), ("max-abs", "right"),
                          ("rel-RMSE", "right"), ("x base", "right"), ("/allowed", "right")):
        table.add_column(name, justify=justify, no_wrap=name != "mode", overflow="fold")
    for mode in result.modes:
        rows: dict[str, list] = {}
        for case in result.cases:
            r = case.modes.get(mode)
            for c in r.outputs if r else ():
                rows.setdefault(c.name, []).append(c)
        for i, (out, comps) in enumerate(rows.items()):
            verdict = worst(c.verdict for c in comps)
            table.add_row(escape(mode) if i == 0 else "", out, verdict_text(verdict),
                          fmt(max(c.kernel.max_abs for c in comps)), fmt(max(c.kernel.rel_rms for c in comps)),
                          fmt(max(c.ratio for c in comps)), fmt(max(c.score for c in comps)))
    return table


def invariance_table(result: SearchResult) -> Table:
    """One row per mode and metamorphic check (split, packing, batch, layout): variants run,
    worst verdict, how many were bitwise equal to the whole run, worst fraction of the bound."""
    table = Table(title="invariance checks (variants vs float64 reference, same bounds)", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for name, justify in (("mode", "left"), ("check", "left"), ("verdict", "left"), ("variants", "right"),
                          ("bitwise", "right"), ("/allowed", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for mode in result.modes:
        rows: dict[str, list] = {}
        for case in result.cases:
            r = case.modes.get(mode)
            for inv in r.invariance if r else ():
                rows.setdefault(inv.check, []).append(inv)
        for i, (check, invs) in enumerate(rows.items()):
            score = max((c.score for inv in invs for c in inv.outputs), default=None)
            table.add_row(escape(mode) if i == 0 else "", check, verdict_text(worst(inv.verdict for inv in invs)),
                          str(len(invs)), f"{sum(bool(inv.bitwise) for inv in invs)}/{len(invs)}",
                          "-" if score is None else fmt(score))
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
    console.print(f"[bold]{escape(mode)}[/]: {verdict_text(r.verdict)} on case #{index} ({how})")
    for line in describe_config(case.config):
        console.print(f"  {line}", soft_wrap=True, markup=False)
    _print_mode_detail(console, r)
    _print_configs(console, r)
    others = [m for m in case.failed_modes if m != mode]
    if others:
        console.print(f"  also failing on this case: {', '.join(others)}", markup=False)
    if report_path:
        console.print("  replay: " + replay_command(report_path, index, r.config), soft_wrap=True)


def _print_config_summary(console: Console, result: SearchResult) -> None:
    """Per mode: how many extra autotune-config runs there were, over which kernels, how many failed."""
    for mode in result.modes:
        runs = [c for case in result.cases if mode in case.modes for c in case.modes[mode].configs]
        ran = [c for c in runs if c.verdict is not Verdict.UNSUPPORTED]
        kernels = sorted({c.kernel for c in runs})
        failed = sorted({c.ref for c in ran if c.verdict.failed})
        console.print(f"  {mode}: {len(ran)} run(s) under other autotune configs of "
                      f"{', '.join(kernels) or 'any kernel (none launched, or none has a config left after its pruning)'}" + (f", {len(runs) - len(ran)} skipped (same "
                      "kernel under the interpreter)" if len(runs) > len(ran) else "")
                      + (f"; failing: {', '.join(failed)}" if failed else ""), soft_wrap=True, markup=False)


def _print_configs(console: Console, r: ModeResult) -> None:
    """The autotune configs the mode ran under (``--configs all|sample:N``) and which one failed."""
    if r.config:
        desc = next((c.config for c in r.configs if c.ref == r.config), "")
        console.print(f"  failing autotune config: {r.config}" + (f" ({desc})" if desc else ""),
                      soft_wrap=True, markup=False)
    if r.configs:
        console.print(Padding(config_table(r), (0, 0, 0, 2)))


def config_table(r: ModeResult) -> Table:
    """One row per autotune config run besides the first ones: kernel, index, config, verdict."""
    table = Table(box=box.SIMPLE, padding=(0, 1), show_edge=False)
    for name in ("kernel", "#", "config", "verdict", "/allowed", "note"):
        table.add_column(name, justify="right" if name in ("#", "/allowed") else "left")
    for c in r.configs:
        score = "-" if c.verdict in (Verdict.UNSUPPORTED, Verdict.ERROR) else fmt(c.score)
        table.add_row(escape(c.kernel), str(c.index), escape(c.config), verdict_text(c.verdict), score,
                      escape(c.reason))
    return table


def in_process_warnings(in_process: dict[str, str]) -> list[str]:
    """One line per mode the isolation worker could not load (it ran in this process), with why."""
    return [f"{mode} ran in this process, not isolated: {why}" for mode, why in in_process.items()]


STDERR_SHOWN = 6  # lines of a CRASHED / TIMEOUT worker's stderr printed under its failure


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
    for inv in r.invariance:
        if inv.verdict.failed:
            console.print(f"  invariance check {inv.check} failed: {inv.variant}", soft_wrap=True, markup=False)
            if inv.outputs:
                variant = ModeResult(f"{r.mode} ({inv.check})", inv.verdict, inv.outputs)
                console.print(Padding(output_table(variant, mode_column=True), (0, 0, 0, 2)))
            else:
                console.print(f"  {inv.reason}", soft_wrap=True, markup=False)


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
            table.add_row(*lead, "-", verdict_text(r.verdict), *["-"] * 5)
        for i, c in enumerate(r.outputs):
            lead = ([escape(r.mode) if i == 0 else ""]) if mode_column else []
            table.add_row(*lead, c.name, verdict_text(c.verdict), fmt(c.kernel.max_abs), fmt(c.bound_max_abs),
                          fmt(c.kernel.rel_rms), fmt(c.bound_rel_rms), str(c.kernel.nonfinite))
    return table


def describe_config(c: CaseConfig) -> list[str]:
    """The configuration as a few readable lines (shape, gate, packing and segment layout, seed;
    chunk size and state layout when not the default)."""
    lines = [f"op {c.op}  dtype {c.dtype}  B={c.B} T={c.T} H={c.H} K={c.K} V={c.V}  "
             f"initial state {'yes' if c.initial_state else 'no'}  seed {c.seed}"]
    gate = []
    if GATE_OPS[c.op]:
        gate.append(f"gate logsigmoid(x)/{c.gate_norm:g}, zero-gate fraction {c.zero_gate_frac:g}"
                    + (", near-zero decay" if c.near_zero_decay else ""))
    if BETA_OPS[c.op]:
        gate.append(f"beta in [0, {c.beta_max:g}]")
    if gate:
        lines.append("; ".join(gate))
    packing = f"packing: {c.describe_segments()}"
    if c.packing == "mask":
        packing += f"; fill {c.mask_fill} (= {resolve_fill(c.mask_fill, c.torch_dtype):.3g})"
    lines.append(packing)
    kernel = ([f"chunk_size={c.chunk_size} (recurrent modes run without it)"] if c.chunk_size is not None else []) + (
        ["state_v_first: h0 handed over as [N, HV, V, K], ht read back transposed"] if c.state_v_first else [])
    if kernel:
        lines.append("; ".join(kernel))
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
        if r.configs:
            console.print(f"{r.mode}: autotune configs", soft_wrap=True, markup=False)
            console.print(Padding(config_table(r), (0, 0, 0, 2)))
    console.print(f"verdict: {verdict_text(case.verdict)}")


def replay_command(report_path: Path, index: int, config: str = "") -> str:
    """The command that re-runs case `index` (under one autotune config ``KERNEL:INDEX`` when given)."""
    return f"fla-check replay {shlex.quote(str(report_path))} --case {index}" + (
        f" --configs first --config {shlex.quote(config)}" if config else "")


def stopped_message(result: SearchResult, report_path: Path) -> str:
    """What a run a harness out-of-memory stopped says: what ran out on which case, what to do,
    the partial report and the stopped case's replay command."""
    stopped = result.stopped
    hint = ("free GPU memory (other processes on the GPU hold part of it) or lower --max-seq-len"
            if stopped["reason"].startswith("GPU") else "free memory or lower --max-seq-len")
    replay = f"fla-check replay {shlex.quote(str(report_path))} --stopped"
    return (f"stopped: {stopped['reason']}. This is fla-check's own work, not a kernel's failure: {hint}. "
            f"Partial report with the {len(result.cases)} finished case(s): {report_path}; "
            f"re-run the case: {replay}")
