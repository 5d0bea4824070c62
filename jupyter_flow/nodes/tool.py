"""`tool`: call one tool of the tool registry (`jupyter_flow.tools`).

Config: `tool` (its name, such as ``time/current_time``, ``python/pkg.mod:fn`` or
``mcp/<server>/<tool>``), `arguments` (templates, rendered like any config), `server` (the
MCP server of an ``mcp/...`` tool: ``{url: ..., headers: {...}}`` or ``{command: [...],
env: {...}}``, secrets as ``${VAR}``), `files_dir` (where files the tool makes are
written). Output: ``{"result": value}`` (text or JSON), plus ``{"files": [{path, name,
media_type, size}, ...]}`` when the tool made files; they are written into `files_dir`
(relative to the flow file's folder), else into a new temporary folder for each call.

Validation finds the tool without running anything of the flow's: a Python function is
looked for in its module's source, an MCP server is not connected to. `timeout_s` bounds
the whole call (default 60 s); a tool's error is the node's error and names the tool.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jupyter_flow.errors import NodeError, NodeTimeoutError, Problem
from jupyter_flow.expressions import is_template
from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.spec import NodeSpec
from jupyter_flow.tools import McpServer, Tool, ToolContext, ToolFile, default_tool_registry
from jupyter_flow.workers import within

__all__ = ["ToolNode"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ToolConfig(NodeConfig):
    tool: str
    arguments: Any = {}
    server: McpServer | None = None
    files_dir: str | None = None


class ToolNode(Node):
    """Call the tool `tool` with `arguments`; see the module docstring."""

    kind = "tool"
    Config = ToolConfig
    config: ToolConfig
    keeps_own_deadline = True  # its timeout error names the tool

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__(spec)
        self._tool: Tool | None = None

    def problems(self) -> list[Problem]:
        name = self.config.tool
        if is_template(name):
            return [Problem("name the tool as it is (a template cannot be checked before the run)", node=self.id, field="config.tool")]
        problems = []
        why = default_tool_registry().check(name, server=self.config.server)
        if why is not None:
            problems.append(Problem(why, node=self.id, field="config.tool"))
        if self.config.server is not None and not name.startswith("mcp/"):
            problems.append(Problem("`server` is for MCP tools, named mcp/<server>/<tool>", node=self.id, field="config.server"))
        arguments = self.config.arguments
        if not isinstance(arguments, Mapping) and not (isinstance(arguments, str) and is_template(arguments)):
            problems.append(Problem("give the tool's arguments as a mapping of names to values (or templates)", node=self.id, field="config.arguments"))
        return problems

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"calls tool `{self.config.tool}`"

    def _resolve(self, server: McpServer | None) -> Tool:
        if self._tool is not None:
            return self._tool
        name = self.config.tool
        try:
            tool = default_tool_registry().get(name, server=server)
        except KeyError as exc:
            raise NodeError(f"config.tool: {exc.args[0]}", node=self.id, retryable=False) from None
        except Exception as exc:  # a Python function that does not import, a package's entry point that fails
            raise NodeError(f"tool '{name}' cannot be loaded ({type(exc).__name__}: {exc})", node=self.id, retryable=False) from exc
        if server is None:  # an MCP tool's server may come from a template: asked again each run
            self._tool = tool
        return tool

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        name = self.config.tool
        server = None
        if inputs.get("server") is not None:
            try:
                server = McpServer.model_validate(inputs["server"])
            except ValidationError as exc:
                raise NodeError(f"config.server: {exc.errors(include_url=False)[0]['msg']}", node=self.id, retryable=False) from None
        tool = self._resolve(server)
        arguments = inputs.get("arguments") or {}
        if not isinstance(arguments, Mapping):
            raise NodeError(f"config.arguments: tool '{name}' takes a mapping of arguments, got {type(arguments).__name__}", node=self.id, retryable=False)
        timeout = self.spec.timeout_s or DEFAULT_TIMEOUT_S
        tool_ctx = ToolContext(node=self.id, base_dir=self.base_dir, http=lambda: ctx.http, blocking=ctx.run_blocking, timeout_s=timeout)
        try:
            result = await within(tool.call(arguments, tool_ctx), timeout)
        except asyncio.TimeoutError:
            raise NodeTimeoutError(f"tool '{name}' did not finish within timeout_s={timeout:g} (attempt {ctx.attempt})", node=self.id) from None
        output: dict[str, Any] = {"result": result.value}
        if result.files:
            output["files"] = await ctx.run_blocking(self._write, result.files, inputs.get("files_dir"))
        return output

    def _write(self, files: tuple[ToolFile, ...], files_dir: Any) -> list[dict[str, Any]]:
        """Write the tool's files; what the output says of each."""
        if files_dir:
            folder = Path(str(files_dir)).expanduser()
            if not folder.is_absolute() and self.base_dir is not None:
                folder = self.base_dir / folder
        else:
            folder = Path(tempfile.mkdtemp(prefix=f"jupyter-flow-{_UNSAFE.sub('-', self.id)[:40]}-"))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"config.files_dir: cannot make {folder}: {exc.strerror or exc}", node=self.id, retryable=False) from None
        written = []
        taken: set[str] = set()
        for file in files:
            stem = _UNSAFE.sub("-", Path(file.name).name).strip("-.") or "file"
            fname, n = stem, 1
            while fname in taken:
                n += 1
                base, dot, ext = stem.rpartition(".")
                fname = f"{base}-{n}.{ext}" if dot and base else f"{stem}-{n}"
            taken.add(fname)
            path = folder / fname
            try:
                path.write_bytes(file.data)
            except OSError as exc:
                raise NodeError(f"tool '{self.config.tool}': cannot write {path}: {exc.strerror or exc}", node=self.id, retryable=False) from None
            written.append({"path": str(path), "name": fname, "media_type": file.media_type, "size": len(file.data)})
        return written
