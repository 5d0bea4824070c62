"""What a tool is, written once: a name, a description, a JSON schema of its arguments and
an async call.

- ``name`` reads ``provider/tool`` (``time/current_time``, ``python/pkg.mod:fn``,
  ``mcp/<server>/<tool>``).
- ``description`` says what it does, for people and for a model choosing a tool.
- ``input_schema`` is the JSON schema (an object) its arguments must fit.
- ``await tool.call(arguments, ctx)`` runs it and returns a `ToolResult`:

  - ``value``: text (``str``) or a JSON value (dicts, lists, numbers, ...);
  - ``files``: `ToolFile` objects, each a file held in memory (``name``, ``media_type``,
    ``data`` as bytes). A tool never chooses where files go: its caller does (the
    ``tool`` node writes them into a folder and outputs their paths).

  A failure raises `ToolError` (a `NodeError` naming the tool, and the node when there is
  one); anything else a tool raises is wrapped into one. ``CancelledError`` passes.
- `ToolContext` is what a call may use: the node that calls (for errors), the flow file's
  folder (relative paths), the run's HTTP client and its threads for blocking work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_flow.errors import NodeError
from jupyter_flow.http import shared_client
from jupyter_flow.workers import run_in_worker, worker_pool

if TYPE_CHECKING:
    import httpx

__all__ = ["Tool", "ToolCall", "ToolContext", "ToolError", "ToolFile", "ToolResult"]


class ToolError(NodeError):
    """A tool failed; the message names the tool (and the node, when a node called it).
    Not retryable unless the failure may pass (a server that cannot be reached)."""

    retryable = False

    def __init__(self, message: str, *, tool: str, node: str | None = None, retryable: bool | None = None) -> None:
        self.tool = tool
        #: what went wrong, without the tool's name
        self.detail = message
        super().__init__(f"tool '{tool}': {message}", node=node, retryable=retryable)


@dataclass(frozen=True)
class ToolFile:
    """A file a tool made, held in memory."""

    name: str
    data: bytes
    media_type: str = "application/octet-stream"


@dataclass(frozen=True)
class ToolResult:
    """What a tool gives back: `value` (text or a JSON value) and `files`."""

    value: Any = None
    files: tuple[ToolFile, ...] = ()


@dataclass(frozen=True)
class ToolContext:
    """What a tool call may use. Every field is optional: a tool called from user code
    gets the event loop's shared HTTP client and the engine's threads."""

    #: the node calling the tool (named in errors)
    node: str | None = None
    #: the flow file's folder: relative paths in arguments are read from there first
    base_dir: Path | None = None
    #: the run's HTTP client, asked for when a tool first calls out
    http: Callable[[], httpx.AsyncClient] | None = None
    #: how blocking work runs off the event loop (a node's `ctx.run_blocking`)
    blocking: Callable[..., Awaitable[Any]] | None = None
    #: seconds the whole call may take (tools that call out bound their own waits by it)
    timeout_s: float | None = None

    async def client(self) -> httpx.AsyncClient:
        """The HTTP client to call out with (`jupyter_flow.http`'s client factory)."""
        return self.http() if self.http is not None else await shared_client()

    async def run_blocking(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` in a worker thread, off the event loop."""
        if self.blocking is not None:
            return await self.blocking(fn, *args, **kwargs)
        return await run_in_worker(worker_pool(), fn, *args, **kwargs)

    def path(self, value: str) -> Path:
        """A path argument: absolute, else beside the flow file when it is there, else
        from the working folder."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None and (self.base_dir / path).exists():
            return self.base_dir / path
        return path


#: The function behind a tool: the arguments as given, and the context.
ToolCall = Callable[[dict[str, Any], ToolContext], Awaitable[ToolResult]]


@dataclass(frozen=True)
class Tool:
    """A tool: see the module docstring for the contract."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    invoke: ToolCall = field(repr=False, compare=False)

    async def call(self, arguments: Mapping[str, Any] | None = None, ctx: ToolContext | None = None) -> ToolResult:
        """Run the tool with `arguments`; a failure raises `ToolError` naming it."""
        ctx = ctx or ToolContext()
        try:
            return await self.invoke(dict(arguments or {}), ctx)
        except asyncio.CancelledError:
            raise
        except ToolError as exc:
            if exc.node is None and ctx.node is not None:
                raise ToolError(exc.detail, tool=exc.tool, node=ctx.node, retryable=exc.retryable) from exc.__cause__
            raise
        except Exception as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}", tool=self.name, node=ctx.node) from exc

    def spec(self) -> dict[str, Any]:
        """What a model is shown to choose and call the tool: name, description, schema."""
        return {"name": self.name, "description": self.description, "input_schema": dict(self.input_schema)}
