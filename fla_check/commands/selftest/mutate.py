"""Load a copy of a kernel module with its source rewritten (planted bugs, mutation testing).

Triton reads a kernel's source with `inspect`, so the rewritten module is written to a real
file and imported from there; the shipped module is never touched.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from fla_check.errors import MutationError  # noqa: F401 (re-exported)

_TMP = Path(tempfile.mkdtemp(prefix="fla_check_mutants_"))


def mutate_source(source: str, replacements: list[tuple[str, str]]) -> str:
    """Apply each (old, new) replacement; every `old` must occur exactly once."""
    for old, new in replacements:
        count = source.count(old)
        if count != 1:
            raise MutationError(f"pattern occurs {count} times (need exactly 1): {old!r}")
        source = source.replace(old, new)
    return source


def load_mutant(module_name: str, replacements: list[tuple[str, str]], tag: str) -> ModuleType:
    """Import `module_name` with `replacements` applied to its source, as a fresh module."""
    original = importlib.import_module(module_name)
    source = mutate_source(inspect.getsource(original), replacements)
    name = f"_fla_check_mutant_{tag}_{module_name.replace('.', '_')}"
    path = _TMP / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
