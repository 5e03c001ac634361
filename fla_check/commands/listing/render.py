"""The renderer of ``fla-check list``."""
from __future__ import annotations

from typing import Any

from rich.console import Console


def render_inventory(console: Console, info: dict[str, Any]) -> None:
    """Rich view of :func:`inventory`."""
    from rich import box
    from rich.table import Table

    b = info["backend"]
    console.print(f"[bold]backend[/]: {b['describe']}")
    console.print(f"  bf16 tl.dot probe: {b['bf16_dot']}", soft_wrap=True, markup=False)
    console.print(f"  fp32 tl.dot at tf32: {b['tf32']}", soft_wrap=True, markup=False)
    if b["shim"] and b["shim"] != "installed":
        console.print(f"  interpreter shim: {b['shim']}", soft_wrap=True, markup=False)
    table = Table(title="ops and modes", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("op", "mode", "dtypes", "varlen", "h0", "backward"):
        table.add_column(name, no_wrap=True)
    for op in info["ops"]:
        for i, m in enumerate(op["modes"]):
            dtypes = ",".join(d.replace("float", "fp").replace("bfp16", "bf16") for d in m["dtypes"])
            name = m["name"] + (" (n/a here)" if m["unavailable"] else "")
            table.add_row(op["name"] if i == 0 else "", name, dtypes, _yn(m["varlen"]),
                          _yn(m["initial_state"]), _yn(m["backward"]))
    console.print(table)
    for op in info["ops"]:
        for m in op["modes"]:
            for label, text in (("no backward", m["backward_reason"]), ("n/a here", m["unavailable"]),
                                ("caveat", m.get("caveat", ""))):
                if text:
                    console.print(f"  {op['name']}/{m['name']} {label}: {text}", soft_wrap=True)
    for op in info["ops"]:
        gate = {"key": "per-key gate [B,T,H,K]", "head": "per-head gate [B,T,H]", None: "no gate"}[op["gate"]]
        console.print(f"  {op['name']}: {op['description']}; {gate}"
                      + ("; beta [B,T,H]" if op["beta"] else ""), soft_wrap=True)
    _render_presets(console, info.get("presets", []))
    console.print("[bold]providers[/]:")
    for p in info["providers"]:
        state = "loaded" if p["registered"] else p["status"]
        if p.get("entry_point"):
            state += f", entry point {p['entry_point']}"
        modes = "; ".join(f"{op}: {', '.join(names)}" for op, names in p.get("modes", {}).items() if names)
        hint = "" if p["registered"] else f" (use with --modes {p['name']}:MODE or --provider {p['name']})"
        console.print(f"  {p['name']} ({state})" + (f": {modes}" if modes else "")
                      + (hint if modes else ""), soft_wrap=True, markup=False)


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _render_presets(console: Console, presets: list[dict[str, Any]]) -> None:
    """The model presets (``run --preset NAME``): op, dtypes, options, K/V, heads per GPU at each TP degree."""
    console.print("[bold]model presets[/] (run --preset NAME; numbers and sources: docs/presets.md):")
    for p in presets:
        heads = ", ".join(f"TP{tp} {h}/{hv}" for tp, (h, hv) in sorted(p["heads_per_gpu"].items(),
                                                                       key=lambda x: int(x[0])))
        dtypes = ",".join(d.replace("bfloat16", "bf16").replace("float", "fp") for d in p["dtypes"])
        options = ",".join(p["kernel_options"]) or "no in-kernel options"
        console.print(f"  {p['name']}: {p['model']}, {p['op']}, {dtypes}, {options}, K={p['K']} V={p['V']}, "
                      f"H/HV per GPU: {heads}", soft_wrap=True, markup=False)
        if p["gaps"]:
            console.print(f"    not modelled: {p['gaps']}", soft_wrap=True, markup=False)
