"""One input validator per input type, used by every way a flow is run.

`Flow.run`/`Flow.arun` check their inputs here, and so do batch runs, served flows and
exported notebooks, since they all run through `Flow.arun`. The rules, by declared type:

=========  =====================================================  ========================
type       accepts                                                 converts
=========  =====================================================  ========================
string     a string, or a list of strings                          nothing (5 is refused)
text       a string, or a list of strings                          nothing (5 is refused)
file       a string (a path)                                       nothing
number     an int or float, or a list of them (not a boolean)      "2.5" -> 2.5
integer    an int, or a list of ints (not a boolean)               "3" -> 3, 3.0 -> 3
boolean    true/false                                              "yes"/"no", "1"/"0", ...
list       a list                                                  a string is read as JSON
object     an object (dict)                                        a string is read as JSON
json       any JSON value                                          a string is read as JSON
any        anything                                                nothing
=========  =====================================================  ========================

A required input (no default) that is missing, or given as null, is a problem; unknown
input names are problems when the flow declares its inputs. Every problem names the input
(``inputs.NAME``), the value and the type expected.

`json_schema` describes the same inputs as a JSON schema, for those who call a flow as a
tool (an agent's model, an MCP client): string, text and file as strings, number, integer
and boolean as such, list as an array, object as an object, json and any as anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, StrictStr, TypeAdapter, ValidationError

from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.spec import InputSpec

__all__ = ["InputValidator", "json_schema", "validate_value"]


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


_Number = Annotated[Union[int, float], BeforeValidator(_no_bool)]
_Integer = Annotated[int, BeforeValidator(_no_bool)]
_Texts = Union[StrictStr, list[StrictStr]]

#: What each type accepts, and the words used for it in messages.
_TYPES: dict[str, tuple[Any, str]] = {
    "string": (_Texts, "a string or a list of strings"),
    "text": (_Texts, "a string or a list of strings"),
    "file": (StrictStr, "a path (a string)"),
    "number": (Union[_Number, list[_Number]], "a number or a list of numbers"),
    "integer": (Union[_Integer, list[_Integer]], "an integer or a list of integers"),
    "boolean": (bool, "true or false"),
    "list": (list[Any], "a list"),
    "object": (dict[str, Any], "an object"),
    "json": (Any, "JSON"),
    "any": (Any, "anything"),
}
_READ_AS_JSON = {"list", "object", "json"}
#: What each type is in a JSON schema (a caller is shown the plain form: a string, not
#: "a string or a list of strings", which the rules above still accept)
_JSON_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "text": {"type": "string"},
    "file": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "list": {"type": "array"},
    "object": {"type": "object"},
    "json": {},
    "any": {},
}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(kind: str) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(_TYPES[kind][0])
    return _ADAPTERS[kind]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_value(name: str, spec: InputSpec, value: Any) -> Any:
    """`value` checked (and converted) as input `name` of type `spec.type`."""
    kind = spec.type
    if kind in _READ_AS_JSON and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise FlowValidationError(
                [Problem(f"cannot read {_shown(value)} as {kind}: not JSON ({exc})", field=f"inputs.{name}")]
            ) from None
    try:
        return _adapter(kind).validate_python(value)
    except ValidationError:
        got = type(value).__name__
        raise FlowValidationError(
            [Problem(f"expected {_TYPES[kind][1]} ({kind}), got {got} {_shown(value)}", field=f"inputs.{name}")]
        ) from None


class InputValidator:
    """Checks a run's inputs against a flow's declared `inputs`: defaults filled in,
    values converted by the rules above, unknown and missing names reported together."""

    def __init__(self, declared: Mapping[str, InputSpec]) -> None:
        self.declared = dict(declared)

    def validate(self, given: Mapping[str, Any] | None, *, used: set[str] | None = None) -> dict[str, Any]:
        """The inputs of one run. `used` are the names a flow without declared inputs
        reads in its templates: each must be given."""
        given = dict(given or {})
        problems: list[Problem] = []
        if not self.declared:
            for name in sorted((used or set()) - set(given)):
                problems.append(Problem("missing input used by the flow's templates", field=f"inputs.{name}"))
            if problems:
                raise FlowValidationError(problems)
            return given
        unknown = given.keys() - self.declared.keys()
        for name in sorted(unknown) if unknown else ():
            problems.append(Problem(f"unknown input (the flow takes: {', '.join(self.declared)})", field=f"inputs.{name}"))
        resolved: dict[str, Any] = {}
        for name, spec in self.declared.items():
            value = given.get(name)
            if value is None:
                if spec.default is not None:
                    resolved[name] = spec.default
                elif spec.is_required:
                    why = "given as null" if name in given else "not given"
                    problems.append(Problem(f"missing required input ({why})", field=f"inputs.{name}"))
                else:
                    resolved[name] = None
                continue
            try:
                resolved[name] = validate_value(name, spec, value)
            except FlowValidationError as exc:
                problems.extend(exc.problems)
        if problems:
            raise FlowValidationError(problems)
        return resolved


def json_schema(declared: Mapping[str, InputSpec], *, used: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON schema (an object) of a run's inputs: one property per declared input with
    its description and default, the required ones listed, no others allowed. A flow that
    declares no inputs takes the names its templates use (`used`), each required, of any type."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in declared.items():
        prop = dict(_JSON_SCHEMAS[spec.type])
        if spec.description:
            prop["description"] = spec.description
        elif spec.type == "file":
            prop["description"] = "a file's path"
        if spec.default is not None:
            prop["default"] = spec.default
        properties[name] = prop
        if spec.is_required:
            required.append(name)
    if not declared:
        for name in sorted(used):
            properties[name] = {}
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if declared:
        schema["additionalProperties"] = False
    return schema
