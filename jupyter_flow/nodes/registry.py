"""The registry of node kinds, filled lazily from the `jupyter_flow.nodes` entry points.

A package adds a node kind by declaring, in its own pyproject.toml::

    [project.entry-points."jupyter_flow.nodes"]
    my_kind = "my_package.nodes:MyNode"
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from jupyter_flow.nodes.base import Node

__all__ = ["ENTRY_POINT_GROUP", "NodeRegistry", "default_registry"]

ENTRY_POINT_GROUP = "jupyter_flow.nodes"

_BUILTIN = {
    "http": "jupyter_flow.nodes.http:HttpNode",
    "inference": "jupyter_flow.nodes.inference:InferenceNode",
    "python": "jupyter_flow.nodes.python:PythonNode",
    "template": "jupyter_flow.nodes.template:TemplateNode",
    "switch": "jupyter_flow.nodes.switch:SwitchNode",
    "vote": "jupyter_flow.nodes.vote:VoteNode",
    "torch": "jupyter_flow.nodes.torch_model:TorchNode",
    "transformers": "jupyter_flow.nodes.transformers_model:TransformersNode",
    "pdf": "jupyter_flow.nodes.pdf:PdfNode",
    "rules": "jupyter_flow.nodes.rules:RulesNode",
    "report": "jupyter_flow.nodes.report:ReportNode",
    "llm": "jupyter_flow.nodes.llm:LlmNode",
    "coalesce": "jupyter_flow.nodes.coalesce:CoalesceNode",
    "placeholder": "jupyter_flow.nodes.placeholder:PlaceholderNode",
    "tool": "jupyter_flow.nodes.tool:ToolNode",
    "agent": "jupyter_flow.nodes.agent:AgentNode",
    "map": "jupyter_flow.nodes.map:MapNode",
}


def _load(target: str) -> type[Node]:
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise TypeError(f"{target} is not a jupyter_flow Node subclass")
    return cls


class NodeRegistry:
    """Node kinds by name: the built-in ones, entry points, and ones added at run time."""

    def __init__(self, *, entry_points_group: str | None = ENTRY_POINT_GROUP) -> None:
        self._targets: dict[str, str] = dict(_BUILTIN)
        self._classes: dict[str, type[Node]] = {}
        self._group = entry_points_group
        self._scanned = entry_points_group is None

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        if self._group is None:
            return
        for ep in entry_points(group=self._group):
            self._targets.setdefault(ep.name, ep.value)

    def register(self, cls: type[Node], name: str | None = None) -> type[Node]:
        """Add a node kind (usable as a class decorator)."""
        name = name or cls.kind
        if not name:
            raise ValueError(f"{cls.__name__} has no `kind`")
        self._classes[name] = cls
        return cls

    def kinds(self) -> list[str]:
        self._scan()
        return sorted(set(self._targets) | set(self._classes))

    def __contains__(self, name: str) -> bool:
        self._scan()
        return name in self._classes or name in self._targets

    def get(self, name: str) -> type[Node]:
        """The class of a node kind; KeyError names the known kinds."""
        if name in self._classes:
            return self._classes[name]
        self._scan()
        if name not in self._targets:
            raise KeyError(f"unknown node type {name!r} (known: {', '.join(self.kinds())})")
        cls = _load(self._targets[name])
        self._classes[name] = cls
        return cls


@lru_cache(maxsize=1)
def default_registry() -> NodeRegistry:
    """The process-wide registry, created on first use."""
    return NodeRegistry()
