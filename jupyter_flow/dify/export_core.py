"""Flow nodes of the kinds Dify has one for, back to Dify: http -> http-request, python ->
code (its module's code), template -> template-transform, switch -> if-else, coalesce ->
variable-aggregator, llm -> llm. Each function gives the node's Dify data and adds a
problem naming the node and field to the exporter for what Dify cannot hold."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from jupyter_flow.dify.dsl import AS_TEXT, DIFY_REF, FOOTER, GUARDED, HEADER, LISTED, NUMERIC, OPERATOR_PATTERNS, PATH, SET, SET_ALL
from jupyter_flow.errors import Problem
from jupyter_flow.spec import NodeSpec

if TYPE_CHECKING:
    from jupyter_flow.dify.exporter import Exporter

__all__ = ["CORE_KINDS", "coalesce", "http", "llm", "python", "switch", "template"]

#: what import writes for `{{#context#}}` when the context is retrieved knowledge
_CONTEXT = re.compile(r"\{\{ (" + PATH + r") \| map\(attribute='content'\) \| join\('\\n'\) \| " + AS_TEXT + r" \}\}")
_CONTEXT_MARK = "\x00context\x00"
#: a comparison of files by their attributes: how many files the python node picked
_PICKED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.output\.result \| length (> 0|== 0|== \(" + PATH + r" or \[\]\) \| length)$")


def http(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    nid, c = ns.id, ns.config
    if c.get("response") != "full":
        ex.problems.append(Problem("Dify's http-request answers {body, status_code, headers}: set `response: full` first",
                                     node=nid, field="config.response"))
    headers = dict(c.get("headers") or {})
    auth: dict[str, Any] = {"config": None, "type": "no-auth"}
    for key, value in list(headers.items()):
        match = re.fullmatch(r"(Bearer |Basic )?\$\{([A-Za-z_][A-Za-z0-9_]*)\}", str(value))
        if match:
            scheme = {"Bearer ": "bearer", "Basic ": "basic"}.get(match.group(1) or "", "custom")
            if key == "Authorization" or scheme == "custom":
                auth = {"type": "api-key", "config": {"type": scheme, "api_key": "", "header": key}}
                del headers[key]
    lines = "\n".join(f"{k}:{ex.text(v, node=nid, where=f'config.headers.{k}')}" for k, v in headers.items())
    body: dict[str, Any] = {"type": "none", "data": []}
    if c.get("content") is not None:
        is_json = any(k.lower() == "content-type" and "json" in str(v) for k, v in headers.items())
        body = {"type": "json" if is_json else "raw-text",
                "data": [{"key": "", "type": "text", "value": ex.text(c["content"], node=nid, where="config.content")}]}
    elif c.get("form") is not None:
        body = {"type": "x-www-form-urlencoded", "data": [{"key": k, "type": "text", "value": ex.text(v, node=nid, where=f"config.form.{k}")}
                                                        for k, v in c["form"].items()]}
    elif (parse := _json_body(ex, ns)) is not None:  # the text Dify fills in and sends as JSON
        mapping = parse.config.get("input_mapping") or {}
        text = ex.text(mapping.get("text"), node=parse.id, where="config.input_mapping.text")
        refs = mapping.get("values")
        if isinstance(refs, dict):  # the text as it is: each reference's node and variable from its value
            def ref(match: re.Match[str]) -> str:
                sel = ex.lone(refs.get(match.group(1).strip()), node=parse.id, where=f"config.input_mapping.values.{match.group(1).strip()}")
                return f"{{{{#{'.'.join(sel)}#}}}}" if sel else ""
            text = DIFY_REF.sub(ref, text)
        body = {"type": "json", "data": [{"key": "", "type": "text", "value": text}]}
    elif c.get("input_mapping") is not None or c.get("body") is not None:
        ex.problems.append(Problem("a JSON body goes to Dify as `content` text (with Content-Type: application/json)",
                                     node=nid, field="config.input_mapping"))
    timeout = ns.timeout_s or 0
    retry = ns.retry
    return {"authorization": auth, "body": body, "headers": lines, "method": str(c.get("method") or "POST").lower(),
            "params": "\n".join(f"{k}:{ex.text(v, node=nid, where=f'config.params.{k}')}" for k, v in (c.get("params") or {}).items()),
            "timeout": {"max_connect_timeout": timeout, "max_read_timeout": timeout, "max_write_timeout": timeout},
            "retry_config": {"retry_enabled": retry is not None, "max_retries": (retry.max_attempts - 1) if retry else 0,
                             "retry_interval": int(round(retry.backoff_s * 1000)) if retry else 0},
            "url": ex.text(c["endpoint"], node=nid, where="config.endpoint"), "variables": []}

def _json_body(ex: Exporter, ns: NodeSpec) -> NodeSpec | None:
    """The python node import made to read an http-request's JSON body, when `ns` sends its body."""
    match = re.fullmatch(r"\{\{ ([A-Za-z_][A-Za-z0-9_]*)\.output\.body \}\}", str(ns.config.get("body")))
    parse = ex.by_id.get(match.group(1)) if match else None
    return parse if parse is not None and ex.alias.get(parse.id) == ns.id else None


