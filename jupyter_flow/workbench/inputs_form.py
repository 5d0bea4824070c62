"""The workbench's inputs form: one field per declared flow input, kept in step with the
inputs the state holds for the next run (a value typed goes to the state; the inputs of a
run started from code show in the form). A file input takes an upload, saved to a
temporary file whose path becomes the input."""

from __future__ import annotations

import html
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_flow.spec import FlowSpec, InputSpec
from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.controls import guarded
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.runs import typed_inputs
from jupyter_flow.workbench.state import WorkbenchState

__all__ = ["InputsForm"]


class InputsForm:
    """One field per declared flow input; what is typed is sent to `actions.set_input`."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions) -> None:
        import ipywidgets as widgets

        self._widgets = widgets
        self.state, self.actions = state, actions
        self.widget = widgets.VBox()
        self.widget.add_class("jf-inputs")
        self.fields: dict[str, Any] = {}
        self._signature: Any = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        state.subscribe(self._changed, ("flow", "inputs"))
        self.rebuild(state.spec)

    def _changed(self, change: Change) -> None:
        if "flow" in change:
            self.rebuild(self.state.spec)
        if "inputs" in change:
            self.show(self.state.runs.inputs)

    def rebuild(self, spec: FlowSpec) -> None:
        """Make the form match the flow's inputs; values already typed are kept, and what
        the form holds becomes the inputs of the next run."""
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
            field.observe(lambda change, key=name: self._typed(key, change["new"]), names="value")
            rows.append(row)
        if not rows:
            rows = [self._widgets.HTML("<i>This flow declares no inputs.</i>")]
        self.widget.children = rows
        self.actions.set_inputs({name: field.value for name, field in self.fields.items()})

    def _typed(self, name: str, value: Any) -> None:
        guarded(self.actions, "run", lambda: self.actions.set_input(name, value))

    def _field(self, name: str, ispec: InputSpec) -> tuple[Any, Any]:
        w = self._widgets
        desc = ispec.description or ""
        label = w.HTML(f"<b>{html.escape(name)}</b>{' *' if ispec.is_required else ''} <span style='color:#777'>{html.escape(ispec.type)}</span>",
                       layout=w.Layout(width="160px"))
        default = ispec.default
        kind = ispec.type
        if kind == "number":
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
        """The inputs the form would run with (`jupyter_flow.workbench.runs.typed_inputs`)."""
        return typed_inputs(spec, {name: field.value for name, field in self.fields.items()})

    def show(self, values: Mapping[str, Any]) -> None:
        """Put inputs held by the state (those of a run started from code, say) into the
        form, so that it shows what the next click runs with."""
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
