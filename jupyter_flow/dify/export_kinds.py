"""Flow nodes that go back to Dify as the node types import made them from: tool, agent,
pdf (document-extractor), an `http` node asking an External Knowledge API
(knowledge-retrieval), `python` nodes calling `jupyter_flow.dify.functions` (assigner,
list-operator, and with the `llm` node asking the model: question-classifier,
parameter-extractor), map (iteration). Each function gives the node's Dify data and adds
a problem naming the node and field to the exporter for what Dify cannot hold."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jupyter_flow.dify.bindings import dify_tool_of
from jupyter_flow.dify.dsl import AS_TEXT, FUNCTIONS, JINJA_REF
from jupyter_flow.dify.text import literal
from jupyter_flow.errors import Problem
from jupyter_flow.spec import NodeSpec

if TYPE_CHECKING:
    from jupyter_flow.dify.exporter import Exporter

__all__ = ["COMPLETION_PARAMS", "KNOWLEDGE_ENDPOINT", "agent", "assigner", "classifier", "document", "extractor",
           "knowledge", "list_operator", "model", "tool"]

KNOWLEDGE_ENDPOINT = "${DIFY_KNOWLEDGE_API_URL}/retrieval"
COMPLETION_PARAMS = ("temperature", "max_tokens", "top_p", "stop", "response_format")
#: where import's fixed text of a classifier's or extractor's system message ends (the app's instruction follows)
_CLASSIFY_MARK = literal("\nHow to classify:\n")
_EXTRACT_MARK = literal("leave out a parameter the text does not give.") + literal("\n")


def model(config: Mapping[str, Any], *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Dify's model settings of an llm or agent node's config."""
    params = {k: config[k] for k in COMPLETION_PARAMS if config.get(k) is not None and k not in exclude}
    return {"completion_params": params, "mode": "chat", "name": str(config.get("model") or ""), "provider": "openai_api_compatible"}


def _argument(ex: Exporter, value: Any, nid: str, where: str) -> dict[str, Any]:
    """A tool argument as Dify's tool parameter: a value taken whole, text, or a constant."""
    if isinstance(value, str):
        match = JINJA_REF.fullmatch(value.strip())
        if match is not None and AS_TEXT not in value:
            return {"type": "variable", "value": ex.selector(match.group(1), node=nid, where=where) or []}
        return {"type": "mixed", "value": ex.text(value, node=nid, where=where)}
    return {"type": "constant", "value": value}


def _tool_entry(name: str) -> dict[str, Any]:
    provider, tool_name = name.split("/", 1)
    return {"provider_id": provider, "provider_name": provider, "provider_type": "workflow" if provider == "workflow" else "builtin",
            "tool_name": tool_name}


