"""The functions `python` nodes of imported Dify apps call, doing what a Dify node did that
no node kind here does alone: reading a classifier's or parameter extractor's JSON answer,
a list operator, a variable assigner. Each is a plain function of its keyword arguments,
returning a dict (the node's output)."""

from __future__ import annotations

import functools
import json
import mimetypes
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jupyter_flow.dify import conversation
from jupyter_flow.dify.dsl import DIFY_REF

__all__ = ["CodeOutputError", "assign", "check_outputs", "checked_outputs", "classify", "file_fields", "json_body", "JsonBodyError", "list_operator", "parameters"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
#: a file's type as Dify names it, by the start of its media type
_FILE_TYPES = {"image": "image", "audio": "audio", "video": "video", "text": "document", "application": "document"}


def _json_object(text: Any) -> dict[str, Any] | None:
    """The JSON object in a model's answer: the whole answer, a fenced block, or the text
    from its first `{` to its last `}`; None when there is none."""
    if isinstance(text, Mapping):
        return dict(text)
    if not isinstance(text, str):
        return None
    candidates = [text, *_FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _default(kind: str) -> Any:
    if kind == "number":
        return 0
    if kind in ("bool", "boolean"):
        return False
    if kind.startswith("array"):
        return []
    return ""


def _coerce(value: Any, kind: str) -> tuple[Any, bool]:
    """`value` as Dify's parameter type `kind`, and whether it fits."""
    if value is None:
        return _default(kind), False
    if kind == "number":
        if isinstance(value, bool):
            return _default(kind), False
        try:
            number = float(value)
        except (TypeError, ValueError):
            return _default(kind), False
        return (int(number) if number.is_integer() else number), True
    if kind in ("bool", "boolean"):
        if isinstance(value, str):
            return value.strip().lower() in ("true", "yes", "1"), True
        return bool(value), True
    if kind.startswith("array"):
        return (list(value), True) if isinstance(value, (list, tuple)) else ([value], True)
    return (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)), True


def parameters(text: Any, parameters: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The parameters a model extracted (Dify's parameter extractor): each declared
    parameter from the JSON object in `text`, of its type, else its type's empty value;
    `__is_success` (1 or 0) and `__reason` say whether every required one was there."""
    found = _json_object(text)
    out: dict[str, Any] = {}
    missing = []
    for param in parameters:
        name, kind = str(param["name"]), str(param.get("type") or "string")
        value, ok = _coerce((found or {}).get(name), kind)
        out[name] = value
        if not ok and param.get("required"):
            missing.append(name)
    if found is None:
        reason: str | None = "the model's answer holds no JSON object"
    elif missing:
        reason = f"the model's answer lacks {', '.join(missing)}"
    else:
        reason = None
    return {**out, "__is_success": 0 if reason else 1, "__reason": reason}


def classify(text: Any, classes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The class a model chose (Dify's question classifier): the class named in the JSON
    object of `text` (`class_name`, or Dify's `category_name`), else the first class whose
    name the answer holds, else the first class. Output: `class_name`, `class_id`."""
    if not classes:
        return {"class_name": None, "class_id": None}
    found = _json_object(text) or {}
    named = str(found.get("class_name") or found.get("category_name") or "").strip()
    by_name = {str(c["name"]).strip(): c for c in classes}
    chosen = by_name.get(named) or next((c for c in classes if str(c["name"]).strip().lower() == named.lower() and named), None)
    if chosen is None and found.get("category_id") is not None:
        chosen = next((c for c in classes if str(c["id"]) == str(found["category_id"])), None)
    if chosen is None and isinstance(text, str):
        chosen = next((c for c in classes if str(c["name"]).strip() and str(c["name"]).strip() in text), None)
    chosen = chosen or classes[0]
    return {"class_name": chosen["name"], "class_id": str(chosen["id"])}


def _file_attribute(item: Any, key: str) -> Any:
    """An attribute of a file (a path, or a mapping with Dify's file fields)."""
    if isinstance(item, Mapping):
        if key in item:
            return item[key]
        path = str(item.get("path") or item.get("url") or item.get("filename") or "")
    else:
        path = str(item)
    name = os.path.basename(path)
    media = mimetypes.guess_type(name)[0] or ""
    if key == "name":
        return name
    if key == "extension":
        return os.path.splitext(name)[1].lower()
    if key == "mime_type":
        return media
    if key == "type":
        if media in ("application/pdf", "application/msword") or media.startswith(("text/", "application/vnd")):
            return "document"
        return _FILE_TYPES.get(media.split("/")[0], "custom")
    if key == "size":
        try:
            return os.path.getsize(path)
        except OSError:
            return None
    if key == "url":
        return path
    return None


class JsonBodyError(ValueError):
    """An HTTP request's JSON body, its references filled in, is not JSON (Dify refuses it)."""


def json_body(text: Any, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON an http-request node of Dify sends: its body's text, the references filled in,
    read as JSON; JsonBodyError saying where it is not. Output: `body`.

    With `values` (the value of each `{{#node.var#}}` reference of `text`, by its inside),
    the references are filled in here, each as the JSON around it reads it: inside a JSON
    string, the value's text escaped as that string's characters (a quote in it cannot end
    the string and add keys); standing as a whole value, a value that is not text as its
    JSON, and text as it is, which must then be one JSON value (as Dify's runLLMCode sends
    code given as a JSON string). Without `values`, `text` has them filled in already
    (flows imported before)."""
    if not isinstance(text, str):
        return {"body": text}
    if values is not None:
        text = _filled_json(text, values)
    try:
        return {"body": json.loads(text)}
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"the JSON body is not JSON once its references are filled in ({exc.msg} at line {exc.lineno}, "
                            f"column {exc.colno}): {text[:80]!r}") from None


def _filled_json(text: str, values: Mapping[str, Any]) -> str:
    """`text` with each reference filled in as `json_body` says, the JSON read as it goes
    (only where strings begin and end matters)."""
    out: list[str] = []
    in_string = escaped = False
    end = 0
    for match in DIFY_REF.finditer(text):
        piece = text[end:match.start()]
        for char in piece:
            if escaped:
                escaped = False
            elif char == "\\" and in_string:
                escaped = True
            elif char == '"':
                in_string = not in_string
        out.append(piece)
        inside = match.group(1).strip()
        value = values.get(inside)
        if in_string:
            out.append(json.dumps(_text_of(value), ensure_ascii=False)[1:-1])
        elif isinstance(value, str):
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                raise JsonBodyError(f"the JSON body is not JSON once its references are filled in: {{{{#{inside}#}}}} stands as a "
                                    f"whole value, so its text must be one JSON value ({exc.msg}): {value[:80]!r}") from None
            out.append(value)
        else:
            out.append(json.dumps(value, ensure_ascii=False, default=str))
        end = match.end()
    out.append(text[end:])
    return "".join(out)


def _text_of(value: Any) -> str:
    """A value as Dify writes it into text: text as it is, nothing as '', lists and objects as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def file_fields(files: Mapping[str, Any]) -> dict[str, Any]:
    """Each file of `files` (a path, or a mapping with Dify's fields) as Dify's file object:
    name, size, type, extension, mime_type, transfer_method, url, related_id. Output: the
    object of each by name (None for none given)."""
    out: dict[str, Any] = {}
    for name, item in files.items():
        if item is None or item == "":
            out[name] = None
            continue
        fields = {key: _file_attribute(item, key) for key in ("name", "size", "type", "extension", "mime_type", "url")}
        given = dict(item) if isinstance(item, Mapping) else {}
        out[name] = {**fields, "transfer_method": given.get("transfer_method", "local_file"), "related_id": given.get("related_id")}
    return out


def _compare(value: Any, op: str, expected: Any) -> bool:
    if op in ("contains", "not contains"):
        held = value is not None and expected in value
        return held if op == "contains" else not held
    if op == "start with":
        return isinstance(value, str) and value.startswith(str(expected))
    if op == "end with":
        return isinstance(value, str) and value.endswith(str(expected))
    if op in ("is", "="):
        return bool(value == expected or str(value) == str(expected))
    if op in ("is not", "≠"):
        return not (value == expected or str(value) == str(expected))
    if op in ("in", "not in"):
        options = expected if isinstance(expected, (list, tuple)) else [expected]
        held = value in options
        return held if op == "in" else not held
    if op == "all of":
        return isinstance(value, (list, tuple)) and all(e in value for e in (expected or []))
    if op in ("empty", "not empty"):
        return (not value) == (op == "empty")
    if op in (">", "<", "≥", "≤"):
        try:
            left, right = float(value), float(expected)
        except (TypeError, ValueError):
            return False
        return {">": left > right, "<": left < right, "≥": left >= right, "≤": left <= right}[op]
    raise ValueError(f"unknown comparison {op!r}")


def list_operator(items: Any, conditions: Sequence[Mapping[str, Any]] = (), order_by: str | None = None,
                  descending: bool = False, limit: int | None = None, take: int | None = None) -> dict[str, Any]:
    """Dify's list operator: the items for which every condition holds (`key` names a
    file's attribute: type, extension, name, mime_type, size), sorted by `order_by` (an
    attribute, or '' for the items themselves), the first `limit`, or only item `take`
    (counted from 1). Output: `result`, `first_record`, `last_record`."""
    values = list(items or []) if not isinstance(items, (str, bytes, Mapping)) else [items]
    for cond in conditions:
        key, op, expected = cond.get("key"), str(cond.get("comparison_operator")), cond.get("value")
        values = [v for v in values if _compare(_file_attribute(v, str(key)) if key else v, op, expected)]
    if order_by is not None:
        values.sort(key=lambda v: str(_file_attribute(v, order_by) if order_by else v), reverse=descending)
    if take:
        values = values[take - 1:take]
    if limit is not None:
        values = values[:limit]
    return {"result": values, "first_record": values[0] if values else None, "last_record": values[-1] if values else None}


#: Dify's output types of code nodes and what each accepts (None is accepted for every one)
_OUTPUT_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array[string]": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "array[number]": lambda v: isinstance(v, list) and all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in v),
    "array[boolean]": lambda v: isinstance(v, list) and all(isinstance(i, bool) for i in v),
    "array[object]": lambda v: isinstance(v, list) and all(isinstance(i, dict) for i in v),
}


class CodeOutputError(ValueError):
    """What a Dify code node's `main` returned is not what it declares."""


class _Checked:
    """`main` of an imported code node, whose answer is checked as Dify checks it."""

    def __init__(self, fn: Callable[..., Any], declared: Mapping[str, str]) -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.declared = fn, dict(declared)
        self.__code__ = fn.__code__  # the node cache keys on the code of the function a node calls

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return check_outputs(self.fn(*args, **kwargs), self.declared)


def check_outputs(result: Any, declared: Mapping[str, str]) -> dict[str, Any]:
    """`result` when it is what a Dify code node declares: a dict with each declared output
    (None allowed) of its type, and no other; CodeOutputError naming the output otherwise."""
    if not isinstance(result, dict):
        raise CodeOutputError(f"main returned {type(result).__name__}; a Dify code node returns a dict of its outputs "
                              f"({', '.join(declared)})")
    missing = [name for name in declared if name not in result]
    if missing:
        raise CodeOutputError(f"main returned no {', '.join(map(repr, missing))}: the code node declares it as an output")
    extra = [name for name in result if name not in declared]
    if extra:
        raise CodeOutputError(f"main returned {', '.join(map(repr, extra))}, which the code node does not declare "
                              f"(it declares {', '.join(map(repr, declared))})")
    for name, kind in declared.items():
        value, check = result[name], _OUTPUT_TYPES.get(kind)
        if value is not None and check is not None and not check(value):
            raise CodeOutputError(f"output {name!r} is {type(value).__name__} ({str(value)[:60]!r}); the code node declares {kind}")
    return result


def checked_outputs(fn: Callable[..., Any], declared: Mapping[str, str]) -> Callable[..., Any]:
    """`fn` (a code node's `main`) answering only as Dify's code node allows (`check_outputs`)."""
    return _Checked(fn, declared)


def _cleared(current: Any) -> Any:
    if isinstance(current, list):
        return []
    if isinstance(current, dict):
        return {}
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        return 0
    return ""


def assign(items: Sequence[Mapping[str, Any]], app: str | None = None, conversation_id: Any = None,
           keep: Sequence[str] = ()) -> dict[str, Any]:
    """The values Dify's variable assigner writes: each item's `variable` gets its
    `operation` (over-write, set, clear, append, extend, +=, -=, *=, /=, remove-first,
    remove-last) of its `current` value and `value`. Output: the new value by name. The
    names in `keep` (conversation variables) are kept for the conversation `conversation_id`
    of `app`, for its next runs (`jupyter_flow.dify.conversation`)."""
    out: dict[str, Any] = {}
    for item in items:
        name, op = str(item["variable"]), str(item.get("operation") or "over-write")
        current, value = out.get(name, item.get("current")), item.get("value")
        if op in ("over-write", "set"):
            new = value
        elif op == "clear":
            new = _cleared(current)
        elif op == "append":
            new = [*(current or []), value]
        elif op == "extend":
            new = [*(current or []), *(value or [])]
        elif op in ("+=", "-=", "*=", "/="):
            left, right = float(current or 0), float(value or 0)
            result = {"+=": left + right, "-=": left - right, "*=": left * right, "/=": left / right if right else left}[op]
            new = int(result) if result.is_integer() else result
        elif op == "remove-first":
            new = list(current or [])[1:]
        elif op == "remove-last":
            new = list(current or [])[:-1]
        else:
            raise ValueError(f"variable {name!r}: unknown operation {op!r}")
        out[name] = new
    if keep and app is not None:
        conversation.save(app, conversation_id, out, keep)
    return out
