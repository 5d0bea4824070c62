"""Tools: named functions with a JSON schema that a `tool` node calls and an agent chooses
from. The contract is in `jupyter_flow.tools.base`; tools are found through
`jupyter_flow.tools.registry` (built-in ones, Python functions, MCP servers' and those that
installed packages add)."""

from __future__ import annotations

from jupyter_flow.tools.base import Tool, ToolContext, ToolError, ToolFile, ToolResult
from jupyter_flow.tools.functions import function_tool
from jupyter_flow.tools.mcp import McpServer
from jupyter_flow.tools.registry import ENTRY_POINT_GROUP, ToolRegistry, default_tool_registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "McpServer",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolFile",
    "ToolRegistry",
    "ToolResult",
    "default_tool_registry",
    "function_tool",
]
