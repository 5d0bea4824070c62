"""Dify DSL -> flow: the conversion, the files it writes, what did not come over."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from jupyter_flow.dify.dsl import DIFY_REF, IMPORTABLE, INPUT_TYPES, NUMERIC, OPERATORS, SAFE_ID
from jupyter_flow.errors import FlowFileError, FlowValidationError, Problem
from jupyter_flow.spec import START, FlowSpec, PathLike, dump_spec, spec_from_dict, yaml_problem

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow

__all__ = ["DifyImport", "convert_dify", "import_dify", "write_import"]

@dataclass
class DifyImport:
    """A converted Dify app: the flow, the code modules to write beside it, the ids that
    were renamed, and what did not come over."""

    spec: FlowSpec
    modules: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    unsupported: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def code_notice(self, folder: Path) -> str | None:
        """What to tell the user when the app's code nodes became Python modules (written
        to `folder`): they run with the user's rights when the flow runs (importing and
        validating it run none of them); None when the app has no code nodes."""
        if not self.modules:
            return None
        files = ", ".join(str(folder / f"{module}.py") for module in self.modules)
        became = "code node became" if len(self.modules) == 1 else "code nodes became"
        return f"{len(self.modules)} {became} Python that runs with your rights: review {files}"

    def text(self) -> str:
        """The flow file, opening with how Dify's ids were renamed."""
        head = "".join(f"# Dify node {old!r} -> {new}\n" for old, new in self.renamed.items())
        return (f"# Imported from a Dify app.\n{head}" if head else "") + dump_spec(self.spec)


def _read(path: Path) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise FlowFileError("no such file", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowFileError(f"cannot read: {exc}", source=str(path)) from None
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc)
        raise FlowFileError(problem.message, source=str(path), line=problem.line, column=problem.column) from None
    graph = (data.get("workflow") or {}).get("graph") if isinstance(data, Mapping) else None
    if not isinstance(data, Mapping) or data.get("kind") != "app" or not isinstance(graph, Mapping):
        raise FlowFileError("not a Dify app: expected `kind: app` and `workflow.graph` (export it from Dify as DSL)", source=str(path))
    return data


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text.strip().lower()).strip("_")
    return slug if slug and not slug[0].isdigit() else f"n_{slug}" if slug else ""


def _literal(value: Any, numeric: bool) -> str:
    if numeric:
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            return str(int(number)) if number.is_integer() else repr(number)
    return json.dumps("" if value is None else str(value), ensure_ascii=False)


