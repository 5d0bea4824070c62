"""`Workbench`: build, run and inspect a flow in a notebook.

The workbench is only a face on the flow core: edits go through `FlowEditor` (validated
specs), runs through `Flow.arun` as a task on the kernel's event loop, so the kernel stays
free to handle clicks while a flow runs, and node colours follow the run's live events.
Everything a button does is also a method, so the workbench can be driven from Python.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.flow import Flow
from jupyter_flow.nodes.registry import NodeRegistry, default_registry
from jupyter_flow.spec import FlowSpec, PathLike, spec_from_dict, spec_to_dict
from jupyter_flow.trace import RunEvent, RunResult
from jupyter_flow.workbench.editor import FlowEditor
from jupyter_flow.workbench.files import FlowDocument
from jupyter_flow.workbench.graph import (
    default_positions,
    edge_key,
    free_spot,
    problems_by_element,
    to_elements,
)
from jupyter_flow.workbench.inspector import activations, record_html, user_namespace
from jupyter_flow.workbench.layout import WorkbenchLayout
from jupyter_flow.workbench.panels import config_template, problems_html, schema_html
from jupyter_flow.workbench.styles import STATUS_COLOURS
from jupyter_flow.workbench.timeline import timeline_svg

__all__ = ["Workbench"]

FlowLike = Flow | FlowSpec | Mapping[str, Any] | str | Path | None


class Workbench(WorkbenchLayout):
    """An editable, runnable view of a flow: `Workbench("my.flow.yaml")` or `Workbench(flow)`.

    Click a node to edit its settings (and, after a run, to inspect it); switch on "Wire"
    and click a source then a target to connect them; drag nodes to place them. Run and
    Cancel work while the notebook stays usable; "Run from here" re-runs the selected node
    and what follows it, reusing the last results upstream. Drag the background to pan a
    flow larger than the view; Fit shows the whole flow. `height` fixes the graph's height
    (a CSS length); by default it grows with the flow.

    Each message shows next to the control that caused it: edits under the toolbar, Apply
    under the settings, runs in the run bar, "To variable" beside it, files in the file bar.
    """

    def __init__(
        self,
        flow: FlowLike = None,
        *,
        registry: NodeRegistry | None = None,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        height: str | None = None,
    ) -> None:
        self.registry = registry or default_registry()
        self.functions: dict[str, Callable[..., Any]] = dict(functions or {})
        self.document: FlowDocument | None = None
        spec = self._spec_of(flow)
        self.editor = FlowEditor(spec)
        self.editor.set_layout(default_positions(spec))
        self.flow = self._make_flow()
        self.result: RunResult | None = None
        self._reuse: RunResult | None = None
        self.statuses: dict[str, str] = {}
        self.cached: set[str] = set()
        self.selected: tuple[str, str] | None = None  # ("node", id) or ("edge", "a->b")
        self.wire_source: str | None = None
        self.error: str | None = None
        self.message_text = ""
        self._origin = "edit"
        self.variables: dict[str, str] = {}
        self._task: asyncio.Task[RunResult | None] | None = None
        self._build(height)
        self._refresh()
        self._show_selection()

    # -- construction -----------------------------------------------------------------
    def _spec_of(self, flow: FlowLike) -> FlowSpec:
        if flow is None:
            return FlowSpec(name="untitled", nodes=[])
        if isinstance(flow, Flow):
            self.registry = flow.registry
            self.functions = {**flow.functions, **self.functions}
            if flow.source is not None and flow.source.exists():
                _spec, self.document = FlowDocument.open(flow.source)
            return flow.spec
        if isinstance(flow, FlowSpec):
            return flow
        if isinstance(flow, (str, Path)):
            spec, self.document = FlowDocument.open(flow)
            return spec
        return spec_from_dict(flow)

    def _make_flow(self) -> Flow:
        source = self.document.path if self.document is not None else None
        return Flow(self.editor.spec, source=source, registry=self.registry, functions=self.functions)

    # -- state ----------------------------------------------------------------------------
    @property
    def spec(self) -> FlowSpec:
        return self.editor.spec

    def problems(self) -> list[Problem]:
        return self.flow.problems()

    def node_classes(self, node_id: str) -> str:
        """The cytoscape classes a node shows now (status, problem, cached, ...)."""
        return str(self.graph.node_widget(node_id).classes)

    def _refresh(self) -> None:
        problems = self.flow.problems()
        by_element = problems_by_element(self.spec, problems)
        chosen = self.selected[1] if self.selected else None
        self.graph.sync(to_elements(self.spec, statuses=self.statuses, cached=self.cached, problems=by_element,
                                    chosen=chosen, wire_source=self.wire_source))
        self.problems_view.value = problems_html(problems, title="Problems to fix before running")
        self.inputs.rebuild(self.spec)
        self.undo_button.disabled = not self.editor.can_undo
        self.undo_button.tooltip = f"Undo: {self.editor.last_edit}" if self.editor.can_undo else "Nothing to undo"

    def _edit(self, what: Callable[[], Any]) -> Any:
        before = self.spec
        try:
            out = what()
        except FlowValidationError as exc:
            self._say(f"Not applied, the flow is unchanged: {exc}", error=True)
            raise
        if self.spec == before:  # nothing to apply: say so rather than report an edit
            self._say("Nothing changed: that is what the flow already says.")
            return out
        self.flow = self._make_flow()
        self._refresh()
        problems = self.flow.problems()
        self._say(f"Applied: {self.editor.last_edit}." + (f" {len(problems)} problem(s) to fix before running." if problems else ""))
        return out

    # -- editing ----------------------------------------------------------------------------
    def add_node(self, kind: str, node_id: str | None = None, config: Mapping[str, Any] | None = None,
                 position: tuple[float, float] | None = None, **fields: Any) -> str:
        """Add a node (its config starts with the kind's required fields), select it and
        open its settings. It is placed beside the selected node, else right of the rest."""
        if config is None:
            try:
                config = config_template(self.registry.get(kind).Config)
            except (KeyError, ImportError):
                config = {}
        if position is None:
            near = self.selected[1] if self.selected and self.selected[0] == "node" else None
            position = free_spot(self.spec.layout, near)
        new_id = self._edit(lambda: self.editor.add_node(kind, node_id, config, position, **fields))
        self.select(new_id)
        self.tabs.selected_index = 0
        return new_id

    def delete_node(self, node_id: str) -> None:
        self._edit(lambda: self.editor.remove_node(node_id))
        if self.selected == ("node", node_id):
            self.select(None)

    def connect(self, source: str, target: str, **fields: Any) -> None:
        """Wire `source` to `target`; `when`, `branch`, `on`, `label` may be given."""
        self._edit(lambda: self.editor.add_edge(source, target, **fields))

    def disconnect(self, source: str, target: str) -> None:
        self._edit(lambda: self.editor.remove_edge(self.editor.edge_index(source, target)))
        if self.selected == ("edge", f"{source}->{target}"):
            self.select(None)

    def configure(self, node_id: str, settings: Mapping[str, Any] | str) -> str:
        """Replace a node's settings (dict or YAML); returns its id (which may be new)."""
        new_id = self._edit(lambda: self.editor.replace_node(node_id, settings))
        self.selected = ("node", new_id)
        self._refresh()
        self._show_selection()
        return new_id

    def configure_edge(self, source: str, target: str, settings: Mapping[str, Any] | str) -> None:
        self._edit(lambda: self.editor.replace_edge(self.editor.edge_index(source, target), settings))
        self._show_selection()

    def configure_flow(self, settings: Mapping[str, Any] | str) -> None:
        """Replace the flow's name, description, inputs, timeout_s, max_concurrency."""
        self._edit(lambda: self.editor.replace_settings(settings))
        self._show_selection()

    def move(self, node_id: str, x: float, y: float) -> None:
        """Place a node (what a drag does); kept in the flow's layout."""
        self._moved(node_id, x, y)

    def _moved(self, node_id: str, x: float, y: float) -> None:
        if node_id not in self.editor.node_ids():
            return
        if self.editor.move(node_id, x, y):
            self.flow = self._make_flow()
            self.undo_button.disabled = False
            self.undo_button.tooltip = f"Undo: {self.editor.last_edit}"

    def undo(self) -> str | None:
        what = self.editor.undo()
        if what is None:
            self._say("Nothing to undo.")
            return None
        self.flow = self._make_flow()
        if self.selected and self.selected[0] == "node" and self.selected[1] not in self.editor.node_ids():
            self.selected = None
        if self.selected and self.selected[0] == "edge" and self.selected[1] not in {edge_key(e) for e in self.spec.edges}:
            self.selected = None
        self._refresh()
        self._show_selection()
        self._say(f"Undone: {what}.")
        return what

    def delete_selected(self) -> None:
        if self.selected is None:
            self._say("Select a node or an edge to delete.")
            return
        kind, key = self.selected
        if kind == "node":
            self.delete_node(key)
        else:
            source, _, target = key.partition("->")
            self.disconnect(source, target)

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Make `fn` callable from `python` nodes as `function: name` (used by the next run)."""
        self.functions[name] = fn
        self.flow = self._make_flow()
        self._refresh()

    # -- selection and clicks -----------------------------------------------------------
    def _wire_changed(self, change: Mapping[str, Any]) -> None:
        self.wire_source = None
        self._refresh()
        self._say("Wiring: click the source node, then the target node." if change["new"] else "Wiring off.")

    def click_node(self, node_id: str) -> None:
        """What a click on a node does: in wiring mode pick source then target, else select."""
        if not self.wire_toggle.value:
            self.select(node_id)
            return
        if self.wire_source is None or self.wire_source == node_id:
            self.wire_source = None if self.wire_source == node_id else node_id
            self._refresh()
            if self.wire_source:
                self._say(f"Wiring from {node_id}: now click the target node.")
            return
        source, self.wire_source = self.wire_source, None
        try:
            self.connect(source, node_id)
        except FlowValidationError:
            self._refresh()

    def click_edge(self, key: str) -> None:
        self.selected = ("edge", key)
        self._refresh()
        self._show_selection()

    def select(self, node_id: str | None) -> None:
        """Select a node (settings, and the inspector after a run), or None for the flow."""
        self.selected = ("node", node_id) if node_id is not None else None
        self._refresh()
        self._show_selection()
        if node_id is not None and self.result is not None and node_id in self.result.records:
            self.tabs.selected_index = 1
        elif node_id is None:
            self.tabs.selected_index = 0

    def _show_selection(self) -> None:
        problems = self.flow.problems()
        if self.selected is None:
            self.settings.show("<b>Flow settings</b> (name, description, inputs, timeout_s, max_concurrency)",
                               self.editor.settings() or {"name": self.spec.name},
                               problems=[p for p in problems if p.node is None and not (p.field or "").startswith("edges")])
            return
        kind, key = self.selected
        if kind == "node":
            node = next(n for n in spec_to_dict(self.spec)["nodes"] if n["id"] == key)
            node_type = node.get("type", "")
            try:
                schema = schema_html(node_type, self.registry.get(node_type).Config)
            except (KeyError, ImportError):
                schema = ""
            self.settings.show(f"<b>Node {html.escape(key)}</b>", node, schema=schema,
                               problems=[p for p in problems if p.node == key])
            self.variable_name.value = f"{key}_output"
            self._show_record(key)
        else:
            index = next(i for i, e in enumerate(self.spec.edges) if edge_key(e) == key)
            body = {k: v for k, v in spec_to_dict(self.spec)["edges"][index].items() if k not in ("from", "to")}
            self.settings.show(f"<b>Edge {html.escape(key)}</b> (when, branch, on, label)", body or {"when": None},
                               problems=problems_by_element(self.spec, problems).get(key, []))

    def _apply_settings(self, text: str) -> None:
        before, self._origin = self._origin, "settings"
        try:
            if self.selected is None:
                self.configure_flow(text)
            elif self.selected[0] == "node":
                self.configure(self.selected[1], text)
            else:
                source, _, target = self.selected[1].partition("->")
                self.configure_edge(source, target, text)
        except FlowValidationError as exc:
            self.settings.show_problems(exc.problems, title="Not applied")
        finally:
            self._origin = before

    def _show_record(self, node_id: str) -> None:
        result = self.result
        if result is None or node_id not in result.records:
            self.inspector.value = f"<i>No run has reached {html.escape(node_id)} yet.</i>"
            self.tensor_panel.show(node_id, None)
            return
        self.inspector.value = record_html(result.records[node_id], result)
        self.tensor_panel.show(node_id, result)

    def inspect(self, node_id: str, tensor: str | None = None, **options: Any) -> Any:
        """The inspector's HTML for a node of the last run; with `tensor` (a captured name
        or an output path), that tensor's view, drawn in the Inspect tab and returned:
        ``wb.inspect("clauses", "attentions", layer=3, head=0)``. Options: `layer`, `head`
        (a number or "all"), `index` (leading axes), `item` (which input), `compare`
        (the difference from the previous run)."""
        self._show_record(node_id)
        if tensor is None:
            return str(self.inspector.value)
        return self.tensor_panel.open(tensor, **options)

    # -- running ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def run(self, inputs: Mapping[str, Any] | None = None, *, rerun: str | None = None) -> asyncio.Task[RunResult | None]:
        """Start a run as a task on the running event loop (the kernel's) and return it;
        `await` it to wait. Inputs come from the form unless given."""
        if self.running:
            self._say("A run is in progress: cancel it first.", error=True, at="run")
            raise FlowValidationError("a run is in progress")
        flow = self.flow
        try:
            if not self.spec.nodes:
                raise FlowValidationError("the flow has no nodes yet: add one from the palette")
            flow.validate()
            values = dict(inputs) if inputs is not None else self.inputs.values(self.spec)
            flow.resolve_inputs(values)
            if inputs is not None:
                self.inputs.show(values)
            if rerun is not None and rerun not in flow.node_ids:
                raise FlowValidationError([Problem("not in the flow", node=rerun, field="rerun")])
        except FlowValidationError as exc:
            self._say(f"Cannot run: {exc}", error=True, at="run")
            raise
        reuse = self._reuse if rerun is not None else None
        self.statuses = {nid: "pending" for nid in flow.node_ids}
        self.cached = set()
        self._refresh()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop()
        self._task = loop.create_task(self._run(flow, values, reuse, rerun), name=f"workbench:{flow.name}")
        self.cancel_button.disabled = False
        self.run_button.disabled = self.run_from_button.disabled = True
        self.run_status.value = "<b>running...</b>"
        self._say("Running" + (f" from {rerun} (upstream results reused)" if rerun else "") + "...", at="run")
        return self._task

    def run_from(self, node_id: str | None = None, inputs: Mapping[str, Any] | None = None) -> asyncio.Task[RunResult | None]:
        """Re-run a node (default: the selected one) and everything after it, reusing the
        last run's results for the nodes before it."""
        if node_id is None:
            if not self.selected or self.selected[0] != "node":
                self._say("Select the node to run from.", error=True, at="run")
                raise FlowValidationError("select the node to run from")
            node_id = self.selected[1]
        if self._reuse is None:
            self._say("Run the whole flow once first: there are no results to reuse yet.", error=True, at="run")
            raise FlowValidationError("no earlier run to reuse")
        return self.run(inputs, rerun=node_id)

    def cancel(self) -> bool:
        """Cancel the run in progress; its nodes show as cancelled."""
        if not self.running:
            self._say("No run in progress.", at="run")
            return False
        assert self._task is not None
        self._task.cancel()
        return True

    def _on_event(self, event: RunEvent) -> None:
        self.result = event.result
        record = event.record
        if record is not None:
            self.statuses[record.node] = record.status
            if record.cached:
                self.cached.add(record.node)
            self._refresh()
            if self.selected == ("node", record.node):
                self._show_record(record.node)
        if event.kind == "run_finished":
            self.timeline.value = timeline_svg(event.result)

    async def _run(self, flow: Flow, inputs: dict[str, Any], reuse: RunResult | None, rerun: str | None) -> RunResult | None:
        try:
            result = await flow.arun(inputs, reuse=reuse, rerun=rerun, on_event=self._on_event, raise_on_error=False)
        except asyncio.CancelledError:
            self._finished(self.result, cancelled=True)
            raise
        except FlowError as exc:
            self._finished(None)
            self._say(f"The run did not start: {exc}", error=True, at="run")
            return None
        except Exception as exc:  # shown in the workbench instead of lost in a task
            self._finished(None)
            self._say(f"The run failed: {type(exc).__name__}: {exc}", error=True, at="run")
            return None
        self._finished(result)
        return result

    def _finished(self, result: RunResult | None, *, cancelled: bool = False) -> None:
        self.cancel_button.disabled = True
        self.run_button.disabled = self.run_from_button.disabled = False
        if result is None:
            self.run_status.value = ""
            return
        self.result = result
        if not cancelled:
            self.tensor_panel.remember(self._reuse, result)
            self._reuse = result
        self.statuses = {nid: r.status for nid, r in result.records.items()}
        self.cached = {nid for nid, r in result.records.items() if r.cached}
        self._refresh()
        self.timeline.value = timeline_svg(result)
        ms = (result.duration_s or 0.0) * 1000
        colour = STATUS_COLOURS.get(result.status, "#999")
        self.run_status.value = f"<span style='background:{colour};padding:1px 6px;border-radius:6px'>{html.escape(result.status)}</span> {ms:.0f} ms"
        if cancelled or result.status == "cancelled":
            self._say("Run cancelled.", error=True, at="run")
        elif result.ok:
            self._say(f"Run ok in {ms:.0f} ms. Click a node to inspect it.", at="run")
        else:
            self._say(f"Run {result.status}: {result.error}", error=True, at="run")
        if self.selected and self.selected[0] == "node":
            self._show_record(self.selected[1])

    # -- getting values out ---------------------------------------------------------------
    def to_variable(self, node_id: str | None = None, name: str | None = None, what: str | None = None) -> str:
        """Put a node's live output (or inputs, or captured activations) of the last run into
        a notebook variable; returns the variable's name."""
        if node_id is None:
            if not self.selected or self.selected[0] != "node":
                self._say("Select a node first.", error=True, at="inspect")
                raise FlowValidationError("select a node first")
            node_id = self.selected[1]
        what = what or self.variable_what.value
        name = name or self.variable_name.value or f"{node_id}_{what}"
        if not name.isidentifier():
            self._say(f"{name!r} is not a usable variable name.", error=True, at="inspect")
            raise FlowValidationError([Problem(f"{name!r} is not a Python identifier", field="variable name")])
        if self.result is None or node_id not in self.result.records:
            self._say(f"No run has reached {node_id} yet.", error=True, at="inspect")
            raise FlowValidationError([Problem("no result yet: run the flow first", node=node_id)])
        record = self.result.records[node_id]
        if record.status in ("skipped", "pending", "running") or (record.status in ("error", "cancelled") and what == "outputs"
                                                                 and not record.outputs):
            why = {"skipped": "was skipped in the last run (no active incoming edge)",
                   "pending": "has not run yet", "running": "is still running",
                   "error": "failed in the last run", "cancelled": "was cancelled in the last run"}[record.status]
            self._say(f"{node_id} {why}: it has no {what} to put in a variable.", error=True, at="inspect")
            raise FlowValidationError([Problem(f"{why}: no {what}", node=node_id)])
        value = {"outputs": record.outputs, "inputs": record.inputs}.get(what)
        if what == "activations":
            value = activations(record, self.result)
            if not value:
                self._say(f"{node_id} captured no activations in the last run (list the layers under `capture:`).",
                          error=True, at="inspect")
                raise FlowValidationError([Problem("no captured activations", node=node_id, field="capture")])
        user_namespace()[name] = value
        self.variables[name] = node_id
        self._say(f"{node_id} {what} are now in the variable `{name}`.", at="inspect")
        return name

    # -- files ------------------------------------------------------------------------------
    def open(self, path: PathLike) -> None:
        """Open a flow file (the current flow is replaced; undo history starts over)."""
        try:
            spec, document = FlowDocument.open(path)
        except FlowError as exc:
            self._say(f"Cannot open: {exc}", error=True, at="files")
            raise
        self.document = document
        self.editor.reset(spec)
        self.editor.set_layout(default_positions(spec))
        self.flow = self._make_flow()
        self.result = self._reuse = None
        self.statuses, self.cached, self.selected = {}, set(), None
        self.path_text.value = str(document.path)
        self._refresh()
        self._show_selection()
        self._say(f"Opened {document.path}.", at="files")

    def save(self, path: PathLike | None = None) -> Path:
        """Save the flow, layout included; comments of the opened file are kept."""
        if path is None and self.document is None:
            self._say("Give a file name to save to.", error=True, at="files")
            raise FlowValidationError("no file name to save to")
        if self.document is None:
            self.document = FlowDocument(Path(path))  # type: ignore[arg-type]
        target = self.document.save(self.spec, path)
        self.flow.source = target
        self.path_text.value = str(target)
        self._say(f"Saved {target}.", at="files")
        return target

    def export_notebook(self, path: PathLike | None = None) -> Path:
        """Export the flow as a parameterized notebook."""
        from jupyter_flow import export

        target = Path(path) if path else Path(f"{self.spec.name}.ipynb")
        export.export_notebook(self.flow, target)
        self._say(f"Exported {target}.", at="files")
        return target

    def __repr__(self) -> str:
        return f"<Workbench {self.flow!r}>"

