"""The renderer of ``fla-check ut-transform``."""
from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from fla_check.commands.ut_transform.engine import TOLERANCE_RULE, UTResult
from fla_check.report.console import ProgressFeed, fmt, make_progress, verdict_text


class ChunkProgress(ProgressFeed):
    """A transient rich progress bar on stderr, fed with (done, total) chunks (``ut-transform``)."""

    def __init__(self, quiet: bool):
        super().__init__(make_progress("chunks", no_color=quiet, quiet=quiet))

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task("chunks", total=total)
        self.bar.update(self.task, completed=done, total=total)



def render_ut(console: Console, result: UTResult) -> None:
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
                      fmt(s.cond) if ran else "-", chunks, verdict_text(s.verdict))
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
    console.print(f"OK iff {TOLERANCE_RULE}", soft_wrap=True, markup=False)
    console.print(f"conclusion: {result.conclusion()}", soft_wrap=True, markup=False)
    console.print("verdict: " + ("[bold red]FAIL[/]" if result.failed else "[green]OK[/]"))
