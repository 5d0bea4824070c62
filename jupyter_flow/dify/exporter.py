"""Flow -> Dify DSL, for flows made of kinds Dify has; refusals name node and field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from jupyter_flow.dify import export_kinds
from jupyter_flow.dify.context import RENAMED_OUTPUTS, STATE_MODULE
from jupyter_flow.dify.dsl import (
    AS_TEXT,
    DIFY_TYPES,
    DIFY_VERSION,
    EXPORTABLE,
    FAIL_BRANCH,
    FUNCTIONS,
    JINJA_REF,
    LITERAL_BRACE,
)
from jupyter_flow.dify.export_core import CORE_KINDS
from jupyter_flow.dify.export_kinds import KNOWLEDGE_ENDPOINT, PYTHON_KINDS, ROUTE_CASE
from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.sourcecheck import beside_module
from jupyter_flow.spec import START, FlowSpec, NodeSpec, PathLike, load_spec

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow

__all__ = ["Exporter", "export_dify"]

#: what import writes into text: a literal `{`, or a plain reference
_TEXT_PART = re.compile(re.escape(LITERAL_BRACE) + "|" + JINJA_REF.pattern)

#: how import writes a conversation variable read after assigners: the value the last one wrote, else the conversation's
_WRITTEN = re.compile(r"\(([A-Za-z_][A-Za-z0-9_]*)\.output\.([A-Za-z_][A-Za-z0-9_]*) if \1\.status == 'ok' else "
                      r"([A-Za-z_][A-Za-z0-9_]*\.output\.\2)\)")
_ON_ERROR = {"fail": "terminated", "keep": "continue-on-error", "skip": "remove-abnormal-output"}
#: Dify types whose data a function of export_kinds gives
OTHER_KINDS = {"tool": export_kinds.tool, "agent": export_kinds.agent, "document-extractor": export_kinds.document,
               "knowledge-retrieval": export_kinds.knowledge}
_FLOW_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.flow\.(?:yaml|yml|json)")


class Exporter:
    """One flow (or the inside of an iteration, `parent` being the iteration's id, the
    exporter of the flow around it and the map node's inputs) as Dify's nodes and edges."""

    def __init__(self, spec: FlowSpec, base_dir: Path | None, parent: tuple[str, Exporter, Mapping[str, Any]] | None = None) -> None:
        self.spec, self.base_dir, self.parent = spec, base_dir, parent
        self.kinds = {n.id: n.type for n in spec.nodes}
        self.by_id = {n.id: n for n in spec.nodes}
        self.problems: list[Problem] = parent[1].problems if parent else []
        #: template nodes that stand for Dify answer nodes: a declared output of the same name reads each
        self.answers = {n.id for n in spec.nodes if n.type == "template" and parent is None and
                        str(spec.outputs.get(n.id, "")).strip() == f"{{{{ {n.id}.output.text }}}}"}
        #: flow nodes that are part of another's Dify node (the llm asking for a classifier, its
        #: switch), or of none (the conversation node: Dify's conversation variables)
        self.alias: dict[str, str] = {}
        self.asks: dict[str, NodeSpec] = {}
        self.state: NodeSpec | None = None
        self.files: NodeSpec | None = None
        self.types: dict[str, str] = {}
        self.extra_nodes: list[dict[str, Any]] = []
        self.extra_edges: list[dict[str, Any]] = []
        self.start_id = f"{parent[0]}start0" if parent else "start"
        self._group()

    def _group(self) -> None:
        for ns in self.spec.nodes:
            fn = ns.config.get("function") if ns.type == "python" else None
            owner = self._owner(ns, fn)
            if owner is not None:
                self.alias[ns.id] = owner
            if fn in (f"{FUNCTIONS}:classify", f"{FUNCTIONS}:parameters"):
                self._asking(ns)

    def _owner(self, ns: NodeSpec, fn: Any) -> str | None:
        """The Dify node a python node import made is part of: the start (the conversation's
        variables, the files' fields), an http-request (its JSON body), an if-else (the files
        it compares by their attributes); None for any other node."""
        if fn == f"{STATE_MODULE}:load" and self.parent is None:
            self.state = ns
            return self.start_id
        if fn == f"{FUNCTIONS}:file_fields" and self.parent is None:
            self.files = ns
            return self.start_id
        if fn == f"{FUNCTIONS}:json_body":
            reads = f"{{{{ {ns.id}.output.body }}}}"
            return next((n.id for n in self.spec.nodes if n.type == "http" and str(n.config.get("body")).strip() == reads), None)
        if fn == f"{FUNCTIONS}:list_operator":
            counted = f"{ns.id}.output.result | length"
            return next((n.id for n in self.spec.nodes if n.type == "switch"
                         and any(counted in str(v) for v in (n.config.get("cases") or {}).values())), None)
        return None

    def _asking(self, ns: NodeSpec) -> None:
        """The llm node asking the model for a classifier or extractor `ns`, and a
        classifier's switch on the class: parts of the Dify node `ns`."""
        match = re.fullmatch(r"\{\{ ([A-Za-z_][A-Za-z0-9_]*)\.output\.text \}\}", str((ns.config.get("input_mapping") or {}).get("text")))
        if match and self.kinds.get(match.group(1)) == "llm":
            self.asks[ns.id] = self.by_id[match.group(1)]
            self.alias[match.group(1)] = ns.id
        for edge in self.spec.edges:
            route = self.by_id.get(edge.target)
            if route is None or edge.source != ns.id or route.type != "switch" or ns.config.get("function") != f"{FUNCTIONS}:classify":
                continue
            cases = route.config.get("cases") or {}
            if cases and all(v is True or ((m := ROUTE_CASE.match(str(v))) is not None and m.group(1) == ns.id) for v in cases.values()):
                self.alias[route.id] = ns.id

    def conversation_inputs(self) -> dict[str, str]:
        """The inputs that start conversation variables, by the variable's name."""
        initial = ((self.state.config.get("input_mapping") or {}).get("initial") or {}) if self.state else {}
        out = {}
        for name, value in initial.items():
            match = JINJA_REF.fullmatch(str(value).strip())
            if match and match.group(1).startswith("inputs."):
                out[str(name)] = match.group(1).removeprefix("inputs.")
        return out

    def plain(self, value: Any) -> Any:
        """`value` with a conversation variable read after assigners as a plain reference."""
        if not isinstance(value, str) or self.state is None:
            return value
        while True:
            new = _WRITTEN.sub(lambda m: m.group(3) if m.group(3).split(".")[0] == self.state.id else m.group(0), value)  # type: ignore[union-attr]
            if new == value:
                return value
            value = new

    def selector(self, path: str, *, node: str | None, where: str) -> list[str] | None:
        parts = path.split(".")
        if self.parent is not None and (parts[0] in self.spec.inputs or parts[0] == "inputs"):
            name = parts[1] if parts[0] == "inputs" and len(parts) > 1 else parts[0]
            rest = parts[2:] if parts[0] == "inputs" else parts[1:]
            iteration, outer, given = self.parent
            if name in ("item", "index"):
                return [iteration, name, *rest]
            if name in given:
                sel = outer.lone(given[name], node=iteration, where=f"config.inputs.{name}")
                return [*sel, *rest] if sel else None
        if parts[0] == "inputs" and len(parts) > 1:
            return ["start", *parts[1:]]
        if parts[0] in self.spec.inputs:
            return ["start", *parts]
        if parts[0] in self.kinds and len(parts) == 3 and parts[1] == "error" and parts[2] in ("message", "type"):
            return [parts[0], f"error_{parts[2]}"]
        if self.files is not None and parts[0] == self.files.id and len(parts) > 3 and parts[1] == "output":
            return ["start", *parts[2:]]
        if self.state is not None and parts[0] == self.state.id and parts[1:] == ["output", "dialogue_count"] \
                and "dialogue_count" not in self.conversation_inputs():
            return ["sys", "dialogue_count"]
        if self.state is not None and parts[0] == self.state.id and len(parts) > 2 and parts[1] == "output":
            return ["conversation", *parts[2:]]
        if parts[0] in self.kinds and len(parts) > 2 and parts[1] == "output":
            rest = parts[2:]
            if self.kinds[parts[0]] == "template" and rest[0] == "text":
                rest = ["answer" if parts[0] in self.answers else "output", *rest[1:]]
            return [parts[0], *rest]
        self.problems.append(Problem(f"`{path}` is not a value Dify can reference", node=node, field=where))
        return None

    def text(self, value: Any, *, node: str | None, where: str) -> str:
        value = self.plain(value)
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
        value = self.plain(value)
        match = JINJA_REF.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            self.problems.append(Problem("must be one plain reference such as {{ node.output.field }} to go to Dify", node=node, field=where))
            return None
        return self.selector(match.group(1), node=node, where=where)

    def dify_type(self, ns: NodeSpec) -> str | None:
        """The Dify node type `ns` goes back to, or None when Dify has none."""
        if ns.id in self.answers:
            return "answer"
        if ns.type == "http" and ns.config.get("endpoint") == KNOWLEDGE_ENDPOINT:
            return "knowledge-retrieval"
        if ns.type == "python" and ns.config.get("function") in PYTHON_KINDS:
            return PYTHON_KINDS[ns.config["function"]][0]
        return EXPORTABLE.get(ns.type)

    def dify_nodes(self) -> list[dict[str, Any]]:
        """The Dify nodes of the flow's nodes (those of iterations' insides after them)."""
        nodes = []
        for ns in self.spec.nodes:
            if ns.variants or ns.shadow or ns.on_error == "continue":
                self.problems.append(Problem("variants, shadow and on_error: continue have no Dify counterpart (Dify's error "
                                             "strategies are on_error: default and error edges)", node=ns.id))
            if ns.id in self.alias:
                continue
            kind = self.dify_type(ns)
            if kind is None:
                self.problems.append(Problem(f"'{ns.type}' nodes have no Dify counterpart (Dify has: {', '.join(sorted(EXPORTABLE))})",
                                             node=ns.id, field="type"))
                continue
            self.types[ns.id] = kind
            if kind == "answer":
                data = {"title": ns.title or ns.id, "type": "answer", "variables": [],
                        "answer": self.text(ns.config["template"], node=ns.id, where="config.template")}
            else:
                data = self._data(ns, kind)
            data.update(self._strategy(ns, kind))
            nodes.append(self._node(ns.id, data))
        for i, edge in enumerate(self.spec.edges):
            if edge.when is not None:
                self.problems.append(Problem("conditional edges have no Dify counterpart (use a switch)", edge=i))
        return nodes + self.extra_nodes

    def export(self) -> dict[str, Any]:
        spec = self.spec
        nodes = [self._start(), *self.dify_nodes()]
        end = self._end()
        if end is not None:
            nodes.append(end)
        seen: set[str] = set()
        for node in nodes:
            if node["id"] in seen:
                self.problems.append(Problem(f"the id {node['id']!r} is taken twice once iterations' insides join the app "
                                             "(Dify's ids are one namespace): rename one", node=node["id"]))
            seen.add(node["id"])
        if self.problems:
            raise FlowValidationError(self.problems)
        chat = bool(self.answers) or self.state is not None or (end is not None and end["data"]["type"] == "answer")
        return {"app": {"description": spec.description or "", "icon": "🤖", "icon_background": "#FFEAD5",
                        "mode": "advanced-chat" if chat else "workflow",
                        "name": spec.name, "use_icon_as_answer_icon": False},
                "kind": "app", "version": DIFY_VERSION,
                "workflow": {"conversation_variables": self._conversation(), "environment_variables": [], "features": {},
                             "graph": {"edges": self._edges(end) + self.extra_edges, "nodes": nodes,
                                       "viewport": {"x": 0, "y": 0, "zoom": 1}}}}

    def _strategy(self, ns: NodeSpec, kind: str) -> dict[str, Any]:
        """Dify's error strategy of the node: default-value (on_error: default), fail-branch (error edges)."""
        if ns.on_error == "default":
            if not isinstance(ns.default, Mapping):
                self.problems.append(Problem("Dify's default values are outputs by name: give `default:` as a mapping",
                                             node=ns.id, field="default"))
                return {}
            back = {new: old for old, new in RENAMED_OUTPUTS.get(kind, {}).items()}
            kinds = {str: "string", bool: "boolean", int: "number", float: "number", dict: "object", list: "array[object]"}
            return {"error_strategy": "default-value",
                    "default_value": [{"key": back.get(k, k), "type": kinds.get(type(v), "string"), "value": v} for k, v in ns.default.items()]}
        if any(e.on == "error" and e.source == ns.id for e in self.spec.edges):
            return {"error_strategy": FAIL_BRANCH}
        return {}

    def _conversation(self) -> list[dict[str, Any]]:
        out = []
        for name, given in self.conversation_inputs().items():
            spec = self.spec.inputs.get(given)
            value = spec.default if spec is not None else None
            kind: str = spec.type if spec is not None else "string"
            if kind == "list":
                items = value if isinstance(value, list) else []
                kind = ("array[string]" if all(isinstance(v, str) for v in items) and items else
                        "array[number]" if items and all(isinstance(v, (int, float)) for v in items) else "array[object]")
            elif kind not in ("number", "boolean", "object"):
                kind = "string"
            out.append({"id": name, "name": name, "description": "", "value_type": kind, "value": "" if value is None else value})
        return out

    def _node(self, nid: str, data: dict[str, Any]) -> dict[str, Any]:
        # where the flow has the node, or a node that is part of it (a classifier's ask, the conversation node at the start)
        pos = self.spec.layout.get(nid) or next((self.spec.layout[f] for f, d in self.alias.items() if d == nid and f in self.spec.layout), None)
        xs = [p.x for p in self.spec.layout.values()] or [0.0]
        if pos is not None:
            position = {"x": pos.x, "y": pos.y}
        else:
            position = {"x": min(xs) - 300 if nid == "start" else max(xs) + 300, "y": 0.0}
        node: dict[str, Any] = {"data": {"desc": "", "selected": False, **data}, "height": 90, "id": nid, "position": position,
                "positionAbsolute": position, "selected": False, "sourcePosition": "right", "targetPosition": "left",
                "type": "custom", "width": 244}
        if self.parent is not None:  # inside an iteration
            node["data"].update(isInIteration=True, iteration_id=self.parent[0])
            node.update(parentId=self.parent[0], zIndex=1002)
        return node

    def _start(self) -> dict[str, Any]:
        if self.parent is not None:
            return self._node(self.start_id, {"title": "", "type": "iteration-start", "isInIteration": True})
        variables = []
        kept = set(self.conversation_inputs().values())
        for name, spec in self.spec.inputs.items():
            if name in kept:  # a conversation variable's starting value
                continue
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
        lone = JINJA_REF.fullmatch(str(outputs.get("answer", "")).strip())
        if set(outputs) == {"answer"} and (lone is None or AS_TEXT in str(outputs["answer"])):  # text: a chat app's answer
            return self._node("answer", {"title": "Answer", "type": "answer", "variables": [],
                                         "answer": self.text(outputs["answer"], node=None, where="outputs.answer")})
        ends = []
        for name, value in outputs.items():
            sel = self.lone(value, node=None, where=f"outputs.{name}")
            if sel:
                ends.append({"value_selector": sel, "variable": name})
        return self._node("end", {"title": "End", "type": "end", "outputs": ends})

    def _data(self, ns: NodeSpec, kind: str) -> dict[str, Any]:
        data: dict[str, Any] = {"title": ns.title or ns.id, "type": kind}
        if ns.description:
            data["desc"] = ns.description
        if ns.type == "python" and ns.config.get("function") in PYTHON_KINDS:
            data.update(PYTHON_KINDS[ns.config["function"]][1](self, ns))
        elif kind in OTHER_KINDS:
            data.update(OTHER_KINDS[kind](self, ns))
        elif ns.type == "map":
            data.update(self._iteration(ns))
        else:
            data.update(CORE_KINDS[ns.type](self, ns))
        return data

    def _iteration(self, ns: NodeSpec) -> dict[str, Any]:
        """A map node: an iteration with the nodes of its flow file inside (its item and
        index inputs are the iteration's, its other inputs what the map node gives)."""
        c = ns.config
        path = self.beside_file(str(c.get("flow") or ""), ns.id, flow=True)
        if path is None:
            return {}
        try:
            inside = load_spec(path)
        except FlowError as exc:
            self.problems.append(Problem(f"cannot read {path.name}: {exc}", node=ns.id, field="config.flow"))
            return {}
        if c.get("item_input", "item") != "item" or c.get("index_input", "index") not in ("index", None):
            self.problems.append(Problem("Dify's iteration names its item `item` and its position `index`", node=ns.id, field="config.item_input"))
        inner = Exporter(inside, self.base_dir, parent=(ns.id, self, dict(c.get("inputs") or {})))
        self.extra_nodes += [inner._start(), *inner.dify_nodes()]
        self.extra_edges += inner._edges(None) + inner.extra_edges
        output = inside.outputs.get(str(c.get("output") or ""))
        data: dict[str, Any] = {"iterator_selector": self.lone(c.get("items"), node=ns.id, where="config.items") or [],
                                "output_selector": (inner.lone(output, node=ns.id, where="config.output") or []) if output else [],
                                "output_type": "array[string]", "start_node_id": inner.start_id,
                                "error_handle_mode": _ON_ERROR[str(c.get("on_error") or "fail")]}
        if "concurrency" in c:
            data.update(is_parallel=True, parallel_nums=int(c["concurrency"]))
        return data

    def beside_file(self, name: str, nid: str, *, flow: bool = False) -> Path | None:
        """The file of the module `name` (or the flow file `name`) when it is a plain name
        lying in the flow's folder (a symbolic link included, resolved); None with a problem
        otherwise. Nothing outside the folder is read: a `../` or an absolute path is refused
        by name, unopened."""
        where = "config.flow" if flow else "config.function"
        what = "flow file" if flow else "module"
        if not (_FLOW_FILE.fullmatch(name) if flow else name.isidentifier()):
            self.problems.append(Problem(f"the {what} {name!r} is not a plain name: export reads only {what}s beside the flow "
                                         "file (no `/`, `..` or dotted names)", node=nid, field=where))
            return None
        folder = self.base_dir.resolve() if self.base_dir is not None else None
        path = (folder / name if folder is not None and (folder / name).is_file() else None) if flow else beside_module(name, folder)
        file = name if flow else f"{name}.py"
        if folder is None or path is None:
            self.problems.append(Problem(f"Dify keeps this in the app: no {file} beside the flow file", node=nid, field=where))
            return None
        if not path.resolve().is_relative_to(folder):
            self.problems.append(Problem(f"{file} leads outside the flow's folder (to {path.resolve()}): export reads only "
                                         "files in it", node=nid, field=where))
            return None
        return path

    def _edges(self, end: dict[str, Any] | None) -> list[dict[str, Any]]:
        edges: list[dict[str, Any]] = []
        has_in, has_out = set(), set()
        types = {**self.types, self.start_id: "iteration-start" if self.parent else "start"}
        if end is not None:
            types[end["id"]] = end["data"]["type"]
        inside = self.parent is not None

        def dify_id(nid: str) -> str:
            return self.start_id if nid == START else self.alias.get(nid, nid)

        def add(source: str, target: str, handle: str = "source") -> None:
            edge_id = f"{source}-{handle}-{target}-target"
            if any(e["id"] == edge_id for e in edges):
                return
            data = {"isInIteration": inside, "sourceType": types.get(source, "start"), "targetType": types.get(target, target)}
            if inside:
                data["iteration_id"] = self.parent[0]  # type: ignore[index]
            edges.append({"data": data, "id": edge_id, "source": source, "sourceHandle": handle,
                          "target": target, "targetHandle": "target", "type": "custom", "zIndex": 1002 if inside else 0})

        for edge in self.spec.edges:
            source, target = dify_id(edge.source), dify_id(edge.target)
            if source == target:  # inside what one Dify node became
                continue
            add(source, target, FAIL_BRANCH if edge.on == "error" else edge.branch or "source")
            has_in.add(target)
            has_out.add(source)
        for nid in self.types:
            if nid not in has_in:
                add(self.start_id, nid)
            if end is not None and nid not in has_out:
                add(nid, end["id"])
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
    data = Exporter(spec, Path(base_dir) if base_dir is not None else base).export()
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
