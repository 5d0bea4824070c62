"""The functions a notebook registered, written into the notebook a flow is exported to.

A `python` node may name a function registered from the notebook the flow was built in
(`register_function`, no `module:`). An exported notebook runs elsewhere, so
`carry_functions` writes such functions into a cell of their own: the function's source
(without decorators), the imports and constants it reads, and the functions it calls,
then the `register_function` lines. What cannot be written out (a lambda, a closure, an
object without a literal) is a FlowValidationError naming the node and saying what to do.
"""

from __future__ import annotations

import ast
import dis
import inspect
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.nodes.python import default_functions

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow

__all__ = ["carry_functions"]


class _CannotCarry(Exception):
    pass


def _global_loads(code: Any) -> set[str]:
    """Names a function's code reads as globals (nested comprehensions and functions included)."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _global_loads(const)
    return names


def _header_names(tree: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names a def line reads when it runs: defaults and annotations."""
    a = tree.args
    parts: list[ast.AST | None] = [*a.defaults, *a.kw_defaults, tree.returns]
    parts += [arg.annotation for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if arg is not None]
    return {n.id for part in parts if part is not None for n in ast.walk(part) if isinstance(n, ast.Name)}


def _importable(value: Any) -> str | None:
    """`module` when `from module import name` gives back this very object."""
    module = getattr(value, "__module__", None)
    name = getattr(value, "__name__", None)
    if not module or not name or module in ("__main__", "builtins") or module.startswith("__"):
        return None
    return module if getattr(sys.modules.get(module), name, None) is value else None


def _is_literal(value: Any) -> bool:
    try:
        return type(value) in (int, float, str, bool, type(None), tuple, list, dict, set, frozenset) and \
            ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError):
        return False


class _Carrier:
    """Writes the notebook-registered functions of a flow, with what they use, into a cell."""

    def __init__(self) -> None:
        self.imports: dict[str, None] = {}
        self.constants: dict[str, str] = {}
        self.sources: dict[str, str] = {}

    def add(self, fn: Any) -> str:
        """Carry `fn`; returns the name it has in the cell."""
        module = _importable(fn)
        if module is not None:
            self.imports[f"from {module} import {fn.__name__}"] = None
            return str(fn.__name__)
        if not inspect.isfunction(fn) or fn.__name__ == "<lambda>":
            raise _CannotCarry("it is not a function written with def")
        if fn.__closure__:
            raise _CannotCarry("it uses variables of an enclosing function")
        if fn.__name__ in self.sources:
            return str(fn.__name__)
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            raise _CannotCarry("its source code is not available") from None
        tree = ast.parse(source).body[0]
        if not isinstance(tree, (ast.FunctionDef, ast.AsyncFunctionDef)) or tree.name != fn.__name__:
            raise _CannotCarry("its source code is not a plain def")
        self.sources[fn.__name__] = "\n".join(source.splitlines()[tree.lineno - 1 : tree.end_lineno])  # no decorators
        for name in sorted(_global_loads(fn.__code__) | _header_names(tree)):
            if name not in fn.__globals__:
                continue  # a builtin
            value = fn.__globals__[name]
            if inspect.ismodule(value):
                line = f"import {value.__name__}" + (f" as {name}" if value.__name__ != name else "")
                self.imports[line] = None
            elif _importable(value) is not None:
                line = f"from {_importable(value)} import {value.__name__}" + (f" as {name}" if value.__name__ != name else "")
                self.imports[line] = None
            elif inspect.isfunction(value) and value.__name__ == name:
                self.add(value)
            elif _is_literal(value):
                self.constants[name] = repr(value)
            else:
                raise _CannotCarry(f"it uses the notebook's {name!r} ({type(value).__name__}), which cannot be written out")
        return str(fn.__name__)

    def cell(self, registrations: list[str]) -> str:
        parts = ["from jupyter_flow import register_function", *self.imports]
        parts += [f"{k} = {v}" for k, v in self.constants.items()]
        return "\n".join(parts) + "\n\n\n" + "\n\n\n".join(self.sources.values()) + "\n\n\n" + "\n".join(registrations)


def carry_functions(flow: Flow) -> str | None:
    """The code of a cell that registers the functions the flow's python nodes name
    without a module (functions registered from the notebook the flow was built in)."""
    registered = {**default_functions(), **flow.functions}
    carrier = _Carrier()
    registrations: list[str] = []
    problems: list[Problem] = []
    for node in flow.spec.nodes:
        name = str(node.config.get("function", ":"))
        if node.type != "python" or ":" in name:
            continue
        fix = "define it in a module and name it as 'module:function'"
        if name not in registered:
            problems.append(Problem(f"no function {name!r} is registered here, so it cannot be written into the "
                                    f"notebook: export from the notebook that registers it, or {fix}",
                                    node=node.id, field="config.function"))
            continue
        try:
            local = carrier.add(registered[name])
        except _CannotCarry as exc:
            problems.append(Problem(f"the function {name!r} cannot be written into the notebook: {exc}; {fix}",
                                    node=node.id, field="config.function"))
            continue
        line = f"register_function({local}, name={name!r})"
        if line not in registrations:
            registrations.append(line)
    if problems:
        raise FlowValidationError(problems, source=str(flow.source) if flow.source else None)
    return carrier.cell(registrations) if registrations else None
