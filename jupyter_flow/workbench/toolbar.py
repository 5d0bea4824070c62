"""The workbench's edit toolbar: add a node of a kind, wire, delete, undo, redo, the flow's
settings, fit the drawing; what an edit did shows at its end."""

from __future__ import annotations

from collections.abc import Callable

from jupyter_flow.palette import palette as kind_palette
from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.controls import FeedbackLine, button, guarded
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.state import WorkbenchState

__all__ = ["Toolbar"]


class Toolbar:
    """The edit controls, drawn from the state: Undo and Redo are enabled when there is
    something to take back or bring again (their tooltips say what), Wire follows the
    wiring mode."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions, *, fit: Callable[[], None]) -> None:
        import ipywidgets as w

        self.state = state
        kinds = [entry["kind"] for entry in kind_palette(state.registry)]
        self.palette = w.Dropdown(options=kinds, value="python" if "python" in kinds else None,
                                  description="Kind", layout=w.Layout(width="210px", flex="0 0 auto"))
        self.add_button = button(actions, "Add node", "plus", lambda: actions.add_node(self.palette.value), "jf-add")
        self.wire_toggle = w.ToggleButton(description="Wire", icon="link", tooltip="Click a source node, then a target node",
                                          layout=w.Layout(width="auto", flex="0 0 auto"))
        self.wire_toggle.add_class("jf-wire")
        self.wire_toggle.observe(lambda change: guarded(actions, "edit", lambda: self._wire(actions, change["new"])), names="value")
        self.delete_button = button(actions, "Delete", "trash", actions.delete_selected, "jf-delete")
        self.undo_button = button(actions, "Undo", "undo", actions.undo, "jf-undo")
        self.redo_button = button(actions, "Redo", "repeat", actions.redo, "jf-redo")
        self.settings_button = button(actions, "Flow settings", "cog", lambda: actions.select(None), "jf-settings")
        self.fit_button = button(actions, "Fit", "expand", fit, "jf-fit", tooltip="Show the whole flow")
        self.feedback = FeedbackLine(state, "edit", grow="1 1 220px")
        # wraps onto a second line in a narrow pane instead of cutting the buttons short
        self.widget = w.HBox([self.palette, self.add_button, self.wire_toggle, self.delete_button, self.undo_button,
                              self.redo_button, self.settings_button, self.fit_button, self.feedback.widget],
                             layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.widget.add_class("jf-toolbar")
        state.subscribe(self._changed, ("flow", "wiring"))
        self.draw()

    def _wire(self, actions: WorkbenchActions, on: bool) -> None:
        if on != self.state.wiring:
            actions.set_wiring(on)

    def _changed(self, _change: Change) -> None:
        self.draw()

    def draw(self) -> None:
        state = self.state
        self.undo_button.disabled = not state.can_undo
        self.undo_button.tooltip = f"Undo: {state.last_edit}" if state.can_undo else "Nothing to undo"
        self.redo_button.disabled = not state.can_redo
        self.redo_button.tooltip = f"Redo: {state.next_redo}" if state.can_redo else "Nothing to redo"
        if self.wire_toggle.value != state.wiring:
            self.wire_toggle.value = state.wiring
