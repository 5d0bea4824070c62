"""`{{ }}` templates and `when` conditions, evaluated on Jinja2's sandbox.

A string that is exactly one `{{ expr }}` yields the Python object itself (a tensor stays
a tensor, a list stays a list); any other string with `{{ }}` renders to text. Nothing a
flow file says can run arbitrary code: evaluation goes through the immutable sandbox.
Templates are compiled once, when the flow is loaded, and their references are read from
the Jinja AST so that the flow can be checked before it runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from jupyter_flow.errors import TemplateError

__all__ = ["Condition", "Renderer", "combine", "compile_condition", "compile_fields", "compile_value", "is_template"]

_LONE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class _Environment(ImmutableSandboxedEnvironment):
    """Mapping keys win over methods: `{{ x.output.items }}` is the key, not `dict.items`."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@dataclass(frozen=True)
class Reference:
    """A top-level name a template reads; `attr` is the first attribute read off it."""

    name: str
    attr: str | None = None


def _references(ast: nodes.Template | nodes.Expr) -> set[Reference]:
    from jinja2 import meta

    if isinstance(ast, nodes.Template):
        free = meta.find_undeclared_variables(ast)
    else:
        free = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
    free -= set(_ENV.globals)
    refs: set[Reference] = set()
    seen: set[str] = set()
    for getattr_node in ast.find_all(nodes.Getattr):
        if isinstance(getattr_node.node, nodes.Name) and getattr_node.node.name in free:
            refs.add(Reference(getattr_node.node.name, getattr_node.attr))
            seen.add(getattr_node.node.name)
    for getitem in ast.find_all(nodes.Getitem):
        if (
            isinstance(getitem.node, nodes.Name)
            and getitem.node.name in free
            and isinstance(getitem.arg, nodes.Const)
            and isinstance(getitem.arg.value, str)
        ):
            refs.add(Reference(getitem.node.name, getitem.arg.value))
            seen.add(getitem.node.name)
    refs.update(Reference(name) for name in free - seen)
    return refs


@dataclass
class Renderer:
    """A compiled config value: call it with a context to get the resolved value."""

    source: Any
    refs: set[Reference] = field(default_factory=set)
    _fn: Callable[[Mapping[str, Any]], Any] | None = None
    node: str | None = None
    where: str | None = None

    @property
    def is_constant(self) -> bool:
        return self._fn is None

    def __call__(self, context: Mapping[str, Any]) -> Any:
        if self._fn is None:
            return self.source
        return self._fn(context)


def _fail(node: str | None, where: str | None, source: str, exc: Exception) -> TemplateError:
    reason = exc.message if isinstance(exc, (UndefinedError, TemplateSyntaxError)) and exc.message else str(exc)
    return TemplateError(f"template {source!r} failed: {reason}", node=node, field=where)


def _path(ast: nodes.Template) -> tuple[str, list[Any]] | None:
    """`a.b["c"].d` as ("a", ["b", "c", "d"]); None for anything more than a lookup path."""
    body = ast.body
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    expr = body[0].nodes[0]
    steps: list[Any] = []
    while True:
        if isinstance(expr, nodes.Getattr):
            steps.append(expr.attr)
        elif isinstance(expr, nodes.Getitem) and isinstance(expr.arg, nodes.Const):
            steps.append(expr.arg.value)
        elif isinstance(expr, nodes.Name):
            return expr.name, steps[::-1]
        else:
            return None
        expr = expr.node


def _lookup(name: str, steps: list[Any], node: str | None, where: str | None, source: str) -> Callable[[Mapping[str, Any]], Any]:
    """The fast path for plain lookups, with the sandbox's rules and Jinja's messages."""

    def run(context: Mapping[str, Any]) -> Any:
        try:
            value = context[name]
        except KeyError:
            raise TemplateError(f"template {source!r} failed: {name!r} is undefined", node=node, field=where) from None
        for step in steps:
            if isinstance(value, Mapping):
                try:
                    value = value[step]
                    continue
                except (KeyError, TypeError):
                    pass
            try:
                value = _ENV.getattr(value, step) if isinstance(step, str) else _ENV.getitem(value, step)
            except SecurityError as exc:
                raise _fail(node, where, source, exc) from None
            if isinstance(value, StrictUndefined):
                # Jinja's own message: "has no attribute ..." or, for a refused attribute, "unsafe"
                try:
                    value._fail_with_undefined_error()
                except (UndefinedError, SecurityError) as exc:
                    raise _fail(node, where, source, exc) from None
        return value

    return run


