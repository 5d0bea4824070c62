"""What a `Workbench` looks like: its widgets, laid out, and where its messages show.

`WorkbenchLayout` builds the toolbar, the graph beside the Settings/Inspect/Timeline tabs,
the inputs form, the run bar and the file bar; every button calls a `Workbench` method
(the methods are the API, the buttons a face on them), and what an action reports shows
next to the control that caused it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jupyter_flow.errors import FlowError
from jupyter_flow.palette import palette as kind_palette
from jupyter_flow.workbench.graph import GraphView
from jupyter_flow.workbench.panels import InputsForm, SettingsEditor
from jupyter_flow.workbench.styles import STATUS_COLOURS
from jupyter_flow.workbench.tensors import TensorPanel

if TYPE_CHECKING:
    from jupyter_flow.nodes.registry import NodeRegistry
    from jupyter_flow.workbench.files import FlowDocument

__all__ = ["WorkbenchLayout"]

#: Where the messages of a button's action show (see `WorkbenchLayout._say`); "edit" otherwise.
_FEEDBACK_OF = {
    "jf-run": "run", "jf-run-from": "run", "jf-cancel": "run", "jf-to-variable": "inspect",
    "jf-open": "files", "jf-save": "files", "jf-export": "files",
}


class WorkbenchLayout:
    """The widgets of a `Workbench` and its message places (a base class of it)."""

    if TYPE_CHECKING:  # given by `Workbench`: what the widgets show and what the buttons call
        registry: NodeRegistry
        document: FlowDocument | None
        _origin: str
        message_text: str
        error: str | None
        add_node: Callable[..., Any]
        delete_selected: Callable[[], Any]
        undo: Callable[[], Any]
        select: Callable[[str | None], Any]
        click_node: Callable[[str], Any]
        click_edge: Callable[[str], Any]
        _moved: Callable[[str, float, float], Any]
        _wire_changed: Callable[..., Any]
        _apply_settings: Callable[[str], Any]
        run: Callable[..., Any]
        run_from: Callable[..., Any]
        cancel: Callable[[], Any]
        to_variable: Callable[..., Any]
        open: Callable[..., Any]
        save: Callable[..., Any]
        export_notebook: Callable[..., Any]

    def _build(self, height: str | None) -> None:
        import ipywidgets as w

        self.graph = GraphView(on_node_click=self.click_node, on_node_moved=self._moved, on_edge_click=self.click_edge, height=height)
        kinds = [entry["kind"] for entry in kind_palette(self.registry)]
        self.palette = w.Dropdown(options=kinds, value="python" if "python" in kinds else None,
                                  description="Kind", layout=w.Layout(width="210px"))
        self.add_button = self._button("Add node", "plus", lambda: self.add_node(self.palette.value), "jf-add")
        self.fit_button = self._button("Fit", "expand", self.graph.fit, "jf-fit", tooltip="Show the whole flow")
        self.wire_toggle = w.ToggleButton(description="Wire", icon="link", tooltip="Click a source node, then a target node")
        self.wire_toggle.add_class("jf-wire")
        self.wire_toggle.layout = w.Layout(width="auto", flex="0 0 auto")
        self.wire_toggle.observe(self._wire_changed, names="value")
        self.delete_button = self._button("Delete", "trash", self.delete_selected, "jf-delete")
        self.undo_button = self._button("Undo", "undo", self.undo, "jf-undo")
        self.settings_button = self._button("Flow settings", "cog", lambda: self.select(None), "jf-settings")
        self.palette.layout.flex = "0 0 auto"
        # one place per control group for what its actions report (see `_say`)
        self.feedback = {at: w.HTML("") for at in ("edit", "settings", "run", "inspect", "files")}
        for at, view in self.feedback.items():
            view.add_class("jf-feedback")
            view.add_class(f"jf-{at}-feedback")
        self.feedback["edit"].layout = w.Layout(flex="1 1 220px", min_width="0")
        # wraps onto a second line in a narrow pane instead of cutting the buttons short
        toolbar = w.HBox([self.palette, self.add_button, self.wire_toggle, self.delete_button, self.undo_button,
                          self.settings_button, self.fit_button, self.feedback["edit"]],
                         layout=w.Layout(flex_flow="row wrap", align_items="center"))
        toolbar.add_class("jf-toolbar")

        self.settings = SettingsEditor(self._apply_settings, feedback=self.feedback["settings"])
        self.inspector = w.HTML("<i>Run the flow, then click a node to see what went in and out.</i>")
        self.inspector.add_class("jf-inspector")
        self.variable_name = w.Text(placeholder="variable name", layout=w.Layout(width="160px"))
        self.variable_what = w.Dropdown(options=["outputs", "inputs", "activations"], value="outputs", layout=w.Layout(width="120px"))
        self.variable_button = self._button("To variable", "download", lambda: self.to_variable(), "jf-to-variable")
        self.tensor_panel = TensorPanel()
        self.feedback["inspect"].layout = w.Layout(flex="1 1 200px", min_width="0")
        variable_bar = w.HBox([self.variable_name, self.variable_what, self.variable_button, self.feedback["inspect"]],
                              layout=w.Layout(flex_flow="row wrap", align_items="center"))
        inspect_box = w.VBox([variable_bar, self.inspector,
                              self.tensor_panel.widget])
        self.timeline = w.HTML("<i>The timeline of the last run shows here.</i>")
        self.timeline.add_class("jf-timeline-panel")
        self.tabs = w.Tab(children=[self.settings.widget, inspect_box, self.timeline])
        for i, title in enumerate(("Settings", "Inspect", "Timeline")):
            self.tabs.set_title(i, title)
        # side by side where there is room, the panels below the graph in a narrow pane
        self.tabs.layout = w.Layout(flex="2 1 340px", min_width="300px", max_height="720px", overflow="auto")
        self.graph.widget.layout.width = "auto"
        self.graph.widget.layout.flex = "3 1 560px"
        self.graph.widget.layout.min_width = "280px"

        self.inputs = InputsForm()
        self.run_button = self._button("Run", "play", lambda: self.run(), "jf-run", style="success")
        self.run_from_button = self._button("Run from here", "step-forward", lambda: self.run_from(), "jf-run-from")
        self.cancel_button = self._button("Cancel", "stop", self.cancel, "jf-cancel", style="danger")
        self.cancel_button.disabled = True
        self.run_status = w.HTML("")
        legend = " ".join(
            f"<span style='background:{c};padding:0 5px;border-radius:6px;font-size:11px'>{s}</span>" for s, c in STATUS_COLOURS.items()
        )
        self.message = self.feedback["run"]
        self.message.add_class("jf-message")
        self.message.layout = w.Layout(flex="1 1 240px", min_width="0")
        run_bar = w.HBox([self.run_button, self.run_from_button, self.cancel_button, self.run_status, self.message, w.HTML(legend)],
                         layout=w.Layout(flex_flow="row wrap", align_items="center"))

        self.path_text = w.Text(value=str(self.document.path) if self.document else "", placeholder="flows/my.flow.yaml",
                                description="File", layout=w.Layout(width="330px"))
        self.open_button = self._button("Open", "folder-open", lambda: self.open(self.path_text.value), "jf-open")
        self.save_button = self._button("Save", "save", lambda: self.save(self.path_text.value or None), "jf-save")
        self.export_text = w.Text(placeholder="notebook.ipynb", description="Notebook", layout=w.Layout(width="300px"))
        self.export_button = self._button("Export notebook", "book", lambda: self.export_notebook(self.export_text.value or None), "jf-export")
        self.feedback["files"].layout = w.Layout(flex="1 1 200px", min_width="0")
        files_bar = w.HBox([self.path_text, self.open_button, self.save_button, self.export_text, self.export_button,
                            self.feedback["files"]], layout=w.Layout(flex_flow="row wrap", align_items="center"))

        self.problems_view = w.HTML("")
        self.widget = w.VBox([
            toolbar,
            w.HBox([self.graph.widget, self.tabs], layout=w.Layout(flex_flow="row wrap", align_items="flex-start")),
            w.HTML("<b>Inputs</b>"),
            self.inputs.widget,
            run_bar,
            files_bar,
            self.problems_view,
        ])
        self.widget.add_class("jf-workbench")

    def _button(self, text: str, icon: str, action: Callable[[], Any], css: str, style: str = "", tooltip: str = "") -> Any:
        import ipywidgets as w

        # never narrower than its text: a toolbar that runs out of room wraps instead
        button = w.Button(description=text, icon=icon, button_style=style, tooltip=tooltip,
                          layout=w.Layout(width="auto", flex="0 0 auto"))
        button.add_class(css)
        at = _FEEDBACK_OF.get(css, "edit")
        button.on_click(lambda _b: self._guarded(action, at))
        return button

    def _guarded(self, action: Callable[[], Any], at: str = "edit") -> None:
        """Run a button's action; what it reports shows next to it (`at`), an error too."""
        before, self._origin = self._origin, at
        try:
            action()
        except FlowError:
            pass
        except Exception as exc:  # a button must never leave a traceback in the log
            self._say(f"{type(exc).__name__}: {exc}", error=True)
        finally:
            self._origin = before

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _say(self, text: str, *, error: bool = False, at: str | None = None) -> None:
        """Show a message next to the controls it concerns: `at` is "edit", "settings",
        "run", "inspect" or "files" (by default, those of the button being handled). The
        other places are cleared, so only the latest message shows."""
        self.message_text = text
        self.error = text if error else None
        colour = "#b00000" if error else "#225522"
        body = html.escape(text).replace("\n", "<br>")
        where = at or self._origin
        for name, view in self.feedback.items():
            view.value = (f"<div style='color:{colour};white-space:pre-wrap;line-height:1.3'>{'&#9888; ' if error else ''}{body}</div>"
                          if name == where else "")
