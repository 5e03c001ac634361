"""What this installation can check (``fla-check list``): ops, modes, providers, backend."""
from __future__ import annotations

from typing import Any, Optional

from fla_check.backend import get_backend
from fla_check.ops import OPS, ModeSpec


def _mode_info(mode: ModeSpec, interpreter: bool) -> dict[str, Any]:
    return {
        "name": mode.name if mode.provider == "builtin" else mode.qualified,
        "provider": mode.provider,
        "dtypes": sorted(str(d).removeprefix("torch.") for d in mode.dtypes),
        "varlen": mode.varlen,
        "initial_state": mode.initial_state,
        "backward": mode.backward,
        "backward_reason": "" if mode.backward else (mode.backward_reason or "no backward"),
        "unavailable": mode.interpreter_reason if interpreter else "",
        "description": mode.description,
    }


def _providers() -> list[dict[str, Any]]:
    """Providers with registered modes, plus installed entry points (registered or not), each
    with its modes per op ('fla:chunk', ...) or, when unavailable, why (the install hint)."""
    found: dict[str, dict[str, Any]] = {}
    for op in OPS.values():
        for mode in op.modes.values():
            entry = found.setdefault(mode.provider, {"name": mode.provider, "registered": True, "status": "ok",
                                                     "modes": {}})
            entry["modes"].setdefault(op.name, []).append(mode.name if mode.provider == "builtin" else mode.qualified)
    try:
        from fla_check.providers import discover
    except ImportError:  # pragma: no cover - providers package absent
        return list(found.values())
    for d in discover():
        status = "available" if d.error is None else f"unavailable: {d.error}"
        modes = d.provider.qualified_modes() if d.provider is not None else {}
        found.setdefault(d.name, {"name": d.name, "registered": False, "status": status, "modes": modes})
        found[d.name]["entry_point"] = d.value
    return list(found.values())


def inventory(device: Optional[str] = None) -> dict[str, Any]:
    """Everything `fla-check list` shows, as JSON-ready data (runs the bf16 and tf32 dot probes)."""
    backend = get_backend(device)
    return {
        "backend": {"device": backend.device, "interpreter": backend.interpreter,
                    "describe": backend.describe(), "bf16_dot_ok": backend.bf16_dot_ok,
                    "bf16_dot_reason": backend.bf16_dot_reason, "bf16_dot": backend.describe_bf16(),
                    "shim": backend.shim, "tf32_dots": backend.tf32_dots, "tf32": backend.describe_tf32()},
        "ops": [{"name": op.name, "description": op.description, "gate": op.gate, "beta": op.has_beta,
                 "mask_packing": op.supports_mask_packing,
                 "modes": [_mode_info(m, backend.interpreter) for m in op.modes.values()]}
                for op in OPS.values()],
        "providers": _providers(),
    }


def render_inventory(console, info: dict[str, Any]) -> None:
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
            for label, text in (("no backward", m["backward_reason"]), ("n/a here", m["unavailable"])):
                if text:
                    console.print(f"  {op['name']}/{m['name']} {label}: {text}", soft_wrap=True)
    for op in info["ops"]:
        gate = {"key": "per-key gate [B,T,H,K]", "head": "per-head gate [B,T,H]", None: "no gate"}[op["gate"]]
        console.print(f"  {op['name']}: {op['description']}; {gate}"
                      + ("; beta [B,T,H]" if op["beta"] else ""), soft_wrap=True)
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
