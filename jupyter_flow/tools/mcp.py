"""Tools on MCP servers (Model Context Protocol), through the official `mcp` SDK.

A server is declared where it is used, as `McpServer`: ``{url: ...}`` for one that speaks
streamable HTTP (with ``headers`` if it wants them), or ``{command: [...]}`` for one the
flow starts and talks to over its standard input and output (with ``env`` and ``cwd``).
Secrets go in as ``${VAR}`` references only: they are expanded from the environment when
the server is called, and an error shows the server as written and any value that went
in as ``***`` (`jupyter_flow.nodes.http.Secrets`, as the nodes that call out show theirs).

Its tools are named ``mcp/<server>/<tool>``, where ``<server>`` is the name the server is
known by (a label the flow chooses). `list_tools` asks the server for its tools (name,
description, input schema); `mcp_tool` is one tool called by name without asking first.
Each listing and each call opens a session of its own and closes it after: a server the
flow starts runs for that call only.

A call's answer becomes a `ToolResult`: the structured content when the server gives one
(a lone ``{"result": v}``, how servers wrap a value that is not an object, gives ``v``),
else its text blocks joined; images, audio and binary resources become files. An answer
marked as an error raises `ToolError` with the server's text.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import mimetypes
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from jupyter_flow.errors import MissingDependencyError, NodeError
from jupyter_flow.nodes.http import Secrets
from jupyter_flow.tools.base import Tool, ToolContext, ToolError, ToolFile, ToolResult

__all__ = ["McpServer", "list_tools", "mcp_tool", "split_name"]

T = TypeVar("T")

#: pages of a tool listing read at most
_MAX_PAGES = 100
#: characters of a server's own error output shown in an error
_STDERR_TAIL = 800

#: exception groups (anyio's task groups raise them), where Python has them
_GROUPS: tuple[type[BaseException], ...] = tuple(k for k in (getattr(builtins, "BaseExceptionGroup", None),) if k is not None)


class McpServer(BaseModel):
    """Where an MCP server is: a `url` (streamable HTTP) or a `command` to start (stdio)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None
    #: HTTP headers sent with every request (`Authorization: "Bearer ${TOKEN}"`)
    headers: dict[str, str] = {}
    #: the program and its arguments, e.g. `[python, -m, my_server]`
    command: list[str] | None = None
    #: environment variables set for the program, over the SDK's default environment
    env: dict[str, str] = {}
    #: the program's working folder (default: the flow file's folder)
    cwd: str | None = None

    @field_validator("command", mode="before")
    @classmethod
    def _one_word(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_way(self) -> McpServer:
        if (self.url is None) == (self.command is None):
            raise ValueError("give the server's `url` (streamable HTTP) or its `command` (a list: program, arguments), not both")
        if self.command is not None and not (self.command and self.command[0]):
            raise ValueError("`command` is empty: give the program to start and its arguments")
        if self.url is not None and (self.env or self.cwd):
            raise ValueError("`env` and `cwd` are for a server started with `command`; send a URL's secrets in `headers`")
        if self.command is not None and self.headers:
            raise ValueError("`headers` are for a server at a `url`; give a started server its secrets in `env`")
        return self

    def where(self) -> str:
        """The server as written in the flow (references unexpanded)."""
        return self.url if self.url is not None else " ".join(self.command or ())


def split_name(name: str) -> tuple[str, str] | None:
    """`mcp/<server>/<tool>` as (server, tool); None when `name` does not read so."""
    provider, _, rest = name.partition("/")
    server, _, tool = rest.partition("/")
    if provider != "mcp" or not server or not tool:
        return None
    return server, tool


def mcp_tool(server_name: str, server: McpServer, tool: str, *, description: str = "", input_schema: Mapping[str, Any] | None = None) -> Tool:
    """The tool `tool` of `server`, called by name (its schema is the one given, or any
    object when the server has not been asked)."""
    name = f"mcp/{server_name}/{tool}"

    async def invoke(arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        async def call(client: Any) -> Any:
            return await client.call_tool(tool, arguments)

        answer = await _with_client(server, ctx, name, call)
        return _result(answer, name=name, node=ctx.node)

    return Tool(name=name, description=description, input_schema=dict(input_schema or {"type": "object"}), invoke=invoke)


async def list_tools(server_name: str, server: McpServer, ctx: ToolContext | None = None) -> list[Tool]:
    """The tools `server` offers, with the descriptions and schemas it gives."""
    ctx = ctx or ToolContext()

    async def listing(client: Any) -> list[Tool]:
        found: list[Tool] = []
        cursor = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            found += [mcp_tool(server_name, server, t.name, description=t.description or "", input_schema=t.input_schema) for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        return found

    return await _with_client(server, ctx, f"mcp/{server_name}", listing)


class _Secrets:
    """The server's settings with `${VAR}` expanded; `redact` keeps the values out of errors."""

    def __init__(self, server: McpServer) -> None:
        self._secrets = Secrets("")
        self.url = self.expand(server.url, "server.url") if server.url is not None else None
        self.headers = {k: self.expand(v, f"server.headers.{k}") for k, v in server.headers.items()}
        self.command = [self.expand(arg, f"server.command[{i}]") for i, arg in enumerate(server.command or ())]
        self.env = {k: self.expand(v, f"server.env.{k}") for k, v in server.env.items()}

    def expand(self, text: str, field: str) -> str:
        return self._secrets.expand(text, f"config.{field}").value

    def redact(self, text: str) -> str:
        return self._secrets.mask(text)


async def _with_client(server: McpServer, ctx: ToolContext, name: str, action: Callable[[Any], Awaitable[T]]) -> T:
    """`action(client)` in a session with `server` opened for it; what goes wrong is a
    `ToolError` naming the tool and the server as written."""
    try:
        import mcp
    except ImportError as exc:
        raise MissingDependencyError("mcp", "tools", "MCP tools") from exc
    try:
        secrets = _Secrets(server)
    except NodeError as exc:  # a ${VAR} that is not set
        raise ToolError(exc.message, tool=name, node=ctx.node) from None
    with contextlib.ExitStack() as files:
        errlog: IO[str] | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if secrets.url is not None:
                    import httpx2
                    from mcp.client.streamable_http import streamable_http_client

                    http = await stack.enter_async_context(httpx2.AsyncClient(headers=secrets.headers, timeout=httpx2.Timeout(30.0, read=300.0)))
                    transport: Any = streamable_http_client(secrets.url, http_client=http)
                else:
                    from mcp.client.stdio import stdio_client

                    errlog = files.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"))
                    cwd = server.cwd or (str(ctx.base_dir) if ctx.base_dir is not None else None)
                    params = mcp.StdioServerParameters(command=secrets.command[0], args=secrets.command[1:], env=secrets.env or None, cwd=cwd)
                    transport = stdio_client(params, errlog=errlog)
                client = await stack.enter_async_context(mcp.Client(transport))
                return await action(client)
        except Exception as exc:
            leaf = _first_leaf(exc)
            if isinstance(leaf, ToolError):
                raise leaf from None
            message, retryable = _describe(leaf, server)
            said = _tail(errlog)
            if said:
                message += f"; the server wrote: {said}"
            raise ToolError(secrets.redact(message), tool=name, node=ctx.node, retryable=retryable) from None


def _describe(leaf: BaseException, server: McpServer) -> tuple[str, bool]:
    """One line on what went wrong with `server`, and whether another attempt may help."""
    import httpx2
    import mcp

    where = f"MCP server {server.where()!r}"
    text = " ".join(str(leaf).split()) or type(leaf).__name__
    if isinstance(leaf, httpx2.HTTPStatusError):
        status = leaf.response.status_code
        hint = " (check server.headers)" if status in (401, 403) else ""
        return f"{where} answered HTTP {status}{hint}", status >= 500 or status in (408, 429)
    if isinstance(leaf, httpx2.TransportError):
        return f"cannot reach {where} ({type(leaf).__name__}: {text})", True
    if isinstance(leaf, OSError) and server.command is not None:
        return f"cannot start {where} ({type(leaf).__name__}: {leaf.strerror or text})", False
    if isinstance(leaf, mcp.MCPError):
        return f"{where} failed: {text}", True
    return f"{where} failed ({type(leaf).__name__}: {text})", False


def _first_leaf(exc: BaseException) -> BaseException:
    """The first error inside (nested) exception groups; `exc` itself when not a group."""
    while isinstance(exc, _GROUPS) and getattr(exc, "exceptions", None):
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc


def _tail(errlog: IO[str] | None) -> str:
    if errlog is None:
        return ""
    try:
        errlog.seek(0)
        text = errlog.read()
    except (OSError, ValueError):
        return ""
    text = " ".join(text.split())
    return ("..." + text[-_STDERR_TAIL:]) if len(text) > _STDERR_TAIL else text


def _result(answer: Any, *, name: str, node: str | None) -> ToolResult:
    """A `CallToolResult` as a `ToolResult` (see the module docstring)."""
    from mcp import types

    texts: list[str] = []
    files: list[ToolFile] = []
    for block in answer.content:
        if isinstance(block, types.TextContent):
            texts.append(block.text)
        elif isinstance(block, (types.ImageContent, types.AudioContent)):
            files.append(ToolFile(f"{block.type}-{len(files) + 1}{_extension(block.mime_type)}", base64.b64decode(block.data), block.mime_type))
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                texts.append(resource.text)
            else:
                media = resource.mime_type or "application/octet-stream"
                stem = str(resource.uri).rstrip("/").rpartition("/")[2] or f"resource-{len(files) + 1}"
                files.append(ToolFile(stem if "." in stem else stem + _extension(media), base64.b64decode(resource.blob), media))
        elif isinstance(block, types.ResourceLink):
            texts.append(str(block.uri))
    if answer.is_error:
        said = " ".join(" ".join(texts).split())[:2000]
        raise ToolError(f"the server answered with an error: {said or '(no message)'}", tool=name, node=node)
    value = answer.structured_content
    if value is None:
        return ToolResult("\n".join(texts) if texts else None, tuple(files))
    if isinstance(value, dict) and list(value) == ["result"]:
        value = value["result"]
    return ToolResult(value, tuple(files))


def _extension(media_type: str | None) -> str:
    return (mimetypes.guess_extension(media_type or "") or ".bin") if media_type else ".bin"