def python(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    nid, c = ns.id, ns.config
    module, _, fn = str(c["function"]).partition(":")
    path = ex.beside_file(module, nid)
    if path is None:
        return {}
    if fn != "main":
        ex.problems.append(Problem(f"Dify code nodes call `main` of code kept in the app: name a function `main` in a module "
                                     f"beside the flow file (found {c['function']!r})", node=nid, field="config.function"))
        return {}
    try:
        code = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        ex.problems.append(Problem(f"cannot read {path}: {exc}", node=nid, field="config.function"))
        return {}
    match = HEADER.match(code)
    declared: dict[str, str] = json.loads(match.group(1)) if match else {}
    code = code[match.end():] if match else code
    if (added := FOOTER.search(code)) is not None:  # import adds it again
        code = code[:added.start()]
    if not declared:
        declared = {ref.split(".")[2]: "string" for ref in _refs_to(ex, nid)}
    variables = []
    for name, value in (c.get("input_mapping") or {}).items():
        sel = ex.lone(value, node=nid, where=f"config.input_mapping.{name}")
        variables.append({"value_selector": sel or [], "variable": name})
    return {"code": code, "code_language": "python3", "variables": variables,
            "outputs": {k: {"children": None, "type": v} for k, v in declared.items()}}

def _refs_to(ex: Exporter, nid: str) -> set[str]:
    text = json.dumps([n.config for n in ex.spec.nodes] + [ex.spec.outputs])
    return set(re.findall(rf"\b{nid}\.output\.[A-Za-z_][A-Za-z0-9_]*", text))

def template(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    nid, c = ns.id, ns.config
    text, variables, names = str(ex.plain(str(c["template"]))), [], {}
    if (match := SET_ALL.match(text)) is not None and len(match.group(1).split(", ")) == len(match.group(2).split(", ")):
        for name, path in zip(match.group(1).split(", "), match.group(2).split(", ")):
            variables.append({"value_selector": ex.selector(path, node=nid, where="config.template") or [], "variable": name})
            names[path] = name
        text = text[match.end():]
    while (match := SET.match(text)) is not None:
        sel = ex.selector(match.group(2), node=nid, where="config.template")
        variables.append({"value_selector": sel or [], "variable": match.group(1)})
        names[match.group(2)] = match.group(1)
        text = text[match.end():]

    def sub(match: re.Match[str]) -> str:  # a reference in the body becomes a variable of its own
        path = match.group(0)
        if path not in names:
            names[path] = re.sub(r"\W", "_", path.replace(".output.", "_"))
            variables.append({"value_selector": ex.selector(path, node=nid, where="config.template") or [], "variable": names[path]})
        return names[path]

    roots = "|".join(re.escape(r) for r in ["inputs", *ex.kinds])
    text = re.sub(rf"\b(?:{roots})\.(?:output\.)?[A-Za-z_][\w.]*", sub, text)
    return {"template": text, "variables": variables}

def switch(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    nid, c = ns.id, ns.config
    if c.get("default", "default") != "false":
        ex.problems.append(Problem("Dify's if-else calls its last branch 'false': set `default: \"false\"`", node=nid, field="config.default"))
    cases = []
    for name, cond in c["cases"].items():
        inner = str(ex.plain(str(cond))).strip()
        joiner, conditions = "and", []
        if inner.startswith("{{ (") and inner.endswith(") }}"):
            body = inner[4:-4]
            joiner = "or" if ") or (" in body else "and"
            for part in body.split(f") {joiner} ("):
                conditions.append(_comparison(ex, part, nid, name))
        else:
            ex.problems.append(Problem("a case goes to Dify only in the form {{ (a == 1) and (b > 2) }}", node=nid, field=f"config.cases.{name}"))
        cases.append({"case_id": name, "id": name, "logical_operator": joiner, "conditions": conditions})
    return {"cases": cases}

def _files(ex: Exporter, text: str, nid: str, case: str) -> dict[str, Any] | None:
    """A comparison of the files of a list by their attributes (Dify's sub-variable
    condition), as import writes it: a python node picking the files, and its count."""
    match = _PICKED.match(text)
    picker = ex.by_id.get(match.group(1)) if match else None
    if match is None or picker is None or ex.alias.get(picker.id) != nid:
        return None
    op = {"> 0": "contains", "== 0": "not contains"}.get(match.group(2), "all of")
    mapping = picker.config.get("input_mapping") or {}
    conditions = [{"key": c.get("key") or "", "comparison_operator": str(c.get("comparison_operator")), "value": c.get("value")}
                  for c in mapping.get("conditions") or []]
    return {"comparison_operator": op, "id": f"{case}-{op}", "value": "", "varType": "array[file]",
            "variable_selector": ex.lone(mapping.get("items"), node=picker.id, where="config.input_mapping.items") or [],
            "sub_variable_condition": {"logical_operator": "and", "conditions": conditions}}


def _comparison(ex: Exporter, text: str, nid: str, case: str) -> dict[str, Any]:
    files = _files(ex, text, nid, case)
    if files is not None:
        return files
    for op, pattern in OPERATOR_PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        value = match.groupdict().get("value")
        listed = value is not None and value.startswith("[")
        if value is not None and (listed != (op in LISTED) or (not listed and value.startswith('"') == (op in NUMERIC))):
            continue  # `==` with a number is Dify's `=`, with text its `is`; a list goes with `in`
        sel = ex.selector(match.group("left"), node=nid, where=f"config.cases.{case}")
        shown: Any = json.loads(value) if value is not None and value[0] in '"[' else value
        return {"comparison_operator": op, "id": f"{case}-{op}", "value": shown if listed else "" if shown is None else str(shown),
                "varType": "number" if op in NUMERIC else "array[string]" if listed else "string", "variable_selector": sel or []}
    ex.problems.append(Problem(f"the condition {text!r} has no Dify comparison", node=nid, field=f"config.cases.{case}"))
    return {}

def coalesce(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    nid, c = ns.id, ns.config
    variables = []
    for i, value in enumerate(c["values"]):
        match = GUARDED.match(str(value))
        sel = ex.selector(match.group(1), node=nid, where=f"config.values[{i}]") if match else ex.lone(value, node=nid, where=f"config.values[{i}]")
        variables.append(sel or [])
    return {"output_type": "string", "variables": variables}

def llm(ex: Exporter, ns: NodeSpec) -> dict[str, Any]:
    nid, c = ns.id, ns.config
    params = {k: c[k] for k in ("temperature", "max_tokens", "top_p", "stop", "response_format") if c.get(k) is not None}
    data: dict[str, Any] = {"context": {"enabled": False, "variable_selector": []}, "vision": {"enabled": False},
                            "model": {"completion_params": params, "mode": "chat" if c.get("messages") is not None else "completion",
                                      "name": c["model"], "provider": "openai_api_compatible"}}
    context: list[str] = []

    def prompt(value: Any, where: str) -> str:
        def found(match: re.Match[str]) -> str:  # retrieved knowledge: Dify's {{#context#}}
            context.append(match.group(1))
            return _CONTEXT_MARK
        return ex.text(_CONTEXT.sub(found, str(value)), node=nid, where=where).replace(_CONTEXT_MARK, "{{#context#}}")

    if c.get("messages") is not None:
        data["prompt_template"] = [{"id": f"{nid}-{i}", "role": m["role"], "text": prompt(m["content"], f"config.messages[{i}].content")}
                                   for i, m in enumerate(c["messages"])]
    else:
        data["prompt_template"] = {"text": prompt(c["prompt"], "config.prompt")}
    if context:
        if len(set(context)) > 1:
            ex.problems.append(Problem("a Dify llm node reads one context: these prompts read retrieved knowledge of "
                                         f"{len(set(context))} nodes", node=nid, field="config.messages"))
        data["context"] = {"enabled": True, "variable_selector": ex.selector(context[0], node=nid, where="config.messages") or []}
    return data


#: the kinds above, by flow node kind
CORE_KINDS = {"http": http, "python": python, "template": template, "switch": switch, "coalesce": coalesce, "llm": llm}
