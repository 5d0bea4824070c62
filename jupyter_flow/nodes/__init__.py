"""Node kinds. The contract is in `jupyter_flow.nodes.base`; kinds are found through
`jupyter_flow.nodes.registry`."""

from __future__ import annotations

from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.nodes.registry import NodeRegistry, default_registry

__all__ = ["Node", "NodeConfig", "NodeContext", "NodeRegistry", "default_registry"]
