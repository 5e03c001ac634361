"""Default hand-out costs of ``fla-check selftest --jobs N``: measured seconds per catalog entry.

With several workers the entries are handed out longest-first (LPT, see
:func:`fla_check.commands.selftest.jobs.handout_order`), so that the longest entries do not start
last and set the wall time alone. ``--costs FILE`` gives the seconds of a previous run; without it
a multi-worker run uses the seconds shipped in :data:`COSTS_FILE` (package data: id -> seconds,
with where they were measured). An entry missing from them (a mutant added since) is handed out
first, as with ``--costs``: its cost is unknown, and an unknown long entry started last stretches
the run by its whole length, while an unknown short one started first delays nothing by more
than its own few seconds. The file holds GPU seconds (compile-bound); on the CPU interpreter they
still order the entries, untested there.

Regenerate it from a ``selftest --json`` result::

    python3 -m fla_check.commands.selftest.costs selftest.json --source "docs/gpu/...: what, where"
"""
from __future__ import annotations

import argparse
import json
from importlib import resources
from typing import Any

from fla_check.commands.selftest.jobs import costs_from

COSTS_FILE = "gpu_costs.json"  # in this package


def load_default() -> dict[str, Any]:
    """The shipped file: {"source": ..., "seconds": {id: seconds}}."""
    return json.loads(resources.files(__package__).joinpath(COSTS_FILE).read_text())


def default_costs() -> dict[str, float]:
    """Seconds per entry id, as measured (see :data:`COSTS_FILE`'s ``source``)."""
    return {str(k): float(v) for k, v in load_default()["seconds"].items()}


def main() -> None:  # pragma: no cover - a maintenance command
    ap = argparse.ArgumentParser(description="Rewrite the shipped selftest costs from a `selftest --json` result.")
    ap.add_argument("result", help="a `fla-check selftest --json` result")
    ap.add_argument("--source", required=True, help="where and how it was measured (command, device, tree)")
    a = ap.parse_args()
    with open(a.result) as f:
        seconds = costs_from(json.load(f))
    data = {"source": a.source, "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    path = resources.files(__package__).joinpath(COSTS_FILE)
    with resources.as_file(path) as p:
        p.write_text(json.dumps(data, indent=1) + "\n")
    print(f"recorded {len(seconds)} entries in {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
