"""What this installation can check (``fla-check list``): ops, modes, providers, backend, model presets."""
from __future__ import annotations

from typing import Any, Optional

from fla_check.backend import get_backend
from fla_check.ops import OPS, ModeSpec
from fla_check.presets import PRESETS


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
        **({"caveat": mode.caveat} if mode.caveat else {}),  # only where a provider set one (goldens)
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
        "presets": [p.to_json() for p in PRESETS.values()],
    }
