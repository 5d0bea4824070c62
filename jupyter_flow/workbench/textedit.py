"""One edit of a flow document's text, for the JupyterLab file view.

The file view holds the flow as the text of a JupyterLab document; the server extension
hands that text and one edit (as JSON) to `edit_text`, which reads it, applies the edit
with the same `FlowEditor` the notebook workbench uses (validated, refusing new graph
problems), and writes the text back with the document's comments kept. The browser puts
the new text into its document model, so JupyterLab's own save, undo and reload apply.

An edit is a mapping with an `op`:

    add_node      {kind, id?, config?, position?: {x, y}}   -> the new node's id
    remove        {nodes?: [id], edges?: [index]}             (what a Delete key removes)
    add_edge      {from, to, when?, branch?, on?, label?}     -> the new edge's index
    replace_node  {node, body: mapping or YAML text}          -> the node's id (maybe new)
    set_config    {node, config: mapping}
    replace_edge  {index, body: mapping or YAML text}
    move          {positions: {id: {x, y}}}
    settings      {body: mapping or YAML text}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.spec import PathLike
from jupyter_flow.workbench.editor import FlowEditor
from jupyter_flow.workbench.files import FlowDocument

__all__ = ["OPS", "TextEdit", "edit_text", "form_schema", "new_node_config"]

OPS = ("add_node", "remove", "add_edge", "replace_node", "set_config", "replace_edge", "move", "settings")
_EDGE_FIELDS = ("when", "branch", "on", "label")


@dataclass
class TextEdit:
    """The document's text after an edit, what the edit did, and what it made."""

    text: str
    what: str
    made: str | int | None = None


def new_node_config(kind: str) -> dict[str, Any]:
    """The config a new node of `kind` starts with: its required fields, empty."""
    from jupyter_flow.nodes.registry import default_registry
    from jupyter_flow.workbench.panels import config_template

    try:
        return config_template(default_registry().get(kind).Config)
    except (KeyError, ImportError):
        return {}


def form_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema as a form shows it well: an optional field (`anyOf` with
    `null`) as its one type, and a field of any type as text (a value a form cannot hold,
    a mapping say, is edited in the YAML tab)."""
    out = dict(schema)
    props: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        prop = dict(prop)
        options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
        if "anyOf" in prop and len(options) == 1:
            prop.pop("anyOf")
            prop.update(options[0])
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        if not any(k in prop for k in ("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const")):
            prop["type"] = "string"
        props[name] = prop
    out["properties"] = props
    return out


def edit_text(text: str, path: PathLike, edit: Mapping[str, Any]) -> TextEdit:
    """Apply `edit` to flow `text` (the content of the file at `path`); raises
    `FlowValidationError` naming the node, edge and field when the text or the edit is bad."""
    spec, document = FlowDocument.parse(text, Path(path))
    editor = FlowEditor(spec)
    made = _apply(editor, edit)
    if not editor.can_undo:
        return TextEdit(text, "nothing changed", made)
    return TextEdit(document.text(editor.spec), editor.last_edit or "edit", made)


def _need(edit: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = edit.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FlowValidationError([Problem(f"the edit needs '{name}'", field=name)])
    return value


def _position(value: Any) -> tuple[float, float] | None:
    if isinstance(value, Mapping) and all(isinstance(value.get(k), (int, float)) for k in ("x", "y")):
        return (float(value["x"]), float(value["y"]))
    return None


def _apply(editor: FlowEditor, edit: Mapping[str, Any]) -> str | int | None:
    op = edit.get("op")
    if op == "add_node":
        kind = _need(edit, "kind", str)
        config = edit.get("config")
        config = dict(config) if isinstance(config, Mapping) else new_node_config(kind)
        node_id = edit.get("id") if isinstance(edit.get("id"), str) and edit.get("id") else None
        return editor.add_node(kind, node_id, config, _position(edit.get("position")))
    if op == "remove":
        # edges first, from the last, so the indexes given still name the same edges
        for index in sorted({int(i) for i in edit.get("edges") or []}, reverse=True):
            editor.remove_edge(index)
        for node_id in edit.get("nodes") or []:
            editor.remove_node(str(node_id))
        return None
    if op == "add_edge":
        fields = {k: edit[k] for k in _EDGE_FIELDS if edit.get(k) not in (None, "")}
        return editor.add_edge(_need(edit, "from", str), _need(edit, "to", str), **fields)
    if op == "replace_node":
        return editor.replace_node(_need(edit, "node", str), _need(edit, "body", (Mapping, str)))
    if op == "set_config":
        node_id = _need(edit, "node", str)
        config = _need(edit, "config", Mapping)
        node = next((n for n in editor.data()["nodes"] if n["id"] == node_id), None)
        if node is None:
            raise FlowValidationError([Problem("no such node", node=node_id)])
        return editor.replace_node(node_id, {**node, "config": dict(config)})
    if op == "replace_edge":
        editor.replace_edge(_need(edit, "index", int), _need(edit, "body", (Mapping, str)))
        return None
    if op == "move":
        positions = _need(edit, "positions", Mapping)
        for node_id, pos in positions.items():
            xy = _position(pos)
            if xy is None:
                raise FlowValidationError([Problem("a position needs numbers x and y", node=str(node_id), field="layout")])
            editor.move(str(node_id), *xy)
        return None
    if op == "settings":
        editor.replace_settings(_need(edit, "body", (Mapping, str)))
        return None
    raise FlowValidationError([Problem(f"unknown edit {op!r} (one of: {', '.join(OPS)})", field="op")])
