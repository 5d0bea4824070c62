"""Dify nodes that ask a model to decide or extract: question-classifier -> an `llm` node
answering in JSON (its schema as `response_format`), a `python` node reading the class and
a `switch` on it; parameter-extractor -> an `llm` node and a `python` node reading the
parameters; agent -> the `agent` node (its model, instruction, tools, MCP servers)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from jupyter_flow.dify.bindings import BUILTIN_BINDINGS, ToolBinding, dify_tool_name, unbound_name
from jupyter_flow.dify.context import Built, Context
from jupyter_flow.dify.dsl import FUNCTIONS
from jupyter_flow.dify.text import literal

__all__ = ["agent", "binding", "classifier", "extractor"]

#: Dify's parameter types as JSON schemas
_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"}, "number": {"type": "number"}, "bool": {"type": "boolean"}, "boolean": {"type": "boolean"},
    "select": {"type": "string"}, "array[string]": {"type": "array", "items": {"type": "string"}},
    "array[number]": {"type": "array", "items": {"type": "number"}}, "array[bool]": {"type": "array", "items": {"type": "boolean"}},
    "array[object]": {"type": "array", "items": {"type": "object"}}}


def _node(fid: str, kind: str, config: dict[str, Any], title: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"id": fid, "type": kind, "config": config}
    if title:
        node["title"] = title
    return node


def _schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def _query(ctx: Context, data: Mapping[str, Any], key: str, where: str) -> str:
    selector = data.get(key)
    if isinstance(selector, list) and selector:
        return str(ctx.text(f"{{{{#{'.'.join(map(str, selector))}#}}}}", where=where))
    return str(ctx.text(str(selector or "{{#sys.query#}}"), where=where))


def _notes(ctx: Context, fid: str, data: Mapping[str, Any]) -> None:
    if isinstance(data.get("memory"), Mapping):
        ctx.result.approximated.append(f"node '{fid}': Dify's chat memory is not kept: each run sends this turn alone")
    vision = data.get("vision")
    if isinstance(vision, Mapping) and vision.get("enabled"):
        ctx.result.approximated.append(f"node '{fid}': images (Dify's vision setting) are not sent to the model")


def classifier(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    fid = ctx.ids[nid]
    classes = [{"id": str(c.get("id")), "name": str(c.get("name") or "")} for c in data.get("classes") or []]
    if not classes:
        raise ValueError(f"{where}: the classifier has no classes")
    names = [c["name"] for c in classes]
    instruction = str(ctx.text(str(data.get("instruction") or data.get("instructions") or ""), where=where))
    system = literal("Classify the user's text into exactly one of these classes: "
                     + ", ".join(json.dumps(n, ensure_ascii=False) for n in names)
                     + '. Answer with a JSON object {"class_name": "<one of the classes>"} and nothing else.')
    if instruction:
        system += literal("\nHow to classify:\n") + instruction
    schema = {"type": "object", "properties": {"class_name": {"type": "string", "enum": names}}, "required": ["class_name"],
              "additionalProperties": False}
    ask, route = ctx.fresh(f"{fid}_ask"), ctx.fresh(f"{fid}_route")
    config = {**ctx.model(data.get("model") or {}), "response_format": _schema_format("classification", schema),
              "messages": [{"role": "system", "content": system}, {"role": "user", "content": _query(ctx, data, "query_variable_selector", where)}]}
    parse = {"function": f"{FUNCTIONS}:classify", "input_mapping": {"text": f"{{{{ {ask}.output.text }}}}", "classes": classes}}
    if len(classes) > 1:
        cases: dict[str, Any] = {c["id"]: f"{{{{ {fid}.output.class_id == {json.dumps(c['id'])} }}}}" for c in classes[1:]}
        default = classes[0]["id"]
    else:
        cases, default = {classes[0]["id"]: True}, "none"
    _notes(ctx, fid, data)
    title = str(data.get("title") or "") or None
    return Built([_node(ask, "llm", config, title and f"{title}: ask"), _node(fid, "python", parse, title),
                  _node(route, "switch", {"cases": cases, "default": default}, title and f"{title}: route")],
                 edges=[{"from": ask, "to": fid}, {"from": fid, "to": route}])


def extractor(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    fid = ctx.ids[nid]
    params = [p for p in data.get("parameters") or [] if isinstance(p, Mapping) and p.get("name")]
    if not params:
        raise ValueError(f"{where}: the parameter extractor has no parameters")
    properties, lines = {}, []
    for p in params:
        kind = str(p.get("type") or "string")
        schema = dict(_SCHEMAS.get(kind, {"type": "string"}))
        if p.get("description"):
            schema["description"] = str(p["description"])
        if kind == "select" and p.get("options"):
            schema["enum"] = [str(o) for o in p["options"]]
        properties[str(p["name"])] = schema
        lines.append(f"- {p['name']} ({kind}{', required' if p.get('required') else ''}): {p.get('description') or ''}".rstrip(": "))
    instruction = str(ctx.text(str(data.get("instruction") or ""), where=where))
    system = literal("Extract these parameters from the user's text:\n" + "\n".join(lines)
                     + "\nAnswer with one JSON object holding them and nothing else; leave out a parameter the text does not give.")
    if instruction:
        system += literal("\n") + instruction
    schema = {"type": "object", "properties": properties, "required": [str(p["name"]) for p in params if p.get("required")]}
    ask = ctx.fresh(f"{fid}_ask")
    config = {**ctx.model(data.get("model") or {}), "response_format": _schema_format("parameters", schema),
              "messages": [{"role": "system", "content": system}, {"role": "user", "content": _query(ctx, data, "query", where)}]}
    declared = [{"name": str(p["name"]), "type": str(p.get("type") or "string"), "required": bool(p.get("required"))} for p in params]
    parse = {"function": f"{FUNCTIONS}:parameters", "input_mapping": {"text": f"{{{{ {ask}.output.text }}}}", "parameters": declared}}
    _notes(ctx, fid, data)
    title = str(data.get("title") or "") or None
    return Built([_node(ask, "llm", config, title and f"{title}: ask"), _node(fid, "python", parse, title)],
                 edges=[{"from": ask, "to": fid}])


def binding(ctx: Context, name: str, where: str) -> tuple[ToolBinding | None, str]:
    """The binding of the Dify tool `name` (`provider/tool`): the user's, then a built-in
    match; else None and the unbound registry name (the report says how to bind it)."""
    tool = name.split("/", 1)[1]
    found = ctx.options.tools.get(name) or ctx.options.tools.get(tool) or BUILTIN_BINDINGS.get(name)
    if found is not None:
        if found.approximated:
            ctx.result.approximated.append(f"{where}: Dify's tool {name} is {found.tool}: {found.approximated}")
        return found, found.tool
    unbound = unbound_name(name)
    ctx.result.bindings.append(f"{where}: Dify's tool {name} has no counterpart; bind it in a file given with --tools "
                               f"(a line `{name}: provider/tool`, e.g. python/my_module:my_function or mcp/<server>/<tool>), "
                               f"or register a tool named {unbound}")
    return None, unbound


def _parameter(value: Any) -> Any:
    return value.get("value") if isinstance(value, Mapping) and "value" in value else value


def agent(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    fid = ctx.ids[nid]
    params = {str(k): _parameter(v) for k, v in (data.get("agent_parameters") or {}).items()}
    model = params.get("model")
    config = ctx.model(model if isinstance(model, Mapping) else {})
    instruction = str(ctx.text(str(params.get("instruction") or ""), where=where))
    query = str(ctx.text(str(params.get("query") or "{{#sys.query#}}"), where=where))
    strategy = str(data.get("agent_strategy_name") or "function_calling")
    title = str(data.get("title") or "") or None
    tools: list[str] = []
    for entry in params.get("tools") or []:
        if isinstance(entry, Mapping) and entry.get("enabled", True):
            tools.append(binding(ctx, dify_tool_name(entry.get("provider_name"), entry.get("tool_name"), entry.get("type")), f"node '{fid}'")[1])
            if entry.get("settings") or any(v not in (None, "", {}) and not (isinstance(v, Mapping) and v.get("auto")) for v in (entry.get("parameters") or {}).values()):
                ctx.result.approximated.append(f"node '{fid}': the settings Dify gave the tool {entry.get('tool_name')} are not kept "
                                               "(the model gives every argument)")
    servers = _mcp_servers(ctx, fid, params.get("mcp_server") or params.get("mcp_servers"))
    if strategy not in ("function_calling", "ReAct", "react") or not (tools or servers):
        # a plugin's own strategy (such as a task-oriented dialogue), or an agent without tools
        others = {k: v for k, v in params.items() if k not in ("model", "instruction", "query", "tools", "mcp_server", "maximum_iterations")}
        system = instruction + "".join(str(ctx.text(f"\n{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}", where=where))
                                       for k, v in others.items())
        ctx.result.approximated.append(f"node '{fid}': the agent strategy {strategy!r}"
                                       f"{' with no tools' if not (tools or servers) else ''} is an llm node answering the query "
                                       "with the agent's settings as its system prompt")
        messages = ([{"role": "system", "content": system}] if system.strip() else []) + [{"role": "user", "content": query}]
        return Built([_node(fid, "llm", {**config, "messages": messages}, title)])
    messages = ([{"role": "system", "content": instruction}] if instruction.strip() else []) + [{"role": "user", "content": query}]
    config.update({"messages": messages, "mode": "react" if strategy.lower() == "react" else "native"})
    if tools:
        config["tools"] = tools
    if servers:
        config["mcp_servers"] = servers
    steps = params.get("maximum_iterations")
    if isinstance(steps, (int, float)) and not isinstance(steps, bool):
        config["max_steps"] = min(max(int(steps), 1), 100)
    config.pop("stream", None)
    return Built([_node(fid, "agent", config, title)])


def _mcp_servers(ctx: Context, fid: str, value: Any) -> list[dict[str, Any]]:
    """The MCP servers of an `mcp_agent` strategy: a URL, or JSON naming servers with
    their `url` and `headers`. A URL with its key taken out (`***`) is read from the
    environment instead."""
    if not value:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = {"mcp": {"url": value}}
    if not isinstance(value, Mapping):
        return []
    servers = []
    for name, server in (value.get("mcpServers") or value).items():
        if not isinstance(server, Mapping) or not isinstance(server.get("url"), str):
            continue
        url = str(server["url"])
        label = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_") or "mcp"
        if "*" in url:
            env = f"{fid.upper()}_{label.upper()}_URL"
            ctx.result.keys[env] = f"the address of the MCP server of node '{fid}' (the app's had its key taken out: {url})"
            url = f"${{{env}}}"
        entry: dict[str, Any] = {"url": url, "name": label}
        if isinstance(server.get("headers"), Mapping):
            entry["headers"] = {str(k): str(v) for k, v in server["headers"].items()}
        if "/sse" in str(server["url"]):
            ctx.result.approximated.append(f"node '{fid}': the MCP server {label!r} is spoken to over streamable HTTP; "
                                           "one that only speaks SSE needs its streamable HTTP address")
        servers.append(entry)
    return servers
