"""Dify nodes that fetch or reshape data: tool -> the `tool` node; knowledge-retrieval ->
an `http` node speaking Dify's External Knowledge API; document-extractor -> the `pdf`
node; list-operator and variable assigner -> `python` nodes calling
`jupyter_flow.dify.functions`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jupyter_flow.dify.bindings import dify_tool_name
from jupyter_flow.dify.context import Built, Context, Unsupported
from jupyter_flow.dify.dsl import FUNCTIONS
from jupyter_flow.dify.model_nodes import binding
from jupyter_flow.dify.text import literal

__all__ = ["KNOWLEDGE_KEY_ENV", "KNOWLEDGE_URL_ENV", "assigner", "document", "knowledge", "list_operator", "tool"]

#: the environment variables naming the External Knowledge API server and its key
KNOWLEDGE_URL_ENV = "DIFY_KNOWLEDGE_API_URL"
KNOWLEDGE_KEY_ENV = "DIFY_KNOWLEDGE_API_KEY"


def _node(nid: str, data: Mapping[str, Any], ctx: Context, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"id": ctx.ids[nid], "type": kind, "config": config}
    if data.get("title"):
        node["title"] = str(data["title"])
    if data.get("desc"):
        node["description"] = str(data["desc"])
    return node


def _constant(value: Any) -> Any:
    return literal(value) if isinstance(value, str) else value


def tool(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    fid = ctx.ids[nid]
    name = dify_tool_name(data.get("provider_id") or data.get("provider_name"), data.get("tool_name"), data.get("provider_type"))
    found, registry_name = binding(ctx, name, f"node '{fid}'")
    given: dict[str, Any] = {}
    for key, value in (data.get("tool_configurations") or {}).items():
        value = value.get("value") if isinstance(value, Mapping) and "value" in value else value
        if value not in (None, ""):
            given[str(key)] = _constant(value)
    for key, param in (data.get("tool_parameters") or {}).items():
        if not isinstance(param, Mapping):
            given[str(key)] = _constant(param)
        elif param.get("type") == "variable" and isinstance(param.get("value"), list):
            given[str(key)] = ctx.ref(param["value"], where=where)
        elif param.get("type") == "mixed":
            given[str(key)] = ctx.text(param.get("value"), where=where)
        else:
            given[str(key)] = _constant(param.get("value"))
    if found is None or found.arguments is None:
        arguments = given
    else:
        arguments = {new: given[old] for new, old in found.arguments.items() if old in given}
    config: dict[str, Any] = {"tool": registry_name, "arguments": {**arguments, **(found.fixed if found else {})}}
    if found is not None and found.server is not None:
        config["server"] = dict(found.server)
    return Built([_node(nid, data, ctx, "tool", config)])


def knowledge(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    fid = ctx.ids[nid]
    datasets = [str(d) for d in data.get("dataset_ids") or []]
    if not datasets:
        raise ValueError(f"{where}: the knowledge retrieval names no knowledge base")
    selector = data.get("query_variable_selector") or ["sys", "query"]
    settings = data.get("multiple_retrieval_config") or data.get("single_retrieval_config") or {}
    retrieval: dict[str, Any] = {"top_k": int(settings.get("top_k") or 4)}
    if settings.get("score_threshold") is not None:
        retrieval["score_threshold"] = float(settings["score_threshold"])
    config = {"endpoint": f"${{{KNOWLEDGE_URL_ENV}}}/retrieval", "method": "POST",
              "headers": {"Authorization": f"Bearer ${{{KNOWLEDGE_KEY_ENV}}}"},
              "input_mapping": {"knowledge_id": datasets[0], "query": ctx.text(f"{{{{#{'.'.join(map(str, selector))}#}}}}", where=where),
                                "retrieval_setting": retrieval},
              "output_mapping": {"result": "{{ response.records }}"}}
    ctx.result.keys.setdefault(KNOWLEDGE_URL_ENV, "the address of a server speaking Dify's External Knowledge API "
                                                  "(POST {address}/retrieval) for knowledge-retrieval nodes")
    ctx.result.keys.setdefault(KNOWLEDGE_KEY_ENV, "the API key of that server (sent as a bearer token)")
    if len(datasets) > 1:
        ctx.result.approximated.append(f"node '{fid}': asks the first of its {len(datasets)} knowledge bases ({datasets[0]}) only")
    ctx.result.approximated.append(f"node '{fid}': knowledge base {datasets[0]} is asked through the External Knowledge API "
                                   "(Dify's own reranking and metadata filters are not applied)")
    return Built([_node(nid, data, ctx, "http", config)])


def document(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    if data.get("is_array_file"):
        raise Unsupported("a document extractor of a list of files cannot be imported (the pdf node reads one file)")
    selector = data.get("variable_selector") or []
    ctx.result.approximated.append(f"node '{ctx.ids[nid]}': documents are read as PDFs (Word, text, HTML and other "
                                   "documents Dify reads are not)")
    return Built([_node(nid, data, ctx, "pdf", {"source": ctx.ref(selector, where=where)})])


def list_operator(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    mapping: dict[str, Any] = {"items": ctx.ref(data.get("variable") or [], where=where)}
    filters = data.get("filter_by") or {}
    if filters.get("enabled"):
        mapping["conditions"] = [{"key": c.get("key") or None, "comparison_operator": str(c.get("comparison_operator")),
                                  "value": _constant(c.get("value"))} for c in filters.get("conditions") or []]
    order = data.get("order_by") or {}
    if order.get("enabled"):
        mapping["order_by"] = str(order.get("key") or "")
        mapping["descending"] = order.get("value") == "desc"
    limit = data.get("limit") or {}
    if limit.get("enabled"):
        mapping["limit"] = int(limit.get("size") or 0)
    extract = data.get("extract_by") or {}
    if extract.get("enabled") and str(extract.get("serial") or "").isdigit():
        mapping["take"] = int(extract["serial"])
    if str(data.get("item_var_type") or "") == "file":
        ctx.result.approximated.append(f"node '{ctx.ids[nid]}': files are paths here; their type, extension and media type "
                                       "come from the file name")
    return Built([_node(nid, data, ctx, "python", {"function": f"{FUNCTIONS}:list_operator", "input_mapping": mapping})])


def assigner(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    if isinstance(data.get("items"), list):
        entries = [(i.get("variable_selector"), i.get("operation") or i.get("write_mode"), i.get("input_type"), i.get("value"))
                   for i in data["items"]]
    else:
        entries = [(data.get("assigned_variable_selector"), data.get("write_mode"), "variable", data.get("input_variable_selector"))]
    items, keep = [], []
    for target, operation, input_type, value in entries:
        if not isinstance(target, list) or len(target) < 2:
            raise ValueError(f"{where}: an assignment names no variable")
        name = str(target[-1])
        op = str(operation or "over-write")
        given: Any = None
        if op not in ("clear", "remove-first", "remove-last"):
            given = ctx.ref(value, where=where) if input_type != "constant" and isinstance(value, list) else _constant(value)
        items.append({"variable": name, "current": ctx.ref(target, where=where), "value": given, "operation": op})
        if str(target[0]) == "conversation" and ctx.state is not None and name not in keep:
            keep.append(name)
    mapping: dict[str, Any] = {"items": items}
    node = _node(nid, data, ctx, "python", {"function": f"{FUNCTIONS}:assign", "input_mapping": mapping})
    if keep:  # written to the conversation's store: it runs every time
        mapping.update({**ctx.conversation_mapping(), "keep": keep})
        node["cache"] = False
    else:
        names = ", ".join(repr(i["variable"]) for i in items)
        ctx.result.approximated.append(f"node '{ctx.ids[nid]}': the new values of {names} are its output, which the nodes after it "
                                       "read; the flow does not keep them for the next run (Dify keeps conversation variables between turns)")
    return Built([node])
