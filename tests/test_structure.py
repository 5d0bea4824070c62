"""The package's structure: no import circles between its modules, no module importing
another module's private (`_name`) names, and no read of a private attribute of another
library's objects (what httpx, aiohttp, Jinja or asyncio keep behind an underscore may
change in any release).

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


#: underscore names that are public API where they come from: `os._exit`, `sys._getframe`,
#: namedtuple's methods, and protocol names that end with an underscore (`_repr_mimebundle_`)
PUBLIC_UNDERSCORE = frozenset({"_exit", "_getframe", "_asdict", "_replace", "_fields", "_make"})


def own_private_names(trees: list[ast.AST]) -> set[str]:
    """The `_names` the package defines itself: functions, classes, attributes it assigns
    (`x._name = ...`, class-level `_name: T`), `__slots__` entries."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    for item in ast.walk(target):
                        if isinstance(item, ast.Attribute):
                            names.add(item.attr)
                        elif isinstance(item, ast.Name):
                            names.add(item.id)
                        elif isinstance(item, ast.Constant) and isinstance(item.value, str):
                            names.add(item.value)  # `__slots__ = ("_a", "_b")`
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
                    names.update(c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return {n for n in names if n.startswith("_")}


def foreign_private_reads(files: dict[str, str]) -> list[str]:
    """`obj._name` (or `getattr(obj, "_name")`) where `_name` is nobody's in the package:
    a private attribute of another library's object. Reads off `self` and `cls` are the
    object's own."""
    trees = {name: ast.parse(text, filename=name) for name, text in files.items()}
    own = own_private_names(list(trees.values()))
    found = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            attr = None
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] != PACKAGE:
                for alias in node.names:  # `from lib import _name`: the same read, made at import
                    if alias.name.startswith("_") and not alias.name.startswith("__") and alias.name not in PUBLIC_UNDERSCORE:
                        found.append(f"{name} line {node.lineno}: from {node.module} import {alias.name}")
                continue
            if isinstance(node, ast.Attribute):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                attr = node.attr
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
                if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                    attr = node.args[1].value
            if (attr is None or not attr.startswith("_") or attr.startswith("__") or attr.endswith("_")
                    or attr in own or attr in PUBLIC_UNDERSCORE):
                continue
            found.append(f"{name} line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_private_attribute_of_another_library_is_read() -> None:
    files = {str(path.relative_to(ROOT.parent)): path.read_text(encoding="utf-8") for path in modules().values()}
    found = foreign_private_reads(files)
    assert not found, "private attributes of other libraries read:\n" + "\n".join(found)


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


def test_foreign_private_reads_are_found() -> None:
    files = {
        "a.py": "class A:\n    def __init__(self):\n        self._mine = 1\n",
        "b.py": ("def f(a, headers, jar, widget):\n"
                 "    a._mine\n"  # the package's own attribute
                 "    headers._list\n"  # another library's
                 "    getattr(jar, '_cookies')\n"
                 "    widget._repr_mimebundle_()\n"),  # a protocol name
        "c.py": "from jupyter_flow.a import _mine\nfrom ray.serve.context import _get_global_client\n",
    }
    assert [line.split(":")[0] for line in foreign_private_reads(files)] == ["b.py line 3", "b.py line 4", "c.py line 2"]
