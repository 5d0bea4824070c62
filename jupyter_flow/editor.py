"""Edits of a flow spec with undo: every edit is validated, a bad one changes nothing.

The notebook workbench and the JupyterLab file view (through `jupyter_flow.edits`) edit
flows with this one editor, so both refuse the same edits for the same reasons.

An edit builds the new flow as a plain dict and validates it with the FlowSpec model, then
checks the graph's shape (ids, edges, cycles). If either fails, `FlowValidationError` is
raised and the last good spec stays. Problems that do not break the graph (a template that
names a node that is not wired yet, a missing config field) are kept: the workbench shows
them on the node until they are fixed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.graph import check_graph
from jupyter_flow.nodes.registry import NodeRegistry, default_registry
from jupyter_flow.spec import MAX_DEPTH, FlowSpec, check_document, spec_from_dict, spec_to_dict, yaml_problem

__all__ = [
    "FlowEditor",
    "config_fields",
    "config_template",
    "graph_problems",
    "new_node_config",
    "new_node_id",
    "parse_yaml",
]

HISTORY_LIMIT = 200
_SETTINGS_KEYS = ("name", "description", "inputs", "timeout_s", "max_concurrency")


def parse_yaml(text: str, *, what: str) -> Any:
    """Parse YAML typed into the workbench; a syntax error names the line. Nesting and
    aliases are bounded as in a flow file (an alias bomb is refused, not expanded)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc)
        where = f" ({problem.place})" if problem.place else ""
        raise FlowValidationError([Problem(f"the YAML does not parse{where}: {problem.message}", field=what)]) from None
    except RecursionError:
        raise FlowValidationError([Problem(f"the YAML nests more than {MAX_DEPTH} levels deep", field=what)]) from None
    check_document(data, source=what)
    return data


def graph_problems(spec: FlowSpec) -> list[Problem]:
    """What makes a spec unusable as a graph (`jupyter_flow.graph.check_graph`, the same
    rules as validate and run)."""
    return check_graph(spec).problems


def _key(problem: Problem) -> tuple[str, str | None, str | None]:
    # edge indices shift when an earlier edge goes; the message names the edge's ends
    return (problem.message, problem.node, problem.field)


def new_node_id(kind: str, taken: set[str]) -> str:
    """`kind_1`, `kind_2`, ... whichever is free (a usable template name)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", kind) or "node"
    if not base[0].isalpha():
        base = f"n_{base}"
    n = 1
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def config_fields(config_model: Any) -> list[tuple[str, str, bool, Any]]:
    """(name, type, required, default) of each field of a node kind's Config model."""
    out = []
    for name, field in getattr(config_model, "model_fields", {}).items():
        annotation = field.annotation
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        out.append((name, type_name, field.is_required(), default))
    return out


def config_template(config_model: Any) -> dict[str, Any]:
    """A starting config for a new node: each required field with an empty value of its type."""
    out: dict[str, Any] = {}
    for name, type_name, required, _default in config_fields(config_model):
        if not required:
            continue
        low = type_name.lower()
        out[name] = {} if low.startswith("dict") else [] if low.startswith("list") else ""
    return out


def new_node_config(kind: str, registry: NodeRegistry | None = None) -> dict[str, Any]:
    """The config a new node of `kind` starts with: its required fields, empty (nothing for
    a kind the registry does not know or cannot import: the node then shows that problem)."""
    try:
        return config_template((registry or default_registry()).get(kind).Config)
    except (KeyError, ImportError, AttributeError, TypeError):
        return {}


