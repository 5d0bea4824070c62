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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jupyter_flow.atomic import read_bounded, write_atomic
from jupyter_flow.errors import FlowFileError, FlowValidationError, Problem
from jupyter_flow.graph import START, duplicate_ids, self_edge

__all__ = [
    "START",
    "ActorOptionsSpec",
    "AutoscalingSpec",
    "DeploySpec",
    "EdgeSpec",
    "FlowSpec",
    "InputSpec",
    "NodeSpec",
    "Position",
    "RetrySpec",
    "VariantSpec",
    "YamlProblem",
    "dump_spec",
    "load_spec",
    "spec_from_dict",
    "yaml_problem",
]

SPEC_VERSION: Literal[1] = 1
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: How deep a flow file (or a request body) may nest, and how many values it may hold once
#: YAML aliases are expanded: bounds that keep an alias bomb or a 100,000-deep list from
#: taking the process's memory or stack. A real flow is far inside both.
MAX_DEPTH = 100
MAX_VALUES = 1_000_000

InputType = Literal["string", "text", "number", "integer", "boolean", "file", "json", "list", "object", "any"]
OnError = Literal["fail", "continue", "default"]
PathLike = Union[str, Path]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, ser_json_inf_nan="constants")


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
    #: read from and written to the node cache when a run uses one; `cache: false` for a
    #: node whose effects matter (it sends, writes, charges): it then runs every time
    cache: bool = True

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
        if not _ID.fullmatch(value):
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


class AutoscalingSpec(BaseModel):
    """How many replicas a served node may scale between. Ray Serve's other autoscaling
    settings (`target_ongoing_requests`, delays, smoothing...) pass through as given."""

    model_config = ConfigDict(frozen=True, extra="allow")

    min_replicas: int | None = Field(None, ge=0)
    max_replicas: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check_range(self) -> AutoscalingSpec:
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is more than max_replicas ({self.max_replicas})")
        return self


class ActorOptionsSpec(_Spec):
    """The resources one replica of a served node asks for (`memory` in bytes)."""

    num_gpus: float | None = Field(None, ge=0)
    num_cpus: float | None = Field(None, ge=0)
    memory: int | None = Field(None, gt=0)


class DeploySpec(_Spec):
    """How a node is deployed when it is served beyond one process (Ray Serve, KServe):
    a fixed `num_replicas` or an `autoscaling_config`, and each replica's resources."""

    num_replicas: int | None = Field(None, ge=1)
    autoscaling_config: AutoscalingSpec | None = None
    ray_actor_options: ActorOptionsSpec | None = None

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> DeploySpec:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("give num_replicas or autoscaling_config, not both")
        return self


