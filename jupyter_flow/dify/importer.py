"""Dify DSL -> flow: reading the app, walking its graph, the files it writes, what did not
come over. Each node type's conversion lives in core_nodes, model_nodes and data_nodes."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_flow.atomic import write_atomic
from jupyter_flow.dify import core_nodes, data_nodes, model_nodes
from jupyter_flow.dify.bindings import ToolBinding, read_bindings
from jupyter_flow.dify.context import RENAMED_OUTPUTS, Built, Context, Options, Unsupported, slug
from jupyter_flow.dify.dsl import ANSWER, END, FAIL_BRANCH, INNER_START_TYPES, NOTE_TYPES, START
from jupyter_flow.dify.result import DifyImport, Mapped
from jupyter_flow.dify.source import read_dsl
from jupyter_flow.dify.text import note_text
from jupyter_flow.errors import FlowFileError, FlowValidationError, Problem
from jupyter_flow.spec import START as FLOW_START
from jupyter_flow.spec import FlowSpec, PathLike, spec_from_dict

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow

__all__ = ["convert_dify", "import_dify", "write_import"]

Convert = Callable[[Context, str, Mapping[str, Any], str], Built]
CONVERTERS: dict[str, Convert] = {
    "http-request": core_nodes.http, "code": core_nodes.code, "if-else": core_nodes.switch,
    "template-transform": core_nodes.template, "variable-aggregator": core_nodes.coalesce,
    "variable-assigner": core_nodes.coalesce, "llm": core_nodes.llm, ANSWER: core_nodes.answer,
    "question-classifier": model_nodes.classifier, "parameter-extractor": model_nodes.extractor, "agent": model_nodes.agent,
    "tool": data_nodes.tool, "knowledge-retrieval": data_nodes.knowledge, "document-extractor": data_nodes.document,
    "list-operator": data_nodes.list_operator, "assigner": data_nodes.assigner,
}
#: Dify node types whose outgoing edges follow a branch (`sourceHandle`)
BRANCHING = {"if-else", "question-classifier"}
_WHY_NOT = {
    "loop": "loops (nodes run again until a condition holds) have no counterpart here: write the loop as a python node",
}
#: Dify's iteration error modes and the map node's `on_error`
_ON_ERROR = {"terminated": "fail", "continue-on-error": "keep", "remove-abnormal-output": "skip"}


def _inner(node: Mapping[str, Any]) -> str | None:
    """The iteration or loop a node sits inside, or None."""
    data = node["data"]
    parent = node.get("parentId") or data.get("iteration_id") or data.get("loop_id")
    if parent:
        return str(parent)
    return "" if data.get("isInIteration") or data.get("isInLoop") or data.get("type") in INNER_START_TYPES else None


def _outside(node: Mapping[str, Any]) -> dict[str, Any]:
    """A node of an iteration's inside, as a node of a flow of its own."""
    data = {k: v for k, v in node["data"].items() if k not in ("isInIteration", "iteration_id", "isIterationStart", "isInLoop", "loop_id")}
    return {**node, "parentId": None, "data": data}