def tool(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    c = ns.config
    found = dify_tool_of(str(c.get("tool")), c.get("arguments") or {})
    if c.get("server") is not None or found is None:
        ex.problems.append(Problem(f"the tool {c.get('tool')!r} is not one of Dify's (an imported Dify tool, unbound or bound to "
                                   "a built-in match, goes back)", node=ns.id, field="config.tool"))
        return {}
    name, arguments = found
    params = {k: _argument(ex, v, ns.id, f"config.arguments.{k}") for k, v in arguments.items()}
    return {**_tool_entry(name), "tool_configurations": {}, "tool_parameters": params}


def agent(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    c = ns.config
    messages = list(c.get("messages") or [])
    system = messages.pop(0)["content"] if messages and messages[0].get("role") == "system" else ""
    if len(messages) != 1 or messages[0].get("role") != "user":
        ex.problems.append(Problem("a Dify agent has an instruction and a query: give the messages as a system message (or "
                                   "none) and one user message", node=ns.id, field="config.messages"))
        return {}
    tools = []
    for i, name in enumerate(c.get("tools") or []):
        found = dify_tool_of(str(name), None)
        if found is None:
            ex.problems.append(Problem(f"the tool {name!r} is not one of Dify's", node=ns.id, field=f"config.tools[{i}]"))
            continue
        entry = _tool_entry(found[0])
        tools.append({"enabled": True, "provider_name": entry["provider_name"], "tool_name": entry["tool_name"],
                      "type": entry["provider_type"], "parameters": {}, "settings": {}})
    params: dict[str, Any] = {
        "instruction": {"type": "constant", "value": ex.text(system, node=ns.id, where="config.messages[0].content")},
        "model": {"type": "constant", "value": {**model(c), "model": str(c.get("model") or "")}},
        "query": {"type": "constant", "value": ex.text(messages[0]["content"], node=ns.id, where="config.messages")},
        "tools": {"type": "constant", "value": tools}}
    servers = {str(s.get("name") or "mcp"): {"url": s["url"], **({"headers": dict(s["headers"])} if s.get("headers") else {})}
               for s in c.get("mcp_servers") or [] if isinstance(s, Mapping) and s.get("url")}
    if servers:
        params["mcp_server"] = {"type": "constant", "value": json.dumps({"mcpServers": servers}, ensure_ascii=False)}
    if c.get("max_steps") is not None:
        params["maximum_iterations"] = {"type": "constant", "value": int(c["max_steps"])}
    return {"agent_strategy_name": "ReAct" if c.get("mode") == "react" else "function_calling",
            "agent_strategy_provider_name": "langgenius/agent/agent", "agent_parameters": params}


def document(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    extra = sorted(k for k in ns.config if k != "source")
    if extra:
        ex.problems.append(Problem(f"Dify's document extractor has no setting like {extra[0]!r}", node=ns.id, field=f"config.{extra[0]}"))
    return {"is_array_file": False, "variable_selector": ex.lone(ns.config.get("source"), node=ns.id, where="config.source") or []}


def knowledge(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    body = ns.config.get("input_mapping") or {}
    setting = body.get("retrieval_setting") or {}
    query = ex.lone(body.get("query"), node=ns.id, where="config.input_mapping.query") or []
    retrieval: dict[str, Any] = {"top_k": int(setting.get("top_k") or 4), "reranking_enable": False}
    if setting.get("score_threshold") is not None:
        retrieval["score_threshold"] = float(setting["score_threshold"])
    return {"dataset_ids": [str(body.get("knowledge_id"))], "query_variable_selector": query, "retrieval_mode": "multiple",
            "multiple_retrieval_config": retrieval}


def _constant(ex: Exporter, value: Any, nid: str, where: str) -> Any:
    """A value import wrote as a constant (text as literal text) as Dify's."""
    return ex.text(value, node=nid, where=where) if isinstance(value, str) else value


def assigner(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    items = []
    for i, item in enumerate((ns.config.get("input_mapping") or {}).get("items") or []):
        where = f"config.input_mapping.items[{i}]"
        target = ex.lone(item.get("current"), node=ns.id, where=f"{where}.current") or []
        value = item.get("value")
        match = JINJA_REF.fullmatch(value.strip()) if isinstance(value, str) else None
        entry: dict[str, Any] = {"variable_selector": target, "operation": str(item.get("operation") or "over-write")}
        if match is not None and AS_TEXT not in value:
            entry.update(input_type="variable", value=ex.selector(match.group(1), node=ns.id, where=f"{where}.value") or [])
        else:
            entry.update(input_type="constant", value=_constant(ex, value, ns.id, f"{where}.value"))
        items.append(entry)
    return {"version": "2", "items": items}


def list_operator(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    m = ns.config.get("input_mapping") or {}
    conditions = [{"key": c.get("key") or "", "comparison_operator": str(c.get("comparison_operator")),
                   "value": _constant(ex, c.get("value"), ns.id, f"config.input_mapping.conditions[{i}].value")}
                  for i, c in enumerate(m.get("conditions") or [])]
    return {"variable": ex.lone(m.get("items"), node=ns.id, where="config.input_mapping.items") or [],
            "filter_by": {"enabled": "conditions" in m, "conditions": conditions},
            "order_by": {"enabled": "order_by" in m, "key": str(m.get("order_by") or ""), "value": "desc" if m.get("descending") else "asc"},
            "limit": {"enabled": "limit" in m, "size": int(m.get("limit") or 0)},
            "extract_by": {"enabled": "take" in m, "serial": str(m.get("take") or "1")}}


def _asked(ex: Exporter, ns: NodeSpec, mark: str) -> tuple[NodeSpec, str, list[str]] | None:
    """The llm node asking the model for a classifier or extractor `ns`, the app's
    instruction (after `mark` in its system message) and the selector of its query."""
    ask = ex.asks.get(ns.id)
    messages = list(ask.config.get("messages") or []) if ask is not None else []
    if ask is None or len(messages) != 2 or [m.get("role") for m in messages] != ["system", "user"]:
        ex.problems.append(Problem("goes to Dify only with the llm node import made for it (asked with a system and a user message)",
                                   node=ns.id, field="config.input_mapping.text"))
        return None
    system = str(messages[0]["content"])
    instruction = system.split(mark, 1)[1] if mark in system else ""
    query = ex.lone(messages[1]["content"], node=ask.id, where="config.messages[1].content") or []
    return ask, ex.text(instruction, node=ask.id, where="config.messages[0].content"), query


def classifier(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    asked = _asked(ex, ns, _CLASSIFY_MARK)
    if asked is None:
        return {}
    ask, instruction, query = asked
    classes = [{"id": str(c["id"]), "name": str(c["name"])} for c in (ns.config.get("input_mapping") or {}).get("classes") or []]
    return {"classes": classes, "instruction": instruction, "model": model(ask.config, exclude=("response_format",)),
            "query_variable_selector": query}


def extractor(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    asked = _asked(ex, ns, _EXTRACT_MARK)
    if asked is None:
        return {}
    ask, instruction, query = asked
    schema = ((ask.config.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    properties = schema.get("properties") or {}
    parameters = []
    for p in (ns.config.get("input_mapping") or {}).get("parameters") or []:
        prop = properties.get(p["name"]) or {}
        entry = {"name": str(p["name"]), "type": str(p.get("type") or "string"), "description": str(prop.get("description") or ""),
                 "required": bool(p.get("required"))}
        if prop.get("enum"):
            entry["options"] = list(prop["enum"])
        parameters.append(entry)
    return {"instruction": instruction, "model": model(ask.config, exclude=("response_format",)), "parameters": parameters,
            "query": query, "reasoning_mode": "prompt"}


#: the python functions import calls for Dify nodes, and the Dify type each goes back to
PYTHON_KINDS = {f"{FUNCTIONS}:assign": ("assigner", assigner), f"{FUNCTIONS}:list_operator": ("list-operator", list_operator),
                f"{FUNCTIONS}:classify": ("question-classifier", classifier),
                f"{FUNCTIONS}:parameters": ("parameter-extractor", extractor)}
#: a classifier's route: `{{ ID.output.class_id == "class" }}`
ROUTE_CASE = re.compile(r"^\{\{ ([A-Za-z_][A-Za-z0-9_]*)\.output\.class_id == \"(?:[^\"\\]|\\.)*\" \}\}$")
