"""The file view's edit protocol: every edit applied to a flow document's text with its
comments kept, an edit that does not fit refused with its op and field, and the JSON
schema and the TypeScript types the file view compiles against in step with
jupyter_flow/edits.py. (The same edits through a real Jupyter server: test_serverext.py.)"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_flow.edits import MAX_ITEMS, OPS, EditRequestError, apply_edit
from jupyter_flow.errors import FlowValidationError
from jupyter_flow.protocol import ROUTES, edit_schema, schema_text

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "labextension"
SCHEMA = LAB / "src" / "edits.schema.json"
TYPES = LAB / "src" / "edits.ts"

#: a flow document as the file view holds it: comments, and nothing saved yet
TEXT = (ROOT / "tests" / "fixtures" / "flows" / "greet-commented.flow.yaml").read_text(encoding="utf-8")
PATH = Path("greet.flow.yaml")
COMMENTS = ("# kept: a comment at the top", "# kept: the shout node", "# kept: beside echo", "# kept: the wire")


def test_every_op_applies_and_the_comments_stay() -> None:
    done = apply_edit(TEXT, PATH, {"op": "add_node", "kind": "template", "position": {"x": 300, "y": 40}})
    assert (done.made, done.what) == ("template_1", "add node template_1")
    done = apply_edit(done.text, PATH, {"op": "add_edge", "from": "echo", "to": "template_1", "label": "then"})
    assert done.made == 2
    done = apply_edit(done.text, PATH, {"op": "set_config", "node": "template_1", "config": {"template": "bye"}})
    done = apply_edit(done.text, PATH, {"op": "replace_edge", "index": 2, "body": "label: after\nwhen: '{{ true }}'"})
    done = apply_edit(done.text, PATH, {"op": "move", "positions": {"echo": {"x": 10.5, "y": -4}}})
    done = apply_edit(done.text, PATH, {"op": "settings", "body": {"name": "greet", "description": "says hi"}})
    for comment in COMMENTS:
        assert comment in done.text, done.text
    done = apply_edit(done.text, PATH, {"op": "replace_node", "node": "template_1", "body": {"id": "bye", "type": "template", "config": {"template": "bye"}}})
    assert done.made == "bye"
    done = apply_edit(done.text, PATH, {"op": "remove", "edges": [0]})
    data = yaml.safe_load(done.text)
    assert data["description"] == "says hi"
    assert [(e["from"], e["to"]) for e in data["edges"]] == [("shout", "echo"), ("echo", "bye")]
    assert data["edges"][1] == {"from": "echo", "to": "bye", "label": "after", "when": "{{ true }}"}
    assert data["nodes"][-1] == {"id": "bye", "type": "template", "config": {"template": "bye"}}
    assert data["layout"] == {"bye": {"x": 300.0, "y": 40.0}, "echo": {"x": 10.5, "y": -4.0}}
    done = apply_edit(done.text, PATH, {"op": "remove", "nodes": ["bye", "bye"]})
    assert [n["id"] for n in yaml.safe_load(done.text)["nodes"]] == ["shout", "echo"]
    assert "# kept: the shout node" in done.text and "# kept: beside echo" in done.text


def test_an_edit_that_changes_nothing_gives_the_text_back_as_it_was() -> None:
    done = apply_edit(TEXT, PATH, {"op": "remove"})
    assert (done.text, done.what) == (TEXT, "nothing changed")


def test_an_edit_that_breaks_the_graph_is_refused_with_its_location() -> None:
    with pytest.raises(FlowValidationError) as info:
        apply_edit(TEXT, PATH, {"op": "add_edge", "from": "echo", "to": "shout"})
    assert "cycle" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "op", "field", "words"),
    [
        ({"op": "move", "positions": {"shout": {"x": float("nan"), "y": 1}}}, "move", "positions.shout.x", "finite"),
        ({"op": "move", "positions": {"shout": {"x": float("inf"), "y": 1}}}, "move", "positions.shout.x", "finite"),
        ({"op": "move", "positions": {"shout": {"x": "3", "y": 1}}}, "move", "positions.shout.x", "number"),
        ({"op": "move", "positions": {"ghost": {"x": 1, "y": 1}}}, "move", "positions.ghost", "no node 'ghost'"),
        ({"op": "remove", "edges": 5}, "remove", "edges", "list"),
        ({"op": "remove", "edges": [2]}, "remove", "edges.0", "no edge number 2"),
        ({"op": "remove", "nodes": ["ghost"]}, "remove", "nodes.0", "nodes: echo, shout"),
        ({"op": "remove", "nodes": ["shout"] * (MAX_ITEMS + 1)}, "remove", "nodes", f"at most {MAX_ITEMS}"),
        ({"op": "add_node", "kind": "template", "id": "echo"}, "add_node", "id", "exists already"),
        ({"op": "add_node"}, "add_node", "kind", "needed"),
        ({"op": "add_edge", "from": "shout", "to": "start"}, "add_edge", "to", "no node 'start'"),
        ({"op": "set_config", "node": "shout", "config": {"deep": [float("nan")]}}, "set_config", "config.deep.0", "finite"),
        ({"op": "settings", "body": 5}, "settings", "body", "a mapping or YAML text"),
        ({"op": "replace_edge", "index": True, "body": {}}, "replace_edge", "index", "integer"),
        ({"op": "remove", "nodes": [], "everything": True}, "remove", "everything", "not a field"),
        ({"op": "rename"}, "rename", "op", "one of: " + ", ".join(OPS)),
        ({"edges": [0]}, None, "op", "one of"),
    ],
)
def test_an_edit_that_does_not_fit_names_its_op_and_field(edit: dict[str, Any], op: str | None, field: str, words: str) -> None:
    with pytest.raises(EditRequestError) as info:
        apply_edit(TEXT, PATH, edit)
    error = info.value
    assert error.op == op
    assert [e.field for e in error.errors] == [field], error.errors
    assert words in str(error), str(error)


def test_a_body_nested_too_deep_is_refused() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = {"d": deep}
    with pytest.raises(EditRequestError) as info:
        apply_edit(TEXT, PATH, {"op": "set_config", "node": "shout", "config": deep})
    assert info.value.errors[0].field == "config" and "levels deep" in str(info.value)


def test_yaml_text_nested_too_deep_or_expanding_without_bound_is_refused() -> None:
    deep = "[" * 1100 + "]" * 1100
    lines = ["_a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"_a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    bomb = "\n".join(lines) + "\ninputs: {x: {default: *a7}}\n"  # 10^8 values once expanded
    for body, words in ((deep, "levels deep"), (bomb, "aliases")):
        with pytest.raises(FlowValidationError) as info:
            apply_edit(TEXT, PATH, {"op": "settings", "body": body})
        assert words in str(info.value)


# -- the schema and the TypeScript types -----------------------------------------------------
def test_the_committed_schema_is_the_one_edits_py_makes() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == schema_text(), (
        "labextension/src/edits.schema.json is out of date: run `python scripts/edit_types.py`"
    )


def test_the_schema_has_one_type_per_op_and_per_route() -> None:
    schema = edit_schema()
    defs = schema["definitions"]
    members = [ref["$ref"].rsplit("/", 1)[1] for ref in defs["FlowEdit"]["oneOf"]]
    assert [defs[m]["properties"]["op"]["const"] for m in members] == list(OPS)
    assert set(schema["properties"]) == set(ROUTES)
    for route, (request, reply) in ROUTES.items():
        assert reply.__name__ in defs and (request is None or request.__name__ in defs), route
    position = defs["NodePosition"]["properties"]
    assert position == {"x": {"type": "number"}, "y": {"type": "number"}}


def _interfaces(ts: str) -> dict[str, list[str]]:
    """Each exported interface of generated TypeScript and its top-level field names."""
    out = {}
    for match in re.finditer(r"^export interface (\w+) \{\n(.*?)^\}", ts, re.MULTILINE | re.DOTALL):
        out[match.group(1)] = re.findall(r"^  '?([\w-]+)'?\??:", match.group(2), re.MULTILINE)
    return out


def test_the_typescript_types_are_those_of_the_committed_schema() -> None:
    ts = TYPES.read_text(encoding="utf-8")
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert f"schema sha256: {digest}" in ts, "labextension/src/edits.ts is out of date: run `python scripts/edit_types.py`"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    interfaces = _interfaces(ts)
    for name, definition in schema["definitions"].items():
        if "properties" in definition:
            assert interfaces.get(name) == list(definition["properties"]), name
    union = re.search(r"^export type FlowEdit =\s*([^;]+);", ts, re.MULTILINE)
    assert union is not None
    members = [ref["$ref"].rsplit("/", 1)[1] for ref in schema["definitions"]["FlowEdit"]["oneOf"]]
    assert [m.strip() for m in union.group(1).split("|")] == members
    assert interfaces["FileViewRoutes"] == list(ROUTES)


@pytest.mark.skipif(
    shutil.which("node") is None or not (LAB / "node_modules" / "json-schema-to-typescript").is_dir(),
    reason="needs node and `jlpm install` in labextension/",
)
def test_json_schema_to_typescript_makes_the_committed_types() -> None:
    done = subprocess.run(
        ["node", "scripts/edit-types.mjs", "--stdout"], cwd=LAB, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout == TYPES.read_text(encoding="utf-8"), (
        "labextension/src/edits.ts differs from what json-schema-to-typescript makes of the schema: "
        "run `python scripts/edit_types.py`"
    )


# -- what the server extension loads ---------------------------------------------------------------
def test_the_server_extension_edits_without_the_notebook_workbench() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import jupyter_flow.serverext
        from jupyter_flow.edits import apply_edit

        text, path = sys.stdin.read(), Path("greet.flow.yaml")
        for edit in json.loads(sys.argv[1]):
            text = apply_edit(text, path, edit).text
        print(json.dumps(sorted(sys.modules)))
        """
    )
    edits = [
        {"op": "add_node", "kind": "template", "config": {"template": "x"}},
        {"op": "add_edge", "from": "echo", "to": "template_1"},
        {"op": "set_config", "node": "template_1", "config": {"template": "y"}},
        {"op": "replace_node", "node": "template_1", "body": "id: t2\ntype: template\nconfig: {template: z}"},
        {"op": "replace_edge", "index": 2, "body": {"label": "l"}},
        {"op": "move", "positions": {"t2": {"x": 1, "y": 2}}},
        {"op": "settings", "body": {"name": "n"}},
        {"op": "remove", "nodes": ["t2"]},
    ]
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(edits)], input=TEXT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert not [m for m in loaded if m.startswith("jupyter_flow.workbench")]
    assert not [m for m in loaded if m == "ipywidgets" or m.startswith("ipywidgets.")]
