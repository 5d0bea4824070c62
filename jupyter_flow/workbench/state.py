"""`WorkbenchState`: what the notebook workbench holds and does, apart from its widgets.

The state holds the flow (edited through `FlowEditor`, with undo and redo), what is
selected, the wiring mode, the runs (`runs`, a `RunState`: the run shown, the last ones
finished, the inputs of the next) and the notice of the last action. Each user action is
a method; after an action the state notifies its observers once with the topics it
changed (see `jupyter_flow.workbench.events`), and the views redraw from it. Nothing here
imports a widget library: a test drives the state alone, as the views would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from jupyter_flow.document import FlowDocument
from jupyter_flow.editor import FlowEditor, new_node_config
from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.evaluate import Evaluation, ScoreFn
from jupyter_flow.export import export_notebook
from jupyter_flow.flow import Flow
from jupyter_flow.nodes.registry import NodeRegistry, default_registry
from jupyter_flow.spec import FlowSpec, PathLike, spec_from_dict, spec_to_dict
from jupyter_flow.trace import RunResult
from jupyter_flow.workbench.actions import Selection
from jupyter_flow.workbench.events import TOPICS, Listener, Notice, Observers, Place, Topic
from jupyter_flow.workbench.graph import default_positions, edge_key, free_spot
from jupyter_flow.workbench.iteration import Comparison, IterationState, StoreChoice
from jupyter_flow.workbench.runs import RunState

__all__ = ["FlowLike", "WorkbenchState"]

FlowLike = Flow | FlowSpec | Mapping[str, Any] | str | Path | None
T = TypeVar("T")


@dataclass(frozen=True)
class _Undone:
    """An undone edit: the flow it had made, what it was, and the flow the undo left
    (redo applies only while the flow is still that one)."""

    spec: FlowSpec
    what: str
    left: FlowSpec


class WorkbenchState:
    """The flow being worked on in a notebook, and everything a user can do with it."""

    def __init__(self, flow: FlowLike = None, *, registry: NodeRegistry | None = None,
                 functions: Mapping[str, Callable[..., Any]] | None = None, cache: StoreChoice = False,
                 history: StoreChoice = False) -> None:
        self.registry = registry or default_registry()
        self.functions: dict[str, Callable[..., Any]] = dict(functions or {})
        self.document: FlowDocument | None = None
        spec = self._spec_of(flow)
        self.editor = FlowEditor(spec)
        self.editor.set_layout(default_positions(spec))
        self.flow = self._make_flow()
        self.selected: Selection | None = None
        self.wiring = False
        self.wire_source: str | None = None
        self.observers = Observers()
        self.runs = RunState(self.observers)
        #: the node cache and run history, the runs compared, the evaluation shown
        self.iteration = IterationState(self.observers)
        self._stores: tuple[StoreChoice, StoreChoice] = (cache, history)
        self._use_stores()
        self._undone: list[_Undone] = []

    def _use_stores(self) -> None:
        """Open the cache and history chosen, for the flow's file (a default place follows it)."""
        self.iteration.configure(*self._stores, self.document.path if self.document is not None else None, self.spec.name)
        self.runs.cache, self.runs.history_store = self.iteration.cache, self.iteration.history

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

    # -- observing ---------------------------------------------------------------------
    def subscribe(self, listener: Listener, topics: tuple[Topic, ...] | frozenset[Topic] = TOPICS) -> Callable[[], None]:
        """Call `listener(change)` after each action that changed one of `topics`; returns
        the function that ends the subscription."""
        return self.observers.subscribe(listener, topics)

    @property
    def notice(self) -> Notice | None:
        """What the last action reported, and where it belongs."""
        return self.observers.notice

    def report(self, text: str, *, place: Place, error: bool = True) -> None:
        """Show what a control could not do, next to it."""
        self.observers.say(text, place=place, error=error)

    # -- what there is ---------------------------------------------------------------------
    @property
    def spec(self) -> FlowSpec:
        return self.editor.spec

    def problems(self) -> list[Problem]:
        return self.flow.problems()

    @property
    def can_undo(self) -> bool:
        return self.editor.can_undo

    @property
    def can_redo(self) -> bool:
        return bool(self._undone) and self._undone[-1].left is self.spec

    @property
    def last_edit(self) -> str | None:
        """What undo would take back."""
        return self.editor.last_edit

    @property
    def next_redo(self) -> str | None:
        """What redo would bring back."""
        return self._undone[-1].what if self.can_redo else None

    # -- editing ---------------------------------------------------------------------------
    def _flow_changed(self) -> None:
        self.flow = self._make_flow()
        self.observers.mark("flow")
        self.iteration.rename(self.spec.name)
        if self.selected is not None:  # a selected element the change took away is no longer selected
            kind, key = self.selected
            gone = key not in self.editor.node_ids() if kind == "node" else key not in {edge_key(e) for e in self.spec.edges}
            if gone:
                self.selected = None
                self.observers.mark("selection")

    def _edit(self, what: Callable[[], T], place: Place = "edit") -> T:
        """Apply one edit: a refused one changes nothing and says why; an edit that changes
        nothing says so; a new edit ends what redo could bring back."""
        before = self.spec
        with self.observers.action():
            try:
                out = what()
            except FlowValidationError as exc:
                self.observers.say(f"Not applied, the flow is unchanged: {exc}", error=True, place=place, problems=exc.problems)
                raise
            if self.spec == before:
                self.observers.say("Nothing changed: that is what the flow already says.", place=place)
                return out
            self._undone.clear()
            self._flow_changed()
            problems = self.flow.problems()
            self.observers.say(f"Applied: {self.editor.last_edit}." + (f" {len(problems)} problem(s) to fix before running." if problems else ""),
                      place=place)
            return out

    def add_node(self, kind: str, node_id: str | None = None, config: Mapping[str, Any] | None = None,
                 position: tuple[float, float] | None = None, **fields: Any) -> str:
        """Add a node (its config starts with the kind's required fields) and select it. It
        is placed beside the selected node, else under the rest."""
        if config is None:
            config = new_node_config(kind, self.registry)
        if position is None:
            near = self.selected[1] if self.selected and self.selected[0] == "node" else None
            position = free_spot(self.spec.layout, near)
        with self.observers.action():
            new_id = self._edit(lambda: self.editor.add_node(kind, node_id, config, position, **fields))
            self.select(new_id)
        return new_id

    def delete_node(self, node_id: str) -> None:
        """Delete a node and its edges (the selection goes with them)."""
        self._edit(lambda: self.editor.remove_node(node_id))

    def connect(self, source: str, target: str, **fields: Any) -> None:
        """Wire `source` to `target`; `when`, `branch`, `on`, `label` may be given."""
        self._edit(lambda: self.editor.add_edge(source, target, **fields))

    def disconnect(self, source: str, target: str) -> None:
        self._edit(lambda: self.editor.remove_edge(self.editor.edge_index(source, target)))

    def configure(self, node_id: str, settings: Mapping[str, Any] | str, *, place: Place = "edit") -> str:
        """Replace a node's settings (a mapping or YAML); returns its id (which may be new)."""
        chosen = self.selected == ("node", node_id)
        with self.observers.action():
            new_id = self._edit(lambda: self.editor.replace_node(node_id, settings), place)
            if chosen and self.selected != ("node", new_id):  # renamed: the selection follows
                self.selected = ("node", new_id)
                self.observers.mark("selection")
        return new_id

    def configure_edge(self, source: str, target: str, settings: Mapping[str, Any] | str, *, place: Place = "edit") -> None:
        self._edit(lambda: self.editor.replace_edge(self.editor.edge_index(source, target), settings), place)

    def configure_flow(self, settings: Mapping[str, Any] | str, *, place: Place = "edit") -> None:
        """Replace the flow's name, description, inputs, timeout_s, max_concurrency."""
        self._edit(lambda: self.editor.replace_settings(settings), place)

    def apply_settings(self, text: str) -> None:
        """Apply the settings typed for what is selected (a node, an edge, or the flow)."""
        if self.selected is None:
            self.configure_flow(text, place="settings")
        elif self.selected[0] == "node":
            self.configure(self.selected[1], text, place="settings")
        else:
            source, _, target = self.selected[1].partition("->")
            self.configure_edge(source, target, text, place="settings")

    def move(self, node_id: str, x: float, y: float) -> bool:
        """Place a node (what a drag does), kept in the flow's layout; False when it did not
        move (or is not in the flow)."""
        if node_id not in self.editor.node_ids():
            return False
        with self.observers.action():
            if not self.editor.move(node_id, x, y):
                return False
            self._undone.clear()
            self._flow_changed()
        return True

    def delete_selected(self) -> None:
        if self.selected is None:
            with self.observers.action():
                self.observers.say("Select a node or an edge to delete.", place="edit")
            return
        kind, key = self.selected
        if kind == "node":
            self.delete_node(key)
        else:
            source, _, target = key.partition("->")
            self.disconnect(source, target)

    def undo(self) -> str | None:
        """Take back the last edit; returns what it was (None when there is none)."""
        with self.observers.action():
            before = self.spec
            what = self.editor.undo()
            if what is None:
                self.observers.say("Nothing to undo.", place="edit")
                return None
            if self._undone and self._undone[-1].left is not before:
                self._undone.clear()  # the flow was edited past the editor since: that redo is gone
            self._undone.append(_Undone(before, what, self.spec))
            self._after_history(f"Undone: {what}.")
        return what

    def redo(self) -> str | None:
        """Make again the last edit undo took back; returns what it was (None when there is none)."""
        with self.observers.action():
            if not self.can_redo:
                self._undone.clear()
                self.observers.say("Nothing to redo.", place="edit")
                return None
            undone = self._undone.pop()
            try:
                self.editor.apply(spec_to_dict(undone.spec), undone.what)
            except FlowValidationError as exc:
                self._undone.clear()
                self.observers.say(f"Cannot redo {undone.what}: {exc}", error=True, place="edit", problems=exc.problems)
                raise
            if self._undone:  # the flow redone is equal to, not the same object as, the one the next redo left
                self._undone[-1] = replace(self._undone[-1], left=self.spec)
            self._after_history(f"Redone: {undone.what}.")
        return undone.what

    def _after_history(self, said: str) -> None:
        self._flow_changed()
        self.observers.say(said, place="edit")

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Make `fn` callable from `python` nodes as `function: name` (used by the next run)."""
        with self.observers.action():
            self.functions[name] = fn
            self._flow_changed()

    # -- selecting and wiring -------------------------------------------------------------
    def select(self, node_id: str | None) -> None:
        """Select a node (its settings, and its record after a run), or None for the flow."""
        if node_id is not None and node_id not in self.editor.node_ids():
            with self.observers.action():
                self.observers.say(f"There is no node {node_id} in the flow.", error=True, place="edit")
            raise FlowValidationError([Problem(f"no node '{node_id}' to select", node=node_id)])
        with self.observers.action("selection"):
            self.selected = ("node", node_id) if node_id is not None else None

    def select_edge(self, key: str) -> None:
        """Select an edge by its key, "source->target"."""
        if key not in {edge_key(e) for e in self.spec.edges}:
            with self.observers.action():
                self.observers.say(f"There is no edge {key} in the flow.", error=True, place="edit")
            raise FlowValidationError([Problem(f"no edge {key} to select", field="edges")])
        with self.observers.action("selection"):
            self.selected = ("edge", key)

    def set_wiring(self, on: bool) -> None:
        """Wiring mode: a click on a node picks the source, the next the target."""
        with self.observers.action("wiring"):
            self.wiring, self.wire_source = bool(on), None
            self.observers.say("Wiring: click the source node, then the target node." if on else "Wiring off.", place="edit")

    def click_node(self, node_id: str) -> None:
        """What a click on a node does: in wiring mode pick source then target, else select."""
        if not self.wiring:
            self.select(node_id)
            return
        with self.observers.action("wiring"):
            if self.wire_source is None or self.wire_source == node_id:
                self.wire_source = None if self.wire_source == node_id else node_id
                if self.wire_source:
                    self.observers.say(f"Wiring from {node_id}: now click the target node.", place="edit")
                return
            source, self.wire_source = self.wire_source, None
            try:
                self.connect(source, node_id)
            except FlowValidationError:
                pass  # the notice says why; wiring goes on from a fresh source

    # -- inputs and running ---------------------------------------------------------------------
    def set_input(self, name: str, value: Any) -> None:
        """Set one input of the next run, as typed (an empty text leaves its default)."""
        self.set_inputs({name: value})

    def set_inputs(self, values: Mapping[str, Any]) -> None:
        self.runs.set_inputs(values)

    def run(self, inputs: Mapping[str, Any] | None = None, *, rerun: str | None = None) -> asyncio.Task[RunResult | None]:
        """Start a run as a task on the running event loop (the kernel's) and return it;
        `await` it to wait. Without `inputs`, the inputs set (or typed) for it are used.
        With `rerun`, that node and what follows it run again, the nodes before it reuse
        the last run's results."""
        return self.runs.start(self.flow, inputs, rerun=rerun)

    def run_from(self, node_id: str | None = None, inputs: Mapping[str, Any] | None = None) -> asyncio.Task[RunResult | None]:
        """Re-run a node (by default the selected one) and everything after it, reusing the
        last run's results for the nodes before it."""
        if node_id is None:
            node_id = self._selected_node("Select the node to run from.", place="run")
        if self.runs.history.last is None:
            with self.observers.action():
                self.observers.say("Run the whole flow once first: there are no results to reuse yet.", error=True, place="run")
            raise FlowValidationError("no earlier run to reuse")
        return self.run(inputs, rerun=node_id)

    def cancel(self) -> bool:
        """Cancel the run in progress; its nodes show as cancelled."""
        return self.runs.cancel()

    def to_variable(self, node_id: str | None = None, name: str | None = None, what: str = "outputs") -> str:
        """Put a node's live outputs (or inputs, or captured activations) of the shown run
        into a notebook variable (by default `NODE_WHAT`); returns the variable's name."""
        if node_id is None:
            node_id = self._selected_node("Select a node first.", place="inspect")
        return self.runs.to_variable(node_id, name, what)

    def _selected_node(self, said: str, *, place: Place) -> str:
        if not self.selected or self.selected[0] != "node":
            with self.observers.action():
                self.observers.say(said, error=True, place=place)
            raise FlowValidationError(said.rstrip(".").lower())
        return self.selected[1]

    # -- change, run, compare (see `IterationState`) -------------------------------------------
    def clear_cache(self, node_id: str | None = None) -> int:
        """Remove a node's (by default the selected one's) results from the node cache."""
        if node_id is None:
            node_id = self._selected_node("Select the node whose cached results to remove.", place="inspect")
        return self.iteration.clear_cache(node_id)

    def compare(self, before: str | None = None, after: str | None = None) -> Comparison:
        """Compare two runs of the history (by default the last two) and mark what changed."""
        return self.iteration.compare(before, after)

    def clear_marks(self) -> None:
        self.iteration.clear_marks()

    def show_evaluation(self, source: Evaluation | str | Path) -> Evaluation:
        """Show an evaluation: what `evaluate` returned, or the folder it wrote."""
        return self.iteration.show_evaluation(source)

    def evaluate(self, data: str | Path, against: str | Path | Flow | None = None, *, out: str | Path | None = None,
                 score: str | ScoreFn | None = None, expect: Sequence[str] = (),
                 concurrency: int = 4) -> asyncio.Task[Evaluation | None]:
        """Evaluate the flow as edited here (b) against `against` (a; by default the flow's
        file as saved) over `data`, then show the table; returns the task (`await` it)."""
        if against is None:
            if self.document is None or not self.document.path.exists():
                with self.observers.action():
                    self.observers.say("Name the version to compare with: this flow has no file.", error=True, place="evaluation")
                raise FlowValidationError([Problem("no saved flow file to evaluate against", field="against")])
            against = self.document.path
        return self.iteration.evaluate(self.flow, against, data, out=out, score=score, expect=expect, concurrency=concurrency)

    # -- files ------------------------------------------------------------------------------
    def open(self, path: PathLike) -> None:
        """Open a flow file: the current flow, its runs and its undo history are replaced."""
        with self.observers.action():
            try:
                spec, document = FlowDocument.open(path)
            except FlowError as exc:
                self.observers.say(f"Cannot open: {exc}", error=True, place="files")
                raise
            self.document = document
            self.editor.reset(spec)
            self.editor.set_layout(default_positions(spec))
            self._undone.clear()
            self._flow_changed()
            self.runs.clear()
            self._use_stores()
            self.selected, self.wire_source = None, None
            self.observers.mark("selection", "wiring", "file")
            self.observers.say(f"Opened {document.path}.", place="files")

    def save(self, path: PathLike | None = None, *, overwrite: bool = False) -> Path:
        """Save the flow, layout included; comments of the opened file are kept. The file is
        replaced whole or not at all; one changed on disk since it was opened is kept as it is
        (FileChangedError) unless `overwrite`."""
        with self.observers.action("file"):
            if self.document is None:
                if path is None:
                    self.observers.say("Give a file name to save to.", error=True, place="files")
                    raise FlowValidationError("no file name to save to")
                self.document = FlowDocument(Path(path))
            target = self.document.save(self.spec, path, overwrite=overwrite)
            self.flow.source = target
            self.observers.say(f"Saved {target}.", place="files")
        return target

    def export_notebook(self, path: PathLike | None = None) -> Path:
        """Export the flow as a parameterized notebook (by default NAME.ipynb)."""
        with self.observers.action():
            target = Path(path) if path else Path(f"{self.spec.name}.ipynb")
            export_notebook(self.flow, target)
            self.observers.say(f"Exported {target}.", place="files")
        return target

    def __repr__(self) -> str:
        return f"<WorkbenchState {self.flow!r}>"