def _compile_string(source: str, node: str | None, where: str | None) -> Renderer:
    lone = _LONE.match(source)
    try:
        if lone and "{{" not in lone.group("expr") and "}}" not in lone.group("expr"):
            expr = lone.group("expr").strip()
            ast = _ENV.parse(f"{{{{ {expr} }}}}")
            path = _path(ast)
            if path is not None:
                return Renderer(source, _references(ast), _lookup(*path, node, where, source), node, where)
            compiled = _ENV.compile_expression(expr, undefined_to_none=False)

            def run(context: Mapping[str, Any]) -> Any:
                try:
                    value = compiled(context)
                    if isinstance(value, StrictUndefined):
                        str(value)  # raises the UndefinedError with Jinja's own message
                    return value
                except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
                    raise _fail(node, where, source, exc) from None

        else:
            ast = _ENV.parse(source)
            template = _ENV.from_string(source)

            def run(context: Mapping[str, Any]) -> Any:
                try:
                    return template.render(context)
                except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
                    raise _fail(node, where, source, exc) from None

    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid template {source!r}: {exc.message}", node=node, field=where) from None
    return Renderer(source, _references(ast), run, node, where)


def compile_value(value: Any, *, node: str | None = None, where: str | None = None) -> Renderer:
    """Compile every template inside a config value (strings inside dicts and lists)."""
    if is_template(value):
        return _compile_string(value, node, where)
    if isinstance(value, Mapping):
        return combine(value, compile_fields(value, node=node, where=where), node=node, where=where)
    if isinstance(value, list):
        items = [compile_value(v, node=node, where=f"{where}[{i}]") for i, v in enumerate(value)]
        if all(p.is_constant for p in items):
            return Renderer(value)
        refs = set().union(*(p.refs for p in items))
        return Renderer(value, refs, lambda ctx: [p(ctx) for p in items], node, where)
    return Renderer(value)


def compile_fields(value: Mapping[str, Any], *, node: str | None = None, where: str | None = None) -> dict[str, Renderer]:
    """One compiled renderer per key of a mapping (so problems can name the field)."""
    return {k: compile_value(v, node=node, where=f"{where}.{k}" if where else str(k)) for k, v in value.items()}


def combine(value: Mapping[str, Any], parts: Mapping[str, Renderer], *, node: str | None = None, where: str | None = None) -> Renderer:
    """The renderer of a whole mapping from the renderers of its keys."""
    if all(p.is_constant for p in parts.values()):
        return Renderer(value)
    refs = set().union(*(p.refs for p in parts.values()))
    return Renderer(value, refs, lambda ctx: {k: p(ctx) for k, p in parts.items()}, node, where)


@dataclass
class Condition:
    """A compiled `when`: `{{ expr }}` or a bare expression, true or false."""

    source: str
    refs: set[Reference]
    _fn: Callable[[Mapping[str, Any]], Any]

    def __call__(self, context: Mapping[str, Any]) -> bool:
        return bool(self._fn(context))


def compile_condition(source: str, *, node: str | None = None, where: str | None = None) -> Condition:
    text = source.strip()
    lone = _LONE.match(text)
    if lone and "{{" not in lone.group("expr") and "}}" not in lone.group("expr"):
        text = lone.group("expr").strip()
    elif "{{" in text or "{%" in text:
        raise TemplateError(
            f"condition {source!r} must be one expression, e.g. \"{{{{ x.output.label == 'yes' }}}}\"",
            node=node,
            field=where,
        )
    if not text:
        raise TemplateError("condition is empty", node=node, field=where)
    return Condition(source, *_as_expression(text, source, node, where))


def _as_expression(expr: str, source: str, node: str | None, where: str | None) -> tuple[set[Reference], Callable[[Mapping[str, Any]], Any]]:
    renderer = _compile_string(f"{{{{ {expr} }}}}", node, where)
    renderer.source = source
    return renderer.refs, renderer.__call__
