"""Whether `module:name` names something callable, found without running any code.

Validating a flow (`jupyter-flow validate`, `Flow.validate()`, the flow file view in
JupyterLab, which validates as a file opens) must not run the code a flow file points at:
opening a flow from someone else's folder runs nothing, as opening a notebook runs
nothing. Only running a flow imports a node's module. So the check here finds the module
the way `import` would, without executing it, and reads its source:

- a module named in a `python` node is first looked for beside the flow file
  (`module.py` in its folder, as the node imports it);
- a module already imported is asked directly (its code has run already);
- any other is located by the import system's finders, level by level: `a.b.c` is looked
  for in the search path of `a.b`, found the same way, so no package's `__init__.py`
  runs on the way down;
- its source is parsed (`ast`) for a top-level definition of the name: a `def`, a
  `class`, an assignment or an import, also inside top-level `if`/`try`/`with` blocks.
  `Class.method` is looked for in the class's body when the class has no bases.

A module without source (compiled extensions, built-ins) counts as found. A module that
makes its names at import time in ways the source does not show (`from x import *`, a
module-level `__getattr__`, `globals()` or `sys.modules[__name__]` at top level) is
given the benefit of the doubt: what it really holds is known only when it runs.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

__all__ = ["beside_module", "check_callable"]

#: Calls at a module's top level that can make names its source does not show.
_DYNAMIC_CALLS = frozenset({"globals", "vars", "exec", "setattr", "locals"})
#: Values an assignment can bind that are never callable.
_VALUES = (ast.Constant, ast.JoinedStr, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


class _NotFound(Exception):
    """Why a module cannot be found (the message a user reads)."""


def beside_module(module_name: str, base_dir: Path | None) -> Path | None:
    """The file `module_name.py` in the flow file's folder, when there is one (a plain
    name only: `pkg.mod` is looked for on the Python path)."""
    if base_dir is None or not module_name.isidentifier():
        return None
    path = base_dir / f"{module_name}.py"
    return path if path.is_file() else None


def check_callable(target: str, *, base_dir: Path | None = None) -> str | None:
    """Why `target` (`module:name`, the name possibly dotted, `Class.method`) cannot be
    called, or None when its module is found and defines the name. Nothing is imported
    or executed. `base_dir` is the flow file's folder for targets whose `module.py`
    there wins over one on the Python path (`python` nodes); None looks on the path only."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        return f"{target!r} should read module:function"
    parts = attr.split(".")
    if not all(p.isidentifier() for p in parts):
        return f"{attr!r} is not a Python name"
    beside = beside_module(module_name, base_dir)
    if beside is not None:
        try:
            data = beside.read_bytes()
        except OSError as exc:
            return f"cannot read {beside}: {exc.strerror or exc}"
        return _check_source(_decode(data), str(beside), module_name, parts)
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return _check_object(loaded, module_name, parts)
    try:
        spec = _find_spec(module_name)
    except _NotFound as exc:
        hint = f" (no {module_name}.py beside the flow file either)" if base_dir is not None and module_name.isidentifier() else ""
        return f"{exc}{hint}: install it, or put it on the Python path (PYTHONPATH)"
    source = _source(spec)
    if source is None:  # compiled, built in, or a loader that keeps its source to itself
        return None
    return _check_source(source, spec.origin or module_name, module_name, parts)


# -- finding a module -----------------------------------------------------------------
def _find_spec(name: str) -> ModuleSpec:
    """The spec of module `name` as `import` would find it, without running any module:
    each parent package is located (not imported) and its search path passed down."""
    parent, _, _ = name.rpartition(".")
    search: list[str] | None = None
    if parent:
        loaded = sys.modules.get(parent)
        if loaded is not None:
            path = getattr(loaded, "__path__", None)
            search = list(path) if path is not None else None
        else:
            search = _find_spec(parent).submodule_search_locations
            search = list(search) if search is not None else None
        if search is None:
            raise _NotFound(f"no module named {name!r} ({parent!r} is not a package)")
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, search)
        except (ImportError, ValueError, OSError):
            continue
        if spec is not None:
            return spec
    raise _NotFound(f"no module named {name!r}")


def _source(spec: ModuleSpec) -> str | None:
    """The module's source text, read without executing it; None when it has none to give."""
    get_source = getattr(spec.loader, "get_source", None)
    if get_source is None:
        return None
    try:
        source = get_source(spec.name)
    except (ImportError, OSError, SyntaxError, UnicodeDecodeError):
        return None
    return source if isinstance(source, str) else None


def _decode(data: bytes) -> str:
    """Source bytes as Python reads them (a coding line, else UTF-8)."""
    try:
        return importlib.util.decode_source(data)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return data.decode("utf-8", errors="replace")


