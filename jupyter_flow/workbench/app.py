"""`Workbench`: build, run and inspect a flow in a notebook.

A workbench is a `WorkbenchState` (the flow, the selection, the runs, the inputs; every
user action is a method of it) and the views that draw it: the toolbar, the graph, the
Settings / Inspect / Timeline tabs, the inputs form, the run and file bars, the problems.
The views send what the user does back through the state's actions, and redraw when the
state tells them what changed. This class only builds them and lays them out; its
methods are the state's actions, so the workbench can be driven from Python.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_flow.document import FlowDocument
from jupyter_flow.editor import FlowEditor
from jupyter_flow.errors import Problem
from jupyter_flow.evaluate import Evaluation, ScoreFn
from jupyter_flow.flow import Flow
from jupyter_flow.nodes.registry import NodeRegistry
from jupyter_flow.spec import FlowSpec, PathLike
from jupyter_flow.trace import RunResult
from jupyter_flow.workbench.actions import Selection
from jupyter_flow.workbench.bars import FileBar, RunBar
from jupyter_flow.workbench.cache_view import CacheBar
from jupyter_flow.workbench.eval_view import EvaluationPanel
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.graph_view import GraphView
from jupyter_flow.workbench.history_view import HistoryPanel
from jupyter_flow.workbench.inputs_form import InputsForm
from jupyter_flow.workbench.inspect_view import InspectPanel
from jupyter_flow.workbench.iteration import Comparison, StoreChoice
from jupyter_flow.workbench.panels import ProblemsPanel, SettingsEditor, TimelinePanel
from jupyter_flow.workbench.state import FlowLike, WorkbenchState
from jupyter_flow.workbench.toolbar import Toolbar

__all__ = ["Workbench"]

_SETTINGS_TAB, _INSPECT_TAB, _TIMELINE_TAB, _HISTORY_TAB, _EVALUATION_TAB = range(5)


class Workbench:
    """An editable, runnable view of a flow: `Workbench("my.flow.yaml")` or `Workbench(flow)`.

    Click a node to edit its settings (and, after a run, to inspect it); switch on "Wire"
    and click a source then a target to connect them; drag nodes to place them; Undo and
    Redo walk the edits. Run and Cancel work while the notebook stays usable; "Run from
    here" re-runs the selected node and what follows it, reusing the last results
    upstream. Drag the background to pan a flow larger than the view; Fit shows the whole
    flow. `height` fixes the graph's height (a CSS length); by default it grows with the
    flow.

    Change, run, compare: with `cache=True` a node whose kind, inputs and code are unchanged
    is taken from the node cache instead of run (it wears a "cached" badge); with
    `history=True` every run is kept, listed in the History tab, where "Compare with..."
    shows what changed between two runs and marks the changed nodes on the graph. Both
    live in `.jupyter-flow/` beside the flow file (in the notebook's folder for a flow
    without a file); a folder (cache) or file (history) may be given instead.
    `evaluate(data)` runs the flow as edited and its saved file over a dataset and shows
    the table in the Evaluation tab.

    Each message shows next to the control that caused it: edits under the toolbar, Apply
    under the settings, runs in the run bar, "To variable" beside it, files in the file bar.
    `state` is the workbench without its widgets (`WorkbenchState`).
    """

    def __init__(self, flow: FlowLike = None, *, registry: NodeRegistry | None = None,
                 functions: Mapping[str, Callable[..., Any]] | None = None, height: str | None = None,
                 cache: StoreChoice = False, history: StoreChoice = False) -> None:
        import ipywidgets as w

        self.state = state = WorkbenchState(flow, registry=registry, functions=functions, cache=cache, history=history)
        self.graph = GraphView(state, state, height=height)
        self.toolbar = Toolbar(state, state, fit=self.graph.fit)
        self.settings = SettingsEditor(state, state)
        self.inspect_panel = InspectPanel(state, state)
        self.timeline_panel = TimelinePanel(state)
        self.inputs = InputsForm(state, state)
        self.run_bar = RunBar(state, state)
        self.file_bar = FileBar(state, state)
        self.problems_panel = ProblemsPanel(state)
        self.cache_bar = CacheBar(state, state)
        self.history_panel = HistoryPanel(state, state)
        self.evaluation_panel = EvaluationPanel(state, state)

        inspect_tab = w.VBox([self.cache_bar.widget, self.inspect_panel.widget])
        self.tabs = w.Tab(children=[self.settings.widget, inspect_tab, self.timeline_panel.widget, self.history_panel.widget,
                                    self.evaluation_panel.widget])
        for i, title in enumerate(("Settings", "Inspect", "Timeline", "History", "Evaluation")):
            self.tabs.set_title(i, title)
        # plots go into the page only while their tab shows (laid out hidden, they have no size)
        self.inspect_panel.tensor_panel.set_shown(self.tabs.selected_index == _INSPECT_TAB)
        self.tabs.observe(lambda c: self.inspect_panel.tensor_panel.set_shown(c["new"] == _INSPECT_TAB), names="selected_index")
        # side by side where there is room, the panels below the graph in a narrow pane
        self.tabs.layout = w.Layout(flex="2 1 340px", min_width="300px", max_height="720px", overflow="auto")
        self.graph.widget.layout.width = "auto"
        self.graph.widget.layout.flex = "3 1 560px"
        self.graph.widget.layout.min_width = "280px"
        # each tab as wide as its title (five fixed-width tabs would cut their titles short in a narrow pane)
        tab_titles = w.HTML("<style>.jf-workbench .jf-tabs > .lm-TabBar .lm-TabBar-tab{flex:0 0 auto}</style>",
                            layout=w.Layout(display="none"))
        self.tabs.add_class("jf-tabs")
        self.widget = w.VBox([
            tab_titles,
            self.toolbar.widget,
            w.HBox([self.graph.widget, self.tabs], layout=w.Layout(flex_flow="row wrap", align_items="flex-start")),
            w.HTML("<b>Inputs</b>"),
            self.inputs.widget,
            self.run_bar.widget,
            self.file_bar.widget,
            self.problems_panel.widget,
        ])
        self.widget.add_class("jf-workbench")
        #: where the messages of each place show: "edit", "settings", "run", "inspect", "files"
        self.feedback = {line.place: line.widget for line in (self.toolbar.feedback, self.settings.feedback, self.run_bar.feedback,
                                                              self.inspect_panel.feedback, self.file_bar.feedback,
                                                              self.history_panel.feedback, self.evaluation_panel.feedback)}
        state.subscribe(self._selection_changed, ("selection",))
        state.subscribe(self._evaluation_changed, ("evaluation",))
        state.subscribe(self._comparison_changed, ("history",))
        self._comparison_seen: Comparison | None = None

        # the controls, by the names the workbench has always given them
        tb, ip, rb, fb = self.toolbar, self.inspect_panel, self.run_bar, self.file_bar
        self.palette, self.add_button, self.wire_toggle, self.delete_button = tb.palette, tb.add_button, tb.wire_toggle, tb.delete_button
        self.undo_button, self.redo_button, self.settings_button, self.fit_button = tb.undo_button, tb.redo_button, tb.settings_button, tb.fit_button
        self.inspector, self.tensor_panel = ip.inspector, ip.tensor_panel
        self.variable_name, self.variable_what, self.variable_button = ip.variable_name, ip.variable_what, ip.variable_button
        self.timeline, self.problems_view = self.timeline_panel.widget, self.problems_panel.widget
        self.run_button, self.run_from_button, self.cancel_button, self.run_status = (rb.run_button, rb.run_from_button,
                                                                                       rb.cancel_button, rb.run_status)
        self.message = rb.feedback.widget
        self.path_text, self.open_button, self.save_button = fb.path_text, fb.open_button, fb.save_button
        self.export_text, self.export_button = fb.export_text, fb.export_button

    def _selection_changed(self, _change: Change) -> None:
        # a node that ran shows what it did; anything else its settings
        selected = self.state.selected
        ran = selected is not None and selected[0] == "node" and self.state.runs.record(selected[1]) is not None
        self.tabs.selected_index = _INSPECT_TAB if ran else _SETTINGS_TAB

    def _comparison_changed(self, _change: Change) -> None:
        # a new comparison shows itself; the list growing after a run does not change the tab
        comparison = self.state.iteration.comparison
        if comparison is not None and comparison is not self._comparison_seen:
            self.tabs.selected_index = _HISTORY_TAB
        self._comparison_seen = comparison

    def _evaluation_changed(self, _change: Change) -> None:
        if self.state.iteration.evaluation is not None:
            self.tabs.selected_index = _EVALUATION_TAB

    def show_tab(self, title: str) -> None:
        """Bring a tab to the front: "Settings", "Inspect", "Timeline", "History", "Evaluation"."""
        titles = [self.tabs.get_title(i) for i in range(len(self.tabs.children))]
        self.tabs.selected_index = titles.index(title)

    # -- what there is ----------------------------------------------------------------------
    @property
    def spec(self) -> FlowSpec:
        return self.state.spec

    @property
    def flow(self) -> Flow:
        return self.state.flow

    @property
    def editor(self) -> FlowEditor:
        return self.state.editor

    @property
    def registry(self) -> NodeRegistry:
        return self.state.registry

    @property
    def functions(self) -> dict[str, Callable[..., Any]]:
        return self.state.functions

    @property
    def document(self) -> FlowDocument | None:
        return self.state.document

    @property
    def selected(self) -> Selection | None:
        """("node", id), ("edge", "source->target"), or None (the flow's settings)."""
        return self.state.selected

    @property
    def wire_source(self) -> str | None:
        return self.state.wire_source

    @property
    def result(self) -> RunResult | None:
        """The run shown: live while it runs, then the last run."""
        return self.state.runs.result

    @property
    def statuses(self) -> dict[str, str]:
        return self.state.runs.statuses

    @property
    def cached(self) -> set[str]:
        return self.state.runs.cached

    @property
    def running(self) -> bool:
        return self.state.runs.running

    @property
    def variables(self) -> dict[str, str]:
        """The notebook variables "To variable" made, and the node each came from."""
        return self.state.runs.variables

    @property
    def message_text(self) -> str:
        """What the last action said."""
        return self.state.notice.text if self.state.notice is not None else ""

    @property
    def error(self) -> str | None:
        """What the last action said, when it was an error."""
        notice = self.state.notice
        return notice.text if notice is not None and notice.error else None

    def problems(self) -> list[Problem]:
        return self.state.problems()

    def node_classes(self, node_id: str) -> str:
        """The classes a node is drawn with now (status, problem, cached, chosen, ...)."""
        return str(self.graph.node_widget(node_id).classes)

    # -- editing (see `WorkbenchState` for each) ------------------------------------------------
    def add_node(self, kind: str, node_id: str | None = None, config: Mapping[str, Any] | None = None,
                 position: tuple[float, float] | None = None, **fields: Any) -> str:
        """Add a node (its config starts with the kind's required fields), select it and
        open its settings. It is placed beside the selected node, else under the rest."""
        return self.state.add_node(kind, node_id, config, position, **fields)

    def delete_node(self, node_id: str) -> None:
        self.state.delete_node(node_id)

    def connect(self, source: str, target: str, **fields: Any) -> None:
        """Wire `source` to `target`; `when`, `branch`, `on`, `label` may be given."""
        self.state.connect(source, target, **fields)

    def disconnect(self, source: str, target: str) -> None:
        self.state.disconnect(source, target)

    def configure(self, node_id: str, settings: Mapping[str, Any] | str) -> str:
        """Replace a node's settings (a mapping or YAML); returns its id (which may be new)."""
        return self.state.configure(node_id, settings)

    def configure_edge(self, source: str, target: str, settings: Mapping[str, Any] | str) -> None:
        self.state.configure_edge(source, target, settings)

    def configure_flow(self, settings: Mapping[str, Any] | str) -> None:
        """Replace the flow's name, description, inputs, timeout_s, max_concurrency."""
        self.state.configure_flow(settings)

    def move(self, node_id: str, x: float, y: float) -> None:
        """Place a node (what a drag does); kept in the flow's layout."""
        self.state.move(node_id, x, y)

    def undo(self) -> str | None:
        """Take back the last edit; returns what it was."""
        return self.state.undo()

    def redo(self) -> str | None:
        """Make again the last edit Undo took back; returns what it was."""
        return self.state.redo()

    def delete_selected(self) -> None:
        self.state.delete_selected()

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Make `fn` callable from `python` nodes as `function: name` (used by the next run)."""
        self.state.register(name, fn)

    # -- selecting ------------------------------------------------------------------------------
    def select(self, node_id: str | None) -> None:
        """Select a node (settings, and the inspector after a run), or None for the flow."""
        self.state.select(node_id)

    def click_node(self, node_id: str) -> None:
        """What a click on a node does: in wiring mode pick source then target, else select."""
        self.state.click_node(node_id)

    def click_edge(self, key: str) -> None:
        self.state.select_edge(key)

    def inspect(self, node_id: str, tensor: str | None = None, **options: Any) -> Any:
        """The inspector's HTML for a node of the last run; with `tensor` (a captured name
        or an output path), that tensor's view, drawn in the Inspect tab (brought to the front) and returned:
        ``wb.inspect("clauses", "attentions", layer=3, head=0)``. Options: `layer`, `head`
        (a number or "all"), `index` (leading axes), `item` (which input), `compare`
        (the difference from the previous run)."""
        if tensor is not None:
            self.tabs.selected_index = _INSPECT_TAB  # before drawing: the view goes in where it can be seen
        return self.inspect_panel.inspect(node_id, tensor, **options)

    # -- running ----------------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, Any] | None = None, *, rerun: str | None = None) -> asyncio.Task[RunResult | None]:
        """Start a run as a task on the running event loop (the kernel's) and return it;
        `await` it to wait. Inputs come from the form unless given."""
        return self.state.run(inputs, rerun=rerun)

    def run_from(self, node_id: str | None = None, inputs: Mapping[str, Any] | None = None) -> asyncio.Task[RunResult | None]:
        """Re-run a node (default: the selected one) and everything after it, reusing the
        last run's results for the nodes before it."""
        return self.state.run_from(node_id, inputs)

    def cancel(self) -> bool:
        """Cancel the run in progress; its nodes show as cancelled."""
        return self.state.cancel()

    def to_variable(self, node_id: str | None = None, name: str | None = None, what: str | None = None) -> str:
        """Put a node's live output (or inputs, or captured activations) of the last run into
        a notebook variable; returns the variable's name. Without a node, the selected one,
        under the name and of the kind chosen beside "To variable"."""
        if node_id is None:
            name = name or self.variable_name.value or None
        return self.state.to_variable(node_id, name, what or self.variable_what.value)

    # -- change, run, compare ----------------------------------------------------------------------
    @property
    def comparison(self) -> Comparison | None:
        """The two runs compared last (their diff, and the nodes marked on the graph)."""
        return self.state.iteration.comparison

    @property
    def evaluation(self) -> Evaluation | None:
        """The evaluation shown in the Evaluation tab."""
        return self.state.iteration.evaluation

    def runs_listed(self) -> list[dict[str, Any]]:
        """The runs of this flow in the run history, newest first (what the History tab lists)."""
        return self.state.iteration.runs()

    def compare(self, before: str | None = None, after: str | None = None) -> Comparison:
        """Compare two runs of the history (ids or unique prefixes; by default the last run
        with the one before it), show the diff in the History tab and mark the changed
        nodes on the graph."""
        return self.state.compare(before, after)

    def clear_marks(self) -> None:
        """Take a comparison's marks off the graph."""
        self.state.clear_marks()

    def clear_cache(self, node_id: str | None = None) -> int:
        """Remove a node's (by default the selected one's) results from the node cache, so
        that its next run computes it again; returns how many were removed."""
        return self.state.clear_cache(node_id)

    def evaluate(self, data: str | Path, against: str | Path | Flow | None = None, *, out: str | Path | None = None,
                 score: str | ScoreFn | None = None, expect: Sequence[str] = (),
                 concurrency: int = 4) -> asyncio.Task[Evaluation | None]:
        """Run two versions over the items of `data` (a .jsonl file, see `jupyter_flow.evaluate`):
        `against` (version a; by default the flow's file as saved, also ``FILE@REV``) and the
        flow as edited here (version b), through the workbench's node cache, in a thread (the
        notebook stays usable); then show the table in the Evaluation tab. Returns the task:
        ``ev = await wb.evaluate("items.jsonl", score=my_score)``. Results go to `out` (by
        default a new folder under ``.jupyter-flow/evaluations/``)."""
        return self.state.evaluate(data, against, out=out, score=score, expect=expect, concurrency=concurrency)

    def show_evaluation(self, source: Evaluation | str | Path) -> Evaluation:
        """Show an evaluation in the Evaluation tab: what `evaluate` returned, or the folder
        ``jupyter-flow eval --out DIR`` wrote."""
        return self.state.show_evaluation(source)

    # -- files ------------------------------------------------------------------------------------
    def open(self, path: PathLike) -> None:
        """Open a flow file (the current flow is replaced; undo history starts over)."""
        self.state.open(path)

    def save(self, path: PathLike | None = None, *, overwrite: bool = False) -> Path:
        """Save the flow, layout included; comments of the opened file are kept. The file is
        replaced whole or not at all, and one changed on disk since it was opened is kept as
        it is (FileChangedError) unless `overwrite`."""
        return self.state.save(path, overwrite=overwrite)

    def export_notebook(self, path: PathLike | None = None) -> Path:
        """Export the flow as a parameterized notebook."""
        return self.state.export_notebook(path)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<Workbench {self.flow!r}>"
