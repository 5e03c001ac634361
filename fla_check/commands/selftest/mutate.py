"""Load a copy of a kernel module with its source rewritten (planted bugs, mutation testing).

A rewrite is scoped to one function of the module (found with `ast`, decorators included):
each (old, new) replacement must match exactly once inside that function, so kernels may share
helpers and repeat lines elsewhere in the module. Triton reads a kernel's source with
`inspect`, so the rewritten module is written to a real file and imported from there; the
shipped module is never touched.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Optional

from fla_check.errors import MutationError  # noqa: F401 (re-exported)

_TMP = Path(tempfile.mkdtemp(prefix="fla_check_mutants_"))


def _definitions(body: list[ast.stmt], prefix: str = ""):
    """(qualified name, node) of the functions and classes in `body`, classes descended into."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield prefix + node.name, node
            if isinstance(node, ast.ClassDef):
                yield from _definitions(node.body, f"{prefix}{node.name}.")


def function_span(source: str, function: str) -> tuple[int, int]:
    """[start, end) character offsets of `function` ('name' or 'Class.name'; module level,
    decorators included) in `source`; MutationError when it is not defined exactly once."""
    nodes = [n for name, n in _definitions(ast.parse(source).body) if name == function]
    if len(nodes) != 1:
        raise MutationError(f"function {function!r} is defined {len(nodes)} times in the module (need exactly 1)")
    node = nodes[0]
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines = source.splitlines(keepends=True)
    start = sum(len(line) for line in lines[:first - 1])
    return start, start + sum(len(line) for line in lines[first - 1:node.end_lineno])


def function_source(source: str, function: str) -> str:
    """The text of `function` in `source` (see :func:`function_span`)."""
    start, end = function_span(source, function)
    return source[start:end]


def function_hash(source: str, function: str) -> str:
    """First 16 hex digits of the sha256 of `function`'s text in `source`."""
    return hashlib.sha256(function_source(source, function).encode()).hexdigest()[:16]


def _replace_once(text: str, replacements: list[tuple[str, str]], where: str) -> str:
    for old, new in replacements:
        count = text.count(old)
        if count != 1:
            raise MutationError(f"pattern occurs {count} times {where} (need exactly 1): {old!r}")
        text = text.replace(old, new)
    return text


def mutate_source(source: str, replacements: list[tuple[str, str]], function: Optional[str] = None) -> str:
    """Apply each (old, new) replacement inside `function` (the whole source when None); every
    `old` must occur there exactly once."""
    if function is None:
        return _replace_once(source, replacements, "in the module")
    start, end = function_span(source, function)
    return source[:start] + _replace_once(source[start:end], replacements, f"in {function}") + source[end:]


def load_mutant(module_name: str, replacements: list[tuple[str, str]], tag: str,
                function: Optional[str] = None) -> ModuleType:
    """Import `module_name` with `replacements` applied inside `function` (see
    :func:`mutate_source`), as a fresh module."""
    original = importlib.import_module(module_name)
    source = mutate_source(inspect.getsource(original), replacements, function)
    name = f"_fla_check_mutant_{tag}_{module_name.replace('.', '_')}"
    path = _TMP / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
