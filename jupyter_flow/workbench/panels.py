"""The workbench's side panels: the inputs form, the settings editor, the config schema help."""

from __future__ import annotations

import html
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from jupyter_flow.errors import Problem
from jupyter_flow.spec import FlowSpec, InputSpec

__all__ = ["InputsForm", "SettingsEditor", "config_fields", "config_template", "problems_html"]


def config_fields(config_model: Any) -> list[tuple[str, str, bool, Any]]:
    """(name, type, required, default) of each field of a node kind's Config model."""
    out = []
    for name, field in getattr(config_model, "model_fields", {}).items():
        annotation = field.annotation
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        out.append((name, type_name, field.is_required(), default))
    return out


def config_template(config_model: Any) -> dict[str, Any]:
    """A starting config for a new node: each required field with an empty value of its type."""
    out: dict[str, Any] = {}
    for name, type_name, required, _default in config_fields(config_model):
        if not required:
            continue
        low = type_name.lower()
        out[name] = {} if low.startswith("dict") else [] if low.startswith("list") else ""
    return out


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


class SettingsEditor:
    """A YAML editor for the selected node, edge or the flow's settings, with Apply."""

    def __init__(self, on_apply: Callable[[str], None], *, feedback: Any = None) -> None:
        """`feedback`: where what Apply reports shows, beside the button (an HTML widget)."""
        import ipywidgets as widgets

        self.title = widgets.HTML("<i>Click a node or an edge to edit it; with nothing selected this edits the flow's settings.</i>")
        self.text = widgets.Textarea(layout=widgets.Layout(width="100%", height="220px"))
        self.text.add_class("jf-yaml")
        self.apply_button = widgets.Button(description="Apply", button_style="primary", icon="check", tooltip="Validate and apply")
        self.schema = widgets.HTML()
        self.problems = widgets.HTML()
        self.apply_button.layout = widgets.Layout(width="auto", flex="0 0 auto")
        self.apply_button.on_click(lambda _b: on_apply(self.text.value))
        self.feedback = feedback if feedback is not None else widgets.HTML()
        self.feedback.layout.flex = "1 1 160px"
        self.feedback.layout.min_width = "0"
        bar = widgets.HBox([self.apply_button, self.feedback], layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = widgets.VBox([self.title, self.text, bar, self.problems, self.schema])

    def show(self, title: str, body: Any, *, schema: str = "", problems: list[Problem] | None = None) -> None:
        self.title.value = title
        self.text.value = body if isinstance(body, str) else to_yaml(body)
        self.schema.value = schema
        self.show_problems(problems or [])

    def show_problems(self, problems: list[Problem], title: str = "Problems") -> None:
        self.problems.value = problems_html(problems, title=title)


class InputsForm:
    """One field per declared flow input; file inputs take an upload saved to a temp file."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self._widgets = widgets
        self.widget = widgets.VBox()
        self.fields: dict[str, Any] = {}
        self._signature: Any = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None

    def rebuild(self, spec: FlowSpec) -> None:
        """Make the form match the flow's inputs; values already typed are kept."""
        signature = {k: v.model_dump() for k, v in spec.inputs.items()}
        if signature == self._signature:
            return
        self._signature = signature
        old = {k: self._value_of(k) for k in self.fields}
        self.fields = {}
        rows = []
        for name, ispec in spec.inputs.items():
            field, row = self._field(name, ispec)
            if name in old and old[name] is not None:
                try:
                    field.value = old[name]
                except Exception:  # a value of another type after the input's type changed
                    pass
            self.fields[name] = field
            rows.append(row)
        if not rows:
            rows = [self._widgets.HTML("<i>This flow declares no inputs.</i>")]
        self.widget.children = rows

    def _field(self, name: str, ispec: InputSpec) -> tuple[Any, Any]:
        w = self._widgets
        desc = ispec.description or ""
        label = w.HTML(f"<b>{html.escape(name)}</b>{' *' if ispec.is_required else ''} <span style='color:#777'>{html.escape(ispec.type)}</span>",
                       layout=w.Layout(width="160px"))
        default = ispec.default
        kind = ispec.type
        if kind in ("number",):
            field = w.FloatText(value=float(default) if isinstance(default, (int, float)) else 0.0)
        elif kind == "integer":
            field = w.IntText(value=int(default) if isinstance(default, (int, float)) else 0)
        elif kind == "boolean":
            field = w.Checkbox(value=bool(default), indent=False)
        elif kind == "text":
            field = w.Textarea(value="" if default is None else str(default), layout=w.Layout(width="360px", height="70px"))
        elif kind in ("json", "list", "object", "any"):
            text = "" if default is None else (default if isinstance(default, str) else json.dumps(default))
            field = w.Textarea(value=text, placeholder="JSON", layout=w.Layout(width="360px", height="60px"))
        elif kind == "file":
            field = w.Text(value="" if default is None else str(default), placeholder="path to a file, or upload one",
                           layout=w.Layout(width="260px"))
            upload = w.FileUpload(multiple=False, description="Upload")
            upload.observe(lambda change, target=field, key=name: self._uploaded(change, target, key), names="value")
            field.tooltip = desc
            return field, w.HBox([label, field, upload])
        else:
            field = w.Text(value="" if default is None else str(default), layout=w.Layout(width="360px"))
        field.tooltip = desc
        return field, w.HBox([label, field])

    def _uploaded(self, change: Mapping[str, Any], target: Any, name: str) -> None:
        files = change.get("new") or ()
        if not files:
            return
        item = files[0]
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="jupyter-flow-uploads-")
        safe = Path(str(item.get("name") or name)).name or name
        path = Path(self._tempdir.name) / safe
        content = item.get("content")
        path.write_bytes(bytes(content) if content is not None else b"")
        target.value = str(path)

    def _value_of(self, name: str) -> Any:
        field = self.fields.get(name)
        return None if field is None else field.value

    def values(self, spec: FlowSpec) -> dict[str, Any]:
        """The inputs to run with: empty fields are left out (so defaults apply); JSON fields
        are parsed; a field that does not parse is an error naming the input."""
        from jupyter_flow.errors import FlowValidationError

        out: dict[str, Any] = {}
        for name, ispec in spec.inputs.items():
            field = self.fields.get(name)
            if field is None:
                continue
            value = field.value
            if isinstance(value, str) and value == "" and ispec.type not in ("string", "text"):
                continue
            if isinstance(value, str) and value == "" and ispec.default is not None:
                continue
            if ispec.type in ("json", "list", "object", "any") and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    if ispec.type != "any":
                        raise FlowValidationError([Problem(f"not valid JSON: {exc.msg} (line {exc.lineno})", field=f"inputs.{name}")]) from None
            out[name] = value
        return out

    def show(self, values: Mapping[str, Any]) -> None:
        """Put the inputs of a run started from code into the form, so the next click runs
        with the same ones."""
        for name, value in values.items():
            if name in self.fields:
                try:
                    self.set(name, value)
                except Exception:  # a value the field cannot show (a tensor, say) stays out
                    pass

    def set(self, name: str, value: Any) -> None:
        field = self.fields[name]
        field.value = value if not isinstance(field, self._widgets.Textarea) or isinstance(value, str) else json.dumps(value)

    def close(self) -> None:
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
