"""`agent`: a chat model that calls tools in a loop until it answers.

Config: the `llm` node's fields (`base_url`, `model`, `messages` or `prompt`, `temperature`,
`max_tokens`, `api_key_env`, `headers`, ...; answers are read whole, not streamed) and the
tools offered to the model:

- `tools`: names from the tool registry (``time/current_time``, ``web/page_text``,
  ``python/pkg.mod:fn``, ...), shown to the model with ``/`` and other signs made ``_``
  (``web_page_text``);
- `mcp_servers`: MCP servers whose every tool is offered under its own name, ``{url,
  headers}`` or ``{command, env}`` with secrets as ``${VAR}``, and a `name` for the trace;
- `flows`: other flow files offered as tools, ``{name, path, description}``. The tool's
  arguments are the flow's inputs (their JSON schema from its declared `inputs`), its
  result the flow's outputs (its declared `outputs`, else every node's output). A flow
  already running further up the same chain of calls is refused, so a flow cannot call
  itself without end.

The loop: the model is asked; the tools it calls run, several asked for in one answer at
the same time (up to 32; any more are answered as not run), each within `tool_timeout_s`;
their results go back to it, and it is asked again, until it answers without calling a
tool. A tool name it made up, arguments that are not a JSON object and a tool that fails
are answered back to the model as errors, for it to correct: they never fail the node.
`mode: native` (the default) uses the server's tool calling (OpenAI's `tools` and
`tool_calls`); `mode: react` writes the tools into the system prompt and reads
``Action:`` / ``Action Input:`` / ``Final Answer:`` lines, for models without tool calling
(`jupyter_flow.nodes.tool_calls`).

Limits: at most `max_steps` model calls (default 8). When the model still calls tools in
the last one, the node fails saying so (`on_limit: fail`, the default), or answers with
the model's last text (`on_limit: answer`, the output then says ``stopped: max_steps``);
the tools of that last call are not run. `timeout_s` (default 300 s) bounds the whole
loop, model calls and tools included. A failed model call fails the node (no retry unless
the node sets `retry`: another attempt would run its tools again).

Output: ``{"text": the final answer, "steps": [...], "stopped": null}``. A step is one
model call: ``content`` (the model's text), ``finish_reason``, ``usage``, ``duration_s``
and ``tool_calls``, each with ``name`` (as the model called it), ``tool`` (the tool that
ran), ``arguments``, ``result`` or ``error`` (the text the model was shown, cut at
`max_result_chars`) and ``duration_s``. While the loop runs, and after it failed, the
steps are in the node record's ``extra["steps"]``; a limit that failed the node is in its
``extra["stopped"]`` (``{"limit": "max_steps" or "timeout_s", "value": ...}``). API keys
(`api_key_env`) and MCP secrets come from the environment only and appear in no step,
trace or error. The workbench draws the steps (`jupyter_flow.workbench.agent_steps`).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jupyter_flow.errors import FlowValidationError, NodeError, NodeTimeoutError, Problem
from jupyter_flow.expressions import is_template
from jupyter_flow.flow import Flow
from jupyter_flow.inputs import json_schema
from jupyter_flow.nodes.base import NodeContext
from jupyter_flow.nodes.http import call_error
from jupyter_flow.nodes.llm import LlmCall, LlmConfig, LlmNode
from jupyter_flow.nodes.tool_calls import AskedCall, native_calls, parse_react, react_messages, react_stop
from jupyter_flow.spec import NodeSpec, RetrySpec
from jupyter_flow.tools import McpServer, Tool, ToolContext, ToolError, ToolResult, default_tool_registry
from jupyter_flow.tools.mcp import list_tools
from jupyter_flow.values import dumps, encode, limit
from jupyter_flow.workers import within

__all__ = ["DEFAULT_AGENT_TIMEOUT_S", "MAX_CALLS_PER_STEP", "AgentConfig", "AgentNode", "ToolBox"]

#: the whole loop's time budget when the node sets no `timeout_s`
DEFAULT_AGENT_TIMEOUT_S = 300.0
#: names a model may give a tool (OpenAI's rule)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")
#: tool calls of one answer that run (the others are answered as not run)
MAX_CALLS_PER_STEP = 32
#: elements of a tool's result written out for the model at most (then markers say what is left out)
_RESULT_VALUES = 100_000
#: the flow files being run as tools further up this chain of calls
_RUNNING_FLOWS: contextvars.ContextVar[frozenset[Path]] = contextvars.ContextVar("agent_running_flows", default=frozenset())


class AgentServer(McpServer):
    """An MCP server whose tools the agent offers; `name` labels it in the trace."""

    name: str | None = None

    @field_validator("name")
    @classmethod
    def _one_word(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value):
            raise ValueError("a server's name is one word without '/' (its tools are named mcp/<name>/<tool>)")
        return value


class FlowToolSpec(BaseModel):
    """A flow file offered as a tool named `name`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    path: str
    description: str | None = None


