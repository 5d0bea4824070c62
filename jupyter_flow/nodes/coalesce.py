"""`coalesce`: the first of several values that is there, for joining branches.

After a `switch`, only one branch runs; a node downstream of all of them names each
branch's value in `values`, and gets the one from the branch that ran. A value whose node
was skipped reads as nothing when written as
``"{{ a.output.text if a.status == 'ok' else none }}"`` (what a Dify variable aggregator
imports as).
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from jupyter_flow.errors import NodeError
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext

__all__ = ["CoalesceNode"]


class CoalesceConfig(NodeConfig):
    values: list[Any]
    #: give None instead of failing when no value is there
    allow_empty: bool = False

    @field_validator("values")
    @classmethod
    def _some(cls, values: list[Any]) -> list[Any]:
        if not values:
            raise ValueError("needs at least one value, e.g. [\"{{ a.output.text if a.status == 'ok' else none }}\"]")
        return values


class CoalesceNode(Node):
    """Output: `{"output": the first value that is not None, "index": its position}`."""

    kind = "coalesce"
    Config = CoalesceConfig
    config: CoalesceConfig

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"the first of {len(self.config.values)} values that is there"

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        for index, value in enumerate(inputs["values"]):
            if value is not None:
                return {"output": value, "index": index}
        if self.config.allow_empty:
            return {"output": None, "index": None}
        raise NodeError("none of its values is there (every branch they come from was skipped)", node=self.id, retryable=False)
