"""Python functions as tools: the JSON schema from the type hints and the docstring.

`function_tool(fn, name=...)` reads `fn`'s signature: each parameter becomes a field of a
pydantic model (its type hint, its default, and its description from the docstring's
``Args:`` / ``:param:`` / numpydoc ``Parameters`` section, parsed by `docstring_parser`),
and the model's JSON schema is the tool's ``input_schema``. A call validates the
arguments against the same model (``"3"`` for an ``int`` becomes ``3``; an unknown or a
missing argument is an error naming it), then calls the function: an ``async def`` on the
event loop, any other in a worker thread.

A parameter annotated `ToolContext` is not an argument: the call's context is passed
there. `*args` and `**kwargs` are not offered.

What the function returns becomes the `ToolResult`: a `ToolResult` as it is, a `ToolFile`
(or a list of them) as files, a pydantic model as its JSON, text as text, and any other
value as JSON (a value JSON cannot hold is an error).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticSerializationError, to_jsonable_python

from jupyter_flow.errors import MissingDependencyError
from jupyter_flow.tools.base import Tool, ToolContext, ToolError, ToolFile, ToolResult

__all__ = ["function_tool", "to_result"]

_SKIPPED = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def function_tool(fn: Callable[..., Any], *, name: str, description: str | None = None) -> Tool:
    """`fn` as the tool `name`; `description` defaults to the docstring's text."""
    try:
        import docstring_parser
    except ImportError as exc:
        raise MissingDependencyError("docstring-parser", "tools", "Python functions as tools") from exc
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    described = {p.arg_name: p.description for p in doc.params if p.description}
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # a hint naming something that does not exist
        raise TypeError(f"{name}: the type hints of {fn!r} cannot be read ({type(exc).__name__}: {exc})") from exc
    fields: dict[str, Any] = {}
    arguments: list[str] = []  # parameter names, in the model's field order (fields are a0, a1, ...: any name works)
    context: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in _SKIPPED:
            continue
        hint = hints.get(param.name, Any)
        if hint is ToolContext:
            context.append(param.name)
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"{name}: parameter {param.name!r} of {fn!r} is positional-only; a tool's arguments are named")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[f"a{len(arguments)}"] = (hint, Field(default, alias=param.name, description=described.get(param.name)))
        arguments.append(param.name)
    model = create_model(f"{getattr(fn, '__name__', 'tool')}_arguments", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)
    schema = model.model_json_schema(by_alias=True)
    schema.pop("title", None)
    text = "\n\n".join(part for part in (doc.short_description, doc.long_description) if part)
    is_async = inspect.iscoroutinefunction(fn)

    async def invoke(given: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            parsed = model.model_validate(given)
        except ValidationError as exc:
            raise ToolError(_argument_errors(exc), tool=name, node=ctx.node) from None
        kwargs = {arg: getattr(parsed, f"a{i}") for i, arg in enumerate(arguments)}
        kwargs.update((param, ctx) for param in context)
        if is_async:
            value = await fn(**kwargs)
        else:
            value = await ctx.run_blocking(fn, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        return to_result(value, tool=name, node=ctx.node)

    return Tool(name=name, description=description if description is not None else text, input_schema=schema, invoke=invoke)


def to_result(value: Any, *, tool: str, node: str | None = None) -> ToolResult:
    """A function's return value as a `ToolResult` (see the module docstring)."""
    if isinstance(value, ToolResult):
        return value
    if isinstance(value, ToolFile):
        return ToolResult(files=(value,))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, ToolFile) for v in value):
        return ToolResult(files=tuple(value))
    if isinstance(value, BaseModel):
        return ToolResult(value.model_dump(mode="json"))
    if value is None or isinstance(value, (str, bool, int, float)):
        return ToolResult(value)
    try:
        return ToolResult(to_jsonable_python(value))
    except PydanticSerializationError as exc:
        raise ToolError(f"returned a {type(value).__name__}, which JSON cannot hold ({exc})", tool=tool, node=node) from None


def _argument_errors(exc: ValidationError) -> str:
    """The validation errors, each naming its argument."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        what = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"argument '{where}': {what}")
    return "; ".join(parts)

