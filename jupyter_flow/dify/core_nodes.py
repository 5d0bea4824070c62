"""Dify nodes that have a flow node kind of their own: http-request -> `http`, code ->
`python`, if-else -> `switch`, template-transform -> `template`, variable aggregator ->
`coalesce`, llm -> `llm`, answer -> `template` (read by a declared output)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from jupyter_flow.dify.context import Built, Context, Unsupported
from jupyter_flow.dify.dsl import DIFY_REF, FUNCTIONS, LISTED, NUMERIC, OPERATOR_ALIASES, OPERATORS, SAFE_ID
from jupyter_flow.dify.text import literal

__all__ = ["answer", "code", "coalesce", "http", "llm", "switch", "template"]

#: words Jinja reads as its own where a variable's name goes
_JINJA_WORDS = {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else", "for", "recursive"}
#: what an llm node with memory sends as the user's message when Dify's settings say nothing
DEFAULT_QUERY = "{{#sys.query#}}"


def _titled(nid: str, data: Mapping[str, Any], ctx: Context, node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ctx.ids[nid]}
    if data.get("title"):
        out["title"] = str(data["title"])
    if data.get("desc"):
        out["description"] = str(data["desc"])
    return {**out, **node}


def _lines(ctx: Context, text: Any, where: str) -> dict[str, Any]:
    pairs = {}
    for line in str(text or "").splitlines():
        if line.strip():
            key, _, value = line.partition(":")
            pairs[key.strip()] = ctx.text(value.strip(), where=where)
    return pairs


def http(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    body = data.get("body") or {}
    btype, bdata = body.get("type") or "none", body.get("data")
    if btype in ("form-data", "binary"):
        raise Unsupported(f"http-request bodies of type {btype} cannot be imported")
    config: dict[str, Any] = {"endpoint": ctx.text(data["url"], where=where), "method": str(data.get("method") or "get").upper(),
                              "response": "full"}
    headers = _lines(ctx, data.get("headers"), where)
    auth = data.get("authorization") or {}
    if auth.get("type") == "api-key":
        conf = auth.get("config") or {}
        env = f"{ctx.ids[nid].upper()}_API_KEY"
        scheme = conf.get("type") or "bearer"
        header = str(conf.get("header") or "Authorization") if scheme == "custom" else "Authorization"
        headers[header] = {"bearer": f"Bearer ${{{env}}}", "basic": f"Basic ${{{env}}}"}.get(scheme, f"${{{env}}}")
        ctx.result.keys[env] = f"the API key node '{ctx.ids[nid]}' sends (Dify's key is not copied)"
        ctx.result.notes.append(f"node '{ctx.ids[nid]}': its API key is read from the environment variable {env}")
    if headers:
        config["headers"] = headers
    if data.get("params"):
        config["params"] = _lines(ctx, data["params"], where)
    parse: dict[str, Any] | None = None
    if btype in ("json", "raw-text"):
        text = bdata if isinstance(bdata, str) else "".join(str(d.get("value") or "") for d in bdata or [])
        if btype == "json":  # Dify fills in the references, then sends the text as JSON, refusing text that is not
            # the text as it is and each reference's value: json_body fills them in as the JSON around them reads them
            # (named by their template path, so that the flow does not depend on the app's node ids)
            paths = {m.group(0): ctx.path(m.group(1).strip().split("."), where=where) for m in DIFY_REF.finditer(text)}
            named = DIFY_REF.sub(lambda m: f"{{{{#{paths[m.group(0)]}#}}}}", text)
            parse = {"id": ctx.fresh(f"{ctx.ids[nid]}_body"), "type": "python",
                     "config": {"function": f"{FUNCTIONS}:json_body", "input_mapping": {
                         "text": literal(named), "values": {path: f"{{{{ {path} }}}}" for path in paths.values()}}}}
            config["body"] = f"{{{{ {parse['id']}.output.body }}}}"
        else:
            config["content"] = ctx.text(text, where=where)
        if not any(k.lower() == "content-type" for k in headers):  # what Dify sends them as
            config["headers"] = {**headers, "Content-Type": "application/json" if btype == "json" else "text/plain"}
    elif btype == "x-www-form-urlencoded":
        items = bdata if isinstance(bdata, list) else [{"key": k, "value": v} for k, v in _lines(ctx, bdata, where).items()]
        config["form"] = {str(d["key"]): ctx.text(d.get("value") or "", where=where) for d in items if d.get("key")}
    node: dict[str, Any] = {"type": "http", "config": config}
    timeouts = [float(v) for v in (data.get("timeout") or {}).values() if isinstance(v, (int, float)) and v > 0]
    if timeouts:
        node["timeout_s"] = max(timeouts)
    retry = data.get("retry_config") or {}
    if retry.get("retry_enabled"):
        node["retry"] = {"max_attempts": int(retry.get("max_retries") or 0) + 1,
                         "backoff_s": float(retry.get("retry_interval") or 0) / 1000, "multiplier": 1.0}
    if parse is not None:
        return Built([parse, _titled(nid, data, ctx, node)], edges=[{"from": parse["id"], "to": ctx.ids[nid]}])
    return Built([_titled(nid, data, ctx, node)])


def code(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    language = str(data.get("code_language") or "python3")
    if language != "python3":
        name = "JavaScript" if "javascript" in language.lower() else language
        raise Unsupported(f"a {language} code node needs a {name} runtime; rewrite it as Python (a `python` node)")
    fid = ctx.ids[nid]
    module = f"{ctx.options.module_prefix}_{fid}"
    declared = {str(k): str((v or {}).get("type") or "string") for k, v in (data.get("outputs") or {}).items()}
    code = str(data.get("code") or "")
    ctx.python_module(module, f"# Imported from the Dify code node {str(data.get('title') or nid)!r}.\n"
                              f"# Outputs Dify declared: {json.dumps(declared)}\n{code}{code_check(code, declared)}")
    mapping = {str(v["variable"]): ctx.ref(v["value_selector"], where=where) for v in data.get("variables") or []}
    return Built([_titled(nid, data, ctx, {"type": "python", "config": {"function": f"{module}:main", "input_mapping": mapping}})])


def code_check(code: str, declared: Mapping[str, str]) -> str:
    """The lines import adds after a code node's code: its `main` answers as Dify's code
    node does, a dict with the outputs it declares, each of its type (see `functions.checked_outputs`)."""
    if not declared or not re.search(r"^def main\(", code, re.MULTILINE):
        return ""
    return ("\n" if code.endswith("\n") else "\n\n") + (
        "# Added on import: Dify checks what main returns against the outputs it declares.\n"
        "from jupyter_flow.dify.functions import checked_outputs as _checked_outputs  # noqa: E402\n"
        f"main = _checked_outputs(main, {json.dumps(dict(declared), ensure_ascii=False)})\n")


def _literal(ctx: Context, value: Any, op: str, where: str) -> str:
    """Dify's comparison value as a template expression."""
    if isinstance(value, str) and (match := DIFY_REF.fullmatch(value.strip())):
        return ctx.path(match.group(1).strip().split("."), where=where)
    if op in LISTED:
        items = value if isinstance(value, list) else [v.strip() for v in str(value or "").split(",") if v.strip()]
        return json.dumps(items, ensure_ascii=False)
    if op in NUMERIC:
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            return str(int(number)) if number.is_integer() else repr(number)
    return json.dumps("" if value is None else str(value), ensure_ascii=False)


