"""The registry of tools, filled lazily: what a `tool` node calls and an agent chooses from.

Tools are named ``provider/tool`` and come from five places:

- the built-in tools (`jupyter_flow.tools.builtin`), imported when one is first used;
- tools registered at run time: `register(tool)` or `register_function(fn, name=...)`;
- packages, through the entry-point group ``jupyter_flow.tools``; the entry point's name
  is the provider and its value a `Tool`, a list of them, or a function returning either,
  each named ``<provider>/...``::

      [project.entry-points."jupyter_flow.tools"]
      acme = "acme_tools:tools"

- Python functions on the Python path, as ``python/<module>:<function>``: type hints and
  docstring give the schema (`jupyter_flow.tools.functions`);
- MCP servers, as ``mcp/<server>/<tool>``: a server added with `add_server(name, ...)`, or
  one a node declares (`server=` in `check` and `get`); see `jupyter_flow.tools.mcp`.

`check(name)` says whether a tool can be used without running any code of the flow's: a
Python function is looked for in its module's source (`jupyter_flow.sourcecheck`), an MCP
server is not connected to. `get(name)` gives the `Tool`, importing what it needs.
`await list_tools()` gives every tool with its schema, asking each added MCP server.
"""

from __future__ import annotations

import asyncio
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from jupyter_flow.sourcecheck import check_callable
from jupyter_flow.tools.base import Tool, ToolContext
from jupyter_flow.tools.functions import function_tool
from jupyter_flow.tools.mcp import McpServer, list_tools, mcp_tool, split_name

__all__ = ["ENTRY_POINT_GROUP", "ToolRegistry", "default_tool_registry"]

ENTRY_POINT_GROUP = "jupyter_flow.tools"

_BUILTIN = {
    "time/current_time": "jupyter_flow.tools.builtin:current_time",
    "web/page_text": "jupyter_flow.tools.builtin:page_text",
    "pdf/pages_to_png": "jupyter_flow.tools.builtin:pages_to_png",
    "docx/from_markdown": "jupyter_flow.tools.builtin:from_markdown",
    "base64/encode": "jupyter_flow.tools.builtin:encode",
    "base64/decode": "jupyter_flow.tools.builtin:decode",
    "json/path": "jupyter_flow.tools.builtin:json_path",
}
#: providers whose tool names say where the tool is, rather than naming a registered tool
_PYTHON, _MCP = "python", "mcp"
#: the provider of the tools an imported Dify app names that no tool here was bound to
_DIFY = "dify"


