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
such accounting, since they do no work.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from jupyter_flow.errors import TemplateError
from jupyter_flow.values import dumps

__all__ = [
    "Condition",
    "Renderer",
    "combine",
    "compile_condition",
    "compile_fields",
    "compile_value",
    "is_function_name",
    "is_template",
]

#: Bounds of one template evaluation (see the module's docstring).
TIME_LIMIT_S = 5.0
MAX_STEPS = 1_000_000
MAX_OUTPUT = 10_000_000
MAX_FILTER_ARG = 1_000_000
_CHECK_EVERY = 1024
#: a field width or precision in a `%` or `format` pattern (`%9999999d`, `{:>9999999}`)
_WIDE_FIELD = re.compile(r"\d{" + str(len(str(MAX_FILTER_ARG))) + ",}")


class _Budget:
    """What one evaluation may still spend; checked by loops, calls and output."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + TIME_LIMIT_S
        self.steps = 0

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise _TooCostly(f"steps through more than {MAX_STEPS:,} loop items")
        if self.steps % _CHECK_EVERY < n:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _TooCostly(f"took longer than {TIME_LIMIT_S:g} s")


class _TooCostly(Exception):
    """A template went past one of the bounds of an evaluation."""


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("jupyter_flow_template_budget", default=None)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    return budget if budget is not None else _Budget()  # outside a Renderer: nothing to count against


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _bounded(fn: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """`fn` with a fresh budget for each evaluation."""

    def run(context: Mapping[str, Any]) -> Any:
        token = _BUDGET.set(_Budget())
        try:
            return fn(context)
        finally:
            _BUDGET.reset(token)

    return run

_LONE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class _Environment(ImmutableSandboxedEnvironment):
    """Mapping keys win over methods: `{{ x.output.items }}` is the key, not `dict.items`.
    Calls and `**`/`*` are checked against the evaluation's budget."""

    intercepted_binops = frozenset({"**", "*", "%"})

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        _budget().step()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _budget().step()
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            if right * max(abs(left).bit_length() - 1, 1) > MAX_OUTPUT:
                raise _TooCostly(f"computes {left} ** {right}, a number too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                    raise _TooCostly(f"repeats a {type(seq).__name__} {times} times, a result too large")
        if operator == "%" and isinstance(left, str):
            _check_pattern(left)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_pattern(obj)
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


def _check_pattern(pattern: str) -> None:
    if _WIDE_FIELD.search(pattern):
        raise _TooCostly(f"formats with a field wider than {MAX_FILTER_ARG:,} characters")


def _check_size(result: Any, name: str) -> Any:
    if isinstance(result, (str, list, tuple)) and len(result) > MAX_OUTPUT:
        raise _TooCostly(f"makes a result of more than {MAX_OUTPUT:,} items with `{name}`")
    return result


def _guarded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (a Jinja filter) with its arguments checked before it runs and its result after."""
    skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1  # the context/environment, then the value

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args[skip:], *kwargs.values()):
            if isinstance(arg, (int, float)) and not isinstance(arg, bool) and abs(arg) > MAX_FILTER_ARG:
                raise _TooCostly(f"gives `{name}` the number {arg:g}, more than {MAX_FILTER_ARG:,}")
        value = args[skip - 1] if len(args) >= skip else None
        if name == "format" and isinstance(value, str):
            _check_pattern(value)
        if name == "replace" and isinstance(value, str) and len(args) > skip + 1:
            old, new = str(args[skip]), str(args[skip + 1])
            grows = (len(value) + 1) if old == "" else value.count(old)
            if len(value) + grows * max(len(new) - len(old), 0) > MAX_OUTPUT:
                raise _TooCostly(f"makes a text of more than {MAX_OUTPUT:,} characters with `replace`")
        return _check_size(fn(*args, **kwargs), name)

    return run


def _as_text(value: Any) -> str:
    """The `as_text` filter: a value as it reads inside text: text as it is, nothing (none,
    or a value that is not there) as '', lists and mappings as JSON, anything else as str."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, Undefined):
        return ""
    if isinstance(value, (Mapping, list, tuple)):
        return dumps(dict(value) if isinstance(value, Mapping) else list(value))
    return str(value)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_ENV.filters["as_text"] = _as_text
_ENV.filters.update({name: _guarded_filter(name, fn) for name, fn in _ENV.filters.items()})
del _ENV.globals["lipsum"]  # filler text: nothing a flow needs, and unbounded in one call
_ENV.globals["_jf_counted"] = _counted
_FUNCTIONS = frozenset(name for name in _ENV.globals if not name.startswith("_jf_"))


def is_function_name(name: str) -> bool:
    """Whether `name` is one of the functions templates have (`range`, `dict`, ...)."""
    return name in _FUNCTIONS


def _count_loops(ast: nodes.Template) -> nodes.Template:
    """Each `{% for %}` steps through its items by way of the budget."""
    for loop in ast.find_all(nodes.For):
        loop.iter = nodes.Call(nodes.Name("_jf_counted", "load"), [loop.iter], [], None, None, lineno=loop.lineno)
    return ast


class _LazyTemplate:
    """A template turned into Python code at its first render, not when the flow is
    checked: checking needs only the parse, and a 10,000-node flow validates in seconds."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.template: Any = None

    def get(self) -> Any:
        if self.template is None:
            self.template = _ENV.from_string(_count_loops(_ENV.parse(self.source)))
        return self.template


def _render_bounded(template: Any, context: Mapping[str, Any]) -> str:
    budget = _budget()
    parts: list[str] = []
    size = 0
    for chunk in template.generate(context):
        parts.append(chunk)
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise _TooCostly(f"writes more than {MAX_OUTPUT:,} characters")
        budget.step()
    return "".join(parts)


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
    functions = (loaded & set(_ENV.globals)) - {n.name for n in names if n.ctx != "load"}
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


_FAILURES = (
    UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError,
    RecursionError, MemoryError, _TooCostly,
)


def _fail(node: str | None, where: str | None, source: str, exc: Exception) -> TemplateError:
    if isinstance(exc, RecursionError):
        return TemplateError(f"template {source!r} failed: it calls itself too deeply", node=node, field=where)
    if isinstance(exc, MemoryError):
        return TemplateError(f"template {source!r} failed: out of memory", node=node, field=where)
    if isinstance(exc, _TooCostly):
        return TemplateError(f"template {source!r} stopped: it {exc} (the limit of one evaluation)", node=node, field=where)
    reason = exc.message if isinstance(exc, (UndefinedError, TemplateSyntaxError)) and exc.message else str(exc)
    return TemplateError(f"template {source!r} failed: {reason}", node=node, field=where)


def _rendering(source: str, node: str | None, where: str | None) -> Callable[[Mapping[str, Any]], Any]:
    """`source` rendered as a whole template (compiled on first use), within the bounds of
    one evaluation; a failure is a TemplateError naming node and field."""
    template = _LazyTemplate(source)

    @_bounded
    def run(context: Mapping[str, Any]) -> Any:
        try:
            return _render_bounded(template.get(), context)
        except _FAILURES as exc:
            raise _fail(node, where, source, exc) from None

    return run


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
            if type(value) is dict or _is_mapping(value.__class__):  # no ABC check per value
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
        if name in _KEYWORDS or name in _ENV.globals or any(isinstance(s, str) and s in _KEYWORDS for s in steps):
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
        return Renderer(source, _plain_references(plain), _rendering(source, node, where), node, where)
    try:
        if lone and "{{" not in lone.group("expr") and "}}" not in lone.group("expr"):
            expr = lone.group("expr").strip()
            ast = _ENV.parse(f"{{{{ {expr} }}}}")
            path = _path(ast)
            if path is not None:
                return Renderer(source, _references(ast), _lookup(*path, node, where, source), node, where)
            compiled = _ENV.compile_expression(expr, undefined_to_none=False)

            @_bounded
            def run(context: Mapping[str, Any]) -> Any:
                try:
                    value = compiled(context)
                    if isinstance(value, StrictUndefined):
                        str(value)  # raises the UndefinedError with Jinja's own message
                    return value
                except _FAILURES as exc:
                    raise _fail(node, where, source, exc) from None

        else:
            ast = _ENV.parse(source)
            run = _rendering(source, node, where)

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
