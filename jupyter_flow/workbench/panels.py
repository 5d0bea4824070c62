"""The workbench's side panels: the settings editor of what is selected (with the config
schema of a node's kind), the flow's problems, and the timeline of the run shown."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import yaml

from jupyter_flow.editor import config_fields
from jupyter_flow.errors import Problem
from jupyter_flow.spec import spec_to_dict
from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.controls import FeedbackLine, guarded
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.graph import edge_key, problems_by_element
from jupyter_flow.workbench.state import WorkbenchState
from jupyter_flow.workbench.timeline import timeline_svg

__all__ = ["ProblemsPanel", "SelectionForm", "SettingsEditor", "TimelinePanel", "problems_html", "schema_html",
           "selection_form"]


def schema_html(kind: str, config_model: Any) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(t)}</td>"
        f"<td>{'required' if r else html.escape(repr(d))}</td></tr>"
        for n, t, r, d in config_fields(config_model)
    )
    if not rows:
        return ""
    return (
        f"<details><summary>config fields of a <b>{html.escape(kind)}</b> node</summary>"
        f"<table style='font-size:11px'><tr><th>field</th><th>type</th><th>default</th></tr>{rows}</table></details>"
    )


def problems_html(problems: list[Problem], *, title: str = "Problems") -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{html.escape(str(p))}</li>" for p in problems)
    return (
        f"<div class='jf-problems' style='color:#b00000;border-left:4px solid #e00000;padding:2px 8px;'>"
        f"<b>{html.escape(title)}</b><ul style='margin:2px 0'>{items}</ul></div>"
    )


def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


@dataclass(frozen=True)
class SelectionForm:
    """What the settings editor shows for the selection: a title, the settings (as a
    mapping), the config fields of a node's kind, the problems of the selected element."""

    title: str
    body: Any
    schema: str = ""
    problems: tuple[Problem, ...] = ()


def selection_form(state: WorkbenchState) -> SelectionForm:
    """The settings of the selected node or edge, or the flow's settings with nothing selected."""
    problems = state.problems()
    if state.selected is None:
        settings = state.editor.settings() or {"name": state.spec.name}
        return SelectionForm("<b>Flow settings</b> (name, description, inputs, timeout_s, max_concurrency)", settings,
                             problems=tuple(p for p in problems if p.node is None and not (p.field or "").startswith("edges")))
    kind, key = state.selected
    data = spec_to_dict(state.spec)
    if kind == "node":
        node = next(n for n in data["nodes"] if n["id"] == key)
        node_type = node.get("type", "")
        try:
            schema = schema_html(node_type, state.registry.get(node_type).Config)
        except (KeyError, ImportError):
            schema = ""
        return SelectionForm(f"<b>Node {html.escape(key)}</b>", node, schema, tuple(p for p in problems if p.node == key))
    index = next(i for i, e in enumerate(state.spec.edges) if edge_key(e) == key)
    body = {k: v for k, v in data["edges"][index].items() if k not in ("from", "to")}
    return SelectionForm(f"<b>Edge {html.escape(key)}</b> (when, branch, on, label)", body or {"when": None},
                         problems=tuple(problems_by_element(state.spec, problems).get(key, [])))


class SettingsEditor:
    """A YAML editor for the selected node, edge or the flow's settings, with Apply.

    It shows the selection again when the selection changes or when the flow changes what
    it shows (an undo, an Apply); an edit elsewhere updates only the problems, so text
    typed and not yet applied stays. A refused Apply lists its problems as "Not applied"."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions) -> None:
        import ipywidgets as widgets

        self.state = state
        self.title = widgets.HTML("<i>Click a node or an edge to edit it; with nothing selected this edits the flow's settings.</i>")
        self.text = widgets.Textarea(layout=widgets.Layout(width="100%", height="220px"))
        self.text.add_class("jf-yaml")
        self.apply_button = widgets.Button(description="Apply", button_style="primary", icon="check", tooltip="Validate and apply",
                                           layout=widgets.Layout(width="auto", flex="0 0 auto"))
        self.apply_button.add_class("jf-apply")
        self.apply_button.on_click(lambda _b: guarded(actions, "settings", lambda: actions.apply_settings(self.text.value)))
        self.schema = widgets.HTML()
        self.problems = widgets.HTML()
        self.feedback = FeedbackLine(state, "settings", grow="1 1 160px")
        bar = widgets.HBox([self.apply_button, self.feedback.widget], layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = widgets.VBox([self.title, self.text, bar, self.problems, self.schema])
        self._shown: SelectionForm | None = None
        state.subscribe(self._changed, ("flow", "selection", "notice"))
        self.draw()

    def _changed(self, change: Change) -> None:
        if "selection" in change:
            self.draw()
        elif "flow" in change:
            form = selection_form(self.state)
            if self._shown is not None and (form.title, form.body) == (self._shown.title, self._shown.body):
                self._shown = form
                self.show_problems(list(form.problems))
            else:
                self.draw(form)
        notice = self.state.notice
        if "notice" in change and notice is not None and notice.place == "settings" and notice.problems:
            self.show_problems(list(notice.problems), title="Not applied")

    def draw(self, form: SelectionForm | None = None) -> None:
        """Show the selection's settings as they are now (text typed and not applied goes)."""
        self._shown = form = form or selection_form(self.state)
        self.title.value = form.title
        self.text.value = form.body if isinstance(form.body, str) else to_yaml(form.body)
        self.schema.value = form.schema
        self.show_problems(list(form.problems))

    def show_problems(self, problems: list[Problem], title: str = "Problems") -> None:
        self.problems.value = problems_html(problems, title=title)


class ProblemsPanel:
    """Every problem of the flow, listed under the workbench until fixed."""

    def __init__(self, state: WorkbenchState) -> None:
        import ipywidgets as widgets

        self.state = state
        self.widget = widgets.HTML("")
        self.widget.add_class("jf-problems-panel")
        state.subscribe(lambda _c: self.draw(), ("flow",))
        self.draw()

    def draw(self) -> None:
        self.widget.value = problems_html(self.state.problems(), title="Problems to fix before running")


class TimelinePanel:
    """The run shown, as a Gantt chart (one bar per node that started)."""

    def __init__(self, state: WorkbenchState) -> None:
        import ipywidgets as widgets

        self.state = state
        self.widget = widgets.HTML("<i>The timeline of the last run shows here.</i>")
        self.widget.add_class("jf-timeline-panel")
        state.subscribe(lambda _c: self.draw(), ("run",))

    def draw(self) -> None:
        result = self.state.runs.result
        self.widget.value = timeline_svg(result) if result is not None else "<i>The timeline of the last run shows here.</i>"