def condition(ctx: Context, cond: Mapping[str, Any], where: str, helpers: list[dict[str, Any]], owner: str) -> str:
    """One Dify comparison as a template condition. A comparison of the files of a list by
    their attributes (Dify's sub-variable condition) adds a `python` node to `helpers` that
    picks the files that match."""
    op = str(cond.get("comparison_operator"))
    op = OPERATOR_ALIASES.get(op, op)
    if op not in OPERATORS:
        raise Unsupported(f"the comparison {op!r} has no counterpart here")
    left = ctx.path(cond.get("variable_selector") or [], where=where)
    sub = cond.get("sub_variable_condition")
    if isinstance(sub, Mapping) and sub.get("conditions"):
        if op not in ("contains", "not contains", "all of") or sub.get("logical_operator") == "or":
            raise Unsupported(f"a comparison of files by their attributes with {op!r}"
                              f"{' joined by or' if sub.get('logical_operator') == 'or' else ''} cannot be imported")
        pick = ctx.fresh(f"{owner}_files")
        conditions = [{"key": c.get("key") or None, "comparison_operator": str(c.get("comparison_operator")), "value": c.get("value")}
                      for c in sub["conditions"]]
        helpers.append({"id": pick, "type": "python", "config": {"function": "jupyter_flow.dify.functions:list_operator",
                                                                   "input_mapping": {"items": f"{{{{ {left} }}}}", "conditions": conditions}}})
        found = f"{pick}.output.result | length"
        return {"contains": f"{found} > 0", "not contains": f"{found} == 0", "all of": f"{found} == ({left} or []) | length"}[op]
    return OPERATORS[op].format(L=left, V=_literal(ctx, cond.get("value"), op, where))