class FlowEditor:
    """The flow being edited, the undo history, and one method per kind of edit."""

    def __init__(self, spec: FlowSpec) -> None:
        self.spec = spec
        self._history: list[tuple[FlowSpec, str]] = []

    # -- the one way a spec changes ------------------------------------------------
    def apply(self, data: Mapping[str, Any], what: str) -> FlowSpec:
        """Validate `data` as the new flow; keep it (undoably) or raise and keep the old one."""
        spec = spec_from_dict(data)
        # An edit may not break the graph, but a flow opened with a graph problem (say an
        # edge given twice) can still be edited, so that the problem can be fixed.
        before = {_key(p) for p in graph_problems(self.spec)}
        problems = [p for p in graph_problems(spec) if _key(p) not in before]
        if problems:
            raise FlowValidationError(problems)
        if spec == self.spec:
            return spec
        self._history.append((self.spec, what))
        del self._history[:-HISTORY_LIMIT]
        self.spec = spec
        return spec

    def data(self) -> dict[str, Any]:
        return spec_to_dict(self.spec)

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    @property
    def last_edit(self) -> str | None:
        return self._history[-1][1] if self._history else None

    def undo(self) -> str | None:
        """Go back one edit; returns what was undone (None when there is nothing to undo)."""
        if not self._history:
            return None
        self.spec, what = self._history.pop()
        return what

    def reset(self, spec: FlowSpec) -> None:
        """Start over on another flow (opening a file); the history goes."""
        self.spec = spec
        self._history.clear()

    # -- nodes ------------------------------------------------------------------------
    def node_ids(self) -> list[str]:
        return [n.id for n in self.spec.nodes]

    def add_node(
        self,
        kind: str,
        node_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        position: tuple[float, float] | None = None,
        **fields: Any,
    ) -> str:
        node_id = node_id or new_node_id(kind, set(self.node_ids()))
        data = self.data()
        data["nodes"] = [*data.get("nodes", []), {"id": node_id, "type": kind, "config": dict(config or {}), **fields}]
        if position is not None:
            data.setdefault("layout", {})[node_id] = {"x": float(position[0]), "y": float(position[1])}
        self.apply(data, f"add node {node_id}")
        return node_id

    def remove_node(self, node_id: str) -> None:
        self._need_node(node_id)
        data = self.data()
        data["nodes"] = [n for n in data["nodes"] if n["id"] != node_id]
        data["edges"] = [e for e in data.get("edges", []) if node_id not in (e["from"], e["to"])]
        data.get("layout", {}).pop(node_id, None)
        self.apply(data, f"delete node {node_id}")

    def replace_node(self, node_id: str, body: Mapping[str, Any] | str) -> str:
        """Replace a node's settings (a dict, or YAML text as typed in the editor). A new
        `id` renames the node: its edges and position follow."""
        self._need_node(node_id)
        if isinstance(body, str):
            body = parse_yaml(body, what=f"node {node_id}")
        if not isinstance(body, Mapping):
            raise FlowValidationError([Problem("the settings must be a mapping (id, type, config, ...)", node=node_id)])
        new = {"id": node_id, **dict(body)}
        new_id = str(new["id"])
        data = self.data()
        if new_id != node_id and new_id in self.node_ids():
            raise FlowValidationError([Problem(f"cannot rename to '{new_id}': a node with this id exists", node=node_id, field="id")])
        data["nodes"] = [new if n["id"] == node_id else n for n in data["nodes"]]
        if new_id != node_id:
            for edge in data.get("edges", []):
                edge["from"] = new_id if edge["from"] == node_id else edge["from"]
                edge["to"] = new_id if edge["to"] == node_id else edge["to"]
            layout = data.get("layout", {})
            if node_id in layout:
                layout[new_id] = layout.pop(node_id)
        self.apply(data, f"edit node {node_id}")
        return new_id

    def move(self, node_id: str, x: float, y: float) -> bool:
        """Keep a node's position in the layout; False when it did not move."""
        self._need_node(node_id)
        old = self.spec.layout.get(node_id)
        if old is not None and abs(old.x - x) < 0.5 and abs(old.y - y) < 0.5:
            return False
        data = self.data()
        data.setdefault("layout", {})[node_id] = {"x": round(float(x), 1), "y": round(float(y), 1)}
        self.apply(data, f"move {node_id}")
        return True

    def set_layout(self, positions: Mapping[str, tuple[float, float]]) -> None:
        """Fill in positions for nodes that have none (not an undoable edit of its own)."""
        missing = {k: v for k, v in positions.items() if k not in self.spec.layout}
        if not missing:
            return
        data = self.data()
        layout = data.setdefault("layout", {})
        for node_id, (x, y) in missing.items():
            layout[node_id] = {"x": float(x), "y": float(y)}
        self.spec = spec_from_dict(data)

    # -- edges ------------------------------------------------------------------------
    def add_edge(self, source: str, target: str, **fields: Any) -> int:
        data = self.data()
        data["edges"] = [*data.get("edges", []), {"from": source, "to": target, **fields}]
        self.apply(data, f"wire {source} -> {target}")
        return len(self.spec.edges) - 1

    def edge_index(self, source: str, target: str) -> int:
        for i, edge in enumerate(self.spec.edges):
            if edge.source == source and edge.target == target:
                return i
        raise FlowValidationError([Problem(f"no edge {source} -> {target}", field="edges")])

    def remove_edge(self, index: int) -> None:
        edge = self._need_edge(index)
        data = self.data()
        del data["edges"][index]
        self.apply(data, f"delete edge {edge.describe()}")

    def replace_edge(self, index: int, body: Mapping[str, Any] | str) -> None:
        """Replace an edge's settings (`when`, `branch`, `on`, `label`; `from`/`to` kept
        unless given)."""
        edge = self._need_edge(index)
        if isinstance(body, str):
            body = parse_yaml(body, what=f"edge {edge.describe()}")
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise FlowValidationError([Problem("the edge settings must be a mapping (when, branch, on, label)", edge=index)])
        data = self.data()
        data["edges"][index] = {"from": edge.source, "to": edge.target, **dict(body)}
        self.apply(data, f"edit edge {edge.describe()}")

    # -- flow-level settings -----------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Name, description, inputs, timeout_s, max_concurrency as set now."""
        data = self.data()
        return {k: data[k] for k in _SETTINGS_KEYS if k in data}

    def replace_settings(self, body: Mapping[str, Any] | str) -> None:
        parsed: Any = parse_yaml(body, what="flow settings") if isinstance(body, str) else body
        if parsed is not None and not isinstance(parsed, Mapping):
            raise FlowValidationError([Problem("the flow settings must be a mapping", field="settings")])
        body = dict(parsed or {})
        extra = sorted(set(body) - set(_SETTINGS_KEYS))
        if extra:
            raise FlowValidationError([Problem(f"not a flow setting here (use: {', '.join(_SETTINGS_KEYS)}); nodes and edges are edited on the graph", field=k) for k in extra])
        data = {k: v for k, v in self.data().items() if k not in _SETTINGS_KEYS}
        self.apply({**data, **body}, "edit flow settings")

    # -- helpers ------------------------------------------------------------------------
    def _need_node(self, node_id: str) -> None:
        if node_id not in self.node_ids():
            raise FlowValidationError([Problem(f"no node '{node_id}' (nodes: {', '.join(self.node_ids()) or 'none'})", field="nodes")])

    def _need_edge(self, index: int) -> Any:
        if not 0 <= index < len(self.spec.edges):
            raise FlowValidationError([Problem(f"no edge number {index}", field="edges")])
        return self.spec.edges[index]
