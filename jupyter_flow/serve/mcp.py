"""A served flow as an MCP server (Model Context Protocol): ``serve flow FLOW --mcp``.

The route ``/mcp`` speaks MCP's streamable HTTP transport, through the official `mcp`
SDK's low-level server, stateless (each request stands alone, so any number of clients may
call at once). It offers one tool: the flow, named by the flow's name (signs MCP does not
allow in a name become ``_``), described by the flow's `description`, its arguments the
flow's inputs (their JSON schema from `jupyter_flow.inputs.json_schema`). After a reload of
the flow file the tool is the new flow.

A call runs the flow as ``POST /run`` does, through the same request handling of the
served app: the body limit (``--max-body``) and the bearer token (``--token-env``) hold
for ``/mcp`` as for every route, a `file` input is read only inside ``--files-root``, and
no server path is in a message. It answers with what ``/run`` answers (``run_id``,
``outputs``, and ``result`` when the flow declares its outputs) as structured content and
as JSON text. Arguments the flow's input rules refuse, and a run that fails, answer with
``is_error`` and the reason, for the caller (often a model) to correct; a tool name other
than the flow's is a protocol error (invalid params).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_flow.errors import FlowError, FlowValidationError, MissingDependencyError
from jupyter_flow.flow import Flow
from jupyter_flow.inputs import json_schema
from jupyter_flow.values import dumps
from jupyter_flow.version import __version__

if TYPE_CHECKING:
    from jupyter_flow.serve.guards import Scrubber
    from jupyter_flow.serve.state import FlowService
    from jupyter_flow.trace import RunResult

__all__ = ["ROUTE", "FlowMcp", "ServedRuns", "tool_name", "tool_schema"]

ROUTE = "/mcp"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


class ServedRuns(Protocol):
    """What `/mcp` uses of the served app: its flow, its HTTP client and files root, one
    request's handling (`exchange`: the flow, files and metrics of one request) and the
    answer a finished run gets (`answer`: status code and body, the run recorded)."""

    service: FlowService
    client: Any
    files_root: Path | None

    def exchange(self, route: str) -> AbstractAsyncContextManager[Any]: ...

    def answer(self, result: RunResult, scrubber: Scrubber) -> tuple[int, Any]: ...


def tool_name(flow: Flow) -> str:
    """The flow's name as an MCP tool's name."""
    return _UNSAFE.sub("_", flow.name)[:128] or "flow"


def tool_schema(flow: Flow, files_root: Path | None) -> dict[str, Any]:
    """The JSON schema of the tool's arguments: the flow's inputs, a `file` input saying
    where the server reads it."""
    schema = json_schema(flow.spec.inputs, used=() if flow.spec.inputs else flow.plan.input_names)
    where = ("a path inside the server's files folder, relative to it" if files_root is not None
             else "not readable over MCP: the server runs without --files-root")
    for name, spec in flow.spec.inputs.items():
        if spec.type == "file":
            prop = schema["properties"][name]
            prop["description"] = f"{prop['description']} ({where})"
    return schema


class FlowMcp:
    """The `/mcp` route of a served flow and the lifespan its session manager needs."""

    def __init__(self, app: ServedRuns, *, max_body: int) -> None:
        try:
            from mcp.server.lowlevel import Server
            from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
            from mcp.server.transport_security import TransportSecuritySettings
        except ImportError as exc:
            raise MissingDependencyError("mcp", "tools", "jupyter-flow serve flow --mcp") from exc
        self.app = app
        self.server: Any = Server(f"jupyter-flow {app.service.flow.name}", version=__version__,
                                  on_list_tools=self.list_tools, on_call_tool=self.call_tool)
        # Host and Origin are not checked here: the bearer token (--token-env) guards /mcp as it does every route
        self.manager: Any = StreamableHTTPSessionManager(
            app=self.server, stateless=True, json_response=True, max_request_body_size=max_body,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    def routes(self) -> list[Any]:
        from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
        from starlette.routing import Route

        return [Route(ROUTE, endpoint=StreamableHTTPASGIApp(self.manager))]

    def lifespan(self, inner: Lifespan) -> Lifespan:
        """`inner` (the app's own lifespan), with the MCP session manager running inside it."""

        @contextlib.asynccontextmanager
        async def both(app: Any) -> AsyncIterator[None]:
            async with inner(app), self.manager.run():
                yield

        return both

    # -- the protocol's two requests ----------------------------------------------------
    async def list_tools(self, ctx: Any, params: Any) -> Any:
        import mcp_types

        flow = self.app.service.flow
        description = flow.spec.description or f"Runs the flow '{flow.name}' and answers its outputs."
        tool = mcp_types.Tool(name=tool_name(flow), description=description, input_schema=tool_schema(flow, self.app.files_root))
        return mcp_types.ListToolsResult(tools=[tool])

    async def call_tool(self, ctx: Any, params: Any) -> Any:
        import mcp_types
        from mcp import MCPError

        if params.name != tool_name(self.app.service.flow):
            raise MCPError(mcp_types.INVALID_PARAMS, f"unknown tool {params.name!r}: this server offers {tool_name(self.app.service.flow)!r}")
        async with self.app.exchange(ROUTE) as ex:
            flow, files = ex.flow, ex.files
            try:
                inputs = flow.resolve_inputs(files.confine(params.arguments or {}))
            except FlowValidationError as exc:
                ex.status = 422
                return _failed(files.scrubber.text("invalid arguments: " + "; ".join(map(str, exc.problems))))
            try:
                result = await flow.arun(inputs, http_client=self.app.client, raise_on_error=False,
                                         wait_for_shadows=files.folder is not None)
                code, answer = self.app.answer(result, files.scrubber)
            except FlowError as exc:
                ex.status = 500
                return _failed(files.scrubber.text(str(exc)))
            ex.status = code
            if code != 200:
                return _failed(f"the flow failed: {answer.get('error')}", answer)
            return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=dumps(answer))], structured_content=answer)


def _failed(message: str, answer: dict[str, Any] | None = None) -> Any:
    import mcp_types

    return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=message)], structured_content=answer, is_error=True)