class _Importer:
    def __init__(self, data: Mapping[str, Any], options: Options, outer: Context | None = None) -> None:
        graph = data["workflow"]["graph"]
        self.app = data.get("app") or {}
        self.options = options
        self.result = DifyImport(FlowSpec(nodes=[]), app_name=str(self.app.get("name") or ""))
        nodes = [n for n in graph.get("nodes") or [] if isinstance(n, Mapping) and isinstance(n.get("data"), Mapping) and n.get("id") is not None]
        self.edges = [e for e in graph.get("edges") or [] if isinstance(e, Mapping)]
        self.notes = [n for n in nodes if str(n["data"].get("type") or "") in NOTE_TYPES]
        self.inner: dict[str, list[Mapping[str, Any]]] = {}
        self.nodes = []
        for n in nodes:
            if n in self.notes:
                continue
            parent = _inner(n)
            if parent is None:
                self.nodes.append(n)
            else:
                self.inner.setdefault(parent, []).append(n)
        self.ctx = Context(data, self.nodes, options, self.result, outer)
        self.built: dict[str, Built] = {}
        #: the node the app's edges from its start leave: the last of those before its first node
        self.entry = FLOW_START
        self.problems: list[Problem] = []

    # -- the walk ---------------------------------------------------------------------------
    def convert(self, outputs: Mapping[str, list[Any]] | None = None, owner: str | None = None) -> DifyImport:
        """The flow; `outputs` are declared outputs to add, as Dify value selectors (what the
        inside of the iteration `owner` answers)."""
        self._prepare()
        declared = self._selected(outputs or {}, owner)
        nodes, edges = self._walk(declared)
        # what the app's nodes read before any runs: its files' fields, its conversation's variables
        before = [n for n in (self.ctx.files_node(), self.ctx.state_node()) if n is not None]
        for i, node in enumerate(before):
            edges.append({"from": before[i - 1]["id"] if i else FLOW_START, "to": node["id"]})
        nodes[:0] = before
        self.entry = before[-1]["id"] if before else FLOW_START
        if self.problems and not self.options.partial:
            raise FlowValidationError(self.problems)
        flow: dict[str, Any] = {"name": str(self.app.get("name") or "dify-app")}
        if self.app.get("description"):
            flow["description"] = str(self.app["description"])
        flow.update({"inputs": self.ctx.inputs, "outputs": self._merge(declared), "nodes": nodes, "edges": edges + self._edges(),
                     "layout": self._layout()})
        self.result.spec = self._spec(flow)
        self.result.unsupported = list(self.problems)
        return self.result

    def _prepare(self) -> None:
        """Before any node: the notes, the inputs (start variables; a chat app's query and
        conversation), every node's new id, and who assigns which conversation variable."""
        ctx = self.ctx
        for n in self.notes:
            text = note_text(n["data"])
            if text:
                self.result.sticky_notes.append(text)
        for n in self.nodes:
            if ctx.types[str(n["id"])] == START:
                try:
                    ctx.start(n["data"])
                except (KeyError, TypeError, AttributeError, ValueError) as exc:
                    self.problems.append(Problem(f"the start node's variables cannot be imported ({type(exc).__name__}: {exc})",
                                                 node=str(n["id"]), field="data.variables"))
        if self.app.get("mode") in ("advanced-chat", "chat", "agent-chat") and ctx.outer is None:
            for name in ("query", "conversation_id"):  # a chat app always has the user's message, and a conversation
                if name not in ctx.inputs:  # (a flow exported from here declares them as start variables)
                    ctx.system(name)
            # its variables and turns are counted by the conversation: the node reading them
            ctx.state = ctx.fresh("conversation")
        for n in self.nodes:
            if ctx.types[str(n["id"])] not in (START, END):
                ctx.name(str(n["id"]), n["data"])
        self._assignments()

    def _selected(self, outputs: Mapping[str, list[Any]], owner: str | None) -> dict[str, list[tuple[str, str | None]]]:
        declared: dict[str, list[tuple[str, str | None]]] = {}
        for name, selector in outputs.items():
            try:
                declared[name] = [(self.ctx.ref(selector, where=f"output {name!r}"), None)]
            except ValueError as exc:
                self.problems.append(Problem(f"the output of the iteration cannot be imported: {exc}", node=owner,
                                             field="data.output_selector"))
        return declared

    def _walk(self, declared: dict[str, list[tuple[str, str | None]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Each node converted, in the app's order: the flow's nodes and the edges inside
        what one Dify node became; end and answer nodes add to `declared`."""
        ctx, result = self.ctx, self.result
        nodes: list[dict[str, Any]] = []
        edges: list[dict[str, Any]] = []
        starts: list[tuple[int, str, str]] = []
        for n in self.nodes:
            nid, data = str(n["id"]), n["data"]
            kind = ctx.types[nid]
            where = f"node {nid!r} ({kind})"
            title = str(data.get("title") or "")
            if kind == START:
                starts.append((len(result.mapped), nid, title))
                continue
            if kind == END:
                names = self._end(nid, data, declared, where)
                result.mapped.append(Mapped(nid, kind, title, f"declared outputs {', '.join(names)}"))
                continue
            ctx.current = nid
            built = self.built[nid] = self._build(nid, kind, data, where)
            self._strategy(nid, data, built)
            nodes.extend(built.nodes)
            edges.extend(built.edges)
            became = built.kinds()
            if kind == ANSWER:
                declared.setdefault(ctx.ids[nid], []).append((f"{{{{ {ctx.ids[nid]}.output.text }}}}", None))
                became += f", read by the declared output '{ctx.ids[nid]}'"
            result.mapped.append(Mapped(nid, kind, title, became))
        for at, nid, title in reversed(starts):  # the inputs, sys.* and conversation variables included, once all are known
            before = "".join(f", then the node '{b}'" for b in ctx.before_ids())  # files' fields, the conversation's variables
            result.mapped.insert(at, Mapped(nid, START, title, f"inputs {', '.join(ctx.inputs) or '(none)'}{before}"))
        result.mapped.extend(Mapped(str(n["id"]), "note", "", "a comment in the flow file") for n in self.notes)
        return nodes, edges

    def _layout(self) -> dict[str, dict[str, float]]:
        layout = {}
        for n in self.nodes:
            pos, nid = n.get("position"), str(n["id"])
            if not (isinstance(pos, Mapping) and isinstance(pos.get("x"), (int, float)) and isinstance(pos.get("y"), (int, float))):
                continue
            if nid in self.built:
                layout[self.built[nid].entry] = {"x": float(pos["x"]), "y": float(pos["y"])}
            elif nid in self.ctx.starts:  # the nodes before the app's first: where the app starts
                for first in self.ctx.before_ids():
                    layout[first] = {"x": float(pos["x"]), "y": float(pos["y"])}
        return layout

    def _assignments(self) -> None:
        """Which nodes are upstream of which, and which assigners write which conversation
        variables (see `Context.path`)."""
        parents: dict[str, set[str]] = {}
        for e in self.edges:
            parents.setdefault(str(e.get("target")), set()).add(str(e.get("source")))
        upstream: dict[str, set[str]] = {}
        for n in self.nodes:
            nid = str(n["id"])
            seen: set[str] = set()
            todo = list(parents.get(nid, ()))
            while todo:
                one = todo.pop()
                if one not in seen:
                    seen.add(one)
                    todo.extend(parents.get(one, ()))
            upstream[nid] = seen
            data = n["data"]
            if self.ctx.types[nid] == "assigner":
                items = data.get("items") if isinstance(data.get("items"), list) else []
                targets = [i.get("variable_selector") for i in items if isinstance(i, Mapping)] or [data.get("assigned_variable_selector")]
                for target in targets:
                    if isinstance(target, list) and len(target) >= 2 and target[0] == "conversation":
                        self.ctx.writers.setdefault(str(target[-1]), []).append(nid)
        self.ctx.upstream = upstream

    def _build(self, nid: str, kind: str, data: Mapping[str, Any], where: str) -> Built:
        """What the Dify node became; a placeholder (and a problem) when it cannot be imported."""
        if kind != "iteration" and (kind in _WHY_NOT or kind not in CONVERTERS):
            why = _WHY_NOT.get(kind) or "jupyter-flow has no node kind that does what it does"
            return Built([self._placeholder(nid, kind, data, why)])
        try:
            if kind == "iteration":
                return self._iteration(nid, data, where)
            return CONVERTERS[kind](self.ctx, nid, data, where)
        except Unsupported as exc:
            return Built([self._placeholder(nid, kind, data, str(exc))])
        except Exception as exc:  # a setting this importer did not expect: the node stays as a placeholder
            return Built([self._placeholder(nid, kind, data, f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))])

    def _iteration(self, nid: str, data: Mapping[str, Any], where: str) -> Built:
        """An iteration: its inside becomes a flow file of its own (the item and its index as
        inputs, and what the inside reads of the outside), run once per item by a `map` node."""
        ctx, fid = self.ctx, self.ctx.ids[nid]
        inside = self._inside(nid)
        starts = [n for n in inside if str(n["data"].get("type")) in INNER_START_TYPES]
        inside = [n for n in inside if n not in starts]
        if not inside:
            raise Unsupported("the iteration has no nodes inside")
        begin = {str(n["id"]) for n in starts}
        ids = {str(n["id"]) for n in inside}
        edges = [{**e, "source": nid if str(e.get("source")) in begin else str(e.get("source"))} for e in self.edges
                 if str(e.get("target")) in ids and (str(e.get("source")) in ids or str(e.get("source")) in begin)]
        first = str(data.get("start_node_id") or "")
        if not any(e["source"] == nid for e in edges) and first in ids:  # older apps: no start node inside
            edges.append({"source": nid, "target": first, "sourceHandle": "source"})
        start = {"id": nid, "data": {"type": START, "title": "item", "variables": []}}
        app = {"app": {"name": f"{self.app.get('name') or 'dify-app'}: {data.get('title') or fid}"},
               "workflow": {"graph": {"nodes": [start, *(_outside(n) if _inner(n) == nid else n for n in inside)], "edges": edges}}}
        options = Options(module_prefix=f"{self.options.module_prefix}_{fid}", base_url=self.options.base_url, model=self.options.model,
                          api_key_env=self.options.api_key_env, tools=self.options.tools, partial=True)
        sub = _Importer(app, options, outer=ctx)
        sub.ctx.taken = ctx.taken  # Dify's ids are one namespace: the inside's ids are not the outside's
        sub.ctx.inputs.update({"item": {"type": "any", "description": "the item of the list"},
                               "index": {"type": "integer", "description": "the item's position, from 0"}})
        sub.ctx.used.update(("item", "index"))
        output = data.get("output_selector") or []
        made = sub.convert(outputs={"output": output} if output else {}, owner=nid)
        self.problems.extend(sub.problems)
        file = f"{self.options.module_prefix}_{fid}.flow.yaml"
        self.result.flows[file] = made.text()
        for part in ("modules", "flows"):
            getattr(self.result, part).update(getattr(made, part))
        for part in ("approximated", "bindings", "notes", "sticky_notes"):
            getattr(self.result, part).extend(getattr(made, part))
        self.result.keys.update({k: v for k, v in made.keys.items() if k not in self.result.keys})
        self.result.mapped.extend(Mapped(m.dify_id, m.dify_type, m.title, f"{m.became} in {file}") for m in made.mapped if m.dify_id != nid)
        config: dict[str, Any] = {"flow": file, "items": ctx.ref(data.get("iterator_selector") or [], where=where),
                                  "output": "output", "on_error": _ON_ERROR.get(str(data.get("error_handle_mode") or "terminated"), "fail")}
        if sub.ctx.outer_inputs:
            config["inputs"] = dict(sub.ctx.outer_inputs)
        if data.get("is_parallel"):
            config["concurrency"] = max(int(data.get("parallel_nums") or 10), 1)
        node: dict[str, Any] = {"id": fid, "type": "map", "config": config}
        if data.get("title"):
            node["title"] = str(data["title"])
        return Built([node])

    def _strategy(self, nid: str, data: Mapping[str, Any], built: Built) -> None:
        """Dify's error strategy of a node: `default-value` answers its default outputs when it
        fails (on_error: default), `fail-branch` takes the edges of its fail branch (error edges)."""
        strategy = data.get("error_strategy")
        if strategy not in ("default-value", "fail-branch") or built.nodes[-1]["type"] == "placeholder":
            return
        if len(built.nodes) > 1:
            self.result.approximated.append(f"node '{self.ctx.ids[nid]}': Dify's error strategy {strategy} is not kept "
                                            f"(it became {len(built.nodes)} nodes)")
            return
        node = built.nodes[0]
        if strategy == "default-value":
            renamed = RENAMED_OUTPUTS.get(self.ctx.types[nid], {})
            node.update(on_error="default", default={renamed.get(str(d["key"]), str(d["key"])): d.get("value")
                                                     for d in data.get("default_value") or [] if isinstance(d, Mapping) and d.get("key")})

    def _inside(self, nid: str) -> list[Mapping[str, Any]]:
        """The nodes inside the iteration `nid`, those of iterations inside it included."""
        found = list(self.inner.get(nid, []))
        for n in list(found):
            if str(n["data"].get("type")) == "iteration":
                found.extend(self._inside(str(n["id"])))
        return found

    def _placeholder(self, nid: str, kind: str, data: Mapping[str, Any], why: str) -> dict[str, Any]:
        fid = self.ctx.ids.get(nid) or self.ctx.name(nid, data)
        self.problems.append(Problem(f"Dify '{kind}' node cannot be imported: {why}", node=nid, field="data.type"))
        kept = dict(data)
        if nid in self.inner:
            kept["nodes"] = [dict(n["data"], id=str(n["id"])) for n in self.inner[nid]]
        node = {"id": fid, "type": "placeholder", "config": {"source": "Dify", "type": kind, "data": self._kept(json.loads(json.dumps(kept, default=str)), nid)}}
        if data.get("title"):
            node["title"] = str(data["title"])
        return node

    def _kept(self, value: Any, nid: str) -> Any:
        """Dify's data of a placeholder, its references written as templates here."""
        if isinstance(value, dict):
            return {k: self._kept(v, nid) for k, v in value.items()}
        if isinstance(value, list):
            return [self._kept(v, nid) for v in value]
        try:
            return self.ctx.text(value, where=f"node {nid!r}")
        except ValueError:
            return value

    # -- outputs and edges ---------------------------------------------------------------------
    def _end(self, nid: str, data: Mapping[str, Any], outputs: dict[str, list[tuple[str, str | None]]], where: str) -> list[str]:
        guard = self._reached(nid)
        names = []
        for out in data.get("outputs") or []:
            try:
                value = self.ctx.ref(out["value_selector"], where=where)
            except (ValueError, KeyError, TypeError) as exc:
                self.problems.append(Problem(f"an output of the end node cannot be imported: {exc}", node=nid, field="data.outputs"))
                continue
            name = str(out.get("variable"))
            outputs.setdefault(name, []).append((value, guard))
            names.append(name)
        return names

    def _reached(self, nid: str) -> str | None:
        """A condition true when the end node `nid` would have been reached."""
        guards = []
        for e in self.edges:
            source = str(e.get("source"))
            if str(e.get("target")) != nid or source not in self.built:
                continue
            exit_id = self.built[source].exit
            guard = f"{exit_id}.status == 'ok'"
            if e.get("sourceHandle") == FAIL_BRANCH:
                guard = f"{exit_id}.status == 'error'"
            elif self.ctx.types.get(source) in BRANCHING and e.get("sourceHandle") not in (None, "source"):
                guard += f" and {exit_id}.output.branch == {json.dumps(str(e['sourceHandle']))}"
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

    def _edges(self) -> list[dict[str, Any]]:
        edges, seen = [], set()
        for e in self.edges:
            source, target = str(e.get("source")), str(e.get("target"))
            if target not in self.built or (source not in self.built and source not in self.ctx.starts):
                continue
            edge: dict[str, Any] = {"from": self.entry if source in self.ctx.starts else self.built[source].exit,
                                    "to": self.built[target].entry}
            handle = e.get("sourceHandle")
            if handle == FAIL_BRANCH and self.ctx.data.get(source, {}).get("error_strategy") == "fail-branch":
                edge["on"] = "error"  # Dify's fail branch
            elif self.ctx.types.get(source) in BRANCHING and handle not in (None, "source"):
                edge["branch"] = str(handle)
            key = tuple(sorted(edge.items()))
            if key not in seen:
                seen.add(key)
                edges.append(edge)
        return edges

    def _spec(self, flow: dict[str, Any]) -> FlowSpec:
        """The flow spec; with `partial`, a node the spec refuses becomes a placeholder too."""
        while True:
            try:
                return spec_from_dict(flow)
            except FlowValidationError as exc:
                if not self.options.partial:
                    raise
                bad = {p.node for p in exc.problems if p.node}
                by_id = {node["id"]: node for node in flow["nodes"]}
                fixable = [i for i in bad if i in by_id and by_id[i]["type"] != "placeholder"]
                if not fixable:
                    raise
                back = {fid: nid for nid, fid in self.ctx.ids.items()}
                for fid in fixable:
                    node = by_id[fid]
                    why = "; ".join(p.message for p in exc.problems if p.node == fid)
                    nid = back.get(fid, fid)
                    self.problems.append(Problem(f"Dify '{self.ctx.types.get(nid, node['type'])}' node cannot be imported: {why}",
                                                 node=nid, field="data"))
                    node.update({"type": "placeholder", "config": {"source": "Dify", "type": self.ctx.types.get(nid, node["type"]),
                                                                   "data": {"problem": why}}})


def convert_dify(data: Mapping[str, Any], *, module_prefix: str = "dify", base_url: str = "${OPENAI_BASE_URL}",
                 model: str | None = None, api_key_env: str | None = None, partial: bool = False,
                 tools: Mapping[str, ToolBinding] | None = None) -> DifyImport:
    """Convert a parsed Dify DSL document. Unimportable nodes raise FlowValidationError
    naming each (id and type) unless `partial`, which keeps them as placeholders. `tools`
    binds Dify tools to registry tools (see `jupyter_flow.dify.bindings`)."""
    options = Options(module_prefix=module_prefix, base_url=base_url, model=model, api_key_env=api_key_env,
                      tools=dict(tools or {}), partial=partial)
    return _Importer(data, options).convert()


def import_dify(path: PathLike, out: PathLike | None = None, *, partial: bool = False, base_url: str = "${OPENAI_BASE_URL}",
                model: str | None = None, api_key_env: str | None = None, tools: PathLike | Mapping[str, ToolBinding] | None = None,
                force: bool = False) -> Flow:
    """Import a Dify app exported as DSL: writes the flow file (`out`, by default
    NAME.flow.yaml beside the app) and the modules of its code nodes beside it, and
    returns the Flow. `base_url` (and `model`, when given) point its llm nodes at an
    OpenAI-compatible server; `${VAR}` is read from the environment at run time. `tools`
    (a bindings file or mapping) binds Dify tools to registry tools. A file already there
    is replaced only with `force=True`.

    The code of the app's code nodes runs unsandboxed, with your rights, when the flow
    runs (importing and validating it run none of it): a UserWarning names the modules
    to review."""
    from jupyter_flow.flow import Flow

    result, target = write_import(path, out, partial=partial, base_url=base_url, model=model, api_key_env=api_key_env,
                                  tools=tools, force=force)
    notice = result.code_notice(target.parent)
    if notice is not None:
        warnings.warn(notice, UserWarning, stacklevel=2)
    return Flow(result.spec, source=target)


def write_import(path: PathLike, out: PathLike | None = None, *, partial: bool = False, base_url: str = "${OPENAI_BASE_URL}",
                 model: str | None = None, api_key_env: str | None = None, tools: PathLike | Mapping[str, ToolBinding] | None = None,
                 force: bool = False) -> tuple[DifyImport, Path]:
    """What `import_dify` does, returning the conversion (with its report) and the flow file.
    Files already there are refused (FlowFileError naming them) unless `force`; the report
    says which were replaced."""
    source = Path(path)
    data = read_dsl(source)
    target = Path(out) if out is not None else source.with_name(f"{source.name.split('.')[0]}.flow.yaml")
    prefix = slug(target.name.split(".")[0]) or "dify"
    bindings = read_bindings(tools) if isinstance(tools, (str, Path)) else dict(tools or {})
    try:
        result = convert_dify(data, module_prefix=prefix, base_url=base_url, model=model, api_key_env=api_key_env,
                              partial=partial, tools=bindings)
    except FlowValidationError as exc:
        raise FlowValidationError(exc.problems, source=str(source)) from None
    files = {target.parent / f"{module}.py": code for module, code in result.modules.items()}
    files.update({target.parent / name: text for name, text in result.flows.items()})
    files[target] = result.text()
    there = [p for p in files if p.exists()]
    if there and not force:
        names = ", ".join(str(p) for p in there)
        raise FlowFileError(f"will not replace {names}: choose another output, or replace them with --force (force=True)",
                            source=str(target))
    for file, text in files.items():
        write_atomic(file, text)
        result.written.append(file)
    result.overwritten.extend(there)
    return result, target
