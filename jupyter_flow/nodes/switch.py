"""`switch`: pick a branch by condition; edges with `branch: NAME` follow the choice."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from jupyter_flow.expressions import is_template
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext

__all__ = ["SwitchNode"]


class SwitchConfig(NodeConfig):
    cases: dict[str, Any]
    default: str = "default"

    @field_validator("cases")
    @classmethod
    def _conditions(cls, cases: dict[str, Any]) -> dict[str, Any]:
        if not cases:
            raise ValueError("needs at least one case")
        for name, cond in cases.items():
            if not (isinstance(cond, bool) or is_template(cond)):
                raise ValueError(
                    f"case {name!r} must be a condition in braces, e.g. \"{{{{ risk.output.level == 'high' }}}}\""
                )
        return cases

    @property
    def branches(self) -> list[str]:
        return [*self.cases, self.default]


class SwitchNode(Node):
    """Cases are tried in order; the first true one wins, else `default`.
    Output: `{"branch": name, "matched": [every true case]}`."""

    kind = "switch"
    Config = SwitchConfig
    config: SwitchConfig

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        matched = [name for name, value in inputs["cases"].items() if value]
        return {"branch": matched[0] if matched else inputs.get("default", "default"), "matched": matched}

    def branches(self) -> list[str]:
        return self.config.branches
