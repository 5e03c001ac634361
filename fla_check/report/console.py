"""Console helpers shared by every renderer: a console honouring NO_COLOR, progress bars,
compact numbers, verdicts in colour. The renderers themselves live with their commands
(``fla_check/commands/<command>/render.py``); report files are :mod:`fla_check.report.storage`.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from fla_check.verdict.compare import Verdict

VERDICT_STYLE = {Verdict.OK: "green", Verdict.DIVERGED: "bold red", Verdict.NONFINITE: "bold magenta",
                 Verdict.ERROR: "bold red", Verdict.UNSUPPORTED: "yellow", Verdict.NONDETERMINISTIC: "bold yellow",
                 Verdict.NOT_INVARIANT: "bold red", Verdict.UNWRITTEN: "bold magenta", Verdict.OVERREAD: "bold magenta",
                 Verdict.TIMEOUT: "bold red", Verdict.CRASHED: "bold red"}


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


def verdict_text(v: Verdict) -> str:
    """`v` in its rich style."""
    return f"[{VERDICT_STYLE[v]}]{v.value}[/]"
