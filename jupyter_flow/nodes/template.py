"""`template`: render Jinja text from upstream outputs."""

from __future__ import annotations

from typing import Any

from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext

__all__ = ["TemplateNode"]


class TemplateConfig(NodeConfig):
    template: Any


class TemplateNode(Node):
    """Output: `{"text": rendered}`. The engine renders `template` like any config field."""

    kind = "template"
    Config = TemplateConfig

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return "renders a text template"

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        value = inputs["template"]
        return {"text": value if isinstance(value, str) else str(value)}
