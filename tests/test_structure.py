"""The package's import structure: no import circles between its modules, and no
module importing another module's private (`_name`) names.

Every module of `jupyter_flow` is read with `ast` (nothing is imported). Imports inside
functions count as much as those at the top: a function-level import that closes a circle
only moves the circle to the first call. Imports under `if TYPE_CHECKING:` are left out,
since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "jupyter_flow"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every statement, however deeply nested, except the bodies of `if TYPE_CHECKING:`."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.stmt):
            yield node
        todo.extend(ast.iter_child_nodes(node))


class Import:
    """One `import` of a module of the package: where it is, what it imports, which names."""

    def __init__(self, importer: str, line: int, target: str, names: tuple[str, ...]) -> None:
        self.importer, self.line, self.target, self.names = importer, line, target, names


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(known: dict[str, Path]) -> list[Import]:
    """Every import of a package module by a package module. `from pkg import name` counts
    as an import of `pkg.name` when that is a module, else of `pkg`."""
    found = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for stmt in _statements(tree):
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        found.append(Import(name, stmt.lineno, _known_module(alias.name, known), ()))
            elif isinstance(stmt, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", stmt)
                if target.split(".")[0] != PACKAGE:
                    continue
                plain = []
                for alias in stmt.names:
                    sub = f"{target}.{alias.name}"
                    if sub in known:
                        found.append(Import(name, stmt.lineno, sub, ()))
                    else:
                        plain.append(alias.name)
                if plain:
                    found.append(Import(name, stmt.lineno, _known_module(target, known), tuple(plain)))
    return found


def _known_module(name: str, known: dict[str, Path]) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_graph(found: list[Import]) -> dict[str, dict[str, int]]:
    """importer -> {imported module: line of the first such import}. Only what the code
    names counts: that importing `a.b` runs `a`'s `__init__` first is Python's order, not
    an import of `a` (but `from a import name` in `a.b` is one)."""
    graph: dict[str, dict[str, int]] = {}
    for imp in found:
        if imp.target == imp.importer:
            continue
        graph.setdefault(imp.importer, {}).setdefault(imp.target, imp.line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = set(component)
    edges = [f"{a} -> {b} (line {line})" for a in component for b, line in sorted(graph.get(a, {}).items()) if b in members]
    return f"{', '.join(component)}:\n    " + "\n    ".join(edges)


def test_the_package_has_no_import_circles() -> None:
    graph = import_graph(imports(modules()))
    found = cycles(graph)
    assert not found, "import circles (each with the imports that close it):\n" + "\n".join(describe(c, graph) for c in found)


def test_no_module_imports_private_names_of_another() -> None:
    private = [
        f"{imp.importer} line {imp.line}: {name} from {imp.target}"
        for imp in imports(modules())
        for name in imp.names
        if name.startswith("_") and not name.startswith("__") and imp.target != imp.importer
    ]
    assert not private, "private names imported across modules:\n" + "\n".join(private)


# -- the checks themselves, on small packages written here ----------------------------
def write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    known = {}
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        known[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return known


@pytest.mark.parametrize(
    ("files", "circle"),
    [
        pytest.param({"a.py": "from jupyter_flow.b import x\n", "b.py": "def f():\n    from jupyter_flow import a\n"},
                     ["jupyter_flow.a", "jupyter_flow.b"], id="function-level import"),
        pytest.param({"a.py": "from . import b\n", "b.py": "from .c import y\n", "c.py": "import jupyter_flow.a\n"},
                     ["jupyter_flow.a", "jupyter_flow.b", "jupyter_flow.c"], id="relative and plain imports"),
        pytest.param({"sub/__init__.py": "", "sub/m.py": "from jupyter_flow.a import z\n",
                      "a.py": "from jupyter_flow.sub import m\n"},
                     ["jupyter_flow.a", "jupyter_flow.sub.m"], id="a module named in from-import"),
        pytest.param({"a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from jupyter_flow.b import x\n",
                      "b.py": "from jupyter_flow.a import y\n"}, None, id="type-checking imports left out"),
    ],
)
def test_circles_are_found(tmp_path: Path, files: dict[str, str], circle: list[str] | None) -> None:
    files = {"__init__.py": "", **files}
    found = cycles(import_graph(imports(write_package(tmp_path, files))))
    assert found == ([circle] if circle else [])


def test_private_imports_are_found(tmp_path: Path) -> None:
    known = write_package(tmp_path, {"__init__.py": "", "a.py": "_x = 1\n", "b.py": "def f():\n    from jupyter_flow.a import _x\n"})
    found = [(i.importer, n) for i in imports(known) for n in i.names if n.startswith("_")]
    assert found == [("jupyter_flow.b", "_x")]
