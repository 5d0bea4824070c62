"""The workbench's Inspect tab: what the selected node did in the run shown (inputs,
outputs, timing, error; `jupyter_flow.workbench.inspector`), its tensors, and "To
variable", which hands a node's values to the notebook."""

from __future__ import annotations

import html
from typing import Any

from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.agent_steps import AgentStepsView
from jupyter_flow.workbench.controls import FeedbackLine, button
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.inspector import record_html
from jupyter_flow.workbench.runs import HELD_VALUES
from jupyter_flow.workbench.state import WorkbenchState
from jupyter_flow.workbench.tensor_panel import TensorPanel

__all__ = ["InspectPanel"]


class InspectPanel:
    """The record of the selected node, redrawn as the run goes; its tensors below."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions) -> None:
        import ipywidgets as w

        self.state = state
        self.variable_name = w.Text(placeholder="variable name", layout=w.Layout(width="160px"))
        self.variable_what = w.Dropdown(options=list(HELD_VALUES), value="outputs", layout=w.Layout(width="120px"))
        self.variable_button = button(actions, "To variable", "download", lambda: actions.to_variable(
            None, self.variable_name.value or None, self.variable_what.value), "jf-to-variable", place="inspect")
        self.feedback = FeedbackLine(state, "inspect")
        self.inspector = w.HTML("<i>Run the flow, then click a node to see what went in and out.</i>")
        self.inspector.add_class("jf-inspector")
        self.tensor_panel = TensorPanel(state.runs.history.before)
        self.agent_steps = AgentStepsView()  # an agent's steps, above its record
        variable_bar = w.HBox([self.variable_name, self.variable_what, self.variable_button, self.feedback.widget],
                              layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = w.VBox([variable_bar, self.agent_steps.widget, self.inspector, self.tensor_panel.widget])
        state.subscribe(self._changed, ("selection", "record", "run"))

    def _changed(self, change: Change) -> None:
        selected = self.state.selected
        if selected is None or selected[0] != "node":
            return
        node_id = selected[1]
        if "selection" in change:
            self.variable_name.value = f"{node_id}_output"
        if "selection" in change or "run" in change or node_id in change.nodes:
            self.show(node_id)

    def show(self, node_id: str) -> None:
        """Draw a node's record of the run shown (or say that no run has reached it)."""
        result = self.state.runs.result
        record = self.state.runs.record(node_id)
        if result is None or record is None:
            self.inspector.value = f"<i>No run has reached {html.escape(node_id)} yet.</i>"
            self.tensor_panel.show(node_id, None)
            self.agent_steps.show(None)
            return
        self.inspector.value = record_html(record, result)
        self.agent_steps.show(record)
        self.tensor_panel.show(node_id, result)

    def inspect(self, node_id: str, tensor: str | None = None, **options: Any) -> Any:
        """The record's HTML of a node; with `tensor`, that tensor's view, drawn and returned
        (options: `layer`, `head`, `index`, `item`, `compare`)."""
        self.show(node_id)
        if tensor is None:
            return str(self.inspector.value)
        return self.tensor_panel.open(tensor, **options)
