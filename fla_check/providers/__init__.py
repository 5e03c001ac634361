"""Providers: external kernel libraries that contribute modes to fla-check's ops.

A :class:`Provider` is a name plus, per op, a list of :class:`~fla_check.ops.ModeSpec`
(callables with the uniform mode signature and their capabilities). Providers are found

- through the entry-point group ``fla_check.providers`` (``name = "pkg.module:object"``), and
- through explicit ``"module:object"`` specs (e.g. ``--provider mypkg.kernels:provider``),

where the object is a Provider or a zero-argument callable returning one. Registered modes
are qualified, ``provider:mode`` (``fla:chunk``); bare mode names keep meaning built-in.
Every failure raises a :class:`ProviderError` subclass.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from fla_check import ops
from fla_check.ops import ModeSpec
from fla_check.errors import (DuplicateProviderModeError, ProviderError, ProviderNotFoundError,  # noqa: F401
                              ProviderOpError, ProviderSpecError, ProviderTypeError, ProviderUnavailableError)

ENTRY_POINT_GROUP = "fla_check.providers"


@dataclass(frozen=True)
class Provider:
    """A named set of modes, per op name."""

    name: str
    modes: Mapping[str, Sequence[ModeSpec]] = field(default_factory=dict)
    description: str = ""

    def qualified_modes(self) -> dict[str, list[str]]:
        return {op: [m.qualified for m in specs] for op, specs in self.modes.items()}


@dataclass(frozen=True)
class Discovered:
    """One entry point of the group: its provider, or why it is not offered."""

    name: str
    value: str
    provider: Optional[Provider] = None
    error: Optional[ProviderError] = None


_LOADED: dict[str, Provider] = {}  # spec -> provider, so loading is idempotent per process


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _import_object(spec: str) -> object:
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name.strip() or not attr_path.strip() or ":" in attr_path:
        raise ProviderSpecError(f"provider spec {spec!r} is not 'module:object' or an entry-point name")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ProviderNotFoundError(f"provider spec {spec!r}: no module named {exc.name!r}") from exc
        raise ProviderUnavailableError(f"provider spec {spec!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - report any import-time failure precisely
        raise ProviderError(f"provider spec {spec!r}: importing {module_name} raised "
                            f"{type(exc).__name__}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ProviderNotFoundError(f"provider spec {spec!r}: {module_name} has no attribute "
                                        f"{attr_path!r}") from None
    return obj


def _coerce(obj: object, spec: str) -> Provider:
    if isinstance(obj, Provider):
        return obj
    if not callable(obj):
        raise ProviderTypeError(f"provider spec {spec!r} names a {type(obj).__name__}, "
                                "not a Provider or a zero-argument callable returning one")
    try:
        inspect.signature(obj).bind()
    except TypeError as exc:
        raise ProviderTypeError(f"provider spec {spec!r} is not callable with no arguments: {exc}") from None
    except ValueError:  # no signature available (some builtins): just try the call
        pass
    try:
        result = obj()
    except ProviderError:
        raise
    except Exception as exc:  # noqa: BLE001 - a factory failing is a provider failure
        raise ProviderError(f"provider spec {spec!r}: its factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, Provider):
        raise ProviderTypeError(f"provider spec {spec!r} returned a {type(result).__name__}, not a Provider")
    return result


def resolve(spec: str) -> Provider:
    """The Provider named by `spec` ('module:object' or an entry-point name), not registered."""
    if not isinstance(spec, str) or not spec.strip():
        raise ProviderSpecError(f"empty or non-string provider spec {spec!r}")
    if ":" in spec:
        return _coerce(_import_object(spec), spec)
    matches = [ep for ep in _entry_points() if ep.name == spec]
    if not matches:
        names = ", ".join(sorted({ep.name for ep in _entry_points()})) or "none installed"
        raise ProviderNotFoundError(f"no provider named {spec!r} in entry-point group "
                                    f"{ENTRY_POINT_GROUP!r} (available: {names}); or give 'module:object'")
    return _coerce(_import_object(matches[0].value), spec)


def _validate(provider: Provider) -> None:
    if not provider.name or ":" in provider.name or provider.name != provider.name.strip():
        raise ProviderSpecError(f"invalid provider name {provider.name!r}")
    if provider.name == "builtin":
        raise ProviderSpecError("provider name 'builtin' is reserved for fla-check's own kernels")
    for op_name, specs in provider.modes.items():
        if op_name not in ops.OPS:
            raise ProviderOpError(f"provider {provider.name!r} has modes for unknown op {op_name!r}; "
                                  f"valid ops: {', '.join(ops.OPS)}")
        for mode in specs:
            if not isinstance(mode, ModeSpec):
                raise ProviderTypeError(f"provider {provider.name!r}, op {op_name}: expected ModeSpec, "
                                        f"got {type(mode).__name__}")
            if mode.provider != provider.name:
                raise ProviderSpecError(f"mode {mode.qualified!r} declared in provider {provider.name!r}")
            old = ops.OPS[op_name].modes.get(mode.qualified)
            if old is not None and old != mode:
                raise DuplicateProviderModeError(f"op {op_name} already has a different mode {mode.qualified!r}")
        names = [m.name for m in specs]
        if len(set(names)) != len(names):
            raise DuplicateProviderModeError(f"provider {provider.name!r} lists a mode twice for op {op_name}")


def register(provider: Provider) -> list[str]:
    """Add `provider`'s modes to the op registry; returns 'op/provider:mode' names.

    All-or-nothing, and idempotent: registering equal modes again changes nothing.
    """
    _validate(provider)
    added = []
    for op_name, specs in provider.modes.items():
        added += [f"{op_name}/{q}" for q in ops.register_modes(op_name, specs)]
    return added


def load_provider(spec: str) -> Provider:
    """Resolve and register `spec` once per process; returns the Provider."""
    if spec not in _LOADED:
        provider = resolve(spec)
        register(provider)
        _LOADED[spec] = provider
    return _LOADED[spec]


def loaded_specs() -> tuple[str, ...]:
    """The specs loaded in this process, in order (an isolation worker loads the same)."""
    return tuple(_LOADED)


def load_missing_providers(mode_names: Sequence[str]) -> list[str]:
    """Load, by entry-point name, the provider of each qualified mode name ('fla:chunk') whose
    provider has no registered modes yet; returns the providers loaded. Bare and 'builtin:'
    names are left alone; unknown names are the registry's business (ops.get_mode)."""
    loaded = []
    for name in mode_names:
        provider = name.rpartition(":")[0]
        registered = any(m.provider == provider for op in ops.OPS.values() for m in op.modes.values())
        if provider and provider != "builtin" and not registered and provider not in loaded:
            load_provider(provider)
            loaded.append(provider)
    return loaded


def discover() -> list[Discovered]:
    """Every entry point of the group, resolved (not registered); unavailable ones carry their error."""
    found = []
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        try:
            found.append(Discovered(ep.name, ep.value, provider=resolve(ep.name)))
        except ProviderError as exc:
            found.append(Discovered(ep.name, ep.value, error=exc))
    return found


def unload_provider(name: str) -> None:
    """Remove a provider's modes and forget the specs that loaded it (for tests and long sessions)."""
    ops.remove_modes(name)
    for spec in [s for s, p in _LOADED.items() if p.name == name]:
        del _LOADED[spec]


__all__ = [
    "ENTRY_POINT_GROUP", "Discovered", "DuplicateProviderModeError", "Provider", "ProviderError",
    "ProviderNotFoundError", "ProviderOpError", "ProviderSpecError", "ProviderTypeError",
    "ProviderUnavailableError", "discover", "load_missing_providers", "load_provider", "loaded_specs", "register",
    "resolve", "unload_provider",
]