class _Importer:
    def __init__(self, data: Mapping[str, Any], *, module_prefix: str, base_url: str, model: str | None,
                 api_key_env: str | None, partial: bool) -> None:
        graph = data["workflow"]["graph"]
        self.app = data.get("app") or {}
        self.nodes = [n for n in graph.get("nodes") or [] if isinstance(n, Mapping) and isinstance(n.get("data"), Mapping)]
        self.edges = [e for e in graph.get("edges") or [] if isinstance(e, Mapping)]
        self.module_prefix = module_prefix
        self.base_url, self.model, self.api_key_env, self.partial = base_url, model, api_key_env, partial
        self.types = {str(n["id"]): str(n["data"].get("type")) for n in self.nodes}
        self.starts = {nid for nid, t in self.types.items() if t == "start"}
        self.result = DifyImport(FlowSpec(nodes=[]))
        self.ids = self._rename()
        self.inputs: dict[str, dict[str, Any]] = {}
        self.problems: list[Problem] = []

    def _rename(self) -> dict[str, str]:
        ids: dict[str, str] = {}
        used: set[str] = {START, "inputs"}
        for n in self.nodes:
            old, data = str(n["id"]), n["data"]
            if data.get("type") in ("start", "end", "answer"):
                continue
            new = old if SAFE_ID.fullmatch(old) and old not in used else _slug(str(data.get("title") or "")) or _slug(str(data.get("type")))
            base, i = new, 2
            while new in used:
                new, i = f"{base}_{i}", i + 1
            used.add(new)
            ids[old] = new
            if new != old:
                self.result.renamed[old] = new
        return ids

    # -- references
    def path(self, selector: Iterable[Any], *, where: str) -> str:
        """A Dify value selector ([id, var, ...]) as a template path."""
        parts = [str(p) for p in selector]
        if len(parts) < 2:
            raise ValueError(f"{where}: the reference {parts!r} names no variable")
        head, rest = parts[0], parts[1:]
        if head in self.starts:
            return ".".join(["inputs", *rest])
        if head in ("sys", "env", "conversation"):
            name = rest[0]
            if name not in self.inputs:
                self.inputs[name] = {"type": "list" if name == "files" else "string", "description": f"Dify's {head}.{name}"}
                if head != "sys":
                    self.result.notes.append(f"{where}: Dify's {head}.{name} became the input '{name}'")
            return f"inputs.{name}"
        if head not in self.ids:
            raise ValueError(f"{where}: references node {head!r}, which the app does not have")
        if self.types.get(head) == "template-transform" and rest[0] == "output":
            rest = ["text", *rest[1:]]
        return ".".join([self.ids[head], "output", *rest])

    def text(self, value: Any, *, where: str, context: str | None = None) -> Any:
        if not isinstance(value, str):
            return value

        def sub(match: re.Match[str]) -> str:
            inner = match.group(1).strip()
            if inner == "context":
                return f"{{{{ {context} }}}}" if context else ""
            return f"{{{{ {self.path(inner.split('.'), where=where)} }}}}"

        return DIFY_REF.sub(sub, value)

    # -- nodes
    def convert(self) -> DifyImport:
        nodes: list[dict[str, Any]] = []
        outputs: dict[str, list[tuple[str, str | None]]] = {}
        layout: dict[str, dict[str, float]] = {}
        for n in self.nodes:
            nid, data = str(n["id"]), n["data"]
            kind = str(data.get("type"))
            where = f"node {nid!r} ({kind})"
            try:
                if kind == "start":
                    self._start(data)
                    continue
                if kind in ("end", "answer"):
                    self._outputs(nid, kind, data, outputs, where)
                    continue
                why = self._why_not(n, kind)
                node = self._placeholder(nid, kind, data, why) if why else self._node(nid, kind, data, where)
            except (ValueError, TypeError, KeyError) as exc:
                node = self._placeholder(nid, kind, data, str(exc))
            if node is None:
                continue
            nodes.append(node)
            pos = n.get("position")
            if isinstance(pos, Mapping) and "x" in pos and "y" in pos:
                layout[node["id"]] = {"x": float(pos["x"]), "y": float(pos["y"])}
        if self.problems and not self.partial:
            raise FlowValidationError(self.problems)
        flow: dict[str, Any] = {"name": str(self.app.get("name") or "dify-app")}
        if self.app.get("description"):
            flow["description"] = str(self.app["description"])
        flow.update({"inputs": self.inputs, "outputs": self._merge(outputs), "nodes": nodes, "edges": self._edges(), "layout": layout})
        self.result.spec = spec_from_dict(flow)
        self.result.unsupported = list(self.problems)
        return self.result

    def _why_not(self, n: Mapping[str, Any], kind: str) -> str | None:
        data = n["data"]
        if n.get("parentId") or data.get("isInIteration") or data.get("isInLoop"):
            return "nodes inside an iteration or loop cannot be imported"
        if kind not in IMPORTABLE:
            return "jupyter-flow has no node kind that does what it does"
        if kind == "code" and data.get("code_language", "python3") != "python3":
            return f"only python3 code nodes can be imported (this one is {data.get('code_language')})"
        if kind == "http-request" and (data.get("body") or {}).get("type") in ("form-data", "binary"):
            return f"http-request bodies of type {data['body']['type']} cannot be imported"
        if kind == "variable-assigner" and not isinstance(data.get("variables"), list):
            return "only the variable aggregator form of variable-assigner can be imported"
        if kind in ("variable-aggregator", "variable-assigner") and (data.get("advanced_settings") or {}).get("group_enabled"):
            return "grouped variable aggregators cannot be imported"
        return None

    def _placeholder(self, nid: str, kind: str, data: Mapping[str, Any], why: str) -> dict[str, Any]:
        self.problems.append(Problem(f"Dify '{kind}' node cannot be imported: {why}", node=nid, field="data.type"))
        return {"id": self.ids.get(nid, _slug(kind) or "node"), "type": "placeholder", "title": data.get("title"),
                "config": {"source": "Dify", "type": kind, "data": self._kept(json.loads(json.dumps(dict(data), default=str)), nid)}}

    def _kept(self, value: Any, nid: str) -> Any:
        """Dify's data of a placeholder, its references written as templates here."""
        if isinstance(value, dict):
            return {k: self._kept(v, nid) for k, v in value.items()}
        if isinstance(value, list):
            return [self._kept(v, nid) for v in value]
        try:
            return self.text(value, where=f"node {nid!r}")
        except ValueError:
            return value

    def _start(self, data: Mapping[str, Any]) -> None:
        for var in data.get("variables") or []:
            name = str(var["variable"])
            spec: dict[str, Any] = {"type": INPUT_TYPES.get(str(var.get("type")), "string")}
            label = str(var.get("label") or "")
            options = var.get("options") or []
            description = label + (f" (one of: {', '.join(map(str, options))})" if options else "")
            if description and description != name:
                spec["description"] = description
            if var.get("default") not in (None, ""):
                spec["default"] = var["default"]
            if var.get("required") is False and "default" not in spec:
                spec["required"] = False
            self.inputs[name] = spec

    def _outputs(self, nid: str, kind: str, data: Mapping[str, Any], outputs: dict[str, list[tuple[str, str | None]]], where: str) -> None:
        guard = self._reached(nid)
        if kind == "answer":
            outputs.setdefault("answer", []).append((self.text(data.get("answer") or "", where=where), guard))
            return
        for out in data.get("outputs") or []:
            path = self.path(out["value_selector"], where=where)
            outputs.setdefault(str(out["variable"]), []).append((f"{{{{ {path} }}}}", guard))

    def _reached(self, nid: str) -> str | None:
        """A condition true when the end or answer node `nid` would have been reached."""
        guards = []
        for e in self.edges:
            source = str(e.get("source"))
            if str(e.get("target")) != nid or source not in self.ids:
                continue
            guard = f"{self.ids[source]}.status == 'ok'"
            if self.types.get(source) == "if-else" and e.get("sourceHandle") not in (None, "source"):
                guard += f" and {self.ids[source]}.output.branch == {json.dumps(str(e['sourceHandle']))}"
            guards.append(f"({guard})")
        return " or ".join(guards) or None

    @staticmethod
    def _merge(outputs: dict[str, list[tuple[str, str | None]]]) -> dict[str, str]:
        merged = {}
        for name, values in outputs.items():
            if len(values) == 1 or any(guard is None for _, guard in values):
                merged[name] = values[0][0]
                continue
            # several end nodes, one per branch: the value of the branch that ran
            merged[name] = "".join(f"{{% {'if' if i == 0 else 'elif'} {guard} %}}{template}" for i, (template, guard) in enumerate(values)) + "{% endif %}"
        return merged

    def _node(self, nid: str, kind: str, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        node: dict[str, Any] = {"id": self.ids[nid]}
        if data.get("title"):
            node["title"] = str(data["title"])
        if data.get("desc"):
            node["description"] = str(data["desc"])
        convert = {"http-request": self._http, "code": self._code, "if-else": self._switch, "template-transform": self._template,
                   "variable-aggregator": self._coalesce, "variable-assigner": self._coalesce, "llm": self._llm}[kind]
        node.update(convert(node["id"], data, where))
        return node

    def _lines(self, text: Any, where: str) -> dict[str, str]:
        pairs = {}
        for line in str(text or "").splitlines():
            if line.strip():
                key, _, value = line.partition(":")
                pairs[key.strip()] = self.text(value.strip(), where=where)
        return pairs

    def _http(self, nid: str, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        config: dict[str, Any] = {"endpoint": self.text(data["url"], where=where), "method": str(data.get("method") or "get").upper(),
                                  "response": "full"}
        headers = self._lines(data.get("headers"), where)
        auth = data.get("authorization") or {}
        if auth.get("type") == "api-key":
            conf = auth.get("config") or {}
            env = f"{nid.upper()}_API_KEY"
            scheme = conf.get("type") or "bearer"
            header = str(conf.get("header") or "Authorization") if scheme == "custom" else "Authorization"
            headers[header] = {"bearer": f"Bearer ${{{env}}}", "basic": f"Basic ${{{env}}}"}.get(scheme, f"${{{env}}}")
            self.result.notes.append(f"node '{nid}': its API key is read from the environment variable {env}")
        if headers:
            config["headers"] = headers
        if data.get("params"):
            config["params"] = self._lines(data["params"], where)
        body = data.get("body") or {}
        btype, bdata = body.get("type") or "none", body.get("data")
        if btype in ("json", "raw-text"):
            text = bdata if isinstance(bdata, str) else "".join(str(d.get("value") or "") for d in bdata or [])
            config["content"] = self.text(text, where=where)
            if btype == "json" and not any(k.lower() == "content-type" for k in headers):
                config["headers"] = {**headers, "Content-Type": "application/json"}
        elif btype == "x-www-form-urlencoded":
            items = bdata if isinstance(bdata, list) else [{"key": k, "value": v} for k, v in self._lines(bdata, where).items()]
            config["form"] = {str(d["key"]): self.text(d.get("value") or "", where=where) for d in items if d.get("key")}
        node: dict[str, Any] = {"type": "http", "config": config}
        timeouts = [float(v) for v in (data.get("timeout") or {}).values() if isinstance(v, (int, float)) and v > 0]
        if timeouts:
            node["timeout_s"] = max(timeouts)
        retry = data.get("retry_config") or {}
        if retry.get("retry_enabled"):
            node["retry"] = {"max_attempts": int(retry.get("max_retries") or 0) + 1,
                             "backoff_s": float(retry.get("retry_interval") or 0) / 1000, "multiplier": 1.0}
        return node

    def _code(self, nid: str, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        module = f"{self.module_prefix}_{nid}"
        declared = {str(k): str((v or {}).get("type") or "string") for k, v in (data.get("outputs") or {}).items()}
        self.result.modules[module] = (f"# Imported from the Dify code node {str(data.get('title') or nid)!r}.\n"
                                       f"# Outputs Dify declared: {json.dumps(declared)}\n{data.get('code') or ''}")
        mapping = {str(v["variable"]): f"{{{{ {self.path(v['value_selector'], where=where)} }}}}" for v in data.get("variables") or []}
        return {"type": "python", "config": {"function": f"{module}:main", "input_mapping": mapping}}

    def _condition(self, cond: Mapping[str, Any], where: str) -> str:
        op = str(cond.get("comparison_operator"))
        if op not in OPERATORS:
            raise ValueError(f"{where}: the comparison {op!r} has no counterpart here")
        left = self.path(cond.get("variable_selector") or [], where=where)
        return OPERATORS[op].format(L=left, V=_literal(cond.get("value"), op in NUMERIC))

    def _switch(self, nid: str, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        cases = data.get("cases")
        if cases is None:  # the form before several cases: one case, `true`
            cases = [{"case_id": "true", "conditions": data.get("conditions") or [], "logical_operator": data.get("logical_operator")}]
        config: dict[str, Any] = {"cases": {}, "default": "false"}
        for case in cases:
            joiner = " or " if case.get("logical_operator") == "or" else " and "
            parts = [f"({self._condition(c, where)})" for c in case.get("conditions") or []]
            config["cases"][str(case.get("case_id") or case.get("id"))] = f"{{{{ {joiner.join(parts) or 'false'} }}}}"
        return {"type": "switch", "config": config}

    def _template(self, nid: str, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        sets = "".join(f"{{% set {v['variable']} = {self.path(v['value_selector'], where=where)} %}}" for v in data.get("variables") or [])
        return {"type": "template", "config": {"template": sets + str(data.get("template") or "")}}

    def _coalesce(self, nid: str, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        values = []
        for selector in data.get("variables") or []:
            path = self.path(selector, where=where)
            owner = path.split(".")[0]
            values.append(f"{{{{ {path} }}}}" if owner == "inputs" else f"{{{{ {path} if {owner}.status == 'ok' else none }}}}")
        return {"type": "coalesce", "config": {"values": values}}

    def _llm(self, nid: str, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        model = data.get("model") or {}
        context = data.get("context") or {}
        ctx_path = self.path(context["variable_selector"], where=where) if context.get("enabled") and context.get("variable_selector") else None
        config: dict[str, Any] = {"base_url": self.base_url, "model": self.model or str(model.get("name") or "")}
        prompt = data.get("prompt_template")
        if isinstance(prompt, list):
            config["messages"] = [{"role": str(m.get("role") or "user"), "content": self.text(m.get("text") or "", where=where, context=ctx_path)}
                                  for m in prompt]
        else:
            config["prompt"] = self.text((prompt or {}).get("text") or "", where=where, context=ctx_path)
        params = model.get("completion_params") or {}
        for key in ("temperature", "max_tokens", "top_p", "stop", "response_format"):
            if params.get(key) not in (None, "", []):
                config[key] = params[key]
        if self.api_key_env:
            config["api_key_env"] = self.api_key_env
        for feature in ("memory", "vision"):
            value = data.get(feature)
            if value and (not isinstance(value, Mapping) or value.get("enabled", True)):
                self.result.notes.append(f"node '{nid}': Dify's {feature} setting has no counterpart and was left out")
        return {"type": "llm", "config": config}

    def _edges(self) -> list[dict[str, Any]]:
        edges, seen = [], set()
        for e in self.edges:
            source, target = str(e.get("source")), str(e.get("target"))
            if target not in self.ids or (source not in self.ids and source not in self.starts):
                continue
            edge: dict[str, Any] = {"from": START if source in self.starts else self.ids[source], "to": self.ids[target]}
            handle = e.get("sourceHandle")
            if self.types.get(source) == "if-else" and handle not in (None, "source"):
                edge["branch"] = str(handle)
            key = tuple(sorted(edge.items()))
            if key not in seen:
                seen.add(key)
                edges.append(edge)
        return edges


def convert_dify(data: Mapping[str, Any], *, module_prefix: str = "dify", base_url: str = "${OPENAI_BASE_URL}",
                 model: str | None = None, api_key_env: str | None = None, partial: bool = False) -> DifyImport:
    """Convert a parsed Dify DSL document. Unimportable nodes raise FlowValidationError
    naming each (id and type) unless `partial`, which keeps them as placeholders."""
    return _Importer(data, module_prefix=module_prefix, base_url=base_url, model=model, api_key_env=api_key_env,
                     partial=partial).convert()


def import_dify(path: PathLike, out: PathLike | None = None, *, partial: bool = False, base_url: str = "${OPENAI_BASE_URL}",
                model: str | None = None, api_key_env: str | None = None) -> Flow:
    """Import a Dify app exported as DSL: writes the flow file (`out`, by default
    NAME.flow.yaml beside the app) and the modules of its code nodes beside it, and
    returns the Flow. `base_url` (and `model`, when given) point its llm nodes at an
    OpenAI-compatible server; `${VAR}` is read from the environment at run time.

    The code of the app's code nodes runs unsandboxed, with your rights, when the flow
    runs (importing and validating it run none of it): a UserWarning names the modules
    to review."""
    from jupyter_flow.flow import Flow

    result, target = write_import(path, out, partial=partial, base_url=base_url, model=model, api_key_env=api_key_env)
    notice = result.code_notice(target.parent)
    if notice is not None:
        warnings.warn(notice, UserWarning, stacklevel=2)
    return Flow(result.spec, source=target)


def write_import(path: PathLike, out: PathLike | None = None, *, partial: bool = False, base_url: str = "${OPENAI_BASE_URL}",
                 model: str | None = None, api_key_env: str | None = None) -> tuple[DifyImport, Path]:
    """What `import_dify` does, returning the conversion (with its notes) and the flow file."""
    source = Path(path)
    data = _read(source)
    target = Path(out) if out is not None else source.with_name(f"{source.name.split('.')[0]}.flow.yaml")
    prefix = _slug(target.name.split(".")[0]) or "dify"
    try:
        result = convert_dify(data, module_prefix=prefix, base_url=base_url, model=model, api_key_env=api_key_env, partial=partial)
    except FlowValidationError as exc:
        raise FlowValidationError(exc.problems, source=str(source)) from None
    for module, code in result.modules.items():
        (target.parent / f"{module}.py").write_text(code, encoding="utf-8")
    target.write_text(result.text(), encoding="utf-8")
    return result, target