class FlowSpec(_Spec):
    spec_version: Literal[1] = SPEC_VERSION
    name: str = "flow"
    description: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    #: what a run answers with, by name: each a template over inputs and node results
    outputs: dict[str, Any] = Field(default_factory=dict)
    nodes: list[NodeSpec]
    edges: list[EdgeSpec] = Field(default_factory=list)
    layout: dict[str, Position] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0)
    max_concurrency: int | None = Field(None, ge=1)
    #: how served nodes are deployed beyond one process, by node id (`DeploySpec`)
    deploy: dict[str, DeploySpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _deploy_names_nodes(self) -> FlowSpec:
        ids = {node.id for node in self.nodes}
        unknown = [key for key in self.deploy if key not in ids]
        if unknown:
            raise ValueError(f"deploy: no node {', '.join(map(repr, unknown))} in this flow (nodes: {', '.join(sorted(ids))})")
        return self

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
            if not node.isprintable():  # shown on one line: "a\\n", not a broken line
                node = node.encode("unicode_escape").decode("ascii")
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
        problems = _raw_graph_problems(data)
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


def _raw_graph_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Duplicate ids and self-edges read off the raw data, so that they are reported
    together with the field errors that keep the spec from being built."""
    nodes = data.get("nodes")
    ids = [n["id"] for n in nodes if isinstance(n, Mapping) and isinstance(n.get("id"), str)] if isinstance(nodes, list) else []
    problems = duplicate_ids(ids)
    edges = data.get("edges")
    for i, edge in enumerate(edges if isinstance(edges, list) else []):
        if isinstance(edge, Mapping) and isinstance(edge.get("from"), str):
            problem = self_edge(i, edge["from"], edge.get("to"))
            if problem is not None:
                problems.append(problem)
    return problems


def check_document(data: Any, *, source: str, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> None:
    """Refuse data nested deeper than `max_depth` or holding more than `max_values` values
    once shared parts (YAML aliases) are counted at each place they appear. Linear in the
    distinct objects, without recursion, so it is safe on the data it refuses."""
    sizes: dict[int, tuple[int, int]] = {}  # id -> (values, depth), for finished containers
    stack: list[tuple[Any, bool]] = [(data, False)]
    open_ids: set[int] = set()
    while stack:
        obj, done = stack.pop()
        if not isinstance(obj, (dict, list)):
            continue
        key = id(obj)
        children = list(obj.values()) if isinstance(obj, dict) else obj
        if done:
            open_ids.discard(key)
            values, depth = 1, 1
            for child in children:
                if isinstance(child, (dict, list)):
                    n, d = sizes[id(child)]
                    values, depth = values + n, max(depth, d + 1)
                else:
                    values += 1
            if depth > max_depth:
                raise FlowFileError(f"nested more than {max_depth} levels deep", source=source)
            if values > max_values:
                raise FlowFileError(
                    f"holds more than {max_values:,} values once its aliases (*name) are expanded", source=source
                )
            sizes[key] = (values, depth)
            continue
        if key in sizes:
            continue
        if key in open_ids:
            raise FlowFileError("an alias (*name) refers to a value that contains it", source=source)
        if len(open_ids) >= max_depth:
            raise FlowFileError(f"nested more than {max_depth} levels deep", source=source)
        open_ids.add(key)
        stack.append((obj, True))
        stack.extend((child, False) for child in children if isinstance(child, (dict, list)) and id(child) not in sizes)


@dataclass(frozen=True)
class YamlProblem:
    """What a YAML parser said went wrong, and where: the 1-based `line` and `column`
    (None when it names no place)."""

    message: str
    line: int | None = None
    column: int | None = None

    @property
    def place(self) -> str:
        """`line L, column C`, or "" when the error names no place."""
        return f"line {self.line}, column {self.column}" if self.line is not None else ""


def yaml_problem(exc: yaml.YAMLError) -> YamlProblem:
    """A YAML error as a YamlProblem: the place of its problem, else of its context (the
    construct it was reading); every reader of YAML in the package reports through this."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return YamlProblem(str(exc))
    message = exc.problem or exc.context or str(exc)
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return YamlProblem(message)
    return YamlProblem(message, mark.line + 1, mark.column + 1)


class _FlowLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML itself would
    keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key_node.value!r} is given twice in one mapping", key_node.start_mark
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in pairs:
        if key in body:
            raise ValueError(f"key {key!r} is given twice in one object")
        body[key] = value
    return body


def parse_json(text: str | bytes, *, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """JSON as a flow file or a request body: a BOM is skipped, a key given twice, nesting
    deeper than `max_depth` and non-JSON are FlowFileErrors naming the place."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FlowFileError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source) from None
    try:
        data = json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise FlowFileError(exc.msg, source=source, line=exc.lineno, column=exc.colno) from None
    except ValueError as exc:
        raise FlowFileError(str(exc), source=source) from None
    except RecursionError:
        raise FlowFileError(f"nested more than {max_depth} levels deep", source=source) from None
    check_document(data, source=source, max_depth=max_depth)
    return data


def _bracket_depth(text: str) -> int:
    """The deepest nesting of brackets and braces, strings not told apart: an upper bound
    of a flow-style YAML document's depth, found in one pass."""
    depth = deepest = 0
    for match in re.finditer(r"[\[\]{}]", text):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


def _parse(text: str, source: str, as_json: bool) -> Any:
    if as_json:
        return parse_json(text, source=source)
    if _bracket_depth(text) > 10 * MAX_DEPTH:  # YAML's scanner takes quadratic time on these
        raise FlowFileError(f"nested more than {MAX_DEPTH} levels deep", source=source)
    try:
        data = yaml.load(text.removeprefix("\ufeff"), Loader=_FlowLoader)  # noqa: S506 (a safe loader)
    except RecursionError:
        raise FlowFileError(f"nested more than {MAX_DEPTH} levels deep", source=source) from None
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc)
        raise FlowFileError(problem.message, source=source, line=problem.line, column=problem.column) from None
    check_document(data, source=source)
    return data


def load_spec(path: PathLike) -> FlowSpec:
    """Read a `.flow.yaml`, `.flow.yml` or `.flow.json` file."""
    path = Path(path)
    source = str(path)
    try:
        text = read_bounded(path).decode("utf-8-sig")
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
    """Serialize to YAML (or JSON for a `.json` path); write it when `path` is given, whole
    or not at all (`jupyter_flow.atomic.write_atomic`: a crash or a full disk leaves the old
    file as it was, and a watching `serve flow` never reads half a flow)."""
    data = spec_to_dict(spec)
    as_json = path is not None and str(path).lower().endswith(".json")
    text = (
        json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        if as_json
        else yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    )
    if path is not None:
        write_atomic(path, text)
    return text