class ToolRegistry:
    """Tools by name; see the module docstring."""

    def __init__(self, *, entry_points_group: str | None = ENTRY_POINT_GROUP) -> None:
        self._targets: dict[str, str] = dict(_BUILTIN)
        self._tools: dict[str, Tool] = {}
        self._servers: dict[str, McpServer] = {}
        self._group = entry_points_group
        self._providers: dict[str, EntryPoint] | None = None if entry_points_group else {}
        self._loaded: set[str] = set()

    # -- filling ------------------------------------------------------------------
    def register(self, tool: Tool) -> Tool:
        """Add `tool` under its name (replacing one of that name)."""
        if "/" not in tool.name:
            raise ValueError(f"tool names read provider/tool, got {tool.name!r}")
        if tool.name.split("/", 1)[0] in (_PYTHON, _MCP):
            raise ValueError(f"{tool.name!r}: python/ and mcp/ name where a tool is found; register it under a provider of its own")
        self._tools[tool.name] = tool
        return tool

    def register_function(self, fn: Callable[..., Any], *, name: str, description: str | None = None) -> Tool:
        """Add the Python function `fn` as the tool `name` (schema from its hints and docstring)."""
        return self.register(function_tool(fn, name=name, description=description))

    def add_server(self, name: str, server: McpServer | Mapping[str, Any]) -> McpServer:
        """Make the MCP server's tools usable as `mcp/<name>/<tool>`."""
        if not name or "/" in name:
            raise ValueError(f"an MCP server's name is one word without '/', got {name!r}")
        self._servers[name] = server if isinstance(server, McpServer) else McpServer.model_validate(server)
        return self._servers[name]

    def servers(self) -> dict[str, McpServer]:
        return dict(self._servers)

    # -- reading ------------------------------------------------------------------
    def names(self) -> list[str]:
        """The tools known by name: built-in, registered and from installed packages (their
        providers load). Python functions and MCP servers' tools are not listed."""
        for provider in self._entry_points():
            self._load_provider(provider)
        return sorted(set(self._targets) | set(self._tools))

    def check(self, name: str, *, server: McpServer | None = None) -> str | None:
        """Why `name` cannot be used (one line for the user), or None when it can. Runs no
        code of the flow's: a Python function is found in its source, an MCP server is not
        asked. `server` is the MCP server a node declares for its `mcp/...` tool."""
        provider, _, rest = name.partition("/")
        if not rest:
            return f"{name!r} is not a tool name: they read provider/tool, such as time/current_time"
        if provider == _PYTHON:
            why = check_callable(rest)
            return None if why is None else f"cannot use {rest!r}: {why}"
        if provider == _MCP:
            parts = split_name(name)
            if parts is None:
                return f"{name!r}: MCP tools read mcp/<server>/<tool>"
            if server is None and parts[0] not in self._servers:
                known = ", ".join(sorted(self._servers)) or "none added"
                return f"no MCP server {parts[0]!r} is known ({known}); declare it in the node's `server` ({{url: ...}} or {{command: [...]}})"
            return None
        if name in self._tools or name in self._targets:
            return None
        if provider in self._entry_points():
            self._load_provider(provider)
            if name in self._tools:
                return None
        if provider == _DIFY:
            return (f"{name!r} stands for a tool of an imported Dify app that nothing here does: bind it to a tool of the registry "
                    f"(import the app again with --tools BINDINGS.yaml holding the line `{rest}: provider/tool`), or register "
                    f"a tool named {name!r}")
        same = sorted({n for n in (*self._targets, *self._tools) if n.startswith(f"{provider}/")})
        known = ", ".join(same) if same else ", ".join(sorted({n.split("/")[0] for n in (*self._targets, *self._tools)} | {_PYTHON, _MCP}))
        return f"unknown tool {name!r} (known {'tools' if same else 'providers'}: {known})"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.check(name) is None

    def get(self, name: str, *, server: McpServer | None = None) -> Tool:
        """The tool `name`, importing its code; KeyError says why there is none."""
        if name in self._tools:
            return self._tools[name]
        why = self.check(name, server=server)
        if why is not None:
            raise KeyError(why)
        provider, _, rest = name.partition("/")
        if provider == _MCP:
            server_name, tool = split_name(name) or ("", "")
            return mcp_tool(server_name, server or self._servers[server_name], tool)
        if name in self._tools:  # from a package's entry point, loaded by `check`
            return self._tools[name]
        target = rest if provider == _PYTHON else self._targets[name]
        fn = pkgutil.resolve_name(target)
        if not callable(fn):
            raise KeyError(f"{target} is not callable")
        made = self._tools[name] = function_tool(fn, name=name)
        return made

    async def list_tools(self, ctx: ToolContext | None = None) -> list[Tool]:
        """Every tool with its schema: those `names()` gives, then each added MCP server's
        (asked now, all at once)."""
        tools = [self.get(name) for name in self.names()]
        listings = await asyncio.gather(*(list_tools(name, server, ctx) for name, server in sorted(self._servers.items())))
        for listing in listings:
            tools.extend(listing)
        return tools

    # -- entry points -------------------------------------------------------------
    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._providers is None:
            assert self._group is not None
            self._providers = {ep.name: ep for ep in entry_points(group=self._group)}
        return self._providers

    def _load_provider(self, provider: str) -> None:
        if provider in self._loaded:
            return
        self._loaded.add(provider)
        ep = self._entry_points()[provider]
        found: Any = ep.load()
        if callable(found) and not isinstance(found, Tool):
            found = found()
        tools: Iterable[Any] = [found] if isinstance(found, Tool) else found
        for tool in tools:
            if not isinstance(tool, Tool) or not tool.name.startswith(f"{provider}/"):
                raise TypeError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) gave {tool!r}: "
                                f"expected jupyter_flow.tools.Tool objects named {provider}/...")
            self._tools.setdefault(tool.name, tool)


@lru_cache(maxsize=1)
def default_tool_registry() -> ToolRegistry:
    """The process-wide tool registry, created on first use."""
    return ToolRegistry()

