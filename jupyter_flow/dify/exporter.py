"""Flow -> Dify DSL, for flows made of kinds Dify has; refusals name node and field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from jupyter_flow.dify.dsl import (
    DIFY_TYPES,
    DIFY_VERSION,
    EXPORTABLE,
    GUARDED,
    HEADER,
    JINJA_REF,
    LISTED,
    LITERAL_BRACE,
    NUMERIC,
    OPERATOR_PATTERNS,
    SET,
)
from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.sourcecheck import beside_module
from jupyter_flow.spec import START, FlowSpec, PathLike

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow

__all__ = ["export_dify"]

#: what import writes into text: a literal `{`, or a plain reference
_TEXT_PART = re.compile(re.escape(LITERAL_BRACE) + "|" + JINJA_REF.pattern)

class _Exporter:
    def __init__(self, spec: FlowSpec, base_dir: Path | None) -> None:
        self.spec, self.base_dir = spec, base_dir
        self.kinds = {n.id: n.type for n in spec.nodes}
        self.problems: list[Problem] = []
        #: template nodes that stand for Dify answer nodes: a declared output of the same name reads each
        self.answers = {n.id for n in spec.nodes if n.type == "template" and
                        str(spec.outputs.get(n.id, "")).strip() == f"{{{{ {n.id}.output.text }}}}"}

    def selector(self, path: str, *, node: str | None, where: str) -> list[str] | None:
        parts = path.split(".")
        if parts[0] == "inputs" and len(parts) > 1:
            return ["start", *parts[1:]]
        if parts[0] in self.spec.inputs:
            return ["start", *parts]
        if parts[0] in self.kinds and len(parts) > 2 and parts[1] == "output":
            rest = parts[2:]
            if self.kinds[parts[0]] == "template" and rest[0] == "text":
                rest = ["answer" if parts[0] in self.answers else "output", *rest[1:]]
            return [parts[0], *rest]
        self.problems.append(Problem(f"`{path}` is not a value Dify can reference", node=node, field=where))
        return None

    def text(self, value: Any, *, node: str | None, where: str) -> str:
        if not isinstance(value, str):
            return json.dumps(value) if not isinstance(value, (int, float)) else str(value)
        out: list[str] = []
        end = 0
        for match in _TEXT_PART.finditer(value):
            out.append(value[end:match.start()])
            end = match.end()
            if match.group(0) == LITERAL_BRACE:
                out.append("{")
                continue
            sel = self.selector(match.group(1), node=node, where=where)
            out.append(f"{{{{#{'.'.join(sel)}#}}}}" if sel else "")
        out.append(value[end:])
        if any("{{" in part or "{%" in part or "{#" in part for part in out[::2]):
            self.problems.append(Problem("has a template Dify cannot express (only plain references like "
                                         "{{ node.output.field }} go over)", node=node, field=where))
        return "".join(out)

    def lone(self, value: Any, *, node: str | None, where: str) -> list[str] | None:
        match = JINJA_REF.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            self.problems.append(Problem("must be one plain reference such as {{ node.output.field }} to go to Dify", node=node, field=where))
            return None
        return self.selector(match.group(1), node=node, where=where)

    def export(self) -> dict[str, Any]:
        spec = self.spec
        for ns in spec.nodes:
            if ns.type not in EXPORTABLE:
                self.problems.append(Problem(f"'{ns.type}' nodes have no Dify counterpart (Dify has: {', '.join(sorted(EXPORTABLE))})",
                                             node=ns.id, field="type"))
            if ns.variants or ns.shadow or ns.on_error != "fail":
                self.problems.append(Problem("variants, shadow and on_error have no Dify counterpart", node=ns.id))
        for i, edge in enumerate(spec.edges):
            if edge.when is not None or edge.on == "error":
                self.problems.append(Problem("conditional and error edges have no Dify counterpart (use a switch)", edge=i))
        nodes = [self._start()]
        for ns in spec.nodes:
            if ns.id in self.answers:
                nodes.append(self._node(ns.id, {"title": ns.title or ns.id, "type": "answer", "variables": [],
                                                "answer": self.text(ns.config["template"], node=ns.id, where="config.template")}))
            elif ns.type in EXPORTABLE:
                nodes.append(self._node(ns.id, self._data(ns)))
        end = self._end()
        if end is not None:
            nodes.append(end)
        if self.problems:
            raise FlowValidationError(self.problems)
        chat = bool(self.answers) or (end is not None and end["data"]["type"] == "answer")
        return {"app": {"description": spec.description or "", "icon": "🤖", "icon_background": "#FFEAD5",
                        "mode": "advanced-chat" if chat else "workflow",
                        "name": spec.name, "use_icon_as_answer_icon": False},
                "kind": "app", "version": DIFY_VERSION,
                "workflow": {"conversation_variables": [], "environment_variables": [], "features": {},
                             "graph": {"edges": self._edges(end), "nodes": nodes, "viewport": {"x": 0, "y": 0, "zoom": 1}}}}

    def _node(self, nid: str, data: dict[str, Any]) -> dict[str, Any]:
        pos = self.spec.layout.get(nid)
        xs = [p.x for p in self.spec.layout.values()] or [0.0]
        if pos is not None:
            position = {"x": pos.x, "y": pos.y}
        else:
            position = {"x": min(xs) - 300 if nid == "start" else max(xs) + 300, "y": 0.0}
        return {"data": {"desc": "", "selected": False, **data}, "height": 90, "id": nid, "position": position,
                "positionAbsolute": position, "selected": False, "sourcePosition": "right", "targetPosition": "left",
                "type": "custom", "width": 244}

    def _start(self) -> dict[str, Any]:
        variables = []
        for name, spec in self.spec.inputs.items():
            label, options = spec.description or name, list[str]()
            match = re.fullmatch(r"(.*) \(one of: (.*)\)", label)
            if match:
                label, options = match.group(1), match.group(2).split(", ")
            var: dict[str, Any] = {"label": label, "max_length": 48 if spec.type == "string" else None,
                                   "options": options, "required": spec.is_required,
                                   "type": "select" if options else DIFY_TYPES.get(spec.type, "text-input"), "variable": name}
            if spec.default is not None:
                var["default"] = spec.default
            variables.append(var)
        return self._node("start", {"title": "Start", "type": "start", "variables": variables})

    def _end(self) -> dict[str, Any] | None:
        outputs = {k: v for k, v in self.spec.outputs.items() if k not in self.answers}
        if not outputs and self.answers:
            return None
        if set(outputs) == {"answer"}:
            return self._node("answer", {"title": "Answer", "type": "answer", "variables": [],
                                         "answer": self.text(outputs["answer"], node=None, where="outputs.answer")})
        ends = []
        for name, value in outputs.items():
            sel = self.lone(value, node=None, where=f"outputs.{name}")
            if sel:
                ends.append({"value_selector": sel, "variable": name})
        return self._node("end", {"title": "End", "type": "end", "outputs": ends})

    def _data(self, ns: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"title": ns.title or ns.id, "type": EXPORTABLE[ns.type]}
        if ns.description:
            data["desc"] = ns.description
        data.update(getattr(self, f"_{ns.type}")(ns.id, ns.config, ns))
        return data

    def _http(self, nid: str, c: Mapping[str, Any], ns: Any) -> dict[str, Any]:
        if c.get("response") != "full":
            self.problems.append(Problem("Dify's http-request answers {body, status_code, headers}: set `response: full` first",
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
        lines = "\n".join(f"{k}:{self.text(v, node=nid, where=f'config.headers.{k}')}" for k, v in headers.items())
        body: dict[str, Any] = {"type": "none", "data": []}
        if c.get("content") is not None:
            is_json = any(k.lower() == "content-type" and "json" in str(v) for k, v in headers.items())
            body = {"type": "json" if is_json else "raw-text",
                    "data": [{"key": "", "type": "text", "value": self.text(c["content"], node=nid, where="config.content")}]}
        elif c.get("form") is not None:
            body = {"type": "x-www-form-urlencoded", "data": [{"key": k, "type": "text", "value": self.text(v, node=nid, where=f"config.form.{k}")}
                                                            for k, v in c["form"].items()]}
        elif c.get("input_mapping") is not None or c.get("body") is not None:
            self.problems.append(Problem("a JSON body goes to Dify as `content` text (with Content-Type: application/json)",
                                         node=nid, field="config.input_mapping"))
        timeout = ns.timeout_s or 0
        retry = ns.retry
        return {"authorization": auth, "body": body, "headers": lines, "method": str(c.get("method") or "POST").lower(),
                "params": "\n".join(f"{k}:{self.text(v, node=nid, where=f'config.params.{k}')}" for k, v in (c.get("params") or {}).items()),
                "timeout": {"max_connect_timeout": timeout, "max_read_timeout": timeout, "max_write_timeout": timeout},
                "retry_config": {"retry_enabled": retry is not None, "max_retries": (retry.max_attempts - 1) if retry else 0,
                                 "retry_interval": int(round(retry.backoff_s * 1000)) if retry else 0},
                "url": self.text(c["endpoint"], node=nid, where="config.endpoint"), "variables": []}

    def _python(self, nid: str, c: Mapping[str, Any], ns: Any) -> dict[str, Any]:
        module, _, fn = str(c["function"]).partition(":")
        path = self._beside(module, nid)
        if path is None:
            return {}
        if fn != "main":
            self.problems.append(Problem(f"Dify code nodes call `main` of code kept in the app: name a function `main` in a module "
                                         f"beside the flow file (found {c['function']!r})", node=nid, field="config.function"))
            return {}
        try:
            code = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(Problem(f"cannot read {path}: {exc}", node=nid, field="config.function"))
            return {}
        match = HEADER.match(code)
        declared: dict[str, str] = json.loads(match.group(1)) if match else {}
        code = code[match.end():] if match else code
        if not declared:
            declared = {ref.split(".")[2]: "string" for ref in self._refs_to(nid)}
        variables = []
        for name, value in (c.get("input_mapping") or {}).items():
            sel = self.lone(value, node=nid, where=f"config.input_mapping.{name}")
            variables.append({"value_selector": sel or [], "variable": name})
        return {"code": code, "code_language": "python3", "variables": variables,
                "outputs": {k: {"children": None, "type": v} for k, v in declared.items()}}

    def _beside(self, module: str, nid: str) -> Path | None:
        """The file of `module` when it is a plain name whose `.py` lies in the flow's folder
        (a symbolic link included, resolved); None with a problem otherwise. Nothing outside
        the folder is read: a `../` or an absolute path is refused by name, unopened."""
        where = "config.function"
        if not module.isidentifier():
            self.problems.append(Problem(f"the module {module!r} is not a plain name: export reads only modules beside the flow "
                                         "file (no `/`, `..` or dotted names)", node=nid, field=where))
            return None
        folder = self.base_dir.resolve() if self.base_dir is not None else None
        path = beside_module(module, folder)
        if folder is None or path is None:
            self.problems.append(Problem(f"Dify code nodes keep their code in the app: no {module}.py beside the flow file",
                                         node=nid, field=where))
            return None
        if not path.resolve().is_relative_to(folder):
            self.problems.append(Problem(f"{module}.py leads outside the flow's folder (to {path.resolve()}): export reads only "
                                         "modules in it", node=nid, field=where))
            return None
        return path

    def _refs_to(self, nid: str) -> set[str]:
        text = json.dumps([n.config for n in self.spec.nodes] + [self.spec.outputs])
        return set(re.findall(rf"\b{nid}\.output\.[A-Za-z_][A-Za-z0-9_]*", text))

    def _template(self, nid: str, c: Mapping[str, Any], ns: Any) -> dict[str, Any]:
        text, variables, names = str(c["template"]), [], {}
        while (match := SET.match(text)) is not None:
            sel = self.selector(match.group(2), node=nid, where="config.template")
            variables.append({"value_selector": sel or [], "variable": match.group(1)})
            names[match.group(2)] = match.group(1)
            text = text[match.end():]

        def sub(match: re.Match[str]) -> str:  # a reference in the body becomes a variable of its own
            path = match.group(0)
            if path not in names:
                names[path] = re.sub(r"\W", "_", path.replace(".output.", "_"))
                variables.append({"value_selector": self.selector(path, node=nid, where="config.template") or [], "variable": names[path]})
            return names[path]

        roots = "|".join(re.escape(r) for r in ["inputs", *self.kinds])
        text = re.sub(rf"\b(?:{roots})\.(?:output\.)?[A-Za-z_][\w.]*", sub, text)
        return {"template": text, "variables": variables}

    def _switch(self, nid: str, c: Mapping[str, Any], ns: Any) -> dict[str, Any]:
        if c.get("default", "default") != "false":
            self.problems.append(Problem("Dify's if-else calls its last branch 'false': set `default: \"false\"`", node=nid, field="config.default"))
        cases = []
        for name, cond in c["cases"].items():
            inner = str(cond).strip()
            joiner, conditions = "and", []
            if inner.startswith("{{ (") and inner.endswith(") }}"):
                body = inner[4:-4]
                joiner = "or" if ") or (" in body else "and"
                for part in body.split(f") {joiner} ("):
                    conditions.append(self._comparison(part, nid, name))
            else:
                self.problems.append(Problem("a case goes to Dify only in the form {{ (a == 1) and (b > 2) }}", node=nid, field=f"config.cases.{name}"))
            cases.append({"case_id": name, "id": name, "logical_operator": joiner, "conditions": conditions})
        return {"cases": cases}

    def _comparison(self, text: str, nid: str, case: str) -> dict[str, Any]:
        for op, pattern in OPERATOR_PATTERNS:
            match = pattern.match(text)
            if match is None:
                continue
            value = match.groupdict().get("value")
            listed = value is not None and value.startswith("[")
            if value is not None and (listed != (op in LISTED) or (not listed and value.startswith('"') == (op in NUMERIC))):
                continue  # `==` with a number is Dify's `=`, with text its `is`; a list goes with `in`
            sel = self.selector(match.group("left"), node=nid, where=f"config.cases.{case}")
            shown: Any = json.loads(value) if value is not None and value[0] in '"[' else value
            return {"comparison_operator": op, "id": f"{case}-{op}", "value": shown if listed else "" if shown is None else str(shown),
                    "varType": "number" if op in NUMERIC else "array[string]" if listed else "string", "variable_selector": sel or []}
        self.problems.append(Problem(f"the condition {text!r} has no Dify comparison", node=nid, field=f"config.cases.{case}"))
        return {}

    def _coalesce(self, nid: str, c: Mapping[str, Any], ns: Any) -> dict[str, Any]:
        variables = []
        for i, value in enumerate(c["values"]):
            match = GUARDED.match(str(value))
            sel = self.selector(match.group(1), node=nid, where=f"config.values[{i}]") if match else self.lone(value, node=nid, where=f"config.values[{i}]")
            variables.append(sel or [])
        return {"output_type": "string", "variables": variables}

    def _llm(self, nid: str, c: Mapping[str, Any], ns: Any) -> dict[str, Any]:
        params = {k: c[k] for k in ("temperature", "max_tokens", "top_p", "stop", "response_format") if c.get(k) is not None}
        data: dict[str, Any] = {"context": {"enabled": False, "variable_selector": []}, "vision": {"enabled": False},
                                "model": {"completion_params": params, "mode": "chat" if c.get("messages") is not None else "completion",
                                          "name": c["model"], "provider": "openai_api_compatible"}}
        if c.get("messages") is not None:
            data["prompt_template"] = [{"id": f"{nid}-{i}", "role": m["role"], "text": self.text(m["content"], node=nid, where=f"config.messages[{i}].content")}
                                       for i, m in enumerate(c["messages"])]
        else:
            data["prompt_template"] = {"text": self.text(c["prompt"], node=nid, where="config.prompt")}
        return data

    def _edges(self, end: dict[str, Any] | None) -> list[dict[str, Any]]:
        edges, has_in, has_out = [], set(), set()
        types = {nid: "answer" if nid in self.answers else EXPORTABLE.get(kind, kind) for nid, kind in self.kinds.items()}
        if end is not None:
            types[end["id"]] = end["data"]["type"]

        def add(source: str, target: str, handle: str = "source") -> None:
            edges.append({"data": {"isInIteration": False, "sourceType": types.get(source, "start"), "targetType": types.get(target, target)},
                          "id": f"{source}-{handle}-{target}-target", "source": source, "sourceHandle": handle,
                          "target": target, "targetHandle": "target", "type": "custom", "zIndex": 0})

        for edge in self.spec.edges:
            add("start" if edge.source == START else edge.source, edge.target, edge.branch or "source")
            has_in.add(edge.target)
            has_out.add(edge.source)
        for ns in self.spec.nodes:
            if ns.id not in has_in:
                add("start", ns.id)
            if end is not None and ns.id not in has_out:
                add(ns.id, end["id"])
        return edges


def export_dify(flow: Flow | FlowSpec | PathLike, path: PathLike | None = None, *, base_dir: PathLike | None = None) -> str:
    """A flow as a Dify DSL document (YAML text), written to `path` when given. Kinds Dify
    lacks, and templates it cannot express, raise FlowValidationError naming each node."""
    from jupyter_flow.flow import Flow

    if isinstance(flow, (str, Path)):
        flow = Flow.load(flow)
    if isinstance(flow, Flow):
        base = flow.source.resolve().parent if flow.source else None
        spec = flow.spec
    else:
        base, spec = None, flow
    data = _Exporter(spec, Path(base_dir) if base_dir is not None else base).export()
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