# -- what a module defines ------------------------------------------------------------
@dataclass
class _Scope:
    """The names a module (or class body) binds, each to the statement that binds it last;
    `open` when it may bind others the source does not show."""

    names: dict[str, ast.stmt] = field(default_factory=dict)
    open: bool = False


def _check_source(source: str, where: str, module_name: str, parts: list[str]) -> str | None:
    try:
        scope = _module_scope(source, where)
    except SyntaxError as exc:
        return f"module {module_name!r} ({where}) does not parse: line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"module {module_name!r} ({where}) cannot be read as Python: {type(exc).__name__}"
    for depth, part in enumerate(parts):
        stmt = scope.names.get(part)
        owner = module_name if depth == 0 else ".".join(parts[:depth])
        if stmt is None:
            if scope.open:
                return None
            what = f"module {module_name!r} ({where})" if depth == 0 else f"class {owner!r} in {where}"
            return f"{what} defines no {part!r}"
        last = depth == len(parts) - 1
        if last:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, _VALUES):
                return f"{'.'.join(parts)!r} in {where} is a value, not a function"
            return None
        if not isinstance(stmt, ast.ClassDef) or stmt.bases or stmt.keywords:
            return None  # an instance, a module, or a class that may inherit the rest: known at run time
        scope = _scope(stmt.body)
    return None


@lru_cache(maxsize=64)
def _module_scope(source: str, where: str) -> _Scope:
    return _scope(ast.parse(source, filename=where).body, module=True)


def _scope(body: list[ast.stmt], *, module: bool = False) -> _Scope:
    scope = _Scope()
    _bind_block(body, scope)
    if "__getattr__" in scope.names:
        scope.open = True
    if module and not scope.open:
        scope.open = any(_is_dynamic(stmt) for stmt in _top_level(body))
    return scope


def _bind_block(body: list[ast.stmt], scope: _Scope) -> None:
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope.names[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                _bind_target(target, stmt, scope)
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and (stmt.value is not None or isinstance(stmt, ast.AugAssign)):
            _bind_target(stmt.target, stmt, scope)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                scope.names[alias.asname or alias.name.split(".")[0]] = stmt
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if alias.name == "*":
                    scope.open = True
                else:
                    scope.names[alias.asname or alias.name] = stmt
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            _bind_target(stmt.target, stmt, scope)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                if item.optional_vars is not None:
                    _bind_target(item.optional_vars, stmt, scope)
        for block in _blocks(stmt):
            _bind_block(block, scope)


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    """The statement blocks run as part of `stmt` at the same level (not function or class bodies)."""
    if isinstance(stmt, (ast.If, ast.For, ast.AsyncFor, ast.While)):
        return [stmt.body, stmt.orelse]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return [stmt.body]
    if isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
        try_stmt: Any = stmt
        return [try_stmt.body, *(h.body for h in try_stmt.handlers), try_stmt.orelse, try_stmt.finalbody]
    if isinstance(stmt, ast.Match):
        return [case.body for case in stmt.cases]
    return []


def _bind_target(target: ast.expr, stmt: ast.stmt, scope: _Scope) -> None:
    if isinstance(target, ast.Name):
        scope.names[target.id] = stmt
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            _bind_target(element, stmt, scope)
    elif isinstance(target, ast.Starred):
        _bind_target(target.value, stmt, scope)
    elif isinstance(target, ast.Subscript) and _is_sys_modules(target.value):
        scope.open = True  # `sys.modules[__name__] = ...`: the module is replaced at import


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Every statement that runs at import: the module's own and those in its blocks."""
    found: list[ast.stmt] = []
    for stmt in body:
        found.append(stmt)
        for block in _blocks(stmt):
            found.extend(_top_level(block))
    return found


def _is_dynamic(stmt: ast.stmt) -> bool:
    """Whether a top-level statement can make names its source does not show."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False
    parts = [stmt] if not _blocks(stmt) else [e for e in ast.iter_child_nodes(stmt) if isinstance(e, ast.expr)]
    for part in parts:
        for node in ast.walk(part):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _DYNAMIC_CALLS:
                return True
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and _is_sys_modules(node.value):
                return True
    return False


def _is_sys_modules(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys"


# -- a module already imported --------------------------------------------------------
def _check_object(module: Any, module_name: str, parts: list[str]) -> str | None:
    obj = module
    for depth, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            owner = f"module {module_name!r}" if depth == 0 else f"{'.'.join(parts[:depth])!r}"
            return f"{owner} has no {part!r}"
        except Exception as exc:  # noqa: BLE001 - a module's own __getattr__ failing is its answer
            return f"{module_name}:{'.'.join(parts[: depth + 1])} cannot be read: {type(exc).__name__}: {exc}"
    if not callable(obj):
        return f"{module_name}:{'.'.join(parts)} is a {type(obj).__name__}, not a function"
    return None
