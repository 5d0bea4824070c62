"""Edits of a flow document's text, as the JupyterLab file view makes them through the
server: the workbench's editor applies them, and the document's comments survive."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jupyter_flow.errors import FlowValidationError
from jupyter_flow.workbench.textedit import edit_text, form_schema

TEXT = """\
# kept: a comment at the top
spec_version: 1
name: greet
nodes:
  # kept: the shout node
  - id: shout
    type: template
    config: {template: "hi"}
  - id: echo  # kept: beside echo
    type: template
    config: {template: "{{ shout.output.text }}"}
edges:
  - {from: start, to: shout}
  - {from: shout, to: echo}  # kept: the wire
"""
PATH = Path("greet.flow.yaml")


def test_add_connect_configure_and_remove_keep_the_comments() -> None:
    done = edit_text(TEXT, PATH, {"op": "add_node", "kind": "template", "position": {"x": 300, "y": 40}})
    assert done.made == "template_1"
    done = edit_text(done.text, PATH, {"op": "add_edge", "from": "echo", "to": "template_1"})
    done = edit_text(done.text, PATH, {"op": "set_config", "node": "template_1", "config": {"template": "bye"}})
    done = edit_text(done.text, PATH, {"op": "remove", "edges": [0]})
    data = yaml.safe_load(done.text)
    assert [e["to"] for e in data["edges"]] == ["echo", "template_1"]
    assert data["nodes"][-1] == {"id": "template_1", "type": "template", "config": {"template": "bye"}}
    assert data["layout"]["template_1"] == {"x": 300.0, "y": 40.0}
    for comment in ("# kept: a comment at the top", "# kept: the shout node", "# kept: beside echo", "# kept: the wire"):
        assert comment in done.text, done.text


def test_an_edit_that_breaks_the_graph_is_refused_with_its_location() -> None:
    with pytest.raises(FlowValidationError) as info:
        edit_text(TEXT, PATH, {"op": "add_edge", "from": "echo", "to": "shout"})
    assert "cycle" in str(info.value)


def test_form_schema_gives_every_field_a_type() -> None:
    schema = form_schema({"properties": {"a": {"title": "A"}, "b": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}}})
    assert schema["properties"] == {"a": {"title": "A", "type": "string"}, "b": {"type": "string"}}
