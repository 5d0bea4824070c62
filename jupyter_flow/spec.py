"""The flow file: FlowSpec, NodeSpec, EdgeSpec, loading and dumping.

Specs are frozen pydantic models with `extra="forbid"`, so a typo in a flow file is an
error that names the node and field instead of a setting silently ignored. The Dify-style
seed format loads as is: a node without `type` whose `config` has `endpoint` is an `http`
node, and an edge from `start` marks an entry node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jupyter_flow.errors import FlowFileError, FlowValidationError, Problem

__all__ = [
    "START",
    "EdgeSpec",
    "FlowSpec",
    "InputSpec",
    "NodeSpec",
    "Position",
    "RetrySpec",
    "VariantSpec",
    "dump_spec",
    "load_spec",
    "spec_from_dict",
]

#: The pseudo-node an edge starts from to mark an entry node (the seed format's `start`).
START = "start"

SPEC_VERSION = 1
_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

InputType = Literal["string", "text", "number", "integer", "boolean", "file", "json", "list", "object", "any"]
OnError = Literal["fail", "continue", "default"]
PathLike = Union[str, Path]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class InputSpec(_Spec):
    """One flow input, referenced in templates as `{{name}}` or `{{inputs.name}}`."""

    type: InputType = "string"
    default: Any = None
    description: str | None = None
    required: bool | None = None

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


class RetrySpec(_Spec):
    """Retry a failed attempt: `max_attempts` in all, waiting `backoff_s * 2**(n-1)` between."""

    max_attempts: int = Field(1, ge=1, le=100)
    backoff_s: float = Field(0.0, ge=0)
    multiplier: float = Field(2.0, ge=1)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.backoff_s * self.multiplier ** (attempt - 1)


class VariantSpec(_Spec):
    """A canary variant of a node: `config` is merged over the node's config."""

    id: str
    weight: float = Field(1.0, ge=0)
    config: dict[str, Any] = Field(default_factory=dict)


class NodeSpec(_Spec):
    id: str
    type: str
    title: str | None = None
    description: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySpec | None = None
    timeout_s: float | None = Field(None, gt=0)
    on_error: OnError = "fail"
    default: Any = None
    variants: list[VariantSpec] = Field(default_factory=list)
    variant_key: str | None = None
    shadow: bool = False

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        # The seed (Dify-style) format has no `type`: an `endpoint` makes it an http node.
        if isinstance(data, Mapping) and not data.get("type"):
            config = data.get("config")
            if isinstance(config, Mapping) and "endpoint" in config:
                data = {**data, "type": "http"}
        return data

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if value == START:
            raise ValueError(f"'{START}' is reserved for edges that mark entry nodes")
        if not _ID.match(value):
            raise ValueError(
                f"node id {value!r} is not usable in templates: use letters, digits and "
                "underscores, starting with a letter"
            )
        return value


class EdgeSpec(_Spec):
    """An edge. `when` makes it conditional; `on: error` makes it an error edge;
    `branch` takes it only when the source (a `switch`) chose that branch."""

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    when: str | None = None
    on: Literal["success", "error"] = "success"
    branch: str | None = None
    label: str | None = None

    def describe(self) -> str:
        return f"{self.source} -> {self.target}"


class Position(_Spec):
    x: float
    y: float


class FlowSpec(_Spec):
    spec_version: Literal[1] = SPEC_VERSION
    name: str = "flow"
    description: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    nodes: list[NodeSpec]
    edges: list[EdgeSpec] = Field(default_factory=list)
    layout: dict[str, Position] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0)
    max_concurrency: int | None = Field(None, ge=1)

    def node(self, node_id: str) -> NodeSpec:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)


def _locate(data: Any, loc: tuple[Any, ...]) -> tuple[str | None, int | None, str]:
    """Turn a pydantic error location into (node id, edge index, dotted field)."""
    node: str | None = None
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "nodes" and isinstance(parts[1], int):
        try:
            node = str(data["nodes"][parts[1]]["id"])
        except (KeyError, IndexError, TypeError):
            node = f"#{parts[1] + 1}"
        parts = parts[2:]
    elif len(parts) >= 2 and parts[0] == "edges" and isinstance(parts[1], int):
        return None, parts[1], ".".join(str(p) for p in parts[2:] if not str(p).startswith("function-"))
    field = ".".join(str(p) for p in parts if not str(p).startswith("function-"))
    return node, None, field


def spec_from_dict(data: Any, *, source: str | None = None) -> FlowSpec:
    """Validate a plain dict (parsed YAML/JSON) into a FlowSpec, or raise FlowValidationError."""
    if not isinstance(data, Mapping):
        raise FlowValidationError(
            f"a flow must be a mapping with 'nodes' and 'edges', got {type(data).__name__}", source=source
        )
    try:
        return FlowSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            node, edge, field = _locate(data, tuple(err["loc"]))
            message = err["msg"]
            if err["type"] == "missing" and field.endswith("type"):
                message = "has no 'type' (and no 'config.endpoint' to make it an http node)"
            elif err["type"] == "extra_forbidden":
                message = "unknown field"
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            problems.append(Problem(message, node=node, field=field or None, edge=edge))
        raise FlowValidationError(problems, source=source) from None


def _parse(text: str, source: str, as_json: bool) -> Any:
    if as_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise FlowFileError(exc.msg, source=source, line=exc.lineno, column=exc.colno) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is not None:
            raise FlowFileError(problem, source=source, line=mark.line + 1, column=mark.column + 1) from None
        raise FlowFileError(problem, source=source) from None


def load_spec(path: PathLike) -> FlowSpec:
    """Read a `.flow.yaml`, `.flow.yml` or `.flow.json` file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowFileError("no such file", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowFileError(f"cannot read: {exc}", source=source) from None
    return spec_from_dict(_parse(text, source, path.suffix.lower() == ".json"), source=source)


def parse_spec_text(text: str, *, source: str = "<text>", as_json: bool = False) -> FlowSpec:
    """Parse flow text (YAML, or JSON which is YAML too) into a FlowSpec."""
    return spec_from_dict(_parse(text, source, as_json), source=source)


def spec_to_dict(spec: FlowSpec) -> dict[str, Any]:
    """A plain dict of the spec, without defaulted fields, `spec_version` first."""
    body = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    body.pop("spec_version", None)
    return {"spec_version": spec.spec_version, **body}


def dump_spec(spec: FlowSpec, path: PathLike | None = None) -> str:
    """Serialize to YAML (or JSON for a `.json` path); write it when `path` is given."""
    data = spec_to_dict(spec)
    as_json = path is not None and str(path).lower().endswith(".json")
    text = (
        json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        if as_json
        else yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    )
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
