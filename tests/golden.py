"""Golden-file comparison of rendered text (tests/goldens/<name>.txt).

``FLA_CHECK_UPDATE_GOLDENS=1`` rewrites the goldens instead of comparing; review the diff.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Callable

from rich.console import Console

from fla_check.report.console import make_console

GOLDENS = Path(__file__).resolve().parent / "goldens"
UPDATE_ENV = "FLA_CHECK_UPDATE_GOLDENS"
WIDTH = 80


def render(fn: Callable[[Console], None]) -> str:
    """What `fn` prints on an 80-column console without colour (as under NO_COLOR)."""
    console = make_console(no_color=True, width=WIDTH)
    with console.capture() as cap:
        fn(console)
    return "\n".join(line.rstrip() for line in cap.get().splitlines()) + "\n"


def golden_diff(name: str, text: str) -> str:
    """A unified diff of `text` against the golden `name` ('' when equal)."""
    path = GOLDENS / f"{name}.txt"
    want = path.read_text() if path.exists() else ""
    return "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), f"goldens/{name}.txt",
                                        "rendered now"))


def check_golden(name: str, text: str) -> None:
    """Assert `text` equals the golden `name`, or rewrite it when UPDATE_ENV is set."""
    if os.environ.get(UPDATE_ENV):
        (GOLDENS / f"{name}.txt").write_text(text)
        return
    diff = golden_diff(name, text)
    assert not diff, f"rendered {name} differs from its golden ({UPDATE_ENV}=1 rewrites it):\n{diff}"
