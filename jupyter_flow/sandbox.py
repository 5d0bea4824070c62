"""The Jinja2 sandbox templates are evaluated in, and the bounds of one evaluation.

`SANDBOX` is the immutable sandboxed environment every template and condition uses:
mapping keys win over methods, and calls, loops, `**`, `*` and `%` count against the
evaluation's budget. One evaluation may take `TIME_LIMIT_S` seconds, step through
`MAX_STEPS` loop items (`{% for %}` and `range`), and write `MAX_OUTPUT` characters; a
number given to a filter is at most `MAX_FILTER_ARG`, and so is a `%` or `format` field
width; `replace` may not grow a text past `MAX_OUTPUT`, and any filter's result past it is
refused; `lipsum` is not offered. `bounded` gives a function a fresh budget per call;
past a bound it raises `TooCostly`, which `failure` turns (like every other evaluation
error in `EVAL_FAILURES`) into a TemplateError naming the node and field.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from jupyter_flow.errors import TemplateError
from jupyter_flow.values import dumps

__all__ = [
    "EVAL_FAILURES",
    "MAX_FILTER_ARG",
    "MAX_OUTPUT",
    "MAX_STEPS",
    "SANDBOX",
    "TIME_LIMIT_S",
    "TooCostly",
    "bounded",
    "failure",
    "is_function_name",
    "text_renderer",
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
            raise TooCostly(f"steps through more than {MAX_STEPS:,} loop items")
        if self.steps % _CHECK_EVERY < n:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TooCostly(f"took longer than {TIME_LIMIT_S:g} s")


class TooCostly(Exception):
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


def bounded(fn: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """`fn` with a fresh budget for each evaluation."""

    def run(context: Mapping[str, Any]) -> Any:
        token = _BUDGET.set(_Budget())
        try:
            return fn(context)
        finally:
            _BUDGET.reset(token)

    return run



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
                raise TooCostly(f"computes {left} ** {right}, a number too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                    raise TooCostly(f"repeats a {type(seq).__name__} {times} times, a result too large")
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
        raise TooCostly(f"formats with a field wider than {MAX_FILTER_ARG:,} characters")


def _check_size(result: Any, name: str) -> Any:
    if isinstance(result, (str, list, tuple)) and len(result) > MAX_OUTPUT:
        raise TooCostly(f"makes a result of more than {MAX_OUTPUT:,} items with `{name}`")
    return result


def _guarded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (a Jinja filter) with its arguments checked before it runs and its result after."""
    skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1  # the context/environment, then the value

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args[skip:], *kwargs.values()):
            if isinstance(arg, (int, float)) and not isinstance(arg, bool) and abs(arg) > MAX_FILTER_ARG:
                raise TooCostly(f"gives `{name}` the number {arg:g}, more than {MAX_FILTER_ARG:,}")
        value = args[skip - 1] if len(args) >= skip else None
        if name == "format" and isinstance(value, str):
            _check_pattern(value)
        if name == "replace" and isinstance(value, str) and len(args) > skip + 1:
            old, new = str(args[skip]), str(args[skip + 1])
            grows = (len(value) + 1) if old == "" else value.count(old)
            if len(value) + grows * max(len(new) - len(old), 0) > MAX_OUTPUT:
                raise TooCostly(f"makes a text of more than {MAX_OUTPUT:,} characters with `replace`")
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


SANDBOX = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
SANDBOX.filters["as_text"] = _as_text
SANDBOX.filters.update({name: _guarded_filter(name, fn) for name, fn in SANDBOX.filters.items()})
del SANDBOX.globals["lipsum"]  # filler text: nothing a flow needs, and unbounded in one call
SANDBOX.globals["_jf_counted"] = _counted
_FUNCTIONS = frozenset(name for name in SANDBOX.globals if not name.startswith("_jf_"))


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
            self.template = SANDBOX.from_string(_count_loops(SANDBOX.parse(self.source)))
        return self.template


def _render_limited(template: Any, context: Mapping[str, Any]) -> str:
    budget = _budget()
    parts: list[str] = []
    size = 0
    for chunk in template.generate(context):
        parts.append(chunk)
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise TooCostly(f"writes more than {MAX_OUTPUT:,} characters")
        budget.step()
    return "".join(parts)


#: what an evaluation raises when a template does not fit its values or goes past a bound
EVAL_FAILURES = (
    UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError,
    RecursionError, MemoryError, TooCostly,
)


def failure(node: str | None, where: str | None, source: str, exc: Exception) -> TemplateError:
    """An evaluation of `source` that raised `exc` (one of `EVAL_FAILURES`), as the
    TemplateError naming `node` and the field (`where`)."""
    if isinstance(exc, RecursionError):
        return TemplateError(f"template {source!r} failed: it calls itself too deeply", node=node, field=where)
    if isinstance(exc, MemoryError):
        return TemplateError(f"template {source!r} failed: out of memory", node=node, field=where)
    if isinstance(exc, TooCostly):
        return TemplateError(f"template {source!r} stopped: it {exc} (the limit of one evaluation)", node=node, field=where)
    reason = exc.message if isinstance(exc, (UndefinedError, TemplateSyntaxError)) and exc.message else str(exc)
    return TemplateError(f"template {source!r} failed: {reason}", node=node, field=where)


def text_renderer(source: str, node: str | None, where: str | None) -> Callable[[Mapping[str, Any]], Any]:
    """`source` rendered as a whole template (compiled on first use), within the bounds of
    one evaluation; a failure is a TemplateError naming node and field."""
    template = _LazyTemplate(source)

    @bounded
    def run(context: Mapping[str, Any]) -> Any:
        try:
            return _render_limited(template.get(), context)
        except EVAL_FAILURES as exc:
            raise failure(node, where, source, exc) from None

    return run
