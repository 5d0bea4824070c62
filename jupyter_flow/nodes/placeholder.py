"""`placeholder`: stands for a node another tool has and jupyter-flow has not (what an
import with `--partial` makes of such a node)."""

from __future__ import annotations

from typing import Any

from jupyter_flow.errors import Problem
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext

__all__ = ["PlaceholderNode"]


class PlaceholderConfig(NodeConfig):
    source: str = "Dify"
    type: str
    data: dict[str, Any] = {}


class PlaceholderNode(Node):
    """Stands for a node another tool has and jupyter-flow has not; it keeps that node's
    data, and the plan reports it, so the flow does not run until it is replaced."""

    kind = "placeholder"
    palette = False
    Config = PlaceholderConfig
    config: PlaceholderConfig

    def problems(self) -> list[Problem]:
        return [Problem(f"stands for a {self.config.source} '{self.config.type}' node, which jupyter-flow cannot run: "
                        "replace it with a node that does the same", node=self.id, field="type")]

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:  # pragma: no cover - the plan refuses it
        raise NotImplementedError