def switch(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    cases = data.get("cases")
    if cases is None:  # the form before several cases: one case, `true`
        cases = [{"case_id": "true", "conditions": data.get("conditions") or [], "logical_operator": data.get("logical_operator")}]
    config: dict[str, Any] = {"cases": {}, "default": "false"}
    helpers: list[dict[str, Any]] = []
    for case in cases:
        joiner = " or " if case.get("logical_operator") == "or" else " and "
        parts = [f"({condition(ctx, c, where, helpers, ctx.ids[nid])})" for c in case.get("conditions") or []]
        config["cases"][str(case.get("case_id") or case.get("id"))] = f"{{{{ {joiner.join(parts) or 'false'} }}}}"
    node = _titled(nid, data, ctx, {"type": "switch", "config": config})
    chain = [*helpers, node]
    return Built(chain, edges=[{"from": a["id"], "to": b["id"]} for a, b in zip(chain, chain[1:])])


def _variable(name: Any) -> str:
    """A Jinja variable of a Dify template: a plain name, else Unsupported naming it (it
    is written into the template: anything else would be template code)."""
    text = str(name)
    if not SAFE_ID.fullmatch(text) or text in _JINJA_WORDS:
        raise Unsupported(f"the template variable {text!r} is not a name a template can use (letters, digits, _)")
    return text


def template(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    pairs = [(_variable(v["variable"]), ctx.path(v["value_selector"], where=where)) for v in data.get("variables") or []]
    roots = {path.split(".")[0] for _, path in pairs}
    if len(pairs) > 1 and roots & {name for name, _ in pairs}:  # a variable named like a node: read every value before any is set
        sets = f"{{% set {', '.join(n for n, _ in pairs)} = {', '.join(p for _, p in pairs)} %}}"
    else:
        sets = "".join(f"{{% set {name} = {path} %}}" for name, path in pairs)
    return Built([_titled(nid, data, ctx, {"type": "template", "config": {"template": sets + str(data.get("template") or "")}})])


def coalesce(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    if not isinstance(data.get("variables"), list):
        raise Unsupported("only the variable aggregator form of variable-assigner can be imported")
    if (data.get("advanced_settings") or {}).get("group_enabled"):
        raise Unsupported("grouped variable aggregators cannot be imported")
    values = []
    for selector in data.get("variables") or []:
        path = ctx.path(selector, where=where)
        owner = path.split(".")[0]
        values.append(f"{{{{ {path} }}}}" if owner == "inputs" else f"{{{{ {path} if {owner}.status == 'ok' else none }}}}")
    return Built([_titled(nid, data, ctx, {"type": "coalesce", "config": {"values": values}})])


def answer(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    """An answer node: a template node rendering its text (a declared output reads it)."""
    return Built([_titled(nid, data, ctx, {"type": "template", "config": {"template": ctx.text(str(data.get("answer") or ""), where=where)}})])


def _context(ctx: Context, data: Mapping[str, Any], where: str) -> str | None:
    """What `{{#context#}}` reads: the context variable, retrieved documents as their
    contents one per line (as Dify writes them)."""
    context = data.get("context") or {}
    selector = context.get("variable_selector")
    if not context.get("enabled") or not selector:
        return None
    path = ctx.path(selector, where=where)
    if ctx.types.get(str(selector[0])) == "knowledge-retrieval":
        return f"{path} | map(attribute='content') | join('\\n')"
    return path


def _prompt(ctx: Context, item: Mapping[str, Any], where: str, context: str | None) -> str:
    if item.get("edition_type") == "jinja2":
        sets = "".join(f"{{% set {_variable(v['variable'])} = {ctx.path(v['value_selector'], where=where)} %}}"
                       for v in item.get("jinja2_variables") or [])
        return sets + str(item.get("jinja2_text") or "")
    return str(ctx.text(str(item.get("text") or ""), where=where, context=context))


def llm(ctx: Context, nid: str, data: Mapping[str, Any], where: str) -> Built:
    fid = ctx.ids[nid]
    context = _context(ctx, data, where)
    config = ctx.model(data.get("model") or {})
    prompt = data.get("prompt_template")
    memory = data.get("memory")
    if isinstance(prompt, list):
        config["messages"] = [{"role": str(m.get("role") or "user"), "content": _prompt(ctx, m, where, context)} for m in prompt]
        if isinstance(memory, Mapping) and not any(m["role"] == "user" for m in config["messages"]):
            query = str(memory.get("query_prompt_template") or "") or DEFAULT_QUERY
            config["messages"].append({"role": "user", "content": ctx.text(query, where=where)})
    else:
        config["prompt"] = _prompt(ctx, prompt or {}, where, context)
    schema = data.get("structured_output") if data.get("structured_output_enabled") else None
    if isinstance(schema, Mapping) and isinstance(schema.get("schema"), Mapping):
        config["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(schema["schema"])}}
    if isinstance(memory, Mapping):
        window = memory.get("window") or {}
        size = f" (a window of {window.get('size')} turns)" if window.get("enabled") and window.get("size") else ""
        ctx.result.approximated.append(f"node '{fid}': Dify's chat memory{size} is not kept: each run sends this turn alone")
    vision = data.get("vision")
    if isinstance(vision, Mapping) and vision.get("enabled"):
        ctx.result.approximated.append(f"node '{fid}': images (Dify's vision setting) are not sent to the model")
    return Built([_titled(nid, data, ctx, {"type": "llm", "config": config})])