class AgentConfig(LlmConfig):
    stream: bool = False
    tools: list[str] = []
    mcp_servers: list[AgentServer] = []
    flows: list[FlowToolSpec] = []
    mode: Literal["native", "react"] = "native"
    max_steps: int = Field(8, ge=1, le=100)
    on_limit: Literal["fail", "answer"] = "fail"
    tool_timeout_s: float = Field(60.0, gt=0)
    max_result_chars: int = Field(4000, ge=100)

    @field_validator("stream")
    @classmethod
    def _whole_answers(cls, value: bool) -> bool:
        if value:
            raise ValueError("an agent reads whole answers: leave `stream` out")
        return value


class ToolBox:
    """The tools offered in one run, by the name the model knows each by."""

    def __init__(self, tools: list[tuple[str, Tool]]) -> None:
        self.tools: dict[str, Tool] = {}
        for wanted, tool in tools:
            name = base = (_UNSAFE_NAME.sub("_", wanted).strip("_") or "tool")[:60]
            n = 1
            while name in self.tools:
                n += 1
                name = f"{base}_{n}"
            self.tools[name] = tool

    def find(self, name: str) -> Tool | None:
        """The tool the model called `name` (its own name, or the one the registry knows)."""
        if name in self.tools:
            return self.tools[name]
        return next((t for t in self.tools.values() if t.name == name), None)

    def specs(self) -> list[dict[str, Any]]:
        """The tools as OpenAI's `tools` field lists them."""
        return [{"type": "function", "function": {"name": name, "description": tool.description, "parameters": _object_schema(tool)}}
                for name, tool in self.tools.items()]

    def listing(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, description, schema of the arguments) of each tool."""
        return [(name, tool.description, _object_schema(tool)) for name, tool in self.tools.items()]


def _object_schema(tool: Tool) -> dict[str, Any]:
    schema = dict(tool.input_schema)
    schema.setdefault("type", "object")
    if schema["type"] == "object":
        schema.setdefault("properties", {})
    return schema


class AgentNode(LlmNode):
    """A chat model calling tools until it answers; see the module docstring."""

    kind = "agent"
    Config = AgentConfig
    config: AgentConfig
    default_retry: ClassVar[RetrySpec | None] = None  # another attempt would run the tools again
    keeps_own_deadline = True  # its timeout error says how many steps were taken

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__(spec)
        self._tools: list[tuple[str, Tool]] = []
        self._flows: list[Flow] = []

    # -- before the run -----------------------------------------------------------------
    def problems(self) -> list[Problem]:
        cfg = self.config
        problems = []
        registry = default_tool_registry()
        for i, name in enumerate(cfg.tools):
            field = f"config.tools[{i}]"
            why = "name the tool as it is (a template cannot be checked before the run)" if is_template(name) else registry.check(name)
            if why is not None:
                problems.append(Problem(why, node=self.id, field=field))
        names: set[str] = set()
        for i, entry in enumerate(cfg.flows):
            if entry.name in names:
                problems.append(Problem(f"two flows are named {entry.name!r}: give each its own name", node=self.id, field=f"config.flows[{i}].name"))
            names.add(entry.name)
            if is_template(entry.path):
                problems.append(Problem("give the flow file's path as it is, not a template", node=self.id, field=f"config.flows[{i}].path"))
            elif not self._flow_path(entry).is_file():
                problems.append(Problem(f"no flow file {entry.path!r} (paths are read from the flow file's folder)", node=self.id,
                                        field=f"config.flows[{i}].path"))
        if not (cfg.tools or cfg.mcp_servers or cfg.flows):
            problems.append(Problem("an agent needs tools: list `tools` (names from the tool registry), `mcp_servers` or `flows` "
                                    "(use an `llm` node for a model without tools)", node=self.id, field="config.tools"))
        return problems

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        cfg = self.config
        offered = [*cfg.tools, *(f"flow {f.name}" for f in cfg.flows), *(f"MCP {s.name or s.where()}" for s in cfg.mcp_servers)]
        return f"`{cfg.model}` calling tools: {', '.join(offered)}"

    def warm_up(self) -> None:
        """The registry's tools (a Python function's module is imported) and the flows."""
        registry = default_tool_registry()
        tools: list[tuple[str, Tool]] = []
        for i, name in enumerate(self.config.tools):
            try:
                tools.append((name, registry.get(name)))
            except KeyError as exc:
                raise NodeError(f"config.tools[{i}]: {exc.args[0]}", node=self.id, retryable=False) from None
        flows = []
        for i, entry in enumerate(self.config.flows):
            flow = self._load_flow(i, entry)
            flows.append(flow)
            tools.append((entry.name, self._flow_tool(entry, flow)))
        self._tools, self._flows = tools, flows

    def _flow_path(self, entry: FlowToolSpec) -> Path:
        path = Path(entry.path).expanduser()
        return self.base_dir / path if not path.is_absolute() and self.base_dir is not None else path

    def _load_flow(self, index: int, entry: FlowToolSpec) -> Flow:
        path = self._flow_path(entry)
        try:
            return Flow.load(path).validate()
        except FlowValidationError as exc:
            raise NodeError(f"config.flows[{index}].path: {entry.path} cannot be offered as a tool: {exc}", node=self.id, retryable=False) from None

    def _flow_tool(self, entry: FlowToolSpec, flow: Flow) -> Tool:
        """The flow `entry` names as a tool: its inputs are the arguments, its outputs the result."""
        name = f"flow/{entry.name}"
        key = self._flow_path(entry).resolve()
        schema = json_schema(flow.spec.inputs, used=() if flow.spec.inputs else flow.plan.input_names)
        description = entry.description or flow.spec.description or f"Runs the flow '{flow.name}' and answers its outputs."

        async def invoke(arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
            running = _RUNNING_FLOWS.get()
            if key in running:
                raise ToolError(f"the flow {entry.path} is already running further up this chain of calls: a flow cannot call itself",
                                tool=name, node=ctx.node)
            token = _RUNNING_FLOWS.set(running | {key})
            try:
                result = await flow.arun(arguments, http_client=await ctx.client(), raise_on_error=False)
            except FlowValidationError as exc:
                raise ToolError("; ".join(str(p) for p in exc.problems), tool=name, node=ctx.node) from None
            finally:
                _RUNNING_FLOWS.reset(token)
            if not result.ok:
                raise ToolError(f"the flow failed: {result.error}", tool=name, node=ctx.node)
            return ToolResult(result.flow_outputs if result.flow_outputs is not None else result.outputs)

        return Tool(name=name, description=description, input_schema=schema, invoke=invoke)

    # -- the run --------------------------------------------------------------------------
    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        timeout = self.spec.timeout_s or DEFAULT_AGENT_TIMEOUT_S
        steps: list[dict[str, Any]] = []
        ctx.record.extra["steps"] = steps  # live, and kept in the trace when the loop fails
        deadline = time.monotonic() + timeout
        try:
            output = await within(self._loop(inputs, ctx, steps, deadline), timeout)
        except asyncio.TimeoutError:
            ctx.record.extra["stopped"] = {"limit": "timeout_s", "value": timeout}
            raise NodeTimeoutError(f"the agent did not finish within timeout_s={timeout:g} ({len(steps)} model calls made; "
                                   "raise timeout_s, or lower max_steps or tool_timeout_s)", node=self.id) from None
        del ctx.record.extra["steps"]  # they are in the output
        return output

    async def _loop(self, inputs: dict[str, Any], ctx: NodeContext, steps: list[dict[str, Any]], deadline: float) -> dict[str, Any]:
        cfg = self.config
        box = await self._toolbox(inputs, ctx)
        for flow in self._flows:  # functions the notebook registered on this flow reach the flows it calls
            flow.functions.update(ctx.functions)
        call = self._request({**inputs, **_as_chat(inputs), "stream": False})
        body = call.body
        messages: list[dict[str, Any]] = list(body["messages"])
        if cfg.mode == "react":
            messages = react_messages(messages, box.listing())
            body["stop"] = react_stop(body.get("stop"))
        else:
            body["tools"] = box.specs()
        last_text = ""
        for number in range(1, cfg.max_steps + 1):
            body["messages"] = messages
            started = time.perf_counter()
            answer = await self._ask(call, deadline, ctx)
            choice = answer["choices"][0]
            message = choice.get("message") or {}
            said = message.get("content")
            content = said if isinstance(said, str) else ""
            step: dict[str, Any] = {"step": number, "content": content, "finish_reason": choice.get("finish_reason"),
                                    "usage": answer.get("usage"), "duration_s": round(time.perf_counter() - started, 6), "tool_calls": []}
            steps.append(step)
            if cfg.mode == "react":
                calls, final = parse_react(content, number)
            else:
                calls, final = native_calls(message, number), content
            if not calls:
                return {"text": final, "steps": steps, "stopped": None}
            last_text = content
            if number == cfg.max_steps:
                step["tool_calls"] = [_not_run(c, f"the agent reached max_steps={cfg.max_steps}") for c in calls]
                break
            many = f"at most {MAX_CALLS_PER_STEP} tool calls of one answer run; ask for the others in the next"
            step["tool_calls"] = list(await asyncio.gather(*(
                self._call(box, call, ctx, deadline) if i < MAX_CALLS_PER_STEP else _as_done(_not_run(call, many))
                for i, call in enumerate(calls))))
            if cfg.mode == "react":
                messages.append({"role": "assistant", "content": content})
                messages.append({"role": "user", "content": _observations(step["tool_calls"])})
            else:
                messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": [c.openai() for c in calls]})
                messages += [{"role": "tool", "tool_call_id": done["id"], "content": _shown(done)} for done in step["tool_calls"]]
        if cfg.on_limit == "answer":
            return {"text": last_text, "steps": steps, "stopped": "max_steps"}
        asked = ", ".join(sorted({c["name"] for c in steps[-1]["tool_calls"]}))
        ctx.record.extra["stopped"] = {"limit": "max_steps", "value": cfg.max_steps}
        raise NodeError(f"the model still called tools ({asked}) at its last step: stopped at max_steps={cfg.max_steps}; raise max_steps, "
                        "or set on_limit: answer to take the model's last text", node=self.id, retryable=False)

    async def _ask(self, call: LlmCall, deadline: float, ctx: NodeContext) -> dict[str, Any]:
        """The model's whole answer, within what is left of the time budget."""
        try:
            return await self._answer(call, max(deadline - time.monotonic(), 0.001), ctx)
        except httpx.HTTPError as exc:
            raise call_error(exc, call.where, max(deadline - time.monotonic(), 0), node=self.id, secrets=call.secrets) from call.secrets.cause(exc)

    async def _toolbox(self, inputs: dict[str, Any], ctx: NodeContext) -> ToolBox:
        """The tools of this run: the registry's and the flows (from the warm-up), then each
        MCP server's, asked now (all at once)."""
        servers = []
        for i, given in enumerate(inputs.get("mcp_servers") or ()):
            try:
                servers.append(AgentServer.model_validate(given))
            except ValidationError as exc:
                raise NodeError(f"config.mcp_servers[{i}]: {exc.errors(include_url=False)[0]['msg']}", node=self.id, retryable=False) from None
        tool_ctx = self._tool_context(ctx, None)
        listings = await asyncio.gather(*(list_tools(s.name or f"server{i + 1}", s, tool_ctx) for i, s in enumerate(servers)))
        offered = list(self._tools)
        for listing in listings:
            offered += [(tool.name.rpartition("/")[2], tool) for tool in listing]
        return ToolBox(offered)

    def _tool_context(self, ctx: NodeContext, timeout_s: float | None) -> ToolContext:
        return ToolContext(node=self.id, base_dir=self.base_dir, http=lambda: ctx.http, blocking=ctx.run_blocking, timeout_s=timeout_s)

    async def _call(self, box: ToolBox, call: AskedCall, ctx: NodeContext, deadline: float) -> dict[str, Any]:
        """Run one tool call; what the trace and the model learn of it (never raises but
        for a cancel)."""
        done: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": call.shown_arguments}
        started = time.perf_counter()
        tool = box.find(call.name)
        if call.error is not None:
            done["error"] = call.error
        elif tool is None:
            done["error"] = f"there is no tool named {call.name!r}; the tools are: {', '.join(box.tools)}"
        else:
            done["tool"] = tool.name
            bound = max(min(self.config.tool_timeout_s, deadline - time.monotonic()), 0.001)
            try:
                result = await within(tool.call(call.arguments, self._tool_context(ctx, bound)), bound)
                done["result"] = self._cut(_result_text(result))
            except asyncio.TimeoutError:
                done["error"] = f"the tool did not finish within {bound:g} s"
            except ToolError as exc:
                done["error"] = self._cut(exc.detail)
            except Exception as exc:  # a tool outside the contract; the model hears of it all the same
                done["error"] = self._cut(f"{type(exc).__name__}: {exc}")
        done["duration_s"] = round(time.perf_counter() - started, 6)
        return done

    def _cut(self, text: str) -> str:
        most = self.config.max_result_chars
        return text if len(text) <= most else f"{text[:most]}... [{len(text) - most} more characters not shown]"


def _as_chat(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A `prompt` as the user's message of a chat."""
    if inputs.get("messages") is not None:
        return {}
    prompt = inputs.get("prompt")
    return {"messages": [{"role": "user", "content": prompt if isinstance(prompt, str) else str(prompt)}], "prompt": None}


def _not_run(call: AskedCall, why: str) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.shown_arguments, "error": f"not run: {why}"}


async def _as_done(done: dict[str, Any]) -> dict[str, Any]:
    return done


def _result_text(result: ToolResult) -> str:
    value = result.value
    if isinstance(value, str):
        text = value
    else:
        text = dumps(encode(value, limit(max_values=_RESULT_VALUES, on_limit="marker")).data)
    for file in result.files:
        text += f"\n[file {file.name}: {file.media_type}, {len(file.data):,} bytes, not shown]"
    return text


def _shown(done: Mapping[str, Any]) -> str:
    """A tool call's outcome as the model reads it."""
    return str(done["result"]) if "result" in done else f"error: {done['error']}"


def _observations(done: list[dict[str, Any]]) -> str:
    if len(done) == 1:
        return f"Observation: {_shown(done[0])}"
    return "\n".join(f"Observation ({d['name']}): {_shown(d)}" for d in done)

