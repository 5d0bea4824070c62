"""The workbench's run bar (Run, Run from here, Cancel, the status of the run shown, the
colours of the statuses) and file bar (Open, Save, Export notebook)."""

from __future__ import annotations

import html

from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.controls import FeedbackLine, button
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.state import WorkbenchState
from jupyter_flow.workbench.styles import STATUS_COLOURS

__all__ = ["FileBar", "RunBar"]


class RunBar:
    """Run and Run from here while nothing runs, Cancel while a run goes; then the run's
    status and time."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions) -> None:
        import ipywidgets as w

        self.state = state
        self.run_button = button(actions, "Run", "play", lambda: actions.run(), "jf-run", place="run", style="success")
        self.run_from_button = button(actions, "Run from here", "step-forward", lambda: actions.run_from(), "jf-run-from",
                                      place="run")
        self.cancel_button = button(actions, "Cancel", "stop", actions.cancel, "jf-cancel", place="run", style="danger")
        self.run_status = w.HTML("")
        self.feedback = FeedbackLine(state, "run", grow="1 1 240px")
        self.feedback.widget.add_class("jf-message")
        legend = " ".join(f"<span style='background:{c};padding:0 5px;border-radius:6px;font-size:11px'>{s}</span>"
                          for s, c in STATUS_COLOURS.items())
        self.widget = w.HBox([self.run_button, self.run_from_button, self.cancel_button, self.run_status, self.feedback.widget,
                              w.HTML(legend)], layout=w.Layout(flex_flow="row wrap", align_items="center"))
        state.subscribe(self._changed, ("run",))
        self.draw()

    def _changed(self, _change: Change) -> None:
        self.draw()

    def draw(self) -> None:
        runs = self.state.runs
        self.cancel_button.disabled = not runs.running
        self.run_button.disabled = self.run_from_button.disabled = runs.running
        result = runs.result
        if runs.running:
            self.run_status.value = "<b>running...</b>"
        elif result is None:
            self.run_status.value = ""
        else:
            colour = STATUS_COLOURS.get(result.status, "#999")
            ms = (result.duration_s or 0.0) * 1000
            self.run_status.value = (f"<span style='background:{colour};padding:1px 6px;border-radius:6px'>"
                                     f"{html.escape(result.status)}</span> {ms:.0f} ms")


class FileBar:
    """The flow's file: open another, save (here or elsewhere), export a notebook."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions) -> None:
        import ipywidgets as w

        self.state = state
        self.path_text = w.Text(placeholder="flows/my.flow.yaml", description="File", layout=w.Layout(width="330px"))
        self.open_button = button(actions, "Open", "folder-open", lambda: actions.open(self.path_text.value), "jf-open",
                                  place="files")
        self.save_button = button(actions, "Save", "save", lambda: actions.save(self.path_text.value or None), "jf-save",
                                  place="files")
        self.export_text = w.Text(placeholder="notebook.ipynb", description="Notebook", layout=w.Layout(width="300px"))
        self.export_button = button(actions, "Export notebook", "book",
                                    lambda: actions.export_notebook(self.export_text.value or None), "jf-export", place="files")
        self.feedback = FeedbackLine(state, "files")
        self.widget = w.HBox([self.path_text, self.open_button, self.save_button, self.export_text, self.export_button,
                              self.feedback.widget], layout=w.Layout(flex_flow="row wrap", align_items="center"))
        state.subscribe(self._changed, ("file",))
        self.draw()

    def _changed(self, _change: Change) -> None:
        self.draw()

    def draw(self) -> None:
        if self.state.document is not None:
            self.path_text.value = str(self.state.document.path)
