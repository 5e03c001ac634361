"""The package's shape: imports only go down the layers, and no module imports itself back.

Every ``import`` / ``from ... import`` of a ``fla_check`` module counts, at any depth of the
file (function-local and TYPE_CHECKING imports too): a lazy import still couples the modules.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent / "fla_check"

# Lowest first. A module may import modules of its own layer or below. The most specific prefix names
# a module's layer; verdict.arithmetic (the declared-arithmetic type) sits low because ops and providers
# declare modes with it.
LAYERS: list[tuple[str, ...]] = [
    ("fla_check", "fla_check.errors"),  # __init__ imports nothing eagerly (its exports are lazy strings)
    ("fla_check.interpreter_shim", "fla_check.backend", "fla_check.references", "fla_check.kernels",
     "fla_check.verdict.arithmetic"),
    ("fla_check.cases", "fla_check.ops", "fla_check.providers", "fla_check.presets", "fla_check.strategies"),
    ("fla_check.verdict",),
    ("fla_check.engine",),
    ("fla_check.report",),
    ("fla_check.commands",),
    ("fla_check.cli", "fla_check.pytest_plugin"),
]
MAX_FLAT_MODULES = 12


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imported(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """(module, line) of every fla_check module `path` imports ('from pkg import mod' names mod)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # 'fla_check.ops.get_op' -> fla_check.ops
                t = t.rpartition(".")[0]
            if t and t != name:
                yield t, node.lineno


def layer(name: str) -> Optional[int]:
    best: Optional[tuple[int, int]] = None  # (prefix length, layer)
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if name == p or name.startswith(p + "."):
                if best is None or len(p) > best[0]:
                    best = (len(p), i)
    return None if best is None else best[1]


def graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    mods = modules(root)
    return {n: dict(imported(p, n, set(mods))) for n, p in mods.items()}


def upward_imports(g: dict[str, dict[str, int]]) -> list[str]:
    return [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)}) at line {line}"
            for a, deps in g.items() for b, line in deps.items() if layer(b) > layer(a)]


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert [n for n in modules() if layer(n) is None] == []


def test_imports_only_go_down():
    assert upward_imports(graph()) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_few_flat_modules():
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(flat) <= MAX_FLAT_MODULES, flat


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "fla_check"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("how", ["from fla_check.engine.runner import check_case",
                                 "from fla_check.engine import runner",
                                 "def lazy():\n    import fla_check.engine.runner\n",
                                 "from ..engine.runner import check_case"])
def test_an_upward_import_is_reported(tmp_path, how):
    root = _package(tmp_path, {"__init__.py": "", "verdict/__init__.py": "", "verdict/compare.py": how + "\n",
                               "engine/__init__.py": "", "engine/runner.py": "from fla_check.verdict import compare\n"})
    assert upward_imports(graph(root)) == [
        f"fla_check.verdict.compare (layer 3) imports fla_check.engine.runner (layer 4) at line {1 + how.startswith('def')}"]
    assert cycles(graph(root)) == [["fla_check.engine.runner", "fla_check.verdict.compare"]]


def test_a_cycle_within_a_layer_is_reported(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "engine/__init__.py": "",
                               "engine/runner.py": "def f():\n    from fla_check.engine.search import search\n",
                               "engine/search.py": "from fla_check.engine.simplify import simplify\n",
                               "engine/simplify.py": "from fla_check.engine.runner import f\n"})
    assert upward_imports(graph(root)) == []
    assert cycles(graph(root)) == [["fla_check.engine.runner", "fla_check.engine.search", "fla_check.engine.simplify"]]
