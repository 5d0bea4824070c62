"""`{{ }}` templates and `when` conditions, evaluated on Jinja2's sandbox.

A string that is exactly one `{{ expr }}` yields the Python object itself (a tensor stays
a tensor, a list stays a list); any other string with `{{ }}` renders to text. Nothing a
flow file says can run arbitrary code: evaluation goes through the immutable sandbox.
Templates are read once, when the flow is loaded, and their references are taken from
the Jinja AST so that the flow can be checked before it runs (a template of text and plain
lookups is read by a regular expression instead, with the same result); each becomes
Python code at its first render.

Rendering is bounded: one evaluation may take `TIME_LIMIT_S` seconds, step through
`MAX_STEPS` loop items (`{% for %}` and `range`), and write `MAX_OUTPUT` characters; `**`
and `*` refuse results past `MAX_OUTPUT`. One filter call cannot be stopped once it runs,
so what it is asked is bounded before it starts: a number given to a filter (a width, a
count) is at most `MAX_FILTER_ARG`, a `%` or `format` pattern may not ask for a field wider
than that, `replace` may not grow a text past `MAX_OUTPUT`, and any filter's result past
`MAX_OUTPUT` is refused; `lipsum` (filler text) is not offered. A template past a bound fails with a
TemplateError naming the node and field, instead of holding the run (and the event loop)
for as long as it likes. Plain references (`{{ a.output.b }}`) take a fast path with no
such accounting, since they do no work. The sandbox and its bounds are
`jupyter_flow.sandbox`'s (its names are importable from here too).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.sandbox import SecurityError

from jupyter_flow.errors import TemplateError
from jupyter_flow.outcome import NodeOutcome
from jupyter_flow.sandbox import (
    EVAL_FAILURES,
    MAX_FILTER_ARG,
    MAX_OUTPUT,
    MAX_STEPS,
    SANDBOX,
    TIME_LIMIT_S,
    bounded,
    failure,
    is_function_name,
    text_renderer,
)

__all__ = [
    "MAX_FILTER_ARG",
    "MAX_OUTPUT",
    "MAX_STEPS",
    "TIME_LIMIT_S",
    "Condition",
    "Renderer",
    "combine",
    "compile_condition",
    "compile_fields",
    "compile_value",
    "is_function_name",
    "is_template",
]

#: the sandbox (kept under this name for the checks that compare the fast paths with it)
_ENV = SANDBOX
_LONE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)

def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@dataclass(frozen=True)
class Reference:
    """A top-level name a template reads; `attr` is the first attribute read off it."""

    name: str
    attr: str | None = None


def _references(ast: nodes.Template | nodes.Expr) -> set[Reference]:
    from jinja2 import meta

    names: list[nodes.Name] = []
    lookups: list[nodes.Getattr | nodes.Getitem] = []
    statements = False
    for item in ast.find_all((nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Stmt)):
        if isinstance(item, nodes.Name):
            names.append(item)
        elif isinstance(item, (nodes.Getattr, nodes.Getitem)):
            lookups.append(item)
        elif not isinstance(item, nodes.Output):
            statements = True
    loaded = {n.name for n in names if n.ctx == "load"}
    # only statements (for, set, macro) declare names; without them every name read is free
    free = set(meta.find_undeclared_variables(ast)) if statements and isinstance(ast, nodes.Template) else set(loaded)
    # a function read like a value (`range.x`) stays a reference, for the checks to refuse
    functions = (loaded & set(SANDBOX.globals)) - {n.name for n in names if n.ctx != "load"}
    free |= functions
    refs: set[Reference] = set()
    seen: set[str] = set()
    for lookup in lookups:
        if not isinstance(lookup.node, nodes.Name) or lookup.node.name not in free:
            continue
        if isinstance(lookup, nodes.Getattr):
            refs.add(Reference(lookup.node.name, lookup.attr))
        elif isinstance(lookup.arg, nodes.Const) and isinstance(lookup.arg.value, str):
            refs.add(Reference(lookup.node.name, lookup.arg.value))
        else:
            continue
        seen.add(lookup.node.name)
    refs.update(Reference(name) for name in free - seen - functions)
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


@functools.lru_cache(maxsize=256)
def _is_mapping(kind: type) -> bool:
    """Whether values of type `kind` are mappings, asked once per type (`isinstance` with
    an ABC is a call into Python on every value: a run's node outcomes are read so)."""
    return issubclass(kind, Mapping)


def _lookup(name: str, steps: list[Any], node: str | None, where: str | None, source: str) -> Callable[[Mapping[str, Any]], Any]:
    """The fast path for plain lookups, with the sandbox's rules and Jinja's messages."""

    def run(context: Mapping[str, Any]) -> Any:
        try:
            value = context[name]
        except KeyError:
            raise TemplateError(f"template {source!r} failed: {name!r} is undefined", node=node, field=where) from None
        for step in steps:
            if type(value) is NodeOutcome and step == "output":  # a node's output: what nearly every template reads
                value = value.output
                continue
            if type(value) is dict or _is_mapping(value.__class__):  # no ABC check per value
                try:
                    value = value[step]
                    continue
                except (KeyError, TypeError):
                    pass
            try:
                value = SANDBOX.getattr(value, step) if isinstance(step, str) else SANDBOX.getitem(value, step)
            except SecurityError as exc:
                raise failure(node, where, source, exc) from None
            if isinstance(value, StrictUndefined):
                # Jinja's own message: "has no attribute ..." or, for a refused attribute, "unsafe"
                try:
                    str(value)
                except (UndefinedError, SecurityError) as exc:
                    raise failure(node, where, source, exc) from None
        return value

    return run


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_KEY = r"\d+|'[^'\\{}]*'|" + r'"[^"\\{}]*"'
_STEP = r"\.(" + _NAME + r")|\[\s*(" + _KEY + r")\s*\]"
_PLAIN = re.compile(r"\{\{\s*(" + _NAME + r"(?:\." + _NAME + r"|\[\s*(?:" + _KEY + r")\s*\])*)\s*\}\}")
_STEPS = re.compile(_STEP)
_KEYWORDS = frozenset(
    "and or not in is if else elif true false none True False None for recursive import include with without "
    "context ignore missing as from block set macro call filter raw do extends".split()
)


def _plain_paths(source: str) -> list[tuple[str, list[Any]]] | None:
    """The lookups of a template made only of text and plain `{{ a.b["c"][0] }}` lookups,
    read without Jinja's parser (the common case, and a 10,000-node flow has 10,000 of
    them); None for anything else, which Jinja parses."""
    if "{%" in source or "{#" in source:
        return None
    paths: list[tuple[str, list[Any]]] = []
    end = 0
    for match in _PLAIN.finditer(source):
        if "{{" in source[end : match.start()]:
            return None
        end = match.end()
        expr = match.group(1)
        name = re.match(_NAME, expr).group()  # type: ignore[union-attr]
        steps: list[Any] = []
        for attr, key in _STEPS.findall(expr[len(name) :]):
            steps.append(attr if attr else int(key) if key.isdigit() else key[1:-1])
        if name in _KEYWORDS or name in SANDBOX.globals or any(isinstance(s, str) and s in _KEYWORDS for s in steps):
            return None
        paths.append((name, steps))
    if "{{" in source[end:] or not paths:
        return None
    return paths


def _plain_references(paths: list[tuple[str, list[Any]]]) -> set[Reference]:
    """What `_references` finds in the same lookups."""
    refs = {Reference(name, steps[0]) for name, steps in paths if steps and isinstance(steps[0], str)}
    seen = {ref.name for ref in refs}
    return refs | {Reference(name) for name, _ in paths if name not in seen}


def _compile_string(source: str, node: str | None, where: str | None) -> Renderer:
    lone = _LONE.match(source)
    plain = _plain_paths(source)
    if plain is not None and lone is not None and len(plain) == 1:
        return Renderer(source, _plain_references(plain), _lookup(*plain[0], node, where, source), node, where)
    if plain is not None:
        return Renderer(source, _plain_references(plain), text_renderer(source, node, where), node, where)
    try:
        if lone and "{{" not in lone.group("expr") and "}}" not in lone.group("expr"):
            expr = lone.group("expr").strip()
            ast = SANDBOX.parse(f"{{{{ {expr} }}}}")
            path = _path(ast)
            if path is not None:
                return Renderer(source, _references(ast), _lookup(*path, node, where, source), node, where)
            compiled = SANDBOX.compile_expression(expr, undefined_to_none=False)

            @bounded
            def run(context: Mapping[str, Any]) -> Any:
                try:
                    value = compiled(context)
                    if isinstance(value, StrictUndefined):
                        str(value)  # raises the UndefinedError with Jinja's own message
                    return value
                except EVAL_FAILURES as exc:
                    raise failure(node, where, source, exc) from None

        else:
            ast = SANDBOX.parse(source)
            run = text_renderer(source, node, where)

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
    # configs are mostly constants: a copy of the constant keys (the others hold their
    # place, so the keys keep their order), then a call for each key that has a template
    shape = {k: p.source if p._fn is None else None for k, p in parts.items()}
    calls = tuple((k, p._fn) for k, p in parts.items() if p._fn is not None)
    if len(calls) == 1:
        ((key, call),) = calls

        def one(ctx: Mapping[str, Any]) -> dict[str, Any]:
            out = shape.copy()
            out[key] = call(ctx)
            return out

        return Renderer(value, refs, one, node, where)

    def some(ctx: Mapping[str, Any]) -> dict[str, Any]:
        out = shape.copy()
        for key, call in calls:
            out[key] = call(ctx)
        return out

    return Renderer(value, refs, some, node, where)


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
